//! `loadgen check` (validate a scenario and print its planned schedule; sends nothing) and
//! `loadgen schema` (the scenario files' JSON Schema).

use super::{exit, fail};
use crate::cli::PlanArgs;
use crate::plan::{Machine, Plan, Share};

/// A scenario file's plan, its `${NAME}` variables filled in from `-e` pairs and the
/// environment, cut to segment `i/N` when given, and checked against this machine's limits
/// unless `--ignore-limits`; the error is one line.
pub fn load_plan(args: &PlanArgs) -> Result<Plan, String> {
    let share = args
        .segment
        .as_deref()
        .map(Share::parse_segment)
        .transpose()?;
    let vars = crate::scenario::vars::Vars::from_pairs(&args.env)?;
    let plan = Plan::from_file_with(&args.file, &vars).map_err(|e| e.to_string())?;
    let plan = match share {
        Some(share) => plan.segment(share)?,
        None => plan,
    };
    if !args.ignore_limits {
        plan.check_limits(&Machine::this())
            .map_err(|e| e.to_string())?;
    }
    Ok(plan)
}

/// `loadgen check FILE [-e NAME=VALUE]... [--segment i/N] [--ignore-limits]`.
pub fn main(args: &PlanArgs) -> i32 {
    match load_plan(args) {
        Ok(plan) => {
            // A discovered target: what ZooKeeper lists now, or the error `run` would stop with.
            let mut discovered = Vec::new();
            if let Some(d) = &plan.scenario.target.discovery {
                let runtime = match super::runtime() {
                    Ok(r) => r,
                    Err(code) => return code,
                };
                match runtime.block_on(crate::run::target::describe_discovered(d)) {
                    Ok(lines) => discovered = lines,
                    Err(e) => return fail(exit::BAD_INPUT, &e),
                }
            }
            for line in plan.describe().lines() {
                println!("{line}");
                if line.starts_with("target:") {
                    discovered.iter().for_each(|l| println!("          {l}"));
                }
            }
            exit::OK
        }
        Err(e) => fail(exit::BAD_INPUT, &e),
    }
}

/// `loadgen schema`.
pub fn schema() -> i32 {
    println!("{:#}", crate::scenario::json_schema());
    exit::OK
}
