//! One shard of the swarm: the devices it owns (global index ≡ shard mod shards), the
//! schedule that starts and stops them, its delivery tracker, and the loop that speaks the
//! control protocol ([`serve`]) — over channels in-process, or over stdin/stdout in a
//! `loadgen __shard` child process.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sync::lock;
use reports::{MetricKey, Recorders};
use tokio::sync::{mpsc, Notify};

use super::control::{Command, Event, ShardPlan};
use super::names;
use super::script::Script;
use crate::delivery::clock::{origin_from_unix, unix_ns};
use crate::delivery::{DeliveryTracker, Presence, Recipients, Target};
use crate::plan::DeviceJourneyPlan;
use crate::stop::{Stop, StopReason};

/// One device's place in its shard: identity, whether it should run, and its current
/// session's bounds (for delivery windows).
#[derive(Debug)]
pub struct Slot {
    /// Global device index.
    pub global: u32,
    /// Its journey (index into the scripts).
    pub script: u16,
    /// Index within the journey (`{{device.index}}`).
    pub index: u32,
    /// User id.
    pub user: Box<str>,
    /// The schedule wants it connected.
    pub wanted: AtomicBool,
    /// Its task is alive.
    pub running: AtomicBool,
    /// Wakes the task to look at `wanted` and the stop switch.
    pub wake: Notify,
    /// Start of the current (or last) session, Unix ns; 0 = never connected.
    pub start_ns: AtomicU64,
    /// End of the last session, Unix ns; 0 while a session is up.
    pub end_ns: AtomicU64,
    /// Start of the first session, Unix ns; 0 = never connected.
    pub first_ns: AtomicU64,
    /// The topics it subscribes to (rendered `topics`).
    pub topics: Box<[Box<str>]>,
    /// Where a new session resumes: an SSE stream's last event id, a long-poll's last
    /// `Last-Modified` and `Etag`.
    pub resume: Mutex<Option<Box<str>>>,
}

impl Presence for Slot {
    fn connected_during(&self, from: u64, to: u64) -> bool {
        let start = self.start_ns.load(Ordering::Acquire);
        let end = self.end_ns.load(Ordering::Acquire);
        start != 0 && start <= to && (end == 0 || end >= from)
    }

    fn known_before(&self, at: u64) -> bool {
        let first = self.first_ns.load(Ordering::Acquire);
        first != 0 && first <= at
    }

    fn connected_through(&self, from: u64, to: u64) -> bool {
        let start = self.start_ns.load(Ordering::Acquire);
        let end = self.end_ns.load(Ordering::Acquire);
        start != 0 && start <= from && (end == 0 || end >= to)
    }
}

/// The devices a shard owns.
#[derive(Debug)]
pub struct DeviceTable {
    /// Every device journey (all shards compile all of them).
    pub scripts: Vec<Script>,
    /// Owned devices by local index (`global / shards`).
    pub slots: Vec<Arc<Slot>>,
    /// Local indices by user.
    pub by_user: HashMap<Box<str>, Vec<u32>>,
    shard: u32,
    shards: u32,
}

impl DeviceTable {
    /// The table of `shard` of `shards`.
    pub fn build(scripts: Vec<Script>, shard: u32, shards: u32, base_url: &str) -> DeviceTable {
        let mut slots = Vec::new();
        let mut by_user: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        for (si, s) in scripts.iter().enumerate() {
            for k in 0..s.plan.planned {
                let global = s.plan.base + k;
                if global % shards != shard {
                    continue;
                }
                let index = s.plan.index_of(k);
                let user: Box<str> = s.user(index, base_url).into();
                let topics = s.topics(index, &user, base_url);
                by_user
                    .entry(user.clone())
                    .or_default()
                    .push(slots.len() as u32);
                slots.push(Arc::new(Slot {
                    global,
                    script: si as u16,
                    index,
                    user,
                    wanted: AtomicBool::new(false),
                    running: AtomicBool::new(false),
                    wake: Notify::new(),
                    start_ns: AtomicU64::new(0),
                    end_ns: AtomicU64::new(0),
                    first_ns: AtomicU64::new(0),
                    topics,
                    resume: Mutex::new(None),
                }));
            }
        }
        DeviceTable {
            scripts,
            slots,
            by_user,
            shard,
            shards,
        }
    }

