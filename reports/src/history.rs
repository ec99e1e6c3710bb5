//! Baseline history: run records read from files and folders, and a folder that keeps the
//! last N runs of a branch (what a CI cache or the repository holds), so a comparison's noise
//! comes from several runs, not one.
//!
//! A history folder holds one `run-<start>.json` per run, named by its UTC start time.
//! [`add`] writes a run there (atomically: a temporary file renamed into place) and prunes
//! the oldest beyond `keep`. The runs of a history must be alike (one scenario, one load
//! shape, as [`compare`](fn@crate::compare) requires): [`add`] refuses a run unlike the ones
//! kept unless told to replace them, and [`read_runs`] hands them to the comparison, which
//! refuses unlike runs by file name. [`read_runs`] also reads a folder of run output folders
//! (`DIR/*/run.json`, as `loadgen run --out` and `loadgen ab` write them). Globs are the
//! caller's to expand (the shell, or the CLI); this module takes files and folders.

use std::path::{Path, PathBuf};

use crate::compare::{differences, Labeled};
use crate::run::{Run, RunError};

/// A run record and where it was read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// The path as messages show it.
    pub label: String,
    /// The run.
    pub run: Run,
}

impl Loaded {
    /// The run named by its file, for [`compare_runs`](crate::compare_runs) and friends.
    pub fn labeled(&self) -> Labeled<'_> {
        Labeled::new(&self.label, &self.run)
    }
}

/// Why runs could not be read or a history not kept. Every message names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file or folder could not be read.
    #[error("{path}: cannot read: {message}")]
    Read {
        /// The file or folder.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A file is not a run record (with line and column when the JSON is malformed).
    #[error("{place}: {source}")]
    Parse {
        /// `file` or `file:line:column`.
        place: String,
        /// What is wrong.
        source: RunError,
    },
    /// A folder without run records.
    #[error("{0}: no run records (*.json, or */run.json) in this folder")]
    Empty(String),
    /// A file could not be written or removed.
    #[error("{path}: cannot write: {message}")]
    Write {
        /// The file or folder.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The history holds runs unlike the one added (each reason reads `file: what: new vs
    /// kept`).
    #[error("{folder}: holds runs unlike the new one ({}); replace them to start the history afresh", .reasons.join("; "))]
    Unlike {
        /// The history folder.
        folder: String,
        /// Each difference, naming the run file.
        reasons: Vec<String>,
    },
    /// A history that keeps nothing.
    #[error("a history keeps at least 1 run, got {0}")]
    Keep(usize),
}

/// Reads one run record; errors name the file (and line:column for malformed JSON).
pub fn read_run(path: &Path) -> Result<Run, HistoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| HistoryError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Run::from_json_str(&text).map_err(|source| {
        let place = match &source {
            RunError::Json(j) if j.line() > 0 => {
                format!("{}:{}:{}", path.display(), j.line(), j.column())
            }
            _ => path.display().to_string(),
        };
        HistoryError::Parse { place, source }
    })
}

/// The run files of a folder: every `*.json` not starting with `.`, sorted by name.
fn folder_files(dir: &Path) -> Result<Vec<PathBuf>, HistoryError> {
    let entries = std::fs::read_dir(dir).map_err(|e| HistoryError::Read {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The run records of a folder as [`read_runs`] takes them: its own `*.json` files and the
/// `run.json` of each subfolder (`loadgen run --out` folders, `loadgen ab`'s rounds).
fn folder_runs(dir: &Path) -> Result<Vec<PathBuf>, HistoryError> {
    let mut files = folder_files(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| HistoryError::Read {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    files.extend(
        entries
            .flatten()
            .map(|e| e.path().join("run.json"))
            .filter(|p| p.is_file()),
    );
    files.sort();
    Ok(files)
}

/// Reads run records from `paths`, each a file or a folder (its `*.json` run records and its
/// subfolders' `run.json`), oldest first (by start time). A folder without run records is an
/// error, as is any file that is not a run record.
pub fn read_runs<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Loaded>, HistoryError> {
    let mut out = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let files = if path.is_dir() {
            let files = folder_runs(path)?;
            if files.is_empty() {
                return Err(HistoryError::Empty(path.display().to_string()));
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            let run = read_run(&file)?;
            out.push(Loaded {
                label: file.display().to_string(),
                path: file,
                run,
            });
        }
    }
    out.sort_by_key(|l| l.run.started_at);
    Ok(out)
}

/// The file name a history gives `run`: `run-20261125T192000.123Z.json`.
pub fn file_name(run: &Run) -> String {
    format!("run-{}.json", run.started_at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// What [`add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// Where the run was written.
    pub path: PathBuf,
    /// Older runs removed to keep the history at its size.
    pub pruned: Vec<PathBuf>,
    /// Runs unlike the new one, removed because `replace_unlike` was given.
    pub replaced: Vec<PathBuf>,
}

/// Adds `run` to the history folder `dir` (created when missing) and keeps only the newest
/// `keep` runs. Runs in the folder unlike `run` (another scenario or load shape) are refused,
/// or removed when `replace_unlike` (the scenario changed on purpose: the history starts
/// afresh). A file of the folder that is not a run record is an error and nothing is changed.
pub fn add(
    dir: &Path,
    run: &Run,
    keep: usize,
    replace_unlike: bool,
) -> Result<Added, HistoryError> {
    if keep == 0 {
        return Err(HistoryError::Keep(keep));
    }
    let write_err = |path: &Path, e: std::io::Error| HistoryError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let target = dir.join(file_name(run));
    let mut kept = Vec::new();
    let mut unlike = Vec::new();
    let mut reasons = Vec::new();
    for file in folder_files(dir)? {
        if file == target {
            continue;
        }
        let old = read_run(&file)?;
        let label = file.display().to_string();
        let why = differences(run, &[Labeled::new(&label, &old)]);
        if why.is_empty() {
            kept.push((old.started_at, file));
        } else {
            reasons.extend(why);
            unlike.push(file);
        }
    }
    if !unlike.is_empty() && !replace_unlike {
        return Err(HistoryError::Unlike {
            folder: dir.display().to_string(),
            reasons,
        });
    }
    let mut text = run.to_json_pretty().map_err(|e| HistoryError::Write {
        path: target.display().to_string(),
        message: e.to_string(),
    })?;
    text.push('\n');
    let temporary = dir.join(format!(".{}.tmp", file_name(run)));
    std::fs::write(&temporary, text).map_err(|e| write_err(&temporary, e))?;
    std::fs::rename(&temporary, &target).map_err(|e| write_err(&target, e))?;
    for file in &unlike {
        std::fs::remove_file(file).map_err(|e| write_err(file, e))?;
    }
    kept.push((run.started_at, target.clone()));
    kept.sort();
    let excess = kept.len().saturating_sub(keep);
    let mut pruned = Vec::new();
    for (_, file) in kept.into_iter().take(excess) {
        std::fs::remove_file(&file).map_err(|e| write_err(&file, e))?;
        pruned.push(file);
    }
    Ok(Added {
        path: target,
        pruned,
        replaced: unlike,
    })
}
