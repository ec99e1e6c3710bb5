//! `loadgen check` (validate a scenario and print its planned schedule; sends nothing) and
//! `loadgen schema` (the scenario files' JSON Schema).

use std::path::Path;

use super::{exit, fail};
use crate::plan::{Machine, Plan};

/// A scenario file's plan, its `${NAME}` variables filled in from `-e` pairs and the
/// environment, checked against this machine's limits unless `ignore_limits`; the error is
/// one line.
pub fn load_plan(file: &Path, env: &[String], ignore_limits: bool) -> Result<Plan, String> {
    let vars = crate::scenario::vars::Vars::from_pairs(env)?;
    let plan = Plan::from_file_with(file, &vars).map_err(|e| e.to_string())?;
    if !ignore_limits {
        plan.check_limits(&Machine::this())
            .map_err(|e| e.to_string())?;
    }
    Ok(plan)
}

/// `loadgen check FILE [-e NAME=VALUE]... [--ignore-limits]`.
pub fn main(file: &Path, env: &[String], ignore_limits: bool) -> i32 {
    match load_plan(file, env, ignore_limits) {
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
