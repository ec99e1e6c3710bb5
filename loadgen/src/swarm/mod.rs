//! The device swarm: long-lived WebSocket and raw TCP connections running the scenario's
//! device journeys, and end-to-end delivery tracking between sender journeys and devices.
//!
//! - [`wire`]: client framing (RFC 6455, length-prefixed, newline) and the WebSocket upgrade.
//! - [`net`]: source addresses, `IP_BIND_ADDRESS_NO_PORT`, the open-file limit.
//! - [`script`]: a device journey compiled for running, metric names, template scope.
//! - [`device`]: one device's task (connect, exchanges, heartbeat, pushes, churn, reconnect).
//! - [`message`]: a received message's JSON, parsed once for every rule that reads it.
//! - [`ack`]: the reply to a push, rendered straight into the connection's output.
//! - [`tracker`]: one shard's delivery tracking (lost, duplicates, unexpected, latency).
//! - [`shard`]: the devices a shard owns, its schedule and control loop, the shard process.
//! - [`control`]: the coordinator ↔ shard messages (JSON lines).
//! - [`coordinator`]: shards, sender hooks, routing of tracking records, metrics merge.
//!
//! Devices are split over shards by global index (device g belongs to shard g mod N). Small
//! swarms run in the loadgen process; larger ones as `loadgen __shard` child processes of at
//! most `swarm.per_shard` connections each, since one process's open-file limit bounds it.

pub mod ack;
pub mod control;
pub mod coordinator;
pub mod device;
pub mod dispatch;
pub mod message;
pub mod net;
pub mod script;
pub mod shard;
pub mod tracker;
pub mod wire;

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

pub use coordinator::{DeliveryHooks, Swarm};

use crate::plan::Plan;
use script::Script;

/// Default most connections per shard process.
pub const DEFAULT_PER_SHARD: u32 = 15_000;

/// Shard processes and source addresses for a plan: `(shards, sources)`; 0 shards = the
/// devices run in-process.
pub fn layout(plan: &Plan) -> (u32, u32) {
    let scripts = Script::compile_all(&plan.scenario.devices, plan.duration);
    let total: u64 = scripts.iter().map(|s| u64::from(s.planned)).sum();
    let opts = plan.scenario.swarm.clone().unwrap_or_default();
    let per = u64::from(opts.per_shard.unwrap_or(DEFAULT_PER_SHARD));
    let shards = opts.shards.unwrap_or(if total > per {
        u32::try_from(total.div_ceil(per)).unwrap_or(u32::MAX)
    } else {
        0
    });
    let sources = opts
        .source_addresses
        .unwrap_or_else(|| net::sources_needed(total));
    (shards, sources)
}

/// Starts the shards of `plan` (when it has device journeys), before the run's clock starts.
pub async fn launch(plan: &Plan) -> Result<Option<coordinator::Launched>, String> {
    if plan.scenario.devices.is_empty() {
        return Ok(None);
    }
    let (shards, _) = layout(plan);
    coordinator::Launched::launch(shards).await.map(Some)
}

/// Gives the launched shards their plan and starts the swarm on the run's clock.
pub fn begin(
    launched: coordinator::Launched,
    plan: &Plan,
    base_url: &str,
    recorders: Arc<crate::collect::Recorders>,
) -> Result<Swarm, String> {
    // The text as parsed (variables filled in), so the shards plan what this process did.
    let text = match &plan.source {
        Some(text) => text.clone(),
        None => std::fs::read_to_string(&plan.path)
            .map_err(|e| format!("{}: cannot read scenario file: {e}", plan.path.display()))?,
    };
    let scripts = Script::compile_all(&plan.scenario.devices, plan.duration);
    let (_, sources) = layout(plan);
    let setup = coordinator::SwarmSetup {
        scenario_path: plan.path.display().to_string(),
        scenario_text: text,
        duration: plan.duration,
        base_url: base_url.to_string(),
        insecure: plan.scenario.target.insecure,
        sources,
    };
    Ok(launched.begin(setup, &scripts, recorders))
}

/// The longest tracked-delivery deadline of the plan's senders (how long the swarm outlives
/// the senders at the end of a run).
pub fn longest_deadline(plan: &Plan) -> Duration {
    use crate::scenario::Step;
    plan.scenario
        .senders
        .iter()
        .flat_map(|s| s.steps.iter())
        .filter_map(|st| match st {
            Step::Request(r) => r.track.as_ref().map(|t| t.within()),
            Step::Let(_) => None,
        })
        .max()
        .unwrap_or_default()
}

/// The device journeys' part of `loadgen check`.
pub fn describe(plan: &Plan, out: &mut String) {
    if plan.scenario.devices.is_empty() {
        return;
    }
    let scripts = Script::compile_all(&plan.scenario.devices, plan.duration);
    let (shards, sources) = layout(plan);
    let total: u64 = scripts.iter().map(|s| u64::from(s.planned)).sum();
    let _ = writeln!(
        out,
        "\ndevice swarm: {total} devices, {}, {sources} source address{}",
        if shards == 0 {
            "in the loadgen process".to_string()
        } else {
            format!("{shards} shard processes")
        },
        if sources == 1 { "" } else { "es" }
    );
    for s in &scripts {
        let d = &s.def;
        let how = match (&s.count, d.arrival.as_ref()) {
            (Some(c), _) => format!("closed model, peak {} connections", c.peak().round()),
            (None, Some(a)) => {
                format!("open model, {} devices/s up to {}", a.per_second, s.planned)
            }
            _ => String::new(),
        };
        let connect = match (&d.connect.dispatch, &d.connect.url) {
            (Some(disp), _) => format!("dispatch {}", disp.get),
            (None, Some(u)) => u.to_string(),
            _ => String::new(),
        };
        let _ = writeln!(out, "  journey `{}`: {how}; connect {connect}", d.name);
        if let Some(c) = &s.count {
            for &(a, b, from, to) in &c.segments {
                let span = format!(
                    "{:>7} – {:<7}",
                    common::duration::format(Duration::from_secs_f64(a)),
                    common::duration::format(Duration::from_secs_f64(b))
                );
                if (from - to).abs() < 1e-9 {
                    let _ = writeln!(out, "    {span} hold {} connections", to.round());
                } else {
                    let _ = writeln!(
                        out,
                        "    {span} ramp {} → {} connections",
                        from.round(),
                        to.round()
                    );
                }
            }
        }
        let mut parts = Vec::new();
        if let Some(h) = &d.heartbeat {
            parts.push(format!("heartbeat every {}", h.every));
        }
        if d.push.is_some() {
            parts.push("handles pushes".to_string());
        }
        if let Some(c) = &d.churn {
            parts.push(format!("churn {}/s", c.per_second));
        }
        if d.reconnect.is_some() {
            parts.push("reconnects".to_string());
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "    {}", parts.join(", "));
        }
    }
}