    /// The slot of global device `global`, when this shard owns it.
    pub fn owned(&self, global: u32) -> Option<&Arc<Slot>> {
        (global % self.shards == self.shard)
            .then(|| self.slots.get((global / self.shards) as usize))
            .flatten()
    }

    /// The local index of global device `global` (owned by this shard).
    pub fn local_of(&self, global: u32) -> u32 {
        global / self.shards
    }

    fn script_of(&self, local: u32) -> Option<&Script> {
        let slot = self.slots.get(local as usize)?;
        self.scripts.get(slot.script as usize)
    }
}

impl Recipients for DeviceTable {
    type Device = Slot;

    fn is_recipient(&self, target: &Target, local: u32) -> bool {
        let (Some(slot), Some(script)) = (self.slots.get(local as usize), self.script_of(local))
        else {
            return false;
        };
        match target {
            Target::Unicast { user } => &*slot.user == user.as_str(),
            Target::Broadcast => script.handles_push(),
            Target::Topic { topic } => {
                script.handles_push() && slot.topics.iter().any(|f| script.topic_matches(f, topic))
            }
            Target::Journey { journey } => script.handles_push() && script.def.name == *journey,
        }
    }

    fn for_each_recipient(&self, target: &Target, f: &mut dyn FnMut(u32, &Slot)) {
        match target {
            Target::Unicast { user } => {
                for &local in self.by_user.get(user.as_str()).into_iter().flatten() {
                    f(local, &self.slots[local as usize]);
                }
            }
            _ => {
                for (local, slot) in self.slots.iter().enumerate() {
                    if self.is_recipient(target, local as u32) {
                        f(local as u32, slot);
                    }
                }
            }
        }
    }
}

