//! `loadgen report`: render a run record as HTML, Markdown, JUnit XML, `.hlog` or JSON,
//! compare a run with a baseline, merge runs; and the same reports and baseline gate at the
//! end of `run` (and `replay`) through [`finish_run`] / [`write_reports`].

use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Args, Subcommand};
use reports::compare::{parse_noise, CompareError};
use reports::{Change, CompareOptions, Comparison, Format, Run, Threshold};

use crate::cli::exit;

/// One `--report FORMAT=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSpec {
    /// The format.
    pub format: Format,
    /// Where to write it.
    pub path: PathBuf,
}

impl FromStr for ReportSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<ReportSpec, String> {
        let (format, path) = s
            .split_once('=')
            .ok_or_else(|| format!("expected FORMAT=FILE such as `html=report.html`, got `{s}`"))?;
        if path.is_empty() {
            return Err(format!(
                "expected FORMAT=FILE such as `html=report.html`, got `{s}` (no file)"
            ));
        }
        Ok(ReportSpec {
            format: format.parse()?,
            path: PathBuf::from(path),
        })
    }
}

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

/// How to compare with a baseline: the flags of `report compare`, and of `run` and `report`
/// next to `--baseline`.
#[derive(Debug, Clone, Args)]
pub struct CompareFlags {
    /// Noise band: relative changes within it are Unchanged.
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = parse_noise)]
    pub noise: f64,
    /// Latency changes smaller than this are Unchanged (e.g. 50us, 1ms).
    #[arg(long, value_name = "DURATION", default_value = "50us", value_parser = parse_floor)]
    pub noise_floor: f64,
    /// Fewer samples than this on either side makes a check Inconclusive.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub min_samples: u64,
    /// Compare even runs of different scenarios or load shapes.
    #[arg(long)]
    pub force: bool,
}

impl CompareFlags {
    /// The comparison options these flags give.
    pub fn options(&self) -> CompareOptions {
        CompareOptions {
            noise: self.noise,
            floor_us: self.noise_floor,
            min_samples: self.min_samples,
            force: self.force,
        }
    }
}

/// The baseline flags of `run` (and `replay`) and `report`.
#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    /// Compare with this baseline run record; exit 99 when a metric regressed.
    #[arg(long, value_name = "BASE.json")]
    pub baseline: Option<PathBuf>,
    /// How to compare.
    #[command(flatten)]
    pub compare: CompareFlags,
}

impl BaselineArgs {
    /// Reads the baseline named by `--baseline`, if any.
    pub fn load(&self) -> Result<Option<Baseline>, ReportError> {
        self.baseline
            .as_deref()
            .map(|path| {
                Ok(Baseline {
                    run: load_run(path)?,
                    path: path.to_path_buf(),
                    options: self.compare.options(),
                })
            })
            .transpose()
    }
}

fn parse_floor(text: &str) -> Result<f64, String> {
    common::duration::parse(text)
        .map(|d| d.as_secs_f64() * 1e6)
        .map_err(|e| e.to_string())
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

/// `loadgen report` arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    /// Compare or merge runs instead of rendering one.
    #[command(subcommand)]
    pub action: Option<ReportAction>,
    /// The run record to render.
    #[arg(required = true, value_name = "RUN.json")]
    pub run: Option<PathBuf>,
    /// Format: html, md, junit, hlog, json, text (default: from -o's extension, else text).
    #[arg(long, short)]
    pub format: Option<Format>,
    /// Output file (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write FORMAT to FILE (repeatable), e.g. `--report html=report.html`.
    #[arg(long = "report", value_name = "FORMAT=FILE")]
    pub reports: Vec<ReportSpec>,
    /// Baseline comparison.
    #[command(flatten)]
    pub baseline: BaselineArgs,
}

/// `loadgen report compare|merge`.
#[derive(Debug, Subcommand)]
pub enum ReportAction {
    /// Compare NEW with BASE metric by metric; exit 99 when one regressed.
    Compare {
        /// The baseline run record.
        #[arg(value_name = "BASE.json")]
        base: PathBuf,
        /// The new run record.
        #[arg(value_name = "NEW.json")]
        new: PathBuf,
        /// Format: text, md, json (the comparison), junit, html (default text).
        #[arg(long, short)]
        format: Option<Format>,
        /// Output file (default: standard output).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// How to compare.
        #[command(flatten)]
        flags: CompareFlags,
    },
    /// Merge run records exactly (histograms added) into one; thresholds are evaluated again.
    Merge {
        /// The run records (from several processes or machines).
        #[arg(required = true, num_args = 1.., value_name = "RUN.json")]
        runs: Vec<PathBuf>,
        /// Where to write the merged record.
        #[arg(long, short, value_name = "ALL.json")]
        output: PathBuf,
    },
}

/// Reads a run file; errors name the file (and line:column for malformed JSON).
pub fn load_run(path: &Path) -> Result<Run, ReportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReportError::BadInput(format!("{}: cannot read: {e}", path.display())))?;
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
            reports::text::value(k.unit, k.base),
            reports::text::value(k.unit, k.new),
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
                options: flags.options(),
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
            let baseline = args.baseline.load()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_specs_parse_and_explain_mistakes() {
        let s: ReportSpec = "html=out/r.html".parse().unwrap();
        assert_eq!(s.format, Format::Html);
        assert_eq!(s.path, PathBuf::from("out/r.html"));
        assert!("html"
            .parse::<ReportSpec>()
            .unwrap_err()
            .contains("FORMAT=FILE"));
        assert!("pdf=x.pdf"
            .parse::<ReportSpec>()
            .unwrap_err()
            .contains("`pdf`"));
    }

    #[test]
    fn floors_take_units() {
        assert_eq!(parse_floor("50us").unwrap(), 50.0);
        assert_eq!(parse_floor("2ms").unwrap(), 2000.0);
        assert!(parse_floor("fast").is_err());
    }
}
