//! `loadgen report`: render a run record as HTML, Markdown, JUnit XML, `.hlog` or JSON,
//! compare a run with a baseline, merge runs; and the same reports and baseline gate at the
//! end of `run` (and `replay`) through [`finish_run`] / [`write_reports`].

use std::path::{Path, PathBuf};

use reports::compare::CompareError;
use reports::{Change, CompareOptions, Comparison, Format, Run, Threshold};

use super::exit;
use crate::cli::{BaselineArgs, CompareFlags, ReportAction, ReportArgs, ReportSpec};

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

/// A baseline run and how to compare with it.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The baseline record.
    pub run: Run,
    /// Where it was read from.
    pub path: PathBuf,
    /// How to compare.
    pub options: CompareOptions,
}

impl Baseline {
    /// `run` compared with this baseline; unlike runs are bad input naming the file.
    pub fn compare(&self, run: &Run) -> Result<Comparison, ReportError> {
        reports::compare(&self.run, run, &self.options).map_err(|e: CompareError| {
            ReportError::BadInput(format!("{}: {e}", self.path.display()))
        })
    }
}

/// The comparison options `flags` give.
pub fn compare_options(flags: &CompareFlags) -> CompareOptions {
    CompareOptions {
        noise: flags.noise,
        floor_us: flags.noise_floor,
        min_samples: flags.min_samples,
        force: flags.force,
    }
}

/// Reads the baseline `--baseline` names, if any.
pub fn load_baseline(args: &BaselineArgs) -> Result<Option<Baseline>, ReportError> {
    args.baseline
        .as_deref()
        .map(|path| {
            Ok(Baseline {
                run: load_run(path)?,
                path: path.to_path_buf(),
                options: compare_options(&args.compare),
            })
        })
        .transpose()
}

/// Reads a run file; errors name the file (and line:column for malformed JSON).
pub fn load_run(path: &Path) -> Result<Run, ReportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReportError::BadInput(format!("{}: cannot read: {e}", path.display())))?;
    // A Locust worker's record log (written by deploy/locust/locustfile.py) reads as the run
    // the worker built.
    if crate::worker::log::is_log(&text) {
        return crate::worker::log::read(&text)
            .map_err(|e| ReportError::BadInput(format!("{}:{e}", path.display())));
    }
    Run::from_json_str(&text).map_err(|e| {
        let place = match &e {
            reports::RunError::Json(j) if j.line() > 0 => {
                format!("{}:{}:{}", path.display(), j.line(), j.column())
            }
            _ => path.display().to_string(),
        };
        ReportError::BadInput(format!("{place}: {e}"))
    })
}

/// Writes `bytes` to `path`, creating its folder.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
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
    let comparison = baseline.map(|b| b.compare(run)).transpose()?;
    if let Some(c) = &comparison {
        eprint!("{}", comparison_text(c, true));
    }
    write_reports(run, specs, comparison.as_ref())?;
    for spec in specs {
        eprintln!("{} report: {}", spec.format, spec.path.display());
    }
    Ok(comparison)
}

/// A plain-text view of a comparison (only moved checks unless `brief` is false).
pub fn comparison_text(c: &Comparison, brief: bool) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "baseline `{}` ({}): {} regressed, {} improved, {} unchanged, {} inconclusive (noise ±{}%)\n",
        c.base_scenario,
        c.base_started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        c.count(Change::Regressed),
        c.count(Change::Improved),
        c.count(Change::Unchanged),
        c.count(Change::Inconclusive),
        c.noise * 100.0
    );
    for m in &c.mismatches {
        let _ = writeln!(out, "  forced: {m}");
    }
    for k in c
        .checks
        .iter()
        .filter(|k| !brief || matches!(k.change, Change::Regressed | Change::Improved))
    {
        let delta = k
            .delta
            .map_or_else(|| "n/a".to_string(), |d| format!("{:+.1}%", d * 100.0));
        let _ = writeln!(
            out,
            "  {:<12} {} {}: {} -> {} ({delta}){}",
            k.change.to_string(),
            k.metric,
            k.stat,
            reports::compare::display::value(k.unit, k.base),
            reports::compare::display::value(k.unit, k.new),
            k.note
                .as_deref()
                .map(|n| format!(" — {n}"))
                .unwrap_or_default()
        );
    }
    out
}

/// The format for `-o path` when `--format` is not given.
fn format_for(path: Option<&Path>) -> Format {
    match path.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
        Some("html" | "htm") => Format::Html,
        Some("md" | "markdown") => Format::Markdown,
        Some("xml") => Format::Junit,
        Some("hlog") => Format::Hlog,
        Some("json") => Format::Json,
        _ => Format::Text,
    }
}

fn emit(bytes: &[u8], output: Option<&Path>) -> Result<(), ReportError> {
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
            base,
            new,
            format,
            output,
            flags,
        }) => {
            let baseline = Baseline {
                run: load_run(&base)?,
                path: base,
                options: compare_options(&flags),
            };
            let new_run = load_run(&new)?;
            let c = baseline.compare(&new_run)?;
            let bytes = match format.unwrap_or(Format::Text) {
                Format::Text => comparison_text(&c, false).into_bytes(),
                Format::Json => {
                    let mut text = serde_json::to_string_pretty(&c)
                        .map_err(|e| ReportError::Harness(e.to_string()))?;
                    text.push('\n');
                    text.into_bytes()
                }
                f => reports::render(f, &new_run, Some(&c))
                    .map_err(|e| ReportError::Harness(e.to_string()))?,
            };
            emit(&bytes, output.as_deref())?;
            Ok(if c.regressed() {
                exit::THRESHOLD
            } else {
                exit::OK
            })
        }
        None => {
            let Some(path) = args.run else {
                return Err(ReportError::BadInput(
                    "expected a run file: loadgen report RUN.json".into(),
                ));
            };
            let run = load_run(&path)?;
            let baseline = load_baseline(&args.baseline)?;
            let comparison = baseline.as_ref().map(|b| b.compare(&run)).transpose()?;
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
                eprint!("{}", comparison_text(c, true));
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
