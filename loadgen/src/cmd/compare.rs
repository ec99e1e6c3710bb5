//! Comparing runs from the command line: runs read from files, folders and globs, the gate
//! options the flags give, `report compare`, `report history add` and `report noise`; and the
//! baseline (`--baseline`, a history of runs) that `run`, `replay` and `report` end with.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use reports::compare::{display, NoiseDesign, NoiseReport};
use reports::history::{self, Loaded};
use reports::{Comparison, Format, GateOptions, Labeled, MetricKey, Run, Scope};

use super::exit;
use super::report::{emit, format_for, load_run, worker_log, ReportError};
use crate::cli::{BaselineArgs, CompareFlags, GateFlags, HistoryAction, NoiseArgs, NoiseFormat};

/// Why A/B rounds take no noise profile.
pub const PAIRED_PROFILE: &str =
    "--noise-profile is for unpaired comparisons: A/B rounds measure their own noise";

/// Baseline runs and how to compare with them.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The baseline runs, oldest first.
    pub runs: Vec<Loaded>,
    /// How to compare.
    pub options: GateOptions,
}

impl Baseline {
    /// `run` (named `label` in messages) compared with the baseline runs; unlike runs are bad
    /// input naming the files.
    pub fn compare(&self, label: &str, run: &Run) -> Result<Comparison, ReportError> {
        let base: Vec<Labeled<'_>> = self.runs.iter().map(Loaded::labeled).collect();
        let new = [Labeled::new(label, run)];
        check_asked_keys(&self.options, &new)?;
        reports::compare_runs(&base, &new, &self.options)
            .map_err(|e| ReportError::BadInput(e.to_string()))
    }
}

/// Reads the baselines `--baseline` names, if any, with the options of the flags next to it.
pub fn load_baseline(args: &BaselineArgs) -> Result<Option<Baseline>, ReportError> {
    if args.baseline.is_empty() {
        return Ok(None);
    }
    Ok(Some(Baseline {
        runs: load_runs(&args.baseline)?,
        options: gate_options(&args.compare)?,
    }))
}

/// The run records `patterns` name (run files, folders of them, globs of files), oldest
/// first, each file once.
pub fn load_runs(patterns: &[String]) -> Result<Vec<Loaded>, ReportError> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for p in patterns {
        if p.contains(['*', '?', '[']) {
            let files = traffic::source::expand(p)
                .map_err(|e| ReportError::BadInput(format!("{e} (a glob of run files)")))?;
            paths.extend(files);
        } else {
            paths.push(PathBuf::from(p));
        }
    }
    // Locust workers' record logs are read as the runs they describe; the rest (run records
    // and folders of them) by the history reader.
    let mut runs = Vec::new();
    let mut records = Vec::new();
    for path in paths {
        match path
            .is_file()
            .then(|| worker_log(&path))
            .transpose()?
            .flatten()
        {
            Some(run) => runs.push(Loaded {
                label: path.display().to_string(),
                path,
                run,
            }),
            None => records.push(path),
        }
    }
    if !records.is_empty() {
        runs.extend(
            history::read_runs(&records).map_err(|e| ReportError::BadInput(e.to_string()))?,
        );
    }
    runs.sort_by_key(|l| l.run.started_at);
    let mut seen = HashSet::new();
    runs.retain(|l| seen.insert(same_file(&l.path)));
    Ok(runs)
}

