//! What a run record says about its run besides the metrics (`meta` in run.json): the
//! scenario, target, planned load shape, how the run ended, the scenario's `gate:` list and
//! where it ran. A baseline comparison refuses runs whose planned shapes differ
//! (`reports::compare::SHAPE_FIELDS`) and gates the `gate:` list's metrics by default.

use crate::plan::Plan;

/// The run record's `meta`; `load` is how long load was applied (the run's end minus the
/// drain of work in flight), what reports divide counts by for rates (`None` before a run).
pub fn meta(
    plan: &Plan,
    base_url: &str,
    load: Option<std::time::Duration>,
    stopped_early: Option<&str>,
) -> serde_json::Value {
    let s = &plan.scenario;
    let senders: Vec<serde_json::Value> = s
        .senders
        .iter()
        .enumerate()
        .map(|(i, sd)| {
            let open = plan.open.iter().find(|o| o.sender == i);
            serde_json::json!({
                "name": sd.name,
                "model": if open.is_some() { "open" } else { "closed" },
                "steps": sd.steps.len(),
                "planned_iterations": open.map(|o| o.rate.area().round()),
                "peak_rate": open.map(|o| o.rate.peak()),
                "weight": sd.weight,
            })
        })
        .collect();
    let gate: Option<Vec<String>> =
        (!s.gate.is_empty()).then(|| s.gate.iter().map(|k| k.0.to_string()).collect());
    serde_json::json!({
        "scenario_file": plan.path.display().to_string(),
        "target": if s.target.embedded.is_some() { "embedded:gateway".to_string() } else { base_url.to_string() },
        "planned_duration_s": plan.duration.as_secs_f64(),
        "load_s": load.map(|l| l.as_secs_f64()),
        "users_peak": plan.closed.as_ref().map(|c| c.users.peak()),
        "senders": senders,
        "replay": plan.replay.as_ref().map(|r| r.meta()),
        "load_shape": load_shape(plan),
        "stopped_early": stopped_early,
        "gate": gate,
        "segment": (!plan.share.is_whole() && !plan.share.controlled)
            .then(|| format!("{}/{}", plan.share.segment, plan.share.segments)),
        // A Locust worker's place among the workers, as the master's plugin gave it.
        "worker_share": (!plan.share.is_whole() && plan.share.controlled)
            .then(|| format!("{}/{}", plan.share.segment, plan.share.segments)),
        "loadgen_version": env!("CARGO_PKG_VERSION"),
        "host": std::env::var("HOSTNAME").ok(),
    })
}

/// The planned load exactly, as schedule segments `[start_s, end_s, from, to]`: a baseline
/// comparison refuses runs whose shapes differ (`reports::compare::SHAPE_FIELDS`).
fn load_shape(plan: &Plan) -> serde_json::Value {
    let rates: Vec<serde_json::Value> = plan
        .open
        .iter()
        .map(|o| {
            serde_json::json!({
                "sender": plan.scenario.senders[o.sender].name,
                "segments": o.rate.segments,
            })
        })
        .collect();
    serde_json::json!({
        "users": plan.closed.as_ref().map(|c| &c.users.segments),
        "rates": rates,
    })
}
