//! Rooms: the gateway's long-connection side. A room listens for devices on a WebSocket port
//! (`GET /ws`) and a raw TCP port (length-prefixed frames), holds their connections, and
//! delivers the unicasts and broadcasts the center routes to it. The protocol is in
//! `testbed/PROTOCOL.md`.
//!
//! A room runs inside the gateway's process or as a process of its own (the same binary
//! re-executed, see [`run_process`] and [`RoomCommand`]), talking to the center over a
//! loopback control link (`control`). This module owns one room's registry (connections by
//! id, user and topic) and its counters; `conn` serves one connection; [`wire`] and `ws`
//! are the framings.

mod conn;
mod process;
pub mod wire;
mod ws;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use process::run_process;
pub(crate) use process::CenterLink;

use super::faults::{Faults, PushFault};
use conn::Command;
use wire::{PushFrame, Transport};

/// How the gateway runs its rooms.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomsConfig {
    /// Number of rooms; 0 runs the HTTP API alone (`/dispatch` answers 503).
    pub count: usize,
    /// Address the rooms listen on (each on two free ports).
    pub host: IpAddr,
    /// `None`: rooms run inside the gateway's process. `Some`: each room is a process started
    /// with this command (required to hold more connections than one process has files).
    pub processes: Option<RoomCommand>,
    /// Heartbeat period announced in `welcome`.
    pub heartbeat: Duration,
    /// A connection is closed with `idle` after `heartbeat × missed_heartbeats` without a frame.
    pub missed_heartbeats: u32,
    /// An unacked push is redelivered after this long.
    pub ack_timeout: Duration,
    /// Redeliveries of one push on one connection at most.
    pub max_redeliveries: u32,
    /// The first message must be a hello within this long (also bounds the WS handshake).
    pub hello_timeout: Duration,
    /// Frames a connection may have queued for its socket; a device that does not read is
    /// closed once more than this many are waiting (counted in `slow_consumer_closed`).
    pub max_queued_frames: usize,
}

impl Default for RoomsConfig {
    /// One in-process room on 127.0.0.1; heartbeat 30 s × 3, ack timeout 5 s, 3 redeliveries,
    /// hello within 10 s, at most 1024 frames queued per connection.
    fn default() -> Self {
        Self {
            count: 1,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            processes: None,
            heartbeat: Duration::from_secs(30),
            missed_heartbeats: 3,
            ack_timeout: Duration::from_secs(5),
            max_redeliveries: 3,
            hello_timeout: Duration::from_secs(10),
            max_queued_frames: 1024,
        }
    }
}

/// How to start a room process: `program args… --control ADDR --index N`, where the program,
/// given `args`, must call [`run_process`] with the arguments after them. `testbed`'s own is
/// [`RoomCommand::testbed`]; another binary that embeds the gateway adds a hidden subcommand
/// and passes its own path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the room's own (`--control`, `--index`).
    pub args: Vec<OsString>,
}

impl RoomCommand {
    /// `testbed room …` with `program` the `testbed` binary.
    pub fn testbed(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: vec!["room".into()],
        }
    }
}

/// The timing settings a room applies to each connection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct RoomSettings {
    pub heartbeat: Duration,
    pub missed_heartbeats: u32,
    pub ack_timeout: Duration,
    pub max_redeliveries: u32,
    pub hello_timeout: Duration,
    pub max_queued_frames: usize,
}

impl RoomSettings {
    pub fn from_config(config: &RoomsConfig) -> Self {
        Self {
            heartbeat: config.heartbeat,
            missed_heartbeats: config.missed_heartbeats,
            ack_timeout: config.ack_timeout,
            max_redeliveries: config.max_redeliveries,
            hello_timeout: config.hello_timeout,
            max_queued_frames: config.max_queued_frames,
        }
    }

    /// How long a connection may stay silent.
    pub fn idle_after(&self) -> Duration {
        self.heartbeat.saturating_mul(self.missed_heartbeats.max(1))
    }
}

/// One room's counters, summed over rooms in `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCounters {
    /// Device connections open now.
    pub connections: u64,
    /// Open connections whose hello was accepted (the devices online here).
    #[serde(default)]
    pub joined: u64,
    /// Push frames written, including redeliveries and injected duplicates.
    pub pushes_delivered: u64,
    /// Acks received.
    pub acks: u64,
    /// Redeliveries of unacked pushes.
    pub redelivered: u64,
    /// Deliveries dropped by the `push_drop_rate` fault.
    pub injected_push_drops: u64,
    /// Deliveries sent twice by the `push_duplicate_rate` fault.
    pub injected_push_duplicates: u64,
    /// Connections reset by the `conn_reset_rate` fault.
    pub injected_resets: u64,
    /// Hellos refused by the `refuse_rate` fault.
    pub injected_refusals: u64,
    /// Connections closed because more than `max_queued_frames` frames waited for their socket.
    #[serde(default)]
    pub slow_consumer_closed: u64,
}

