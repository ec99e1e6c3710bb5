//! `loadgen report`: render a run record as HTML, Markdown, JUnit XML, `.hlog` or JSON, merge
//! runs, and hand `compare`, `history` and `noise` to [`super::compare`]; and the same reports
//! and baseline gate at the end of `run` (and `replay`) through [`finish_run`] /
//! [`write_reports`].

use std::path::{Path, PathBuf};

use reports::compare::display;
use reports::{Comparison, Format, Run, Threshold};

use super::compare as comparing;
pub use super::compare::{load_baseline, Baseline};
use super::exit;
use crate::cli::{ReportAction, ReportArgs, ReportSpec};

/// Why a report command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Bad input: an unreadable or malformed run file, unlike runs, an unwritable output
    /// (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// The harness failed (exit 1).
    #[error("{0}")]
    Harness(String),
}

impl ReportError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ReportError::BadInput(_) => exit::BAD_INPUT,
            ReportError::Harness(_) => exit::HARNESS,
        }
    }
}

/// Reads a run file, or a Locust worker's record log (written by deploy/locust/locustfile.py)
/// as the run the worker built; errors name the file (and line:column for malformed JSON).
pub fn load_run(path: &Path) -> Result<Run, ReportError> {
    match worker_log(path)? {
        Some(run) => Ok(run),
        None => reports::history::read_run(path).map_err(|e| ReportError::BadInput(e.to_string())),
    }
}

/// The run of `path` when it is a Locust worker's record log (its first line says so), else
/// `None` (only that line read).
pub(super) fn worker_log(path: &Path) -> Result<Option<Run>, ReportError> {
    use std::io::BufRead as _;
    let cannot =
        |e: std::io::Error| ReportError::BadInput(format!("{}: cannot read: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut first = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut first)
        .map_err(cannot)?;
    if !crate::worker::log::is_log(&first) {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(cannot)?;
    crate::worker::log::read(&text)
        .map(Some)
        .map_err(|e| ReportError::BadInput(format!("{}:{e}", path.display())))
}

/// Writes `bytes` to `path`, creating its folder.
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            ReportError::BadInput(format!("{}: cannot create folder: {e}", parent.display()))
        })?;
    }
    std::fs::write(path, bytes)
        .map_err(|e| ReportError::BadInput(format!("{}: cannot write: {e}", path.display())))
}

/// Renders `run` (with its baseline comparison, when given) in every format of `specs`.
pub fn write_reports(
    run: &Run,
    specs: &[ReportSpec],
    comparison: Option<&Comparison>,
) -> Result<(), ReportError> {
    for spec in specs {
        let bytes = reports::render(spec.format, run, comparison).map_err(|e| {
            ReportError::Harness(format!(
                "{}: cannot render {}: {e}",
                spec.path.display(),
                spec.format
            ))
        })?;
        write_file(&spec.path, &bytes)?;
    }
    Ok(())
}

/// The end of a run (`run`, `replay`): compares with the baseline when there is one, prints
/// the comparison's headline, writes every report, and returns the comparison. The run record
/// itself must already be written, so nothing measured is lost when this fails.
pub fn finish_run(
    run: &Run,
    specs: &[ReportSpec],
    baseline: Option<&Baseline>,
) -> Result<Option<Comparison>, ReportError> {
    let comparison = baseline.map(|b| b.compare("this run", run)).transpose()?;
    if let Some(c) = &comparison {
        eprint!("{}", reports::summary::comparison_text(c, true));
        eprintln!("{}", display::gate_verdict(c));
    }
    write_reports(run, specs, comparison.as_ref())?;
    for spec in specs {
        eprintln!("{} report: {}", spec.format, spec.path.display());
    }
    Ok(comparison)
}

