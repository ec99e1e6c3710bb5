//! `loadgen replay FILE... --target URL` and `loadgen replay inspect FILE...`: the flags, and
//! the run and inspection they start. A replay from flags is a scenario with a `replay:`
//! section built in code, so it writes the same run record, thresholds and exit codes as
//! `loadgen run`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::exit;
use crate::plan::Plan;

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
    pub reports: Vec<crate::report_cmd::ReportSpec>,
    /// Compare with a baseline run.
    #[command(flatten)]
    pub baseline: crate::report_cmd::BaselineArgs,
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

/// Runs `loadgen replay …`; returns the exit code.
pub fn main(cmd: ReplayCommand) -> i32 {
    match cmd.sub {
        Some(ReplaySub::Inspect(args)) => inspect(args),
        None => replay(cmd.run),
    }
}

fn fail(code: i32, message: &str) -> i32 {
    eprintln!("error: {message}");
    code
}

fn read_options(r: &ReadArgs) -> Result<::replay::ReadOptions, String> {
    let defaults = ::replay::ReadOptions::default();
    Ok(::replay::ReadOptions {
        format: r
            .format
            .as_deref()
            .map(|f| f.parse().map_err(|e| format!("--format: {e}")))
            .transpose()?,
        skip_malformed: r.skip_malformed,
        reorder_window: r.reorder_window.unwrap_or(defaults.reorder_window),
        untimed_rate: r.untimed_rate.unwrap_or(defaults.untimed_rate),
    })
}

fn inspect(args: InspectArgs) -> i32 {
    let opts = match read_options(&args.read) {
        Ok(o) => o,
        Err(e) => return fail(exit::BAD_INPUT, &e),
    };
    let result =
        ::replay::Recording::open(&args.files, opts).and_then(|r| ::replay::Inspection::of(&r));
    if let (Ok(i), Some(path)) = (&result, &args.html) {
        if let Err(e) = std::fs::write(path, super::inspect_html::render(i)) {
            return fail(
                exit::BAD_INPUT,
                &format!("{}: cannot write the HTML page: {e}", path.display()),
            );
        }
    }
    match result {
        Ok(i) if args.json => {
            let mut v = serde_json::to_value(&i).unwrap_or_default();
            v["reader"] = serde_json::json!({
                "out_of_order": i.stats.out_of_order,
                "late": i.stats.late,
                "responses": i.stats.responses,
                "responses_matched": i.stats.responses_matched,
                "replayed_responses": i.stats.replayed_responses,
                "malformed_skipped": i.stats.malformed,
                "separator_framed": i.stats.separator_framed,
            });
            println!("{v:#}");
            exit::OK
        }
        Ok(i) => {
            print!("{}", i.render_text());
            exit::OK
        }
        Err(e) => fail(exit::BAD_INPUT, &e.to_string()),
    }
}