impl std::ops::AddAssign for RoomCounters {
    fn add_assign(&mut self, other: Self) {
        self.connections += other.connections;
        self.joined += other.joined;
        self.pushes_delivered += other.pushes_delivered;
        self.acks += other.acks;
        self.redelivered += other.redelivered;
        self.injected_push_drops += other.injected_push_drops;
        self.injected_push_duplicates += other.injected_push_duplicates;
        self.injected_resets += other.injected_resets;
        self.injected_refusals += other.injected_refusals;
        self.slow_consumer_closed += other.slow_consumer_closed;
    }
}

/// The live counters behind [`RoomCounters`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub joined: AtomicU64,
    pub pushes_delivered: AtomicU64,
    pub acks: AtomicU64,
    pub redelivered: AtomicU64,
    pub injected_push_drops: AtomicU64,
    pub injected_push_duplicates: AtomicU64,
    pub injected_resets: AtomicU64,
    pub injected_refusals: AtomicU64,
    pub slow_consumer_closed: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> RoomCounters {
        RoomCounters {
            connections: self.connections.load(Relaxed),
            joined: self.joined.load(Relaxed),
            pushes_delivered: self.pushes_delivered.load(Relaxed),
            acks: self.acks.load(Relaxed),
            redelivered: self.redelivered.load(Relaxed),
            injected_push_drops: self.injected_push_drops.load(Relaxed),
            injected_push_duplicates: self.injected_push_duplicates.load(Relaxed),
            injected_resets: self.injected_resets.load(Relaxed),
            injected_refusals: self.injected_refusals.load(Relaxed),
            slow_consumer_closed: self.slow_consumer_closed.load(Relaxed),
        }
    }
}

/// Where a room reports who is online: straight into the center's directory, or over the
/// control link.
#[derive(Debug)]
pub(crate) enum Presence {
    /// The room runs in the gateway's process.
    Local {
        directory: Arc<super::center::Directory>,
        room: usize,
    },
    /// The room is a process of its own.
    Remote(Arc<CenterLink>),
}

/// One room: its connections and counters.
#[derive(Debug)]
pub(crate) struct Room {
    pub name: String,
    pub settings: RoomSettings,
    pub faults: Arc<Faults>,
    pub counters: Counters,
    registry: Mutex<Registry>,
    presence: Presence,
    next_conn: AtomicU64,
    stop: watch::Receiver<bool>,
}

#[derive(Debug, Default)]
struct Registry {
    conns: HashMap<u64, Entry>,
    users: HashMap<Arc<str>, Vec<u64>>,
    topics: HashMap<String, HashSet<u64>>,
}

#[derive(Debug)]
struct Entry {
    tx: mpsc::UnboundedSender<Command>,
    user: Arc<str>,
    topics: Vec<String>,
}

/// A started room: its shared state, its addresses and its stop switch.
#[derive(Debug)]
pub(crate) struct RunningRoom {
    pub room: Arc<Room>,
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
    stop: watch::Sender<bool>,
}

impl RunningRoom {
    /// Binds the room's two listeners on `host` and serves them in background tasks.
    pub async fn start(
        name: String,
        host: IpAddr,
        settings: RoomSettings,
        faults: Arc<Faults>,
        presence: Presence,
    ) -> io::Result<Self> {
        let ws_listener = TcpListener::bind((host, 0)).await?;
        let tcp_listener = TcpListener::bind((host, 0)).await?;
        let (ws, tcp) = (ws_listener.local_addr()?, tcp_listener.local_addr()?);
        let (stop_tx, stop) = watch::channel(false);
        let room = Arc::new(Room {
            name,
            settings,
            faults,
            counters: Counters::default(),
            registry: Mutex::default(),
            presence,
            next_conn: AtomicU64::new(1),
            stop,
        });
        tokio::spawn(accept(Arc::clone(&room), ws_listener, Transport::Ws));
        tokio::spawn(accept(Arc::clone(&room), tcp_listener, Transport::Tcp));
        tokio::spawn(reset_connections(Arc::clone(&room)));
        tracing::info!(room = %room.name, %ws, %tcp, "room listening");
        Ok(Self {
            room,
            ws,
            tcp,
            stop: stop_tx,
        })
    }

    /// Stops accepting and closes every connection with `shutdown`.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for RunningRoom {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Accepts connections until the room stops; each one gets its own task.
async fn accept(room: Arc<Room>, listener: TcpListener, transport: Transport) {
    let mut stop = room.stop.clone();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(conn::serve(Arc::clone(&room), stream, transport));
                }
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, room = %room.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// Once a second, resets each connection with probability `conn_reset_rate`.
async fn reset_connections(room: Arc<Room>) {
    let mut stop = room.stop.clone();
    let second = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let rate = room.faults.current().conn_reset_rate;
        if rate <= 0.0 {
            continue;
        }
        let registry = room.registry();
        for entry in registry.conns.values() {
            if fastrand::f64() < rate {
                let _ = entry.tx.send(Command::Reset);
            }
        }
    }
}

