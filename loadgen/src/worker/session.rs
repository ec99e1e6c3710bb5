//! One run on a worker, from the master's first `spawn` to its `stop`: the target, the device
//! swarm (its counts set by the master), one [`Users`] runner per sender journey, the
//! recorders, and the record the worker writes at the end — built like `loadgen run`'s from
//! the same deltas it sends the master.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reports::{Delta, Recorders, Run, RunBuilder};

use super::classes::{ClassKind, UserClass};
use super::stats::{Mapper, Report};
use crate::delivery::clock::{origin_from_unix, unix_ns};
use crate::delivery::TrackMsg;
use crate::engine::http::Tls;
use crate::engine::swarm::Swarm;
use crate::engine::users::Users;
use crate::journey::Journey;
use crate::plan::{devices::longest_deadline, Plan};
use crate::run::{self, target, RunError};

/// A run in progress on this worker.
#[derive(Debug)]
pub struct Session {
    origin: Instant,
    /// Unix second of the run's second 0 (the run starts on a whole second).
    epoch0: i64,
    recorders: Arc<Recorders>,
    builder: RunBuilder,
    classes: Vec<UserClass>,
    users: HashMap<usize, Users>,
    swarm: Option<Swarm>,
    counts: BTreeMap<String, u64>,
    /// Most devices of each device journey (by index) this worker planned: its share.
    capacity: HashMap<usize, u32>,
    /// Device journeys whose asked count went beyond `capacity` (said once per run).
    clipped: std::collections::HashSet<usize>,
    /// The one writer of the `devices_unplaced` gauges.
    unplaced: reports::RecorderHandle,
    mapper: Mapper,
    period_start: f64,
    base_url: String,
    /// Broadcasts this worker's senders tracked, to announce to the other workers.
    announced: Option<tokio::sync::mpsc::UnboundedReceiver<TrackMsg>>,
    /// The latest deadline of the other workers' broadcasts judged here, Unix ns.
    remote_deadline_ns: u64,
    /// The target; a discovered one is followed, its changes recorded.
    target: target::Started,
}

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    /// The worker's own record (meta and thresholds filled in).
    pub run: Run,
    /// The last samples, for the master.
    pub last: (Report, Delta),
}

/// Devices the master asked a worker for beyond its planned share, by journey (gauge).
pub const DEVICES_UNPLACED: &str = "devices_unplaced";

/// A class the master asked for that the scenario does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownClass(pub String);

fn unix_s() -> f64 {
    unix_ns() as f64 / 1e9
}

