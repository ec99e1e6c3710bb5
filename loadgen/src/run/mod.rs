//! Executing a plan, in the order a run goes: make the output folder, start the target when it
//! is embedded or follow it when it is discovered ([`target`]), start the swarm's shards, start
//! the clock and every engine under one stop switch, harvest the per-task recorders each second
//! for the [`Observer`] (live progress, [`progress`]), wait for the end (the plan's bound, its
//! last iteration, or the stop switch), drain, and write the run record with its metadata
//! ([`meta`]) and threshold verdicts — also when the run was interrupted.

pub mod cpu;
pub mod meta;
pub mod progress;
pub mod target;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reports::{Recorders, Run, RunBuilder};

use crate::engine::http::Tls;
use crate::engine::swarm::{Launched, Swarm, SwarmSetup};
use crate::engine::{self, closed::GooseFailed};
use crate::journey::{Journey, TargetInstances};
use crate::plan::{devices::longest_deadline, Plan};
use crate::stop::{Stop, StopReason};

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

/// Who watches a run: called about once a second with the record so far, and told what the
/// operator should hear about. The command line draws progress with it.
pub trait Observer {
    /// The record so far, at `now`; the run started at `origin`.
    fn tick(&mut self, builder: &RunBuilder, origin: Instant);
    /// Something went wrong that does not stop the run (a shard failed).
    fn notice(&mut self, message: &str);
    /// The load is over (draining follows).
    fn finish(&mut self);
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
    /// Why the run ended before its plan did (interrupted, or a failure), if it did.
    pub stopped_early: Option<StopReason>,
}

/// The generator's CPU each second: this process and its shard processes, % of the machine's
/// cores (a gauge).
pub const GENERATOR_CPU: &str = "generator_cpu";

/// Grace for in-flight work after the plan's bound, before it is cut and recorded as
/// unfinished (an interrupt cuts at once).
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// How long engines get to record what the cut ended, before they are abandoned.
const AFTER_CUT: Duration = Duration::from_secs(2);

/// Runs `plan` until it ends or `stop` is pulled; `out` is the output folder (default
/// `runs/<name>-<timestamp>/`).
pub async fn execute(
    plan: Plan,
    out: Option<PathBuf>,
    observer: &mut dyn Observer,
    stop: Stop,
) -> Result<Outcome, RunError> {
    let out_dir = out.unwrap_or_else(|| default_out_dir(&plan.scenario.name));
    std::fs::create_dir_all(&out_dir).map_err(|e| {
        RunError::BadInput(format!(
            "{}: cannot create output folder: {e}",
            out_dir.display()
        ))
    })?;
    let target = target::start(&plan.scenario.target).await?;
    let result = run_on(plan, &out_dir, &target, observer, stop).await;
    target.close().await;
    result
}

/// The run once its target is up: engines, drain, record.
async fn run_on(
    plan: Plan,
    out_dir: &Path,
    target: &target::Started,
    observer: &mut dyn Observer,
    stop: Stop,
) -> Result<Outcome, RunError> {
    let base_url = target.base_url().to_string();
    let launched = launch_swarm(&plan).await?;
    let mut engines = Engines::start(&plan, &base_url, target.instances(), launched, stop.clone())?;
    target.follow(&engines.recorders);
    engines.drive(&plan, observer, &stop).await;
    // Load stops being applied here; what follows is the drain of work in flight.
    let load = engines.origin.elapsed();
    let goose = engines.drain(&plan, &stop).await;
    observer.finish();
    let elapsed = engines.origin.elapsed();
    for n in std::mem::take(&mut engines.late_notices) {
        observer.notice(&n);
    }
    goose.map_err(|e| RunError::Harness(e.to_string()))?;
    target.finish();
    engines.builder.absorb(engines.recorders.harvest());
    let stopped_early = stop.reason().filter(StopReason::is_early);
    let mut run = engines.builder.finish(elapsed);
    let mut meta = meta::meta(
        &plan,
        &base_url,
        Some(load),
        stopped_early.as_ref().map(ToString::to_string).as_deref(),
    );
    target.annotate(&mut meta);
    run.meta = Some(meta);
    reports::saturation::assess(&mut run);
    let verdicts = reports::threshold::evaluate(&run, &plan.thresholds);
    let passed = verdicts.iter().all(|v| v.ok);
    run.thresholds = verdicts;
    let path = write_record(&run, out_dir)?;
    Ok(Outcome {
        run,
        path,
        passed,
        stopped_early,
    })
}