/// A path that is the same for every spelling of one file.
fn same_file(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The scope the gate flags ask for.
fn scope(flags: &GateFlags) -> Scope {
    if flags.all {
        Scope::AskedAndRest(flags.gate.clone())
    } else {
        Scope::Asked(flags.gate.clone())
    }
}

/// The comparison options the flags give (the noise profile read).
pub fn gate_options(flags: &CompareFlags) -> Result<GateOptions, ReportError> {
    let noise_profile = flags
        .noise_profile
        .as_deref()
        .map(read_profile)
        .transpose()?;
    Ok(GateOptions {
        alpha: flags.gate.alpha,
        min_effect: flags.gate.min_effect,
        floor_us: flags.noise_floor,
        min_samples: flags.min_samples,
        scope: scope(&flags.gate),
        noise_profile,
        force: flags.gate.force,
    })
}

/// Reads a noise profile (`report noise … -o noise.json`); errors name the file, line and
/// column.
fn read_profile(path: &Path) -> Result<NoiseReport, ReportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReportError::BadInput(format!("{}: cannot read: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        ReportError::BadInput(format!(
            "{}:{}:{}: not a noise profile (write one with `loadgen report noise RUN… -o noise.json`): {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

/// Every `--gate` key of `options` must select a metric of `runs` (see `check_gate_keys`).
pub(super) fn check_asked_keys(
    options: &GateOptions,
    runs: &[Labeled<'_>],
) -> Result<(), ReportError> {
    match &options.scope {
        Scope::Asked(keys) | Scope::AskedAndRest(keys) => check_gate_keys(keys, runs),
        Scope::Every => Ok(()),
    }
}

/// Every `--gate` key must select a metric of the runs: a key that selects nothing is a typo,
/// not a gate that passes.
fn check_gate_keys(keys: &[MetricKey], runs: &[Labeled<'_>]) -> Result<(), ReportError> {
    for key in keys {
        let found = runs
            .iter()
            .any(|l| l.run.metrics.keys().any(|k| k.matches(key)));
        if !found {
            let named = runs.last().map_or("the runs", |l| l.label);
            return Err(ReportError::BadInput(format!(
                "--gate {key}: no metric of {named} matches it"
            )));
        }
    }
    Ok(())
}

/// `loadgen report compare BASE… NEW` (or `--paired A B`): the comparison in `format`, the
/// gate's verdict on standard error; exit 99 when a gated check regressed.
pub fn compare(
    patterns: &[String],
    paired: bool,
    format: Option<Format>,
    output: Option<&Path>,
    flags: &CompareFlags,
) -> Result<i32, ReportError> {
    if paired && patterns.len() != 2 {
        return Err(ReportError::BadInput(format!(
            "--paired takes two arguments, the A runs and the B runs, got {}",
            patterns.len()
        )));
    }
    if paired && flags.noise_profile.is_some() {
        return Err(ReportError::BadInput(PAIRED_PROFILE.into()));
    }
    let options = gate_options(flags)?;
    let (base_patterns, new_patterns) = patterns.split_at(patterns.len().saturating_sub(1));
    let base = load_runs(base_patterns)?;
    let new = load_runs(new_patterns)?;
    let new_files: HashSet<PathBuf> = new.iter().map(|l| same_file(&l.path)).collect();
    if let Some(both) = base
        .iter()
        .find(|l| new_files.contains(&same_file(&l.path)))
    {
        return Err(ReportError::BadInput(format!(
            "{}: is both a baseline and a new run",
            both.label
        )));
    }
    let base_runs: Vec<Labeled<'_>> = base.iter().map(Loaded::labeled).collect();
    let new_runs: Vec<Labeled<'_>> = new.iter().map(Loaded::labeled).collect();
    check_gate_keys(&flags.gate.gate, &new_runs)?;
    let c = if paired {
        reports::compare_paired(&base_runs, &new_runs, &options)
    } else {
        reports::compare_runs(&base_runs, &new_runs, &options)
    }
    .map_err(|e| ReportError::BadInput(e.to_string()))?;
    let latest = &new[new.len() - 1].run;
    write_comparison(
        &c,
        latest,
        format.unwrap_or_else(|| format_for(output)),
        output,
    )?;
    eprintln!("{}", display::gate_verdict(&c));
    Ok(if c.regressed() {
        exit::THRESHOLD
    } else {
        exit::OK
    })
}

/// Writes comparison `c` as `format` (text and JSON: the comparison itself; the other
/// formats: `run`, the latest new run, with it) to `output` or standard output.
pub fn write_comparison(
    c: &Comparison,
    run: &Run,
    format: Format,
    output: Option<&Path>,
) -> Result<(), ReportError> {
    let bytes = match format {
        Format::Text => reports::summary::comparison_text(c, false).into_bytes(),
        Format::Json => {
            let mut text =
                serde_json::to_string_pretty(c).map_err(|e| ReportError::Harness(e.to_string()))?;
            text.push('\n');
            text.into_bytes()
        }
        f => reports::render(f, run, Some(c)).map_err(|e| ReportError::Harness(e.to_string()))?,
    };
    emit(&bytes, output)
}

/// `loadgen report history add DIR RUN.json [--keep N] [--replace-unlike]`.
pub fn history(action: HistoryAction) -> Result<i32, ReportError> {
    let HistoryAction::Add {
        dir,
        run,
        keep,
        replace_unlike,
    } = action;
    let record = load_run(&run)?;
    if let Some(why) = record
        .meta
        .as_ref()
        .and_then(|m| m.get("stopped_early"))
        .and_then(|s| s.as_str())
    {
        return Err(ReportError::BadInput(format!(
            "{}: the run stopped early ({why}); a partial run would skew the history",
            run.display()
        )));
    }
    let added = history::add(&dir, &record, keep, replace_unlike)
        .map_err(|e| ReportError::BadInput(e.to_string()))?;
    for file in &added.replaced {
        eprintln!(
            "removed {} (another scenario or load shape)",
            file.display()
        );
    }
    for file in &added.pruned {
        eprintln!("pruned {}", file.display());
    }
    eprintln!(
        "added {} as {} (keeping the newest {keep})",
        run.display(),
        added.path.display()
    );
    Ok(exit::OK)
}

/// `loadgen report noise RUN… [--design D] [--power P] [-o FILE]`.
pub fn noise(args: &NoiseArgs) -> Result<i32, ReportError> {
    let runs = load_runs(&args.runs)?;
    let labeled: Vec<Labeled<'_>> = runs.iter().map(Loaded::labeled).collect();
    check_gate_keys(&args.gate.gate, &labeled)?;
    let design = args.design.unwrap_or(NoiseDesign::Unpaired {
        baselines: runs.len(),
        new: 1,
    });
    let options = GateOptions {
        alpha: args.gate.alpha,
        min_effect: args.gate.min_effect,
        scope: scope(&args.gate),
        force: args.gate.force,
        ..GateOptions::default()
    };
    let report = reports::noise_report(&labeled, &options, design, args.power)
        .map_err(|e| ReportError::BadInput(e.to_string()))?;
    let format = args.format.unwrap_or_else(|| {
        match args
            .output
            .as_deref()
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
        {
            Some("json") => NoiseFormat::Json,
            Some("md" | "markdown") => NoiseFormat::Md,
            _ => NoiseFormat::Text,
        }
    });
    let text = match format {
        NoiseFormat::Text => report.to_text(),
        NoiseFormat::Md => report.to_markdown(),
        NoiseFormat::Json => {
            let mut text = serde_json::to_string_pretty(&report)
                .map_err(|e| ReportError::Harness(e.to_string()))?;
            text.push('\n');
            text
        }
    };
    emit(text.as_bytes(), args.output.as_deref())?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::log::Line;

    /// A Locust worker's record log of one request, `started` s after the epoch.
    fn worker_log(started: u64) -> String {
        let begin = Line::Begin {
            scenario: "s".into(),
            started_at_unix_ns: started * 1_000_000_000,
            meta: serde_json::json!({"scenario_file": "s.yaml"}),
            thresholds: vec![],
            worker: "w1".into(),
        };
        let end = Line::End {
            duration_s: 1.0,
            stopped_early: None,
        };
        [begin, end]
            .iter()
            .map(|l| serde_json::to_string(l).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn worker_record_logs_are_read_next_to_run_records_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("w1.jsonl");
        std::fs::write(&log, worker_log(1_700_000_100)).unwrap();
        let older = crate::worker::log::read(&worker_log(1_700_000_000)).unwrap();
        let record = d.path().join("hist/run.json");
        std::fs::create_dir_all(record.parent().unwrap()).unwrap();
        std::fs::write(&record, serde_json::to_string(&older).unwrap()).unwrap();

        let runs = load_runs(&[
            log.display().to_string(),
            d.path().join("hist").display().to_string(),
        ])
        .unwrap();
        let paths: Vec<&Path> = runs.iter().map(|l| l.path.as_path()).collect();
        assert_eq!(paths, [record.as_path(), log.as_path()]);
        assert_eq!(runs[1].label, log.display().to_string());
        assert!(runs[0].run.started_at < runs[1].run.started_at);

        // A broken log names its file and line.
        std::fs::write(
            &log,
            format!("{}\n{{\"record\":\"nope\"}}\n", worker_log(1)),
        )
        .unwrap();
        let e = load_runs(&[log.display().to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "{}:line 3: not a worker record line",
                log.display()
            )),
            "{e}"
        );
    }
}
