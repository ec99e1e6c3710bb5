//! The coordinating side of the swarm, in the `loadgen run` process: starts the shards
//! (in-process, or `loadgen __shard` child processes), gives senders their delivery hooks
//! ([`DeliveryHooks`], whose tracking records it routes to the shards that own the
//! recipients), merges the shards' metrics into the run, and at the end waits out the
//! delivery deadlines before stopping the shards.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sync::lock;
use reports::{MetricKey, RecorderHandle, Recorders};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::control::{Command, Event, ShardPlan};
use super::script::{all_users, Script};
use crate::delivery::clock::{unix_ns, unix_of};
use crate::delivery::hooks::JourneyRange;
use crate::delivery::{names, DeliveryHooks};
use crate::plan::SwarmPlan;

/// Why the swarm could not start (a harness error: exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// This executable cannot be found or started as a shard process.
    #[error("swarm: cannot start shard process {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A shard process ended before it read its plan.
    #[error("swarm shard {shard} did not start ({why})")]
    Exited {
        /// The shard.
        shard: u32,
        /// Its exit status or what ended.
        why: String,
    },
    /// The shard processes did not all come up in time.
    #[error("swarm shards did not start within 60s")]
    Timeout,
}

/// What reaches the coordinator from a shard.
#[derive(Debug)]
enum Incoming {
    Event(Event),
    /// The shard process ended (its status), or its in-process task returned.
    Exited(String),
}

/// Called once for every tracked broadcast or topic push this process's senders make.
pub type Announce = Box<dyn Fn(&crate::delivery::TrackMsg) + Send + Sync>;

/// Where tracked broadcasts are announced to other processes (a Locust worker's master).
#[derive(Default)]
struct Announcer(std::sync::OnceLock<Announce>);

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Announcer(set)"
        } else {
            "Announcer"
        })
    }
}

/// A running swarm.
#[derive(Debug)]
pub struct Swarm {
    hooks: Arc<DeliveryHooks>,
    announcer: Arc<Announcer>,
    links: Vec<mpsc::UnboundedSender<Command>>,
    pump: tokio::task::JoinHandle<()>,
    done: Arc<tokio::sync::Notify>,
    remaining: Arc<AtomicU64>,
    notices: Arc<Mutex<Vec<String>>>,
    children: Vec<tokio::process::Child>,
}

/// How to start the swarm.
#[derive(Debug)]
pub struct SwarmSetup {
    /// The scenario file (for messages).
    pub scenario_path: String,
    /// Its text as parsed (variables filled in), parsed again by each shard.
    pub scenario_text: String,
    /// The run's bound.
    pub duration: Duration,
    /// `{{base_url}}`.
    pub base_url: String,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// This process's share of the devices.
    pub share: crate::plan::Share,
}

/// Shards started but not yet given their plan: process start-up (seconds for a debug build)
/// happens before the run's clock starts, so device schedules are not squeezed by it.
#[derive(Debug)]
pub struct Launched {
    shards: u32,
    in_process: bool,
    links: Vec<mpsc::UnboundedSender<Command>>,
    receivers: Vec<Option<mpsc::UnboundedReceiver<Command>>>,
    ev_tx: mpsc::UnboundedSender<(u32, Incoming)>,
    ev_rx: mpsc::UnboundedReceiver<(u32, Incoming)>,
    children: Vec<tokio::process::Child>,
}

