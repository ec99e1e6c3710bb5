//! What each subcommand does, one file each. This is the only place that prints to the
//! terminal, picks exit codes, builds the async runtime and installs signal handling; below it
//! the library returns values and typed errors.
//!
//! - [`run`]: `loadgen run` (and the run every `replay` becomes);
//! - [`check`]: `loadgen check`, `loadgen schema`;
//! - [`report`]: `loadgen report` (render, compare, merge) and the reports and baseline gate
//!   at the end of a run;
//! - [`replay`]: `loadgen replay`; [`inspect`]: `loadgen replay inspect`;
//! - [`record`]: `loadgen record`;
//! - [`worker`]: `loadgen worker` (a Locust worker);
//! - [`internal`]: the hidden `__shard` and `__room` processes;
//! - [`console`]: live progress on the terminal.

pub mod check;
pub mod console;
pub mod inspect;
pub mod internal;
pub mod record;
pub mod replay;
pub mod report;
pub mod run;
pub mod worker;

use crate::cli::{Cli, Command};
use crate::stop::{Stop, StopReason};

/// Exit codes, as k6 and CI pipelines expect them.
pub mod exit {
    /// Everything passed.
    pub const OK: i32 = 0;
    /// The harness itself failed.
    pub const HARNESS: i32 = 1;
    /// Bad input: scenario, data file, target, flags.
    pub const BAD_INPUT: i32 = 2;
    /// A threshold failed, or the baseline comparison found a regression.
    pub const THRESHOLD: i32 = 99;
    /// The run was interrupted (SIGINT or SIGTERM): the record holds what was measured until
    /// then, whatever the thresholds say (k6's code for an external abort).
    pub const INTERRUPTED: i32 = 105;
    /// A second interrupt: the process exits at once, without a record.
    pub const ABORTED: i32 = 130;
}

/// Runs a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Shard => internal::shard(),
        Command::Room { args } => internal::room(args),
        Command::Replay(cmd) => replay::main(*cmd),
        Command::Record(args) => record::main(args),
        Command::Schema => check::schema(),
        Command::Check { plan } => check::main(&plan),
        Command::Worker(args) => worker::main(args),
        Command::Report(args) => report::main(args),
        Command::Run {
            plan,
            out,
            quiet,
            reports,
            baseline,
        } => run::main(&plan, out, quiet, &reports, &baseline),
    }
}

/// Prints `message` as the one error line (control characters escaped, cut after 500
/// characters: it may quote a file's content) and returns `code`.
pub fn fail(code: i32, message: &str) -> i32 {
    eprintln!("error: {}", common::printable::printable(message, 500));
    code
}

/// A multi-threaded Tokio runtime, or the harness error's exit code.
pub fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            fail(
                exit::HARNESS,
                &format!("cannot start the async runtime: {e}"),
            )
        })
}

/// Ctrl-C or SIGTERM ends the run at once — in-flight work is cut and recorded as unfinished,
/// and the record is written; a second one exits at once without a record.
pub fn install_signal_handler(stop: Stop) {
    let result = ctrlc::set_handler(move || {
        if stop.reason() == Some(StopReason::Interrupted) {
            eprintln!("\nsecond interrupt: exiting without a record");
            std::process::exit(exit::ABORTED);
        }
        stop.cut(StopReason::Interrupted);
        goose::trigger_killswitch("interrupted");
    });
    if let Err(e) = result {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
}