/// The `replay:` section and scenario the flags describe, as the JSON a scenario file would
/// deserialise to (so flags and files go through the same types and checks).
fn scenario_json(a: &ReplayArgs) -> Result<serde_json::Value, String> {
    let target = match a.target.as_deref() {
        None => return Err("--target: give the base URL to replay against (or `embedded`)".into()),
        Some("embedded") => serde_json::json!({ "embedded": "gateway" }),
        Some(url) => {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
            if !ok {
                return Err(format!(
                    "--target: expected an http:// or https:// URL, got `{url}`"
                ));
            }
            serde_json::json!({ "base_url": url, "insecure": a.insecure })
        }
    };
    if a.files.is_empty() {
        return Err("give at least one recording file (or `loadgen replay inspect FILE`)".into());
    }
    let mut rewrite_path = Vec::new();
    for r in &a.rewrite_path {
        let (m, to) = r
            .split_once("=>")
            .ok_or_else(|| format!("--rewrite-path `{r}`: expected `REGEX=>REPLACEMENT`"))?;
        rewrite_path.push(serde_json::json!({ "match": m, "to": to }));
    }
    let mut set_headers = serde_json::Map::new();
    for h in &a.set_header {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--set-header `{h}`: expected `Name: value`"))?;
        set_headers.insert(n.trim().to_string(), v.trim().into());
    }
    let mut thresholds = serde_json::Map::new();
    for t in &a.threshold {
        // The metric may hold `:` only inside `{…}`; split at the first `:` after it.
        let split_from = t.find('}').unwrap_or(0);
        let at = t[split_from..]
            .find(':')
            .map(|i| i + split_from)
            .ok_or_else(|| format!("--threshold `{t}`: expected `METRIC: EXPRESSION`"))?;
        let (m, e) = (t[..at].trim(), t[at + 1..].trim());
        if let Some(list) = thresholds
            .entry(m.to_string())
            .or_insert_with(|| serde_json::json!([]))
            .as_array_mut()
        {
            list.push(e.into());
        }
    }
    let mut replay = serde_json::json!({
        "files": a.files,
        "skip_malformed": a.read.skip_malformed,
        "filter": { "methods": a.methods, "hosts": a.hosts },
        "rewrite": { "path": rewrite_path, "set_headers": set_headers, "remove_headers": a.remove_header },
        "pool": { "connections": a.connections, "http2": a.http2, "streams": a.streams, "queue": a.queue },
        "compare_status": !a.no_status_compare,
    });
    let fields: [(&str, Option<serde_json::Value>); 13] = [
        ("ws_target", a.ws_target.clone().map(Into::into)),
        ("format", a.read.format.clone().map(Into::into)),
        ("reorder_window", a.read.reorder_window.map(Into::into)),
        ("untimed_rate", a.read.untimed_rate.map(Into::into)),
        ("speed", a.speed.clone().map(Into::into)),
        ("max_wait", a.max_wait.clone().map(Into::into)),
        ("loop", a.loops.map(Into::into)),
        ("rate_cap", a.rate_cap.map(Into::into)),
        ("timeout", a.timeout.clone().map(Into::into)),
        (
            "window",
            (a.from.is_some() || a.to.is_some())
                .then(|| serde_json::json!({ "from": a.from, "to": a.to })),
        ),
        ("filter.path", a.path.clone().map(Into::into)),
        (
            "filter.exclude_path",
            a.exclude_path.clone().map(Into::into),
        ),
        ("rewrite.host", a.host.clone().map(Into::into)),
    ];
    for (k, v) in fields {
        let Some(v) = v else { continue };
        match k.split_once('.') {
            Some((outer, inner)) => replay[outer][inner] = v,
            None => replay[k] = v,
        }
    }
    Ok(serde_json::json!({
        "version": 1,
        "name": a.name,
        "target": target,
        "replay": replay,
        "thresholds": thresholds,
    }))
}

/// A flag value the scenario types refuse (a bad duration or speed): serde's message, which
/// names the field (`speed`, `max_wait`, …), without its JSON position.
fn flag_error(e: serde_json::Error) -> String {
    let m = e.to_string();
    let m = m.split(" at line ").next().unwrap_or(&m).to_string();
    format!("bad replay option: {m}")
}

fn replay(args: ReplayArgs) -> i32 {
    let json = match scenario_json(&args) {
        Ok(j) => j,
        Err(e) => return fail(exit::BAD_INPUT, &e),
    };
    let scenario: crate::scenario::Scenario = match serde_json::from_value(json) {
        Ok(s) => s,
        Err(e) => return fail(exit::BAD_INPUT, &flag_error(e)),
    };
    let Some(spec) = scenario.replay.clone() else {
        return fail(exit::HARNESS, "no replay section");
    };
    let plan = match super::ReplayPlan::new(&spec, std::path::Path::new(".")) {
        Ok(r) => r,
        Err(e) => return fail(exit::BAD_INPUT, &e.to_string()),
    };
    let plan = match Plan::with_replay(scenario, PathBuf::from("(command line)"), plan) {
        Ok(p) => p,
        Err(e) => return fail(exit::BAD_INPUT, &e.to_string()),
    };
    let baseline = match args.baseline.load() {
        Ok(b) => b,
        Err(e) => return fail(e.exit_code(), &e.to_string()),
    };
    let banner = match &plan.replay {
        Some(r) => format!(
            "replaying {} requests{} over {} (run bounded at {})",
            r.planned_requests,
            if r.planned_sessions > 0 {
                format!(" and {} WebSocket sessions", r.planned_sessions)
            } else {
                String::new()
            },
            common::duration::format(Duration::from_millis(r.length.as_millis() as u64)),
            common::duration::format(plan.duration)
        ),
        None => String::new(),
    };
    crate::cli::execute_plan(
        plan,
        args.out,
        args.quiet,
        &args.reports,
        baseline.as_ref(),
        &banner,
    )
}
