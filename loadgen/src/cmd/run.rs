//! `loadgen run FILE`: load the plan, run it with live progress, print the summary table,
//! write the run record, the `--report` outputs and the baseline verdict, and pick the exit
//! code. `loadgen replay` ends here too ([`execute_plan`]).

use std::path::PathBuf;

use super::console::{Console, Mode};
use super::report::{self, Baseline};
use super::{exit, fail};
use crate::cli::{BaselineArgs, PlanArgs, ReportSpec};
use crate::plan::Plan;
use crate::run::{self, RunError};
use crate::stop::{Stop, StopReason};

/// `loadgen run FILE [-e NAME=VALUE]... [--segment i/N] [--out DIR] [--quiet]
/// [--report F=FILE]... [--baseline BASE.json] [--ignore-limits]`.
pub fn main(
    args: &PlanArgs,
    out: Option<PathBuf>,
    quiet: bool,
    reports: &[ReportSpec],
    baseline: &BaselineArgs,
) -> i32 {
    let plan = match super::check::load_plan(args) {
        Ok(p) => p,
        Err(e) => return fail(exit::BAD_INPUT, &e),
    };
    let baseline = match report::load_baseline(baseline) {
        Ok(b) => b,
        Err(e) => return fail(e.exit_code(), &e.to_string()),
    };
    let banner = format!(
        "running `{}` for up to {}",
        common::printable::printable(&plan.scenario.name, 100),
        common::duration::format(plan.duration)
    );
    execute_plan(plan, out, quiet, reports, baseline.as_ref(), &banner)
}

/// Runs a loaded plan as `loadgen run` and `loadgen replay` do: progress, summary table, run
/// record, `--report` outputs, baseline comparison and the exit code (0, 99, 1 or 2).
pub fn execute_plan(
    plan: Plan,
    out: Option<PathBuf>,
    quiet: bool,
    reports: &[ReportSpec],
    baseline: Option<&Baseline>,
    banner: &str,
) -> i32 {
    let stop = Stop::new();
    super::install_signal_handler(stop.clone());
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let requests = !plan.scenario.senders.is_empty() || plan.replay.is_some();
    let mut console = Console::new(Mode::detect(quiet), plan.duration, requests);
    eprintln!("{banner}");
    let outcome = match runtime.block_on(run::execute(plan, out, &mut console, stop)) {
        Ok(o) => o,
        Err(RunError::BadInput(m)) => return fail(exit::BAD_INPUT, &m),
        Err(RunError::Harness(m)) => return fail(exit::HARNESS, &m),
    };
    println!(
        "{}",
        reports::summary::render_table(&outcome.run, &Default::default())
    );
    if let Some(why) = &outcome.stopped_early {
        eprintln!("stopped early: {why}; the record holds what was measured until then");
    }
    eprintln!("run record: {}", outcome.path.display());
    let regressed = match report::finish_run(&outcome.run, reports, baseline) {
        Ok(c) => c.is_some_and(|c| c.regressed()),
        Err(e) => return fail(e.exit_code(), &e.to_string()),
    };
    if !outcome.passed {
        eprintln!("thresholds failed");
    }
    if regressed {
        eprintln!("baseline regressed");
    }
    match &outcome.stopped_early {
        Some(StopReason::Interrupted) => exit::INTERRUPTED,
        Some(StopReason::Failed(_)) => exit::HARNESS,
        _ if outcome.passed && !regressed => exit::OK,
        _ => exit::THRESHOLD,
    }
}