/// The format for `-o path` when `--format` is not given.
pub(super) fn format_for(path: Option<&Path>) -> Format {
    match path.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
        Some("html" | "htm") => Format::Html,
        Some("md" | "markdown") => Format::Markdown,
        Some("xml") => Format::Junit,
        Some("hlog") => Format::Hlog,
        Some("json") => Format::Json,
        _ => Format::Text,
    }
}

/// Writes `bytes` to `output`, or to standard output.
pub(super) fn emit(bytes: &[u8], output: Option<&Path>) -> Result<(), ReportError> {
    match output {
        Some(path) => write_file(path, bytes),
        None => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(bytes)
                .map_err(|e| ReportError::Harness(format!("cannot write to standard output: {e}")))
        }
    }
}

/// Runs `loadgen report ...`; returns the exit code.
pub fn main(args: ReportArgs) -> i32 {
    match execute(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn execute(args: ReportArgs) -> Result<i32, ReportError> {
    match args.action {
        Some(ReportAction::Merge { runs, output }) => merge(&runs, &output),
        Some(ReportAction::Compare {
            runs,
            paired,
            format,
            output,
            flags,
        }) => comparing::compare(&runs, paired, format, output.as_deref(), &flags),
        Some(ReportAction::History { action }) => comparing::history(action),
        Some(ReportAction::Noise(args)) => comparing::noise(&args),
        None => {
            let Some(path) = args.run else {
                return Err(ReportError::BadInput(
                    "expected a run file: loadgen report RUN.json".into(),
                ));
            };
            let run = load_run(&path)?;
            let baseline = load_baseline(&args.baseline)?;
            let label = path.display().to_string();
            let comparison = baseline
                .as_ref()
                .map(|b| b.compare(&label, &run))
                .transpose()?;
            let format = args
                .format
                .unwrap_or_else(|| format_for(args.output.as_deref()));
            if args.reports.is_empty() || args.output.is_some() || args.format.is_some() {
                let bytes = reports::render(format, &run, comparison.as_ref())
                    .map_err(|e| ReportError::Harness(e.to_string()))?;
                emit(&bytes, args.output.as_deref())?;
            }
            write_reports(&run, &args.reports, comparison.as_ref())?;
            if let Some(c) = &comparison {
                eprint!("{}", reports::summary::comparison_text(c, true));
                eprintln!("{}", display::gate_verdict(c));
                if c.regressed() {
                    return Ok(exit::THRESHOLD);
                }
            }
            Ok(exit::OK)
        }
    }
}

/// Merges `paths` into `output`, evaluating again every threshold the inputs carried.
fn merge(paths: &[PathBuf], output: &Path) -> Result<i32, ReportError> {
    let mut merged: Option<Run> = None;
    let mut gates: Vec<(String, String)> = Vec::new();
    for path in paths {
        let run = load_run(path)?;
        for v in &run.thresholds {
            let gate = (v.metric.clone(), v.expr.clone());
            if !gates.contains(&gate) {
                gates.push(gate);
            }
        }
        match &mut merged {
            None => merged = Some(run),
            Some(m) => m
                .merge(&run)
                .map_err(|e| ReportError::BadInput(format!("{}: {e}", path.display())))?,
        }
    }
    let Some(mut run) = merged else {
        return Err(ReportError::BadInput(
            "expected at least one run file".into(),
        ));
    };
    let thresholds: Vec<Threshold> = gates
        .iter()
        .filter_map(|(m, e)| Threshold::parse(m, e).ok())
        .collect();
    reports::saturation::assess(&mut run);
    run.thresholds = reports::evaluate(&run, &thresholds);
    let mut text = run
        .to_json_pretty()
        .map_err(|e| ReportError::Harness(format!("cannot serialise the merged run: {e}")))?;
    text.push('\n');
    write_file(output, text.as_bytes())?;
    eprintln!(
        "merged {} runs into {} ({} metrics, {:.1} s)",
        paths.len(),
        output.display(),
        run.metrics.len(),
        run.duration_s
    );
    Ok(exit::OK)
}