impl Session {
    /// Starts the target (the master's `host` when it sent one) and the swarm's shard
    /// processes, then the clock, on a whole Unix second; no users run yet.
    pub async fn start(
        plan: &Plan,
        classes: Vec<UserClass>,
        host: Option<&str>,
    ) -> Result<Session, RunError> {
        let started = match host.filter(|h| !h.is_empty()) {
            Some(url) => {
                target::reachable(url)
                    .await
                    .map_err(|e| RunError::BadInput(format!("the master's host: {e}")))?;
                target::Started::url(url)
            }
            None => target::start(&plan.scenario.target).await?,
        };
        let base_url = started.base_url().to_string();
        let launched = run::launch_swarm(plan).await?;
        let tls = Tls::new(plan.scenario.target.insecure)
            .map_err(|e| RunError::Harness(format!("TLS setup: {e}")))?;
        let now = unix_ns();
        let epoch0 = (now / 1_000_000_000) as i64;
        let origin = origin_from_unix(epoch0 as u64 * 1_000_000_000);
        let recorders = Arc::new(Recorders::new(origin));
        started.follow(&recorders);
        let started_at = chrono::DateTime::from_timestamp(epoch0, 0).unwrap_or_default();
        let builder = RunBuilder::new(&plan.scenario.name, started_at, origin);
        // Most devices of each device journey this worker runs: its share.
        let capacity = launched
            .as_ref()
            .map(|(_, s)| s.journeys.iter().map(|j| (j.index, j.planned)).collect())
            .unwrap_or_default();
        let swarm = match launched {
            Some((l, s)) => Some(run::begin_swarm(l, plan, &s, &base_url, &recorders)?),
            None => None,
        };
        let hooks = swarm.as_ref().map(Swarm::hooks);
        let announced = swarm.as_ref().map(|s| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            s.announce_broadcasts(Box::new(move |m| {
                let _ = tx.send(m.clone());
            }));
            rx
        });
        let globals = Arc::new(HashMap::from([("base_url".to_string(), base_url.clone())]));
        let mut users = HashMap::new();
        for c in &classes {
            if let ClassKind::Sender = c.kind {
                let sender = &plan.scenario.senders[c.index];
                let journey = Journey::new(sender.clone(), globals.clone(), plan.feeders.clone())
                    .with_delivery(hooks.clone())
                    .with_instances(started.instances());
                let http2 = sender.pool.as_ref().is_some_and(|p| p.http2);
                let runner = Users::new(Arc::new(journey), http2, tls.clone(), recorders.clone());
                users.insert(c.index, runner);
            }
        }
        Ok(Session {
            origin,
            capacity,
            clipped: Default::default(),
            unplaced: recorders.handle(),
            epoch0,
            recorders,
            builder,
            counts: classes.iter().map(|c| (c.name.clone(), 0)).collect(),
            classes,
            users,
            swarm,
            mapper: Mapper::new(plan),
            period_start: unix_s(),
            base_url,
            announced,
            remote_deadline_ns: 0,
            target: started,
        })
    }

    /// The next broadcast this worker's senders tracked (for the other workers); pending
    /// forever without a swarm.
    pub async fn next_announced(&mut self) -> Option<TrackMsg> {
        match &mut self.announced {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Another worker's tracked broadcast: this worker's devices are judged on it too.
    pub fn track_remote(&mut self, msg: TrackMsg) {
        if let Some(s) = &self.swarm {
            self.remote_deadline_ns = self.remote_deadline_ns.max(msg.deadline_ns);
            s.track_remote(msg);
        }
    }

    /// When second 0 started, Unix ns.
    pub fn started_at_unix_ns(&self) -> u64 {
        self.epoch0 as u64 * 1_000_000_000
    }

    /// Users running now, by class.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.clone()
    }

    /// Applies the master's absolute per-class counts (classes it leaves out keep theirs).
    /// A device class holds at most the devices this worker planned (its share): a count
    /// beyond it is recorded (`devices_unplaced{journey}`, the devices asked and not held)
    /// and said once per run in the lines returned.
    pub fn apply(&mut self, wanted: &BTreeMap<String, u64>) -> Result<Vec<String>, UnknownClass> {
        if let Some(name) = wanted
            .keys()
            .find(|n| !self.classes.iter().any(|c| &c.name == *n))
        {
            return Err(UnknownClass(name.clone()));
        }
        let mut said = Vec::new();
        for c in &self.classes {
            let Some(&n) = wanted.get(&c.name) else {
                continue;
            };
            let running = match c.kind {
                ClassKind::Sender => {
                    let Some(u) = self.users.get_mut(&c.index) else {
                        continue;
                    };
                    u.set(usize::try_from(n).unwrap_or(usize::MAX));
                    u.count() as u64
                }
                ClassKind::Device => {
                    let cap = u64::from(self.capacity.get(&c.index).copied().unwrap_or(0));
                    let held = n.min(cap);
                    let key =
                        reports::MetricKey::new(DEVICES_UNPLACED).with_tag("journey", &c.name);
                    common::sync::lock(&self.unplaced).gauge(&key, Instant::now(), n - held);
                    if n > cap && self.clipped.insert(c.index) {
                        said.push(format!(
                            "the master asks this worker for {n} `{}` devices; it planned {cap} (its share) and holds those: the rest are recorded as devices_unplaced",
                            c.name
                        ));
                    }
                    if let Some(s) = &self.swarm {
                        s.set_count(c.index, held as u32);
                    }
                    held
                }
            };
            self.counts.insert(c.name.clone(), running);
        }
        Ok(said)
    }

    /// The samples since the last call: absorbed into the worker's record, and as Locust's
    /// report and the exact delta for the master.
    pub fn take(&mut self) -> (Report, Delta) {
        let recorder = self.recorders.harvest();
        let delta = recorder.to_delta();
        self.builder.absorb(recorder);
        let now = unix_s();
        let report =
            self.mapper
                .report(&delta, self.epoch0, self.period_start, self.counts.clone());
        self.period_start = now;
        (report, delta)
    }

    /// Ends the run as `loadgen run` drains: users finish their requests in flight (bounded by
    /// the run's grace), tracked pushes get their delivery deadlines, the swarm stops; then
    /// the last samples and the record.
    pub async fn finish(mut self, plan: &Plan, stopped_early: Option<String>) -> Finished {
        // Load stops being applied here; what follows drains the work in flight.
        let load = self.origin.elapsed();
        for c in &mut self.counts.values_mut() {
            *c = 0;
        }
        let mut stopping = tokio::task::JoinSet::new();
        for u in std::mem::take(&mut self.users).into_values() {
            stopping.spawn(u.finish(run::GRACE));
        }
        while stopping.join_next().await.is_some() {}
        if let Some(s) = self.swarm.take() {
            let wait = longest_deadline(&plan.scenario) + Duration::from_secs(1);
            // The other workers' broadcasts judged here get their deadlines too (the swarm
            // itself waits for this worker's own).
            let now = unix_ns();
            if self.remote_deadline_ns > now {
                let left = Duration::from_nanos(self.remote_deadline_ns - now)
                    + Duration::from_millis(200);
                tokio::time::sleep(left.min(wait)).await;
            }
            for n in s.finish(wait).await {
                tracing::warn!("{n}");
            }
        }
        self.target.finish();
        let last = self.take();
        let elapsed = self.origin.elapsed();
        let mut run = self.builder.finish(elapsed);
        let mut meta = run::meta::meta(plan, &self.base_url, Some(load), stopped_early.as_deref());
        self.target.annotate(&mut meta);
        run.meta = Some(meta);
        self.target.close().await;
        let verdicts = reports::threshold::evaluate(&run, &plan.thresholds);
        run.thresholds = verdicts;
        Finished { run, last }
    }
}