/// What the device tasks of one shard share.
pub struct ShardCtx {
    /// The devices.
    pub table: DeviceTable,
    /// Delivery tracking.
    pub tracker: Mutex<DeliveryTracker>,
    /// Per-thread recorders of connection metrics.
    pub recorders: Recorders,
    /// `{{base_url}}`.
    pub base_url: String,
    /// Source addresses (round-robin by global index).
    pub sources: Vec<Ipv4Addr>,
    /// Pulled when the shard stops.
    pub stop: Stop,
    /// Devices up and down since the last batch.
    pub conn_events: Mutex<(Vec<u32>, Vec<u32>)>,
    /// Sessions up now.
    pub active: AtomicU64,
    /// Dispatch calls (at most [`DISPATCH_CONCURRENCY`] at once).
    pub dispatch: super::dispatch::Dispatcher,
    /// wss://, mqtts:// and HTTP/1.1 https:// connections (ALPN `http/1.1`).
    pub tls: tokio_rustls::TlsConnector,
    /// HTTP/2 https:// connections of SSE and long-poll devices (ALPN `h2`).
    pub tls_h2: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for ShardCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCtx")
            .field("devices", &self.table.slots.len())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl ShardCtx {
    /// Records through the calling thread's recorder.
    pub fn record(&self, f: impl FnOnce(&mut reports::Recorder)) {
        let h = self.recorders.for_thread();
        f(&mut lock(&h));
    }

    /// The source address for global device `global`.
    pub fn source_for(&self, global: u32) -> Option<Ipv4Addr> {
        // One source that is the default one needs no bind; a process of a share (a segment,
        // a Locust worker) binds its own range even when it is one address.
        let default = self.sources.len() == 1 && self.sources[0] == Ipv4Addr::new(127, 0, 0, 1);
        (!self.sources.is_empty() && !default)
            .then(|| self.sources[global as usize % self.sources.len()])
    }
}

/// Most dispatch calls in flight per shard.
pub const DISPATCH_CONCURRENCY: usize = 64;

/// How often the schedule, tracking deadlines and connection events are looked at.
const TICK: Duration = Duration::from_millis(50);

/// Runs one shard until `Stop` (or the command channel closes); every event goes to `emit`.
pub async fn serve(
    plan: ShardPlan,
    mut commands: mpsc::UnboundedReceiver<Command>,
    emit: impl Fn(Event) + Send + Sync + 'static,
    fd_limit: u64,
) {
    let scenario =
        match crate::scenario::load_str(Path::new(&plan.scenario_path), &plan.scenario_text) {
            Ok(s) => s,
            Err(e) => {
                emit(Event::Failed {
                    message: e.to_string(),
                });
                return;
            }
        };
    let http_tls = match crate::engine::http::Tls::new(plan.insecure) {
        Ok(t) => t,
        Err(e) => {
            emit(Event::Failed {
                message: format!("TLS setup: {e}"),
            });
            return;
        }
    };
    let origin = origin_from_unix(plan.origin_unix_ns);
    let duration = Duration::from_secs_f64(plan.duration_s.max(0.0));
    let journeys = DeviceJourneyPlan::all_shared(&scenario.devices, duration, &plan.share);
    let scripts = Script::compile_all(&scenario.devices, journeys);
    let table = DeviceTable::build(scripts, plan.shard, plan.shards.max(1), &plan.base_url);
    let ctx = Arc::new(ShardCtx {
        tracker: Mutex::new(DeliveryTracker::new(origin, scenario.target.delivery)),
        recorders: Recorders::new(origin),
        base_url: plan.base_url.clone(),
        sources: plan.sources.clone(),
        stop: Stop::new(),
        conn_events: Mutex::new((Vec::new(), Vec::new())),
        active: AtomicU64::new(0),
        tls: tokio_rustls::TlsConnector::from(http_tls.http1_config()),
        tls_h2: tokio_rustls::TlsConnector::from(http_tls.http2_config()),
        dispatch: super::dispatch::Dispatcher::new(http_tls, DISPATCH_CONCURRENCY),
        table,
    });
    emit(Event::Ready {
        fd_limit,
        devices: ctx.table.slots.len() as u64,
    });
    let gauge = MetricKey::new(names::CONNECTIONS_ACTIVE).with_tag("shard", plan.shard.to_string());
    for s in &ctx.table.scripts {
        // Present from the start, so `connections_failed: [count == 0]` can be checked.
        ctx.record(|r| r.add(s.keys.failed_any(), Instant::now(), 0));
    }
    let mut schedule = Scheduler::new(&ctx.table, plan.share.controlled);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_metrics = Instant::now();
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Track(msg)) => lock(&ctx.tracker).track(msg, &ctx.table),
                Some(Command::Plan(_)) => {}
                Some(Command::Count { journey, count }) => {
                    schedule.set_count(journey, count, origin.elapsed().as_secs_f64())
                }
                Some(Command::Stop) | None => break,
            },
            _ = tick.tick() => {
                schedule.step(&ctx, origin.elapsed().as_secs_f64());
                lock(&ctx.tracker).settle_due(unix_ns(), &ctx.table);
                flush_conn_events(&ctx, &emit);
                if last_metrics.elapsed() >= Duration::from_secs(1) {
                    last_metrics = Instant::now();
                    ctx.record(|r| r.gauge(&gauge, Instant::now(), ctx.active.load(Ordering::Relaxed)));
                    flush_metrics(&ctx, &emit);
                }
            }
        }
    }
    // Stop: every device closes; then tracking is settled and the last metrics go out.
    ctx.stop.cut(StopReason::Finished);
    for slot in &ctx.table.slots {
        slot.wanted.store(false, Ordering::Release);
        slot.wake.notify_one();
    }
    let bound = Instant::now() + Duration::from_secs(10);
    while Instant::now() < bound
        && ctx
            .table
            .slots
            .iter()
            .any(|s| s.running.load(Ordering::Acquire))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctx.record(|r| r.gauge(&gauge, Instant::now(), ctx.active.load(Ordering::Relaxed)));
    lock(&ctx.tracker).finish(&ctx.table);
    flush_conn_events(&ctx, &emit);
    flush_metrics(&ctx, &emit);
    emit(Event::Done);
}

fn flush_conn_events(ctx: &ShardCtx, emit: &impl Fn(Event)) {
    let (up, down) = std::mem::take(&mut *lock(&ctx.conn_events));
    if !up.is_empty() || !down.is_empty() {
        emit(Event::Conn { up, down });
    }
}

fn flush_metrics(ctx: &ShardCtx, emit: &impl Fn(Event)) {
    let mut all = ctx.recorders.harvest();
    let (tracked, settled) = {
        let mut t = lock(&ctx.tracker);
        (t.take_metrics(), t.take_settled_broadcasts())
    };
    all.merge(tracked);
    for (id, last_ns, received) in settled {
        emit(Event::BroadcastDone {
            id,
            last_ns,
            received,
        });
    }
    if !all.is_empty() {
        emit(Event::Metrics {
            delta: all.to_delta(),
        });
    }
}

