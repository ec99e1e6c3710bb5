//! Executing a plan: start the target when it is embedded, run every engine under one stop
//! switch, harvest metrics each second for progress, and at the end write the run record and
//! evaluate the thresholds — also when the run was interrupted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reports::{Run, RunBuilder};

use crate::collect::Recorders;
use crate::engine::{self, conn::Tls};
use crate::journey::Journey;
use crate::plan::Plan;
use crate::progress::{self, Progress};
use crate::stop::Stop;

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad input: an unreachable target, an unwritable output folder (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// The harness failed (exit 1).
    #[error("{0}")]
    Harness(String),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where to write `run.json` (default `runs/<name>-<timestamp>/`).
    pub out: Option<PathBuf>,
    /// Progress display.
    pub progress: progress::Mode,
}

/// A finished run.
#[derive(Debug)]
pub struct Outcome {
    /// The record (thresholds evaluated).
    pub run: Run,
    /// Where `run.json` was written.
    pub path: PathBuf,
    /// True when every threshold passed.
    pub passed: bool,
    /// Why the run ended early, if it did.
    pub stopped_early: Option<String>,
}

/// Grace for in-flight requests after the stop switch, before engines are abandoned.
const GRACE: Duration = Duration::from_secs(5);

/// Runs `plan` until it ends or `stop` is pulled.
pub async fn execute(plan: Plan, opts: &RunOptions, stop: Stop) -> Result<Outcome, RunError> {
    let scenario = &plan.scenario;
    let out_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(&scenario.name));
    std::fs::create_dir_all(&out_dir).map_err(|e| {
        RunError::BadInput(format!(
            "{}: cannot create output folder: {e}",
            out_dir.display()
        ))
    })?;

    let mut _gateway = None;
    let base_url = match (&scenario.target.embedded, &scenario.target.base_url) {
        (Some(_), _) => {
            let faults = crate::target::faults(scenario.target.faults.as_ref());
            let gw = testbed::gateway::spawn(testbed::gateway::GatewayConfig {
                listen: ([127, 0, 0, 1], 0).into(),
                faults,
                rooms: crate::target::rooms(scenario.target.rooms.as_ref()),
            })
            .await
            .map_err(|e| RunError::Harness(format!("cannot start the embedded gateway: {e}")))?;
            let url = gw.base_url();
            _gateway = Some(gw);
            url
        }
        (None, Some(url)) => {
            crate::target::reachable(url)
                .await
                .map_err(RunError::BadInput)?;
            url.trim_end_matches('/').to_string()
        }
        (None, None) => return Err(RunError::BadInput("target: no target".into())),
    };
    let tls = Tls::new(scenario.target.insecure)
        .map_err(|e| RunError::Harness(format!("TLS setup: {e}")))?;
    let globals = Arc::new(HashMap::from([("base_url".to_string(), base_url.clone())]));
    let launched = crate::swarm::launch(&plan)
        .await
        .map_err(RunError::Harness)?;
    let origin = Instant::now();
    let started_at = chrono::Utc::now();
    let recorders = Arc::new(Recorders::new(origin));
    let mut builder = RunBuilder::new(&scenario.name, started_at, origin);
    let swarm = match launched {
        Some(l) => Some(
            crate::swarm::begin(l, &plan, &base_url, recorders.clone())
                .map_err(RunError::Harness)?,
        ),
        None => None,
    };
    let hooks = swarm.as_ref().map(|s| s.hooks());
    let journeys: Vec<Arc<Journey>> = scenario
        .senders
        .iter()
        .map(|s| {
            Arc::new(
                Journey::new(s.clone(), globals.clone(), plan.feeders.clone())
                    .with_delivery(hooks.clone()),
            )
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for o in &plan.open {
        let pool = engine::open::PoolConfig {
            connections: o.pool.connections,
            http2: o.pool.http2,
            streams: o.pool.streams,
            queue: o.pool.queue,
        };
        tasks.spawn(engine::open::run(
            journeys[o.sender].clone(),
            o.rate.clone(),
            pool,
            tls.clone(),
            recorders.clone(),
            stop.clone(),
        ));
    }
    if let Some(r) = &plan.replay {
        tasks.spawn(crate::replay::run(
            r.clone(),
            base_url.clone(),
            tls.clone(),
            recorders.clone(),
            stop.clone(),
        ));
    }
    let goose = plan.closed.as_ref().map(|c| {
        let js = c
            .senders
            .iter()
            .map(|(i, w)| (journeys[*i].clone(), *w))
            .collect();
        let users = c.users.clone();
        let (recorders, stop, base_url) = (recorders.clone(), stop.clone(), base_url.clone());
        let insecure = scenario.target.insecure;
        tokio::spawn(async move {
            Box::pin(engine::closed::run(
                &users, js, &base_url, insecure, recorders, stop,
            ))
            .await
        })
    });

    let deadline = origin + plan.duration;
    let mut progress = Progress::new(opts.progress, plan.duration);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut goose = goose;
    let mut goose_result = Ok(());
    loop {
        let open_done = tasks.is_empty();
        let goose_done = goose.as_ref().is_none_or(|g| g.is_finished());
        // Devices hold their connections until the deadline.
        if open_done && goose_done && swarm.is_none() {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => {
                builder.absorb(recorders.harvest());
                progress.tick(&builder, origin);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tokio::time::sleep_until(deadline.into()), if !stop.is_stopped() => {
                stop.stop("duration reached");
            }
            _ = stop.wait(), if !stop.is_stopped() => {}
        }
        if stop.is_stopped() {
            goose::trigger_killswitch("pushbench stop");
            break;
        }
    }
    // Let in-flight requests finish (bounded), then take what was recorded.
    let grace_end = tokio::time::Instant::now() + GRACE;
    while tokio::time::timeout_at(grace_end, tasks.join_next())
        .await
        .is_ok_and(|r| r.is_some())
    {}
    tasks.abort_all();
    if let Some(g) = goose.take() {
        match tokio::time::timeout_at(grace_end, g).await {
            Ok(Ok(r)) => goose_result = r,
            Ok(Err(e)) => goose_result = Err(engine::closed::GooseFailed(e.to_string())),
            Err(_) => {}
        }
    }
    if let Some(s) = swarm {
        // Pushes sent just before the end get their delivery deadline.
        let wait = crate::swarm::longest_deadline(&plan) + Duration::from_secs(1);
        s.finish(wait).await;
    }
    let elapsed = origin.elapsed();
    builder.absorb(recorders.harvest());
    progress.finish();
    if let Err(e) = goose_result {
        return Err(RunError::Harness(e.to_string()));
    }

    let reason = stop.reason();
    let stopped_early = reason.filter(|r| r != "duration reached");
    let mut run = builder.finish(elapsed);
    run.meta = Some(meta(&plan, &base_url, stopped_early.as_deref()));
    let verdicts = reports::threshold::evaluate(&run, &plan.thresholds);
    let passed = verdicts.iter().all(|v| v.ok);
    run.thresholds = verdicts;
    let path = out_dir.join("run.json");
    let json = run
        .to_json_pretty()
        .map_err(|e| RunError::Harness(format!("cannot serialise the run record: {e}")))?;
    std::fs::write(&path, json).map_err(|e| {
        RunError::BadInput(format!(
            "{}: cannot write the run record: {e}",
            path.display()
        ))
    })?;
    Ok(Outcome {
        run,
        path,
        passed,
        stopped_early,
    })
}

fn meta(plan: &Plan, base_url: &str, stopped_early: Option<&str>) -> serde_json::Value {
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
    serde_json::json!({
        "scenario_file": plan.path.display().to_string(),
        "target": if s.target.embedded.is_some() { "embedded:gateway".to_string() } else { base_url.to_string() },
        "planned_duration_s": plan.duration.as_secs_f64(),
        "users_peak": plan.closed.as_ref().map(|c| c.users.peak()),
        "senders": senders,
        "replay": plan.replay.as_ref().map(|r| r.meta()),
        "load_shape": load_shape(plan),
        "stopped_early": stopped_early,
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

fn default_out_dir(name: &str) -> PathBuf {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Path::new("runs").join(format!("{safe}-{stamp}"))
}
