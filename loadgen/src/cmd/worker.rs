//! `loadgen worker --master HOST:PORT FILE`: a Locust worker (see [`crate::worker`]), and
//! `loadgen worker --classes FILE`, the user classes the master's locustfile defines.

use super::{exit, fail};
use crate::cli::WorkerArgs;
use crate::stop::Stop;
use crate::worker::{self, Ended};

/// Runs `loadgen worker`; returns the exit code: 0 (or 99 when the last run's thresholds
/// failed) after the master's quit, 2 for bad input, 1 when the master went silent.
pub fn main(args: WorkerArgs) -> i32 {
    // The limits are checked against the worker's share when a run starts (the master's
    // plugin says it then), not against the whole file.
    let plan = match super::check::load_plan(&crate::cli::PlanArgs {
        file: args.file.clone(),
        env: args.env.clone(),
        segment: None,
        ignore_limits: true,
    }) {
        Ok(p) => p,
        Err(e) => return fail(exit::BAD_INPUT, &e),
    };
    if args.classes {
        return match worker::classes::of(&plan) {
            Ok(c) => {
                println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
                exit::OK
            }
            Err(e) => fail(exit::BAD_INPUT, &e),
        };
    }
    let durations = common::duration::parse(&args.heartbeat_timeout)
        .map_err(|e| format!("--heartbeat-timeout: {e}"))
        .and_then(|h| {
            common::duration::parse(&args.connect_timeout)
                .map(|c| (h, c))
                .map_err(|e| format!("--connect-timeout: {e}"))
        });
    let (heartbeat_timeout, connect_timeout) = match durations {
        Ok(d) => d,
        Err(e) => return fail(exit::BAD_INPUT, &e),
    };
    let name = format!("{}-worker", plan.scenario.name);
    let cfg = worker::Config {
        // `required_unless_present = "classes"`: clap has it.
        master: args.master.unwrap_or_default(),
        client_id: worker::client_id(),
        heartbeat_timeout,
        connect_timeout,
        ignore_limits: args.ignore_limits,
        out: args
            .out
            .unwrap_or_else(|| crate::run::default_out_dir(&name)),
    };
    let stop = Stop::new();
    super::install_signal_handler(stop.clone());
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut print = |line: &str| eprintln!("{line}");
    let ended = runtime.block_on(worker::serve(plan, cfg, stop, &mut print));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match ended {
        Ended::Quit { passed } => {
            if passed == Some(false) {
                eprintln!("thresholds failed");
                exit::THRESHOLD
            } else {
                exit::OK
            }
        }
        Ended::BadInput(m) => fail(exit::BAD_INPUT, &m),
        Ended::Harness(m) => fail(exit::HARNESS, &m),
    }
}