/// How long a controller's raised count takes to reach: the devices are started evenly over
/// it, as a schedule's ramp starts them, not in one burst. Locust's master sends its counts
/// once a second (its dispatch interval), so a worker connects at the master's spawn rate;
/// a burst of connects would also hold more memory per connection afterwards (the
/// allocator keeps the peak of the handshakes in flight; BENCHMARKS.md §11).
pub const CONTROLLED_RAMP_S: f64 = 1.0;

/// A controller's count for one journey: a raise is reached over [`CONTROLLED_RAMP_S`].
#[derive(Debug, Clone, Copy)]
struct Controlled {
    from: u32,
    to: u32,
    at: f64,
}

impl Controlled {
    /// The level at `t` (seconds on the run's clock); a lowered count applies at once.
    fn level(&self, t: f64) -> u32 {
        if self.to <= self.from {
            return self.to;
        }
        let done = ((t - self.at) / CONTROLLED_RAMP_S).clamp(0.0, 1.0);
        self.from + (f64::from(self.to - self.from) * done).floor() as u32
    }
}

/// Starts and stops owned devices as the journeys' schedules (or a controller's counts) say.
#[derive(Debug)]
struct Scheduler {
    /// Per journey: devices (this process's journey devices `0 … n − 1`) started so far,
    /// closed model's level, or the next arrival, open model.
    started: Vec<u32>,
    /// Per journey: the count a controller set (`Command::Count`), which replaces the
    /// schedule.
    counts: Vec<Option<Controlled>>,
}

impl Scheduler {
    /// A controlled scheduler starts every journey at a count of 0.
    fn new(table: &DeviceTable, controlled: bool) -> Scheduler {
        let n = table.scripts.len();
        let zero = Controlled {
            from: 0,
            to: 0,
            at: 0.0,
        };
        Scheduler {
            started: vec![0; n],
            counts: vec![controlled.then_some(zero); n],
        }
    }

    /// A controller's count for `journey` from `t` on, reached from the level now.
    fn set_count(&mut self, journey: usize, count: u32, t: f64) {
        let from = self.started.get(journey).copied().unwrap_or(0);
        if let Some(c) = self.counts.get_mut(journey) {
            *c = Some(Controlled {
                from,
                to: count,
                at: t,
            });
        }
    }

    fn step(&mut self, ctx: &Arc<ShardCtx>, t: f64) {
        if ctx.stop.is_stopped() {
            return;
        }
        for (j, script) in ctx.table.scripts.iter().enumerate() {
            let controlled = self.counts[j];
            let target = match (controlled, &script.plan.count) {
                (Some(c), _) => c.level(t).min(script.plan.planned),
                // Past its end a schedule holds its last level: devices stay up until the
                // shard is stopped, after the last delivery deadlines.
                (None, Some(schedule)) => {
                    let t = t.min(schedule.length().as_secs_f64());
                    script.plan.local_count(schedule.level_at(t))
                }
                (None, None) => script.plan.arrivals.partition_point(|a| *a <= t) as u32,
            };
            let from = self.started[j];
            if target > from {
                for index in from..target {
                    if let Some(slot) = ctx.table.owned(script.plan.base + index) {
                        slot.wanted.store(true, Ordering::Release);
                        if !slot.running.swap(true, Ordering::AcqRel) {
                            tokio::spawn(super::connection::run(ctx.clone(), slot.clone()));
                        }
                    }
                }
            } else if target < from && (controlled.is_some() || script.plan.count.is_some()) {
                for index in target..from {
                    if let Some(slot) = ctx.table.owned(script.plan.base + index) {
                        slot.wanted.store(false, Ordering::Release);
                        slot.wake.notify_one();
                    }
                }
            }
            self.started[j] = target;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_count_is_reached_over_a_second_and_a_lowered_one_at_once() {
        let up = Controlled {
            from: 100,
            to: 1100,
            at: 10.0,
        };
        let levels: Vec<u32> = [9.0, 10.0, 10.25, 10.5, 10.999, 11.0, 30.0]
            .iter()
            .map(|&t| up.level(t))
            .collect();
        assert_eq!(levels, [100, 100, 350, 600, 1099, 1100, 1100]);
        let down = Controlled {
            from: 1100,
            to: 12,
            at: 20.0,
        };
        assert_eq!((down.level(20.0), down.level(25.0)), (12, 12));
    }
}
