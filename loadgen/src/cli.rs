//! The command line's shape: one definition per flag (clap derive) gives parsing, `--help`
//! and completions. Only types here; what each command does is in [`crate::cmd`].

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use reports::compare::{parse_alpha, parse_noise, parse_power, NoiseDesign};
use reports::{Format, MetricKey};

/// pushbench's load generator: runs YAML scenario files against push gateways.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A scenario file and how to plan it (`run` and `check`).
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The scenario file.
    pub file: PathBuf,
    /// Sets the scenario's `${NAME}` to VALUE (before the environment's NAME); repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Only segment i of N (k6's execution segments): every N-th arrival of each rate and
    /// every N-th user and device, starting at i; `report merge` joins the segments' records.
    #[arg(long, value_name = "i/N")]
    pub segment: Option<String>,
    /// Accept a plan beyond what this machine can hold (open files, memory, rate per core).
    #[arg(long)]
    pub ignore_limits: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario file; writes DIR/run.json and exits 99 when a threshold fails.
    Run {
        /// The scenario, its variables and what share of it to run.
        #[command(flatten)]
        plan: PlanArgs,
        /// Output folder (default runs/<name>-<timestamp>/).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// No live progress.
        #[arg(long, short)]
        quiet: bool,
        /// Also write FORMAT (html, md, junit, hlog, json, text) to FILE; repeatable.
        #[arg(long = "report", value_name = "FORMAT=FILE")]
        reports: Vec<ReportSpec>,
        /// Baseline comparison (exit 99 on a regression).
        #[command(flatten)]
        baseline: BaselineArgs,
    },
    /// Run as a Locust worker: connect to a Locust master (ZeroMQ), run the scenario's sender
    /// and device journeys as its user classes, report Locust stats and exact records.
    Worker(WorkerArgs),
    /// Render a run record (html, md, junit, hlog, json), compare runs, merge runs, keep a
    /// baseline history, report A/A noise.
    Report(ReportArgs),
    /// Run a scenario against a baseline (A) and a candidate (B) alternately, N rounds, and
    /// compare B with A round by round; exit 99 when a gated metric regressed.
    Ab(Box<AbArgs>),
    /// Validate a scenario file and print the planned schedule; sends nothing.
    Check {
        /// The scenario, its variables and what share of it to check.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Print the JSON Schema of scenario files.
    Schema,
    /// A device swarm shard (started by `loadgen run`; speaks JSON lines on stdin/stdout).
    #[command(name = "__shard", hide = true)]
    Shard,
    /// A room process of the embedded gateway (started by `loadgen run` for `target.rooms`).
    #[command(name = "__room", hide = true)]
    Room {
        /// Arguments as the gateway passes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Replay recorded traffic (GoReplay .gor, HAR, access logs, Vegeta targets) against a
    /// target; `replay inspect FILE…` shows what a recording holds.
    Replay(Box<ReplayCommand>),
    /// A reverse proxy that forwards traffic to an upstream and records it as GoReplay .gor.
    Record(RecordArgs),
}

/// `loadgen worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The scenario file: its sender and device journeys are the user classes.
    pub file: PathBuf,
    /// The Locust master, `HOST:PORT` (Locust's --master-host and --master-port; port 5557
    /// when left out).
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "classes")]
    pub master: Option<String>,
    /// Sets the scenario's `${NAME}` to VALUE (before the environment's NAME); repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Where this worker writes its own run records (run.json; run-2.json … for later runs
    /// of the same master). Default runs/<name>-worker-<timestamp>/.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Quit after this long without a heartbeat from the master (Locust's workers: 60s).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub heartbeat_timeout: String,
    /// Give up when no master acknowledges this worker within this long (Locust's workers:
    /// 60 tries of 5s).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub connect_timeout: String,
    /// Print the scenario's user classes as JSON (what the master's locustfile defines) and
    /// exit; connects to nothing.
    #[arg(long)]
    pub classes: bool,
    /// Accept a share beyond what this machine can hold (open files, memory, rate per core);
    /// the worker checks its share when a run starts, once the master's plugin has said it.
    #[arg(long)]
    pub ignore_limits: bool,
}

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

