//! The coordinating side of the swarm, in the `loadgen run` process: starts the shards
//! (in-process, or `loadgen __shard` child processes), gives senders their delivery helpers
//! ([`DeliveryHooks`]: `{{msg_id}}`, `{{random_device}}`, `track:`), routes tracking records
//! to the shards that own the recipients, merges the shards' metrics into the run, and at the
//! end waits out the delivery deadlines before stopping the shards.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sync::lock;
use reports::MetricKey;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::control::{Command, Event, ShardPlan, Target, TrackMsg};
use super::script::names;
use super::shard::unix_ns;
use crate::collect::{RecorderHandle, Recorders};

/// What reaches the coordinator from a shard.
#[derive(Debug)]
enum Incoming {
    Event(Event),
    /// The shard process ended (its status), or its in-process task returned.
    Exited(String),
}

#[derive(Debug, Default)]
struct Connected {
    list: Vec<u32>,
    pos: HashMap<u32, usize>,
}

impl Connected {
    fn up(&mut self, g: u32) {
        if !self.pos.contains_key(&g) {
            self.pos.insert(g, self.list.len());
            self.list.push(g);
        }
    }
    fn down(&mut self, g: u32) {
        if let Some(i) = self.pos.remove(&g) {
            self.list.swap_remove(i);
            if let Some(moved) = self.list.get(i) {
                self.pos.insert(*moved, i);
            }
        }
    }
}

#[derive(Debug)]
struct BroadcastWait {
    journey: String,
    sent_ns: u64,
    /// Shards that have not answered yet.
    waiting: Vec<u32>,
    last_ns: u64,
    received: u64,
}

/// The senders' side of delivery tracking.
#[derive(Debug)]
pub struct DeliveryHooks {
    tag: String,
    counter: AtomicU64,
    users: Vec<String>,
    by_user: HashMap<String, Vec<u32>>,
    shards: u32,
    links: Vec<mpsc::UnboundedSender<Command>>,
    connected: Mutex<Connected>,
    broadcasts: Mutex<HashMap<String, BroadcastWait>>,
    max_deadline_ns: AtomicU64,
}