/// Every engine of a run, on one clock.
struct Engines {
    origin: Instant,
    recorders: Arc<Recorders>,
    builder: RunBuilder,
    tasks: tokio::task::JoinSet<()>,
    goose: Option<tokio::task::JoinHandle<Result<(), GooseFailed>>>,
    /// goose's result once its task has ended.
    goose_result: Option<Result<(), GooseFailed>>,
    swarm: Option<Swarm>,
    /// What the swarm had to say while it finished.
    late_notices: Vec<String>,
}

impl Engines {
    /// Starts the clock, the swarm (already launched) and every sender engine; journeys pick
    /// their `{{base_url}}` from `instances` when the target is discovered.
    fn start(
        plan: &Plan,
        base_url: &str,
        instances: Option<Arc<dyn TargetInstances>>,
        launched: Option<(Launched, crate::plan::SwarmPlan)>,
        stop: Stop,
    ) -> Result<Engines, RunError> {
        let scenario = &plan.scenario;
        let tls = Tls::new(scenario.target.insecure)
            .map_err(|e| RunError::Harness(format!("TLS setup: {e}")))?;
        let origin = Instant::now();
        let recorders = Arc::new(Recorders::new(origin));
        let builder = RunBuilder::new(&scenario.name, chrono::Utc::now(), origin);
        let swarm = match launched {
            Some((l, swarm_plan)) => Some(begin_swarm(l, plan, &swarm_plan, base_url, &recorders)?),
            None => None,
        };
        let hooks = swarm.as_ref().map(Swarm::hooks);
        let globals = Arc::new(HashMap::from([(
            "base_url".to_string(),
            base_url.to_string(),
        )]));
        let journeys: Vec<Arc<Journey>> = scenario
            .senders
            .iter()
            .map(|s| {
                Arc::new(
                    Journey::new(s.clone(), globals.clone(), plan.feeders.clone())
                        .with_delivery(hooks.clone())
                        .with_instances(instances.clone()),
                )
            })
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for o in &plan.open {
            let pool = engine::open::PoolConfig::of(&o.pool);
            let run = engine::open::run(
                journeys[o.sender].clone(),
                o.rate.clone(),
                pool,
                tls.clone(),
                recorders.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                run.await;
            });
        }
        if let Some(r) = &plan.replay {
            let run = engine::replay::run(
                r.clone(),
                base_url.to_string(),
                tls.clone(),
                recorders.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                run.await;
            });
        }
        let goose = plan.closed.as_ref().map(|c| {
            let js = c
                .senders
                .iter()
                .map(|(i, w)| (journeys[*i].clone(), *w))
                .collect();
            let users = c.users.clone();
            let (recorders, stop, base_url) =
                (recorders.clone(), stop.clone(), base_url.to_string());
            let insecure = scenario.target.insecure;
            tokio::spawn(async move {
                Box::pin(engine::closed::run(
                    &users, js, &base_url, insecure, recorders, stop,
                ))
                .await
            })
        });
        Ok(Engines {
            origin,
            recorders,
            builder,
            tasks,
            goose,
            goose_result: None,
            swarm,
            late_notices: Vec::new(),
        })
    }

    /// Harvests each second until the plan's bound, the end of every engine (devices hold
    /// their connections until the bound), or the stop switch.
    async fn drive(&mut self, plan: &Plan, observer: &mut dyn Observer, stop: &Stop) {
        let deadline = self.origin + plan.duration;
        let mut cpu = cpu::CpuMeter::new();
        let cpu_key = reports::MetricId::of(&reports::MetricKey::new(GENERATOR_CPU));
        let cpu_rec = self.recorders.handle();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let goose_done = self.goose.as_ref().is_none_or(|g| g.is_finished());
            if self.tasks.is_empty() && goose_done && self.swarm.is_none() {
                stop.stop(StopReason::Finished);
                break;
            }
            tokio::select! {
                _ = ticker.tick() => {
                    let pids = self.swarm.as_ref().map(Swarm::pids).unwrap_or_default();
                    if let Some(share) = cpu.sample(&pids) {
                        common::sync::lock(&cpu_rec).gauge(cpu_key, Instant::now(), share);
                    }
                    self.builder.absorb(self.recorders.harvest());
                    observer.tick(&self.builder, self.origin);
                    for n in self.swarm_notices() {
                        observer.notice(&n);
                    }
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = tokio::time::sleep_until(deadline.into()), if !stop.is_stopped() => {
                    stop.stop(StopReason::DurationReached);
                }
                _ = stop.wait(), if !stop.is_stopped() => {}
            }
            if stop.is_stopped() {
                goose::trigger_killswitch("pushbench stop");
                break;
            }
        }
    }

    /// Lets in-flight work finish (bounded by [`GRACE`]; none after an interrupt), cuts what
    /// is left — every engine records it as unfinished — then waits out the tracked pushes'
    /// deadlines (not after an interrupt) and stops the swarm; returns goose's result.
    async fn drain(&mut self, plan: &Plan, stop: &Stop) -> Result<(), GooseFailed> {
        let grace_end = tokio::time::Instant::now() + GRACE;
        tokio::select! {
            _ = self.join_all(), if !stop.is_cut() => {}
            _ = tokio::time::sleep_until(grace_end) => {}
            _ = stop.wait_cut() => {}
        }
        stop.cut(StopReason::DurationReached);
        let _ = tokio::time::timeout(AFTER_CUT, self.join_all()).await;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(g) = self.goose.take() {
            g.abort();
        }
        let result = self.goose_result.take().unwrap_or(Ok(()));
        if let Some(s) = self.swarm.take() {
            // Pushes sent just before the end get their delivery deadline; an interrupted run
            // does not wait (what is still within its deadline counts as unresolved).
            let wait = if stop.reason() == Some(StopReason::Interrupted) {
                Duration::ZERO
            } else {
                longest_deadline(&plan.scenario) + Duration::from_secs(1)
            };
            self.late_notices = s.finish(wait).await;
        }
        result
    }

    /// Waits until every sender engine has ended (cancel-safe: a task or goose's result is
    /// kept as it ends).
    async fn join_all(&mut self) {
        while self.tasks.join_next().await.is_some() {}
        if let Some(g) = self.goose.as_mut() {
            let r = g.await.unwrap_or_else(|e| Err(GooseFailed(e.to_string())));
            self.goose = None;
            self.goose_result = Some(r);
        }
    }

    fn swarm_notices(&self) -> Vec<String> {
        self.swarm
            .as_ref()
            .map(Swarm::take_notices)
            .unwrap_or_default()
    }
}