impl Launched {
    /// Starts `shards` shard processes (0: one shard inside this process) and waits until
    /// each reads commands.
    pub async fn launch(shards: u32) -> Result<Launched, SwarmError> {
        let in_process = shards == 0;
        let n = shards.max(1);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(u32, Incoming)>();
        let mut links = Vec::new();
        let mut receivers = Vec::new();
        let mut children = Vec::new();
        for k in 0..n {
            let (tx, rx) = mpsc::unbounded_channel::<Command>();
            links.push(tx);
            if in_process {
                receivers.push(Some(rx));
            } else {
                children.push(spawn_child(k, rx, ev_tx.clone())?);
                receivers.push(None);
            }
        }
        if !in_process {
            let bound = tokio::time::Instant::now() + Duration::from_secs(60);
            let mut up = 0;
            while up < n {
                match tokio::time::timeout_at(bound, ev_rx.recv()).await {
                    Ok(Some((_, Incoming::Event(Event::Up)))) => up += 1,
                    Ok(Some((shard, Incoming::Exited(why)))) => {
                        return Err(SwarmError::Exited { shard, why })
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Err(SwarmError::Timeout),
                }
            }
        }
        Ok(Launched {
            shards: n,
            in_process,
            links,
            receivers,
            ev_tx,
            ev_rx,
            children,
        })
    }

    /// Gives every shard its plan (the run's clock is `recorders`' origin) and starts the
    /// event pump.
    pub fn begin(
        mut self,
        setup: SwarmSetup,
        swarm: &SwarmPlan,
        scripts: &[Script],
        recorders: Arc<Recorders>,
    ) -> Swarm {
        let origin = recorders.origin();
        let origin_unix_ns = unix_of(origin);
        let n = self.shards;
        let first = setup.share.first_source(swarm.sources);
        let sources: Vec<std::net::Ipv4Addr> = (first..first + swarm.sources)
            .map(super::net::source_address)
            .collect();
        for k in 0..n {
            let plan = ShardPlan {
                scenario_path: setup.scenario_path.clone(),
                scenario_text: setup.scenario_text.clone(),
                shard: k,
                shards: n,
                origin_unix_ns,
                duration_s: setup.duration.as_secs_f64(),
                base_url: setup.base_url.clone(),
                sources: sources.clone(),
                insecure: setup.insecure,
                share: setup.share,
            };
            if self.in_process {
                let Some(rx) = self.receivers[k as usize].take() else {
                    continue;
                };
                let fd = super::net::raise_fd_limit();
                let etx = self.ev_tx.clone();
                let emit = move |ev: Event| {
                    let _ = etx.send((k, Incoming::Event(ev)));
                };
                let etx = self.ev_tx.clone();
                tokio::spawn(async move {
                    super::shard::serve(plan, rx, emit, fd).await;
                    let _ = etx.send((k, Incoming::Exited("finished".into())));
                });
            } else {
                let _ = self.links[k as usize].send(Command::Plan(plan));
            }
        }
        let links = self.links.clone();
        let journeys = scripts
            .iter()
            .map(|s| JourneyRange {
                name: s.def.name.clone(),
                base: s.plan.base,
                count: s.plan.planned,
            })
            .collect();
        let announcer = Arc::new(Announcer::default());
        let announce = announcer.clone();
        let hooks = Arc::new(DeliveryHooks::new(
            all_users(scripts, &setup.base_url),
            journeys,
            n,
            Box::new(move |k, msg| {
                // A broadcast is routed to every shard: announced once, with shard 0's copy.
                if k == 0 && !matches!(msg.target, crate::delivery::Target::Unicast { .. }) {
                    if let Some(f) = announce.0.get() {
                        f(&msg);
                    }
                }
                if let Some(link) = links.get(k as usize) {
                    let _ = link.send(Command::Track(msg));
                }
            }),
        ));
        let done = Arc::new(tokio::sync::Notify::new());
        let remaining = Arc::new(AtomicU64::new(u64::from(n)));
        let notices = Arc::new(Mutex::new(Vec::new()));
        drop(self.ev_tx);
        let pump = tokio::spawn(pump(
            self.ev_rx,
            Pump {
                hooks: hooks.clone(),
                rec: recorders.handle(),
                origin,
                done: done.clone(),
                remaining: remaining.clone(),
                notices: notices.clone(),
                shards: n,
            },
        ));
        Swarm {
            hooks,
            announcer,
            links: self.links,
            pump,
            done,
            remaining,
            notices,
            children: self.children,
        }
    }
}

impl Swarm {
    /// The senders' delivery hooks.
    pub fn hooks(&self) -> Arc<DeliveryHooks> {
        self.hooks.clone()
    }

    /// The shard processes' ids (none when the devices run in this process).
    pub fn pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .filter_map(tokio::process::Child::id)
            .collect()
    }

    /// Calls `f` for every tracked broadcast or topic push of this process's senders (set
    /// once), so another process can judge its own devices' receipts of it.
    pub fn announce_broadcasts(&self, f: Announce) {
        let _ = self.announcer.0.set(f);
    }

    /// A broadcast or topic push another process's sender tracked: this process's devices
    /// are judged on it (expected, received, lost) as on their own senders' pushes; its
    /// completion is recorded by the process that sent it.
    pub fn track_remote(&self, msg: crate::delivery::TrackMsg) {
        for link in &self.links {
            let _ = link.send(Command::Track(msg.clone()));
        }
    }

    /// Holds `count` devices of device journey `journey` from now on (a `controlled` share's
    /// controller; each shard starts or stops those it owns).
    pub fn set_count(&self, journey: usize, count: u32) {
        for link in &self.links {
            let _ = link.send(Command::Count { journey, count });
        }
    }