/// Which metrics gate and how sure a regression must be: the flags every comparison (`report
/// compare`, `--baseline`, `ab`) and the noise report share.
#[derive(Debug, Clone, Args)]
pub struct GateFlags {
    /// Minimum effect: a smaller relative change is never a regression (`--noise` is an
    /// alias).
    #[arg(long, alias = "noise", value_name = "PERCENT", default_value = "5%", value_parser = parse_noise)]
    pub min_effect: f64,
    /// False-alarm rate of the whole comparison: the chance that an unchanged build shows any
    /// regression among the gated checks (Holm-corrected for their number).
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = parse_alpha)]
    pub alpha: f64,
    /// Gate this metric key or tag filter (repeatable); default: the scenario's `gate:` list,
    /// else the metrics its thresholds name.
    #[arg(long = "gate", value_name = "KEY", value_parser = parse_key)]
    pub gate: Vec<MetricKey>,
    /// Also compare every other metric: reported and corrected for their own number, never
    /// failing the gate.
    #[arg(long)]
    pub all: bool,
    /// Compare even runs of different scenarios or load shapes.
    #[arg(long)]
    pub force: bool,
}

/// How to compare runs: the flags of `report compare`, `ab`, and of `run` and `report` next
/// to `--baseline`.
#[derive(Debug, Clone, Args)]
pub struct CompareFlags {
    /// Which metrics gate, the minimum effect and the false-alarm rate.
    #[command(flatten)]
    pub gate: GateFlags,
    /// Latency changes smaller than this are never a regression (e.g. 50us, 1ms).
    #[arg(long, value_name = "DURATION", default_value = "50us", value_parser = parse_floor)]
    pub noise_floor: f64,
    /// Fewer samples than this in a run makes a check Inconclusive.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub min_samples: u64,
    /// An A/A noise profile (`report noise RUN… -o noise.json`): its run-to-run noise is
    /// pooled in, so even one run a side is judged against the noise between runs.
    #[arg(long, value_name = "NOISE.json")]
    pub noise_profile: Option<PathBuf>,
}

/// The baseline flags of `run` (and `replay`) and `report`.
#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    /// Compare with these baseline runs: run files, folders of them (a history) or globs
    /// (repeatable); exit 99 when a gated metric regressed.
    #[arg(long, value_name = "BASE")]
    pub baseline: Vec<String>,
    /// How to compare.
    #[command(flatten)]
    pub compare: CompareFlags,
}

fn parse_key(text: &str) -> Result<MetricKey, String> {
    text.parse::<MetricKey>()
        .map_err(|e| format!("`{text}`: {e}"))
}

fn parse_floor(text: &str) -> Result<f64, String> {
    common::duration::parse(text)
        .map(|d| d.as_secs_f64() * 1e6)
        .map_err(|e| e.to_string())
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

/// `loadgen report compare|merge|history|noise`.
#[derive(Debug, Subcommand)]
pub enum ReportAction {
    /// Compare new runs with baseline runs metric by metric; exit 99 when a gated metric
    /// regressed.
    Compare {
        /// The baseline runs, then the new run(s): run files, folders or globs. The last
        /// argument is the new side; with --paired, the first holds the A runs and the second
        /// the B runs.
        #[arg(required = true, num_args = 2.., value_name = "RUN")]
        runs: Vec<String>,
        /// Alternating A/B rounds, paired in start-time order (what `loadgen ab` writes as
        /// DIR/a and DIR/b).
        #[arg(long)]
        paired: bool,
        /// Format: text, md, json (the comparison), junit, html (default: from -o's
        /// extension, else text).
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
    /// Keep a baseline history: a folder of the last N runs (of the main branch).
    History {
        /// What to do with the history.
        #[command(subcommand)]
        action: HistoryAction,
    },
    /// The A/A noise report of runs of one unchanged build: each gated metric's run-to-run
    /// spread and the smallest change a gate could detect; as JSON, a noise profile.
    Noise(NoiseArgs),
}

/// `loadgen report history …`.
#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Add a run to the history folder DIR (created when missing) and keep the newest N.
    Add {
        /// The history folder.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The run record to add.
        #[arg(value_name = "RUN.json")]
        run: PathBuf,
        /// How many runs to keep (the oldest by start time go).
        #[arg(long, value_name = "N", default_value_t = 10)]
        keep: usize,
        /// Remove kept runs of another scenario or load shape instead of refusing the run
        /// (the scenario changed on purpose: the history starts afresh).
        #[arg(long)]
        replace_unlike: bool,
    },
}

/// What the noise report is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NoiseFormat {
    /// Aligned plain text.
    Text,
    /// A Markdown table (a job summary, a PR comment).
    Md,
    /// JSON: also a noise profile for `--noise-profile`.
    Json,
}