/// Starts the shard processes of the plan's swarm (none without device journeys), before the
/// clock; [`begin_swarm`] then gives them their plan (the swarm's layout, returned beside).
pub(crate) async fn launch_swarm(
    plan: &Plan,
) -> Result<Option<(Launched, crate::plan::SwarmPlan)>, RunError> {
    match plan.swarm() {
        Some(s) => Launched::launch(s.shards)
            .await
            .map(|l| Some((l, s)))
            .map_err(|e| RunError::Harness(e.to_string())),
        None => Ok(None),
    }
}

/// Gives the launched shards their plan and starts the swarm on the run's clock.
pub(crate) fn begin_swarm(
    launched: Launched,
    plan: &Plan,
    swarm: &crate::plan::SwarmPlan,
    base_url: &str,
    recorders: &Arc<Recorders>,
) -> Result<Swarm, RunError> {
    // The text as parsed (variables filled in), so the shards plan what this process did.
    let text = match &plan.source {
        Some(text) => text.clone(),
        None => std::fs::read_to_string(&plan.path).map_err(|e| {
            RunError::Harness(format!(
                "{}: cannot read scenario file: {e}",
                plan.path.display()
            ))
        })?,
    };
    let scripts = crate::engine::swarm::script::Script::compile_all(
        &plan.scenario.devices,
        swarm.journeys.clone(),
    );
    let setup = SwarmSetup {
        scenario_path: plan.path.display().to_string(),
        scenario_text: text,
        duration: plan.duration,
        base_url: base_url.to_string(),
        insecure: plan.scenario.target.insecure,
        share: plan.share,
    };
    Ok(launched.begin(setup, swarm, &scripts, recorders.clone()))
}

pub(crate) fn write_record_to(run: &Run, path: &Path) -> Result<(), RunError> {
    let json = run
        .to_json_pretty()
        .map_err(|e| RunError::Harness(format!("cannot serialise the run record: {e}")))?;
    std::fs::write(path, json).map_err(|e| {
        RunError::BadInput(format!(
            "{}: cannot write the run record: {e}",
            path.display()
        ))
    })
}

fn write_record(run: &Run, out_dir: &Path) -> Result<PathBuf, RunError> {
    let path = out_dir.join("run.json");
    write_record_to(run, &path)?;
    Ok(path)
}

/// The output folder of a run of `name` when none is given: `runs/<name>-<timestamp>`.
pub(crate) fn default_out_dir(name: &str) -> PathBuf {
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