    /// What the operator should hear about since the last call (a shard failed or ended).
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.notices))
    }

    /// Ends the swarm: waits for the tracked pushes' deadlines (at most `max_wait`), stops
    /// the shards and waits for their last metrics; returns the notices not yet taken.
    pub async fn finish(mut self, max_wait: Duration) -> Vec<String> {
        let deadline = self.hooks.last_deadline_ns();
        let now = unix_ns();
        if deadline > now {
            // One settle tick after the last deadline.
            let wait = Duration::from_nanos(deadline - now) + Duration::from_millis(200);
            tokio::time::sleep(wait.min(max_wait)).await;
        }
        for link in &self.links {
            let _ = link.send(Command::Stop);
        }
        let bound = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.remaining.load(Ordering::Acquire) > 0 {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.remaining.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(bound, notified).await.is_err() {
                tracing::warn!("swarm shards did not finish within 20s");
                break;
            }
        }
        for c in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.wait()).await;
            let _ = c.start_kill();
        }
        // Let the pump absorb what is already queued.
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.pump).await;
        self.pump.abort();
        self.take_notices()
    }
}

fn spawn_child(
    k: u32,
    mut rx: mpsc::UnboundedReceiver<Command>,
    ev_tx: mpsc::UnboundedSender<(u32, Incoming)>,
) -> Result<tokio::process::Child, SwarmError> {
    let exe = std::env::current_exe().map_err(|source| SwarmError::Spawn {
        program: "loadgen".into(),
        source,
    })?;
    let spawn_error = |source| SwarmError::Spawn {
        program: exe.display().to_string(),
        source,
    };
    let mut child = tokio::process::Command::new(&exe)
        .arg("__shard")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(spawn_error(std::io::Error::other(
            "no stdin or stdout pipe",
        )));
    };
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            let Ok(mut line) = serde_json::to_string(&c) else {
                continue;
            };
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            let _ = stdin.flush().await;
        }
    });
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Event>(&line) {
                Ok(ev) => {
                    let _ = ev_tx.send((k, Incoming::Event(ev)));
                }
                Err(e) => tracing::warn!("shard {k}: bad event line: {e}"),
            }
        }
        let _ = ev_tx.send((k, Incoming::Exited("its output ended".into())));
    });
    Ok(child)
}

/// What the event pump works with.
struct Pump {
    hooks: Arc<DeliveryHooks>,
    rec: RecorderHandle,
    origin: Instant,
    done: Arc<tokio::sync::Notify>,
    remaining: Arc<AtomicU64>,
    notices: Arc<Mutex<Vec<String>>>,
    shards: u32,
}

impl Pump {
    /// One shard's part of a broadcast (or its loss, `None`); the completion is recorded
    /// when every shard has answered.
    fn broadcast_part(&self, id: &str, shard: u32, part: Option<(u64, u64)>) {
        let Some(done) = self.hooks.broadcast_part(id, shard, part) else {
            return;
        };
        if let Some(us) = done.completion_us {
            let key =
                MetricKey::new(names::BROADCAST_COMPLETION).with_tag("journey", &done.journey);
            lock(&self.rec).record(&key, Instant::now(), us);
        }
    }

    fn finished(&self, finished: &mut [bool], k: u32) -> bool {
        let first = !std::mem::replace(&mut finished[k as usize], true);
        if first {
            self.remaining.fetch_sub(1, Ordering::AcqRel);
            self.done.notify_waiters();
        }
        first
    }
}

async fn pump(mut rx: mpsc::UnboundedReceiver<(u32, Incoming)>, p: Pump) {
    let mut finished = vec![false; p.shards as usize];
    let lost_key = MetricKey::new("swarm_shards_lost");
    while let Some((k, inc)) = rx.recv().await {
        match inc {
            Incoming::Event(Event::Up) => {}
            Incoming::Event(Event::Ready { fd_limit, devices }) => {
                tracing::info!("shard {k}: {devices} devices, open-file limit {fd_limit}");
            }
            Incoming::Event(Event::Conn { up, down }) => p.hooks.devices_changed(&up, &down),
            Incoming::Event(Event::Metrics { delta }) => {
                let (r, bad) = reports::Recorder::from_delta(p.origin, delta);
                for b in bad {
                    tracing::warn!("shard {k}: histogram of {b} did not decode");
                }
                lock(&p.rec).merge(r);
            }
            Incoming::Event(Event::BroadcastDone {
                id,
                last_ns,
                received,
            }) => p.broadcast_part(&id, k, Some((last_ns, received))),
            Incoming::Event(Event::Done) => {
                p.finished(&mut finished, k);
            }
            Incoming::Event(Event::Failed { message }) => {
                lock(&p.notices).push(format!("swarm shard {k} failed: {message}"));
            }
            Incoming::Exited(why) => {
                if p.finished(&mut finished, k) {
                    lock(&p.notices).push(format!(
                        "swarm shard {k} ended before finishing ({why}); the run goes on without its devices"
                    ));
                    lock(&p.rec).add(&lost_key, Instant::now(), 1);
                    for id in p.hooks.pending_broadcasts() {
                        p.broadcast_part(&id, k, None);
                    }
                }
            }
        }
    }
}