/// `loadgen report noise RUN…`.
#[derive(Debug, Args)]
pub struct NoiseArgs {
    /// Runs of one unchanged build: run files, folders (a history) or globs.
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<String>,
    /// The gate the detectable changes are for: `history:N` (N baselines against one new run),
    /// `single` (one against one) or `ab:N` (N A/B rounds); default history of as many runs
    /// as given.
    #[arg(long, value_name = "DESIGN", value_parser = parse_design)]
    pub design: Option<NoiseDesign>,
    /// The chance of detecting a change of the printed size.
    #[arg(long, value_name = "PERCENT", default_value = "80%", value_parser = parse_power)]
    pub power: f64,
    /// Format (default: from -o's extension, else text).
    #[arg(long, short, value_enum)]
    pub format: Option<NoiseFormat>,
    /// Output file (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Which metrics gate, the minimum effect and the false-alarm rate.
    #[command(flatten)]
    pub gate: GateFlags,
}

fn parse_design(text: &str) -> Result<NoiseDesign, String> {
    text.parse()
}

/// `loadgen ab SCENARIO --a NAME=VALUE… --b NAME=VALUE…`.
#[derive(Debug, Args)]
pub struct AbArgs {
    /// The scenario file both arms run.
    pub file: PathBuf,
    /// Sets the scenario's `${NAME}` to VALUE for both arms; repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Sets `${NAME}` for arm A, the baseline (e.g. `TARGET=http://127.0.0.1:8081`);
    /// repeatable, over `-e`.
    #[arg(long = "a", value_name = "NAME=VALUE")]
    pub a: Vec<String>,
    /// Sets `${NAME}` for arm B, the candidate; repeatable, over `-e`.
    #[arg(long = "b", value_name = "NAME=VALUE")]
    pub b: Vec<String>,
    /// Rounds: each runs A and B back to back, alternating which goes first (A B, B A, …).
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..))]
    pub rounds: u16,
    /// Output folder: DIR/a/NN and DIR/b/NN hold each round's run, DIR/comparison.json the
    /// verdicts (default runs/ab-<name>-<timestamp>/).
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write FORMAT (html, md, junit, json, text) of the comparison, with the last B
    /// run, to FILE; repeatable.
    #[arg(long = "report", value_name = "FORMAT=FILE")]
    pub reports: Vec<ReportSpec>,
    /// Run a plan beyond what this machine can hold (open files, memory, rate per core).
    #[arg(long)]
    pub ignore_limits: bool,
    /// How to compare.
    #[command(flatten)]
    pub compare: CompareFlags,
}

/// `loadgen replay`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReplayCommand {
    /// `inspect`: show what a recording holds.
    #[command(subcommand)]
    pub sub: Option<ReplaySub>,
    /// Replay flags.
    #[command(flatten)]
    pub run: ReplayArgs,
}

/// Subcommands of `loadgen replay`.
#[derive(Debug, Subcommand)]
pub enum ReplaySub {
    /// Show what a recording holds: requests per method and path, rate over time, sizes,
    /// status mix, span, gaps, out-of-order records. Sends nothing.
    Inspect(InspectArgs),
}

/// How to read recordings.
#[derive(Debug, Args, Clone)]
pub struct ReadArgs {
    /// `gor`, `har`, `access-log` or `vegeta` (default: detected per file).
    #[arg(long)]
    pub format: Option<String>,
    /// Skip and count malformed records, entries or lines instead of stopping at the first.
    #[arg(long)]
    pub skip_malformed: bool,
    /// Records held per file to restore timestamp order and pair responses.
    #[arg(long, value_name = "RECORDS")]
    pub reorder_window: Option<usize>,
    /// Requests per second for recordings without times (Vegeta targets; default 50).
    #[arg(long, value_name = "PER_SECOND")]
    pub untimed_rate: Option<f64>,
}

