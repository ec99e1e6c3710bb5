//! The command line: one definition per flag (clap derive) gives parsing and `--help`; every
//! user-facing line of the binary is printed from here.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::plan::Plan;
use crate::progress;
use crate::report_cmd::{self, BaselineArgs, ReportArgs, ReportSpec};
use crate::run::{self, RunError, RunOptions};
use crate::stop::Stop;

/// Exit codes, as k6 and CI pipelines expect them.
pub mod exit {
    /// Everything passed.
    pub const OK: i32 = 0;
    /// The harness itself failed.
    pub const HARNESS: i32 = 1;
    /// Bad input: scenario, data file, target, flags.
    pub const BAD_INPUT: i32 = 2;
    /// A threshold failed.
    pub const THRESHOLD: i32 = 99;
}

/// pushbench's load generator: runs YAML scenario files against push gateways.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario file; writes DIR/run.json and exits 99 when a threshold fails.
    Run {
        /// The scenario file.
        file: PathBuf,
        /// Sets the scenario's `${NAME}` to VALUE (before the environment's NAME); repeatable.
        #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
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
    /// Render a run record (html, md, junit, hlog, json), compare runs, merge runs.
    Report(ReportArgs),
    /// Validate a scenario file and print the planned schedule; sends nothing.
    Check {
        /// The scenario file.
        file: PathBuf,
        /// Sets the scenario's `${NAME}` to VALUE (before the environment's NAME); repeatable.
        #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
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
    Replay(Box<crate::replay::cli::ReplayCommand>),
    /// A reverse proxy that forwards traffic to an upstream and records it as GoReplay .gor.
    Record(crate::record::RecordArgs),
}

/// Runs a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Shard => crate::swarm::shard::process_main(),
        Command::Room { args } => {
            if testbed::gateway::room::run_process(args) == std::process::ExitCode::SUCCESS {
                exit::OK
            } else {
                exit::HARNESS
            }
        }
        Command::Replay(cmd) => crate::replay::cli::main(*cmd),
        Command::Record(args) => crate::record::main(args),
        Command::Schema => {
            println!("{:#}", crate::scenario::json_schema());
            exit::OK
        }
        Command::Check { file, env } => match load_plan(&file, &env) {
            Ok(plan) => {
                print!("{}", plan.describe());
                exit::OK
            }
            Err(e) => fail(exit::BAD_INPUT, &e),
        },
        Command::Report(args) => report_cmd::main(args),
        Command::Run {
            file,
            env,
            out,
            quiet,
            reports,
            baseline,
        } => {
            let plan = match load_plan(&file, &env) {
                Ok(p) => p,
                Err(e) => return fail(exit::BAD_INPUT, &e),
            };
            let baseline = match baseline.load() {
                Ok(b) => b,
                Err(e) => return fail(e.exit_code(), &e.to_string()),
            };
            let banner = format!(
                "running `{}` for up to {}",
                plan.scenario.name,
                common::duration::format(plan.duration)
            );
            execute_plan(plan, out, quiet, &reports, baseline.as_ref(), &banner)
        }
    }
}

/// Runs a loaded plan as `loadgen run` and `loadgen replay` do: progress, summary table,
/// run record, `--report` outputs, baseline comparison and the exit code (0, 99, 1 or 2).
pub(crate) fn execute_plan(
    plan: Plan,
    out: Option<std::path::PathBuf>,
    quiet: bool,
    reports: &[ReportSpec],
    baseline: Option<&report_cmd::Baseline>,
    banner: &str,
) -> i32 {
    let stop = Stop::new();
    install_signal_handler(stop.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail(
                exit::HARNESS,
                &format!("cannot start the async runtime: {e}"),
            )
        }
    };
    let opts = RunOptions {
        out,
        progress: progress::Mode::detect(quiet),
    };
    eprintln!("{banner}");
    match runtime.block_on(run::execute(plan, &opts, stop)) {
        Ok(outcome) => {
            println!(
                "{}",
                reports::summary::render_table(&outcome.run, &Default::default())
            );
            if let Some(why) = &outcome.stopped_early {
                eprintln!("stopped early: {why}; the record holds what was measured until then");
            }
            eprintln!("run record: {}", outcome.path.display());
            let regressed = match report_cmd::finish_run(&outcome.run, reports, baseline) {
                Ok(c) => c.is_some_and(|c| c.regressed()),
                Err(e) => return fail(e.exit_code(), &e.to_string()),
            };
            if !outcome.passed {
                eprintln!("thresholds failed");
            }
            if regressed {
                eprintln!("baseline regressed");
            }
            if outcome.passed && !regressed {
                exit::OK
            } else {
                exit::THRESHOLD
            }
        }
        Err(RunError::BadInput(m)) => fail(exit::BAD_INPUT, &m),
        Err(RunError::Harness(m)) => fail(exit::HARNESS, &m),
    }
}

/// A scenario file's plan, its `${NAME}` variables filled in from `-e` pairs and the
/// environment; the error is one line.
fn load_plan(file: &std::path::Path, env: &[String]) -> Result<Plan, String> {
    let vars = crate::scenario::vars::Vars::from_pairs(env)?;
    Plan::from_file_with(file, &vars).map_err(|e| e.to_string())
}

fn fail(code: i32, message: &str) -> i32 {
    eprintln!("error: {message}");
    code
}

/// Ctrl-C or SIGTERM stops the load (the record is still written); a second one exits at once.
pub(crate) fn install_signal_handler(stop: Stop) {
    let result = ctrlc::set_handler(move || {
        if stop.is_stopped() && stop.reason().as_deref() != Some("duration reached") {
            eprintln!("\nsecond interrupt: exiting without a record");
            std::process::exit(130);
        }
        stop.stop("interrupted (SIGINT or SIGTERM)");
        goose::trigger_killswitch("interrupted");
    });
    if let Err(e) = result {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
}