impl DeliveryHooks {
    /// A message id unique in this run (`{{msg_id}}`).
    pub fn next_msg_id(&self) -> String {
        format!(
            "{}-{}",
            self.tag,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The user of a device connected now, chosen at random (`{{random_device}}`).
    pub fn random_device(&self) -> Option<String> {
        let c = lock(&self.connected);
        if c.list.is_empty() {
            return None;
        }
        let g = c.list[fastrand::usize(..c.list.len())];
        self.users.get(g as usize).cloned()
    }

    /// Devices connected now.
    pub fn connected(&self) -> usize {
        lock(&self.connected).list.len()
    }

    /// Registers a send that succeeded: its recipients must get `id` within `within`.
    pub fn track(&self, journey: &str, target: Target, id: String, sent_ns: u64, within: Duration) {
        let deadline_ns = sent_ns + within.as_nanos() as u64;
        self.max_deadline_ns
            .fetch_max(deadline_ns, Ordering::Relaxed);
        let msg = TrackMsg {
            id,
            journey: journey.to_string(),
            target,
            sent_ns,
            deadline_ns,
        };
        let shards: Vec<u32> = match &msg.target {
            Target::Unicast { user } => {
                let mut s: Vec<u32> = self
                    .by_user
                    .get(user)
                    .into_iter()
                    .flatten()
                    .map(|g| g % self.shards)
                    .collect();
                s.sort_unstable();
                s.dedup();
                s
            }
            _ => {
                lock(&self.broadcasts).insert(
                    msg.id.clone(),
                    BroadcastWait {
                        journey: msg.journey.clone(),
                        sent_ns,
                        waiting: (0..self.shards).collect(),
                        last_ns: 0,
                        received: 0,
                    },
                );
                (0..self.shards).collect()
            }
        };
        for k in shards {
            if let Some(link) = self.links.get(k as usize) {
                let _ = link.send(Command::Track(msg.clone()));
            }
        }
    }
}

/// A running swarm.
#[derive(Debug)]
pub struct Swarm {
    hooks: Arc<DeliveryHooks>,
    pump: tokio::task::JoinHandle<()>,
    done: Arc<tokio::sync::Notify>,
    remaining: Arc<AtomicU64>,
    children: Vec<tokio::process::Child>,
}

/// How to start the swarm.
#[derive(Debug)]
pub struct SwarmSetup {
    /// The scenario file and its text.
    pub scenario_path: String,
    /// Its text.
    pub scenario_text: String,
    /// The run's bound.
    pub duration: Duration,
    /// `{{base_url}}`.
    pub base_url: String,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Source addresses.
    pub sources: u32,
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
    pub async fn launch(shards: u32) -> Result<Launched, String> {
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
                    Ok(Some((k, Incoming::Exited(why)))) => {
                        return Err(format!("swarm shard {k} did not start ({why})"))
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        return Err("swarm shards did not start within 60s".to_string())
                    }
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
        scripts: &[super::script::Script],
        recorders: Arc<Recorders>,
    ) -> Swarm {
        let origin = recorders.origin();
        let origin_unix_ns = unix_ns().saturating_sub(origin.elapsed().as_nanos() as u64);
        let users = super::script::all_users(scripts, &setup.base_url);
        let mut by_user: HashMap<String, Vec<u32>> = HashMap::new();
        for (g, u) in users.iter().enumerate() {
            by_user.entry(u.clone()).or_default().push(g as u32);
        }
        let n = self.shards;
        let sources: Vec<std::net::Ipv4Addr> =
            (0..setup.sources).map(super::net::source_address).collect();
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
        let hooks = Arc::new(DeliveryHooks {
            tag: format!("m{:06x}", fastrand::u32(..0xff_ffff)),
            counter: AtomicU64::new(0),
            users,
            by_user,
            shards: n,
            links: self.links,
            connected: Mutex::new(Connected::default()),
            broadcasts: Mutex::new(HashMap::new()),
            max_deadline_ns: AtomicU64::new(0),
        });
        let done = Arc::new(tokio::sync::Notify::new());
        let remaining = Arc::new(AtomicU64::new(u64::from(n)));
        drop(self.ev_tx);
        let pump = tokio::spawn(pump(
            self.ev_rx,
            hooks.clone(),
            recorders.handle(),
            origin,
            done.clone(),
            remaining.clone(),
        ));
        Swarm {
            hooks,
            pump,
            done,
            remaining,
            children: self.children,
        }
    }
}

impl Swarm {
    /// The senders' delivery helpers.
    pub fn hooks(&self) -> Arc<DeliveryHooks> {
        self.hooks.clone()
    }

    /// Ends the swarm: waits for the tracked pushes' deadlines (at most `max_wait`), stops
    /// the shards and waits for their last metrics.
    pub async fn finish(mut self, max_wait: Duration) {
        let deadline = self.hooks.max_deadline_ns.load(Ordering::Relaxed);
        let now = unix_ns();
        if deadline > now {
            // One settle tick after the last deadline.
            let wait = Duration::from_nanos(deadline - now) + Duration::from_millis(200);
            tokio::time::sleep(wait.min(max_wait)).await;
        }
        for link in &self.hooks.links {
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
    }
}

fn spawn_child(
    k: u32,
    mut rx: mpsc::UnboundedReceiver<Command>,
    ev_tx: mpsc::UnboundedSender<(u32, Incoming)>,
) -> Result<tokio::process::Child, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("swarm: cannot find the loadgen executable: {e}"))?;
    let mut child = tokio::process::Command::new(&exe)
        .arg("__shard")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("swarm: cannot start shard process {}: {e}", exe.display()))?;
    let mut stdin = child.stdin.take().ok_or("swarm: shard stdin")?;
    let stdout = child.stdout.take().ok_or("swarm: shard stdout")?;
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

async fn pump(
    mut rx: mpsc::UnboundedReceiver<(u32, Incoming)>,
    hooks: Arc<DeliveryHooks>,
    rec: RecorderHandle,
    origin: Instant,
    done: Arc<tokio::sync::Notify>,
    remaining: Arc<AtomicU64>,
) {
    let mut finished = vec![false; hooks.shards as usize];
    let lost_key = MetricKey::new("swarm_shards_lost");
    while let Some((k, inc)) = rx.recv().await {
        match inc {
            Incoming::Event(Event::Up) => {}
            Incoming::Event(Event::Ready { fd_limit, devices }) => {
                tracing::info!("shard {k}: {devices} devices, open-file limit {fd_limit}");
            }
            Incoming::Event(Event::Conn { up, down }) => {
                let mut c = lock(&hooks.connected);
                for g in down {
                    c.down(g);
                }
                for g in up {
                    c.up(g);
                }
            }
            Incoming::Event(Event::Metrics { delta }) => {
                let (r, bad) = reports::Recorder::from_delta(origin, delta);
                for b in bad {
                    tracing::warn!("shard {k}: histogram of {b} did not decode");
                }
                common::sync::lock(&rec).merge(r);
            }
            Incoming::Event(Event::BroadcastDone {
                id,
                last_ns,
                received,
            }) => settle_broadcast(&hooks, &rec, &id, k, Some((last_ns, received))),
            Incoming::Event(Event::Done) => {
                if !std::mem::replace(&mut finished[k as usize], true) {
                    remaining.fetch_sub(1, Ordering::AcqRel);
                    done.notify_waiters();
                }
            }
            Incoming::Event(Event::Failed { message }) => {
                eprintln!("swarm shard {k} failed: {message}");
            }
            Incoming::Exited(why) => {
                if !std::mem::replace(&mut finished[k as usize], true) {
                    eprintln!("swarm shard {k} ended before finishing ({why}); the run goes on without its devices");
                    common::sync::lock(&rec).add(&lost_key, Instant::now(), 1);
                    let ids: Vec<String> = lock(&hooks.broadcasts).keys().cloned().collect();
                    for id in ids {
                        settle_broadcast(&hooks, &rec, &id, k, None);
                    }
                    remaining.fetch_sub(1, Ordering::AcqRel);
                    done.notify_waiters();
                }
            }
        }
    }
}

/// One shard's part of a broadcast (or its loss, `None`); when every shard has answered, the
/// completion time (last receipt − send) is recorded.
fn settle_broadcast(
    hooks: &DeliveryHooks,
    rec: &RecorderHandle,
    id: &str,
    shard: u32,
    part: Option<(u64, u64)>,
) {
    let mut b = lock(&hooks.broadcasts);
    let Some(w) = b.get_mut(id) else { return };
    let Some(i) = w.waiting.iter().position(|s| *s == shard) else {
        return;
    };
    w.waiting.swap_remove(i);
    if let Some((last, received)) = part {
        w.last_ns = w.last_ns.max(last);
        w.received += received;
    }
    if w.waiting.is_empty() {
        if let Some(w) = b.remove(id) {
            if w.received > 0 && w.last_ns >= w.sent_ns {
                let key =
                    MetricKey::new(names::BROADCAST_COMPLETION).with_tag("journey", &w.journey);
                common::sync::lock(rec).record(
                    &key,
                    Instant::now(),
                    (w.last_ns - w.sent_ns) / 1_000,
                );
            }
        }
    }
}
