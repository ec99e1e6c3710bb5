//! `loadgen check` (validate a scenario and print its planned schedule; sends nothing) and
//! `loadgen schema` (the scenario files' JSON Schema).

use std::path::Path;

use super::{exit, fail};
use crate::plan::{Plan, Share};

/// A scenario file's plan, its `${NAME}` variables filled in from `-e` pairs and the
/// environment, cut to segment `i/N` when given; the error is one line.
pub fn load_plan(file: &Path, env: &[String], segment: Option<&str>) -> Result<Plan, String> {
    let share = segment.map(Share::parse_segment).transpose()?;
    let vars = crate::scenario::vars::Vars::from_pairs(env)?;
    let plan = Plan::from_file_with(file, &vars).map_err(|e| e.to_string())?;
    match share {
        Some(share) => plan.segment(share),
        None => Ok(plan),
    }
}

/// `loadgen check FILE [-e NAME=VALUE]... [--segment i/N]`.
pub fn main(file: &Path, env: &[String], segment: Option<&str>) -> i32 {
    match load_plan(file, env, segment) {
        Ok(plan) => {
            print!("{}", plan.describe());
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
