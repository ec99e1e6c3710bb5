//! `loadgen replay FILE... --target URL`: a replay from flags is a scenario with a `replay:`
//! section built in code (the flags go through the same types and checks as a file), so it
//! writes the same run record, thresholds and exit codes as `loadgen run`.

use std::path::PathBuf;
use std::time::Duration;

use super::{exit, fail};
use crate::cli::{ReplayArgs, ReplayCommand, ReplaySub};
use crate::plan::{Plan, ReplayPlan};

/// Runs `loadgen replay …`; returns the exit code.
pub fn main(cmd: ReplayCommand) -> i32 {
    match cmd.sub {
        Some(ReplaySub::Inspect(args)) => super::inspect::main(args),
        None => replay(cmd.run),
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
    let plan = match ReplayPlan::new(&spec, std::path::Path::new(".")) {
        Ok(r) => r,
        Err(e) => return fail(exit::BAD_INPUT, &e.to_string()),
    };
    let plan = match Plan::with_replay(scenario, PathBuf::from("(command line)"), plan) {
        Ok(p) => p,
        Err(e) => return fail(exit::BAD_INPUT, &e.to_string()),
    };
    let baseline = match super::report::load_baseline(&args.baseline) {
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
    super::run::execute_plan(
        plan,
        args.out,
        args.quiet,
        &args.reports,
        baseline.as_ref(),
        &banner,
    )
}