impl Room {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        common::sync::lock(&self.registry)
    }

    /// Registers an accepted hello and reports the user online; returns the connection's id.
    pub async fn join(
        &self,
        user: String,
        topics: Vec<String>,
        tx: mpsc::UnboundedSender<Command>,
    ) -> u64 {
        let id = self.next_conn.fetch_add(1, Relaxed);
        let user: Arc<str> = user.into();
        let mut unique = Vec::with_capacity(topics.len());
        for topic in topics {
            if !unique.contains(&topic) {
                unique.push(topic);
            }
        }
        {
            let mut registry = self.registry();
            registry
                .users
                .entry(Arc::clone(&user))
                .or_default()
                .push(id);
            for topic in &unique {
                registry.topics.entry(topic.clone()).or_default().insert(id);
            }
            registry.conns.insert(
                id,
                Entry {
                    tx,
                    user: Arc::clone(&user),
                    topics: unique.clone(),
                },
            );
            self.counters.joined.fetch_add(1, Relaxed);
        }
        match &self.presence {
            Presence::Local { directory, room } => directory.online(*room, &user, &unique),
            Presence::Remote(link) => link.online(&user, &unique).await,
        }
        id
    }

    /// Forgets a connection and reports the user offline on it.
    pub fn leave(&self, id: u64) {
        let Some(entry) = ({
            let mut registry = self.registry();
            let entry = registry.conns.remove(&id);
            if let Some(entry) = &entry {
                self.counters.joined.fetch_sub(1, Relaxed);
                if let Some(ids) = registry.users.get_mut(&entry.user) {
                    ids.retain(|other| *other != id);
                    if ids.is_empty() {
                        registry.users.remove(&entry.user);
                    }
                }
                for topic in &entry.topics {
                    if let Some(ids) = registry.topics.get_mut(topic) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            registry.topics.remove(topic);
                        }
                    }
                }
            }
            entry
        }) else {
            return;
        };
        match &self.presence {
            Presence::Local { directory, room } => {
                directory.offline(*room, &entry.user, &entry.topics)
            }
            Presence::Remote(link) => link.offline(&entry.user, &entry.topics),
        }
    }

    /// Adds topics to a connection; returns all its topics now.
    pub fn subscribe(&self, id: u64, topics: Vec<String>) -> Vec<String> {
        let (added, all) = {
            let mut registry = self.registry();
            let Registry {
                conns,
                topics: by_topic,
                ..
            } = &mut *registry;
            let Some(entry) = conns.get_mut(&id) else {
                return Vec::new();
            };
            let mut added = Vec::new();
            for topic in topics {
                if !entry.topics.contains(&topic) {
                    by_topic.entry(topic.clone()).or_default().insert(id);
                    entry.topics.push(topic.clone());
                    added.push(topic);
                }
            }
            (added, entry.topics.clone())
        };
        if !added.is_empty() {
            match &self.presence {
                Presence::Local { directory, room } => directory.subscribed(*room, &added),
                Presence::Remote(link) => link.subscribed(&added),
            }
        }
        all
    }

    /// Delivers a push to every connection of `user` here; returns how many.
    pub fn unicast(&self, user: &str, frame: &Arc<PushFrame>) -> usize {
        let config = self.faults.current();
        let registry = self.registry();
        let Some(ids) = registry.users.get(user) else {
            return 0;
        };
        for id in ids {
            if let Some(entry) = registry.conns.get(id) {
                self.send_push(entry, frame, PushFault::roll(&config));
            }
        }
        ids.len()
    }

    /// Delivers a push to every connection here subscribed to `topic`, or to all when there is
    /// no topic; returns how many.
    pub fn broadcast(&self, topic: Option<&str>, frame: &Arc<PushFrame>) -> usize {
        let config = self.faults.current();
        let registry = self.registry();
        match topic {
            None => {
                for entry in registry.conns.values() {
                    self.send_push(entry, frame, PushFault::roll(&config));
                }
                registry.conns.len()
            }
            Some(topic) => {
                let Some(ids) = registry.topics.get(topic) else {
                    return 0;
                };
                for id in ids {
                    if let Some(entry) = registry.conns.get(id) {
                        self.send_push(entry, frame, PushFault::roll(&config));
                    }
                }
                ids.len()
            }
        }
    }

    fn send_push(&self, entry: &Entry, frame: &Arc<PushFrame>, fault: PushFault) {
        if fault.drop {
            self.counters.injected_push_drops.fetch_add(1, Relaxed);
            return;
        }
        let _ = entry.tx.send(Command::Push(Arc::clone(frame), fault));
    }
}