/// `loadgen replay inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Recording files or globs.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Reading.
    #[command(flatten)]
    pub read: ReadArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the inspection as a self-contained HTML page (summary, path groups, a
    /// requests-per-second chart).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// `loadgen replay FILE... --target URL`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Recording files or globs (`.gor`, `.gor.gz`, HAR, access log, Vegeta targets).
    pub files: Vec<String>,
    /// Where to send: a base URL (`http://127.0.0.1:8080`), or `embedded` for the reference
    /// gateway started in-process.
    #[arg(long, short)]
    pub target: Option<String>,
    /// Output folder (default runs/replay-<timestamp>/).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// No live progress.
    #[arg(long, short)]
    pub quiet: bool,
    /// Also write a report at the end: `FORMAT=FILE` with FORMAT one of html, md, junit,
    /// hlog, json, text (repeatable).
    #[arg(long = "report", value_name = "FORMAT=FILE")]
    pub reports: Vec<ReportSpec>,
    /// Compare with a baseline run.
    #[command(flatten)]
    pub baseline: BaselineArgs,
    /// Name of the run in the record.
    #[arg(long, default_value = "replay")]
    pub name: String,
    /// Reading.
    #[command(flatten)]
    pub read: ReadArgs,
    /// Speed factor: `2x` twice as fast, `0.5x` half as fast.
    #[arg(long)]
    pub speed: Option<String>,
    /// Play from this offset into the recording (`30s`).
    #[arg(long, value_name = "DURATION")]
    pub from: Option<String>,
    /// Play until this offset into the recording.
    #[arg(long, value_name = "DURATION")]
    pub to: Option<String>,
    /// Only these methods (repeat or comma-separate).
    #[arg(long = "method", value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Only requests recorded for these hosts.
    #[arg(long = "only-host", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Only paths (with query) matching this regex.
    #[arg(long, value_name = "REGEX")]
    pub path: Option<String>,
    /// Not paths matching this regex.
    #[arg(long, value_name = "REGEX")]
    pub exclude_path: Option<String>,
    /// Rewrite paths: `REGEX=>REPLACEMENT` (`$1` for groups), in order.
    #[arg(long, value_name = "REGEX=>REPLACEMENT")]
    pub rewrite_path: Vec<String>,
    /// Send this Host header instead of the target's.
    #[arg(long)]
    pub host: Option<String>,
    /// Set a header: `Name: value` (repeat).
    #[arg(long, value_name = "NAME: VALUE")]
    pub set_header: Vec<String>,
    /// Remove a header (repeat).
    #[arg(long, value_name = "NAME")]
    pub remove_header: Vec<String>,
    /// The longest wait between two records, after the speed factor.
    #[arg(long, value_name = "DURATION")]
    pub max_wait: Option<String>,
    /// Play the recording N times.
    #[arg(long = "loop", value_name = "N")]
    pub loops: Option<u32>,
    /// At most this many requests per second.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_cap: Option<f64>,
    /// Connections to the target.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Speak HTTP/2 (prior knowledge on http://).
    #[arg(long)]
    pub http2: bool,
    /// Concurrent requests per HTTP/2 connection.
    #[arg(long, default_value_t = 16)]
    pub streams: usize,
    /// Requests that may wait for a free connection before new ones are dropped.
    #[arg(long, default_value_t = 10_000)]
    pub queue: usize,
    /// Per-request timeout.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Where the recording's WebSocket device sessions connect (`ws://host:port`, `wss://…`),
    /// with each session's recorded path; default: the target as `ws(s)://`.
    #[arg(long, value_name = "URL")]
    pub ws_target: Option<String>,
    /// Do not compare replayed statuses with recorded responses.
    #[arg(long)]
    pub no_status_compare: bool,
    /// A gate, `METRIC: EXPRESSION` as in scenario files (repeat), e.g.
    /// `http_req_duration: p(99) < 250ms`.
    #[arg(long, value_name = "METRIC: EXPR")]
    pub threshold: Vec<String>,
    /// Accept invalid TLS certificates.
    #[arg(long)]
    pub insecure: bool,
}

/// `loadgen record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Address to listen on, e.g. `127.0.0.1:8081`.
    #[arg(long)]
    pub listen: String,
    /// Where to forward, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub upstream: String,
    /// The `.gor` file to write (replaced if it exists).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Stop after this long (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Per-request timeout towards the upstream.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,
    /// Accept invalid TLS certificates from the upstream.
    #[arg(long)]
    pub insecure: bool,
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
