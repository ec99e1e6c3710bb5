//! The center: knows which rooms exist and which users are online in which room (the
//! [`Directory`]), answers the dispatcher, routes a unicast to the rooms holding the user and
//! fans a broadcast out to every room. Rooms run in this process or as room processes started
//! here and driven over the control link.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::control::{self, ToCenter, ToRoom};
use super::faults::{FaultConfig, Faults};
use super::room::wire::{PushFrame, PushSpec};
use super::room::{Presence, RoomCommand, RoomCounters, RoomSettings, RoomsConfig, RunningRoom};

/// How long room processes have to start and report their addresses.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `/stats` waits for a room process's counters before using its last report.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a room listens, as the dispatcher hands it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomAddr {
    /// The room's name (`room-0`, `room-1`, …).
    pub name: String,
    /// The WebSocket listener (`ws://ADDR/ws`).
    pub ws: SocketAddr,
    /// The raw TCP listener.
    pub tcp: SocketAddr,
}

/// Who is online where: per user, the rooms holding their connections; per topic and room,
/// the number of subscribed connections.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    inner: Mutex<DirectoryInner>,
}

#[derive(Debug, Default)]
struct DirectoryInner {
    /// User → (room, connections there).
    users: HashMap<String, Vec<(usize, u64)>>,
    /// Topic → room → subscribed connections.
    topics: HashMap<String, HashMap<usize, u64>>,
    /// Room → connections that said hello.
    connections: HashMap<usize, u64>,
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, DirectoryInner> {
        common::sync::lock(&self.inner)
    }

    /// A connection of `user` in `room` said hello with `topics`.
    pub fn online(&self, room: usize, user: &str, topics: &[String]) {
        let mut inner = self.lock();
        let rooms = inner.users.entry(user.to_owned()).or_default();
        match rooms.iter_mut().find(|(r, _)| *r == room) {
            Some((_, n)) => *n += 1,
            None => rooms.push((room, 1)),
        }
        *inner.connections.entry(room).or_default() += 1;
        add_topics(&mut inner, room, topics);
    }

    /// A connection of `user` in `room`, subscribed to `topics`, closed.
    pub fn offline(&self, room: usize, user: &str, topics: &[String]) {
        let mut inner = self.lock();
        if let Some(rooms) = inner.users.get_mut(user) {
            if let Some(i) = rooms.iter().position(|(r, _)| *r == room) {
                rooms[i].1 -= 1;
                if rooms[i].1 == 0 {
                    rooms.swap_remove(i);
                }
            }
            if rooms.is_empty() {
                inner.users.remove(user);
            }
        }
        if let Some(n) = inner.connections.get_mut(&room) {
            *n = n.saturating_sub(1);
        }
        for topic in topics {
            if let Some(per_room) = inner.topics.get_mut(topic) {
                if let Some(n) = per_room.get_mut(&room) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    /// A connection in `room` added `topics`.
    pub fn subscribed(&self, room: usize, topics: &[String]) {
        add_topics(&mut self.lock(), room, topics);
    }

    /// Forgets everything about a room whose process is gone.
    fn forget_room(&self, room: usize) {
        let mut inner = self.lock();
        inner.users.retain(|_, rooms| {
            rooms.retain(|(r, _)| *r != room);
            !rooms.is_empty()
        });
        for per_room in inner.topics.values_mut() {
            per_room.remove(&room);
        }
        inner.connections.remove(&room);
    }

    /// The rooms holding connections of `user`, with the number of connections in all.
    fn rooms_of(&self, user: &str) -> (Vec<usize>, usize) {
        let inner = self.lock();
        let Some(rooms) = inner.users.get(user) else {
            return (Vec::new(), 0);
        };
        let total = rooms.iter().map(|(_, n)| *n as usize).sum();
        (rooms.iter().map(|(r, _)| *r).collect(), total)
    }

    /// Connections a broadcast to `topic` (or to all) reaches.
    fn recipients(&self, topic: Option<&str>) -> u64 {
        let inner = self.lock();
        match topic {
            None => inner.connections.values().sum(),
            Some(topic) => inner.topics.get(topic).map_or(0, |r| r.values().sum()),
        }
    }
}

fn add_topics(inner: &mut DirectoryInner, room: usize, topics: &[String]) {
    for topic in topics {
        *inner
            .topics
            .entry(topic.clone())
            .or_default()
            .entry(room)
            .or_default() += 1;
    }
}

/// The rooms and the directory.
#[derive(Debug)]
pub(crate) struct Center {
    directory: Arc<Directory>,
    rooms: Vec<RoomLink>,
}

#[derive(Debug)]
enum RoomLink {
    Local(RunningRoom),
    Remote(Box<RemoteRoom>),
}

/// A room process seen from the center.
#[derive(Debug)]
struct RemoteRoom {
    addr: RoomAddr,
    out: mpsc::UnboundedSender<Bytes>,
    shared: Arc<RemoteShared>,
    /// Killed when the center is dropped; taken by [`Center::shutdown`].
    child: Mutex<Option<tokio::process::Child>>,
}

#[derive(Debug, Default)]
struct RemoteShared {
    alive: AtomicBool,
    /// Set by [`Center::shutdown`]: the link closing is then expected.
    closing: AtomicBool,
    next_seq: AtomicU64,
    stats_waiters: Mutex<HashMap<u64, oneshot::Sender<RoomCounters>>>,
    last: Mutex<RoomCounters>,
}

impl Center {
    /// Starts the configured rooms.
    pub async fn start(config: &RoomsConfig, faults: &Arc<Faults>) -> io::Result<Self> {
        let directory = Arc::new(Directory::default());
        let settings = RoomSettings::from_config(config);
        let mut rooms = Vec::with_capacity(config.count);
        match &config.processes {
            None => {
                for index in 0..config.count {
                    let presence = Presence::Local {
                        directory: Arc::clone(&directory),
                        room: index,
                    };
                    let room = RunningRoom::start(
                        room_name(index),
                        config.host,
                        settings,
                        Arc::clone(faults),
                        presence,
                    )
                    .await?;
                    rooms.push(RoomLink::Local(room));
                }
            }
            Some(command) => {
                let started =
                    start_processes(command, config, settings, faults.current(), &directory);
                let remote = tokio::time::timeout(START_TIMEOUT, started)
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("room processes did not start within {START_TIMEOUT:?}"),
                        )
                    })??;
                rooms.extend(remote.into_iter().map(|r| RoomLink::Remote(Box::new(r))));
            }
        }
        Ok(Self { directory, rooms })
    }

    /// Every room's addresses, in index order.
    pub fn room_addrs(&self) -> Vec<RoomAddr> {
        self.rooms.iter().map(RoomLink::addr).collect()
    }

    /// The room for `user`: stable while the room set does not change; a room whose process is
    /// gone is skipped. `None` when no room runs.
    pub fn dispatch(&self, user: &str) -> Option<RoomAddr> {
        let count = self.rooms.len();
        if count == 0 {
            return None;
        }
        let start = (fnv1a(user.as_bytes()) % count as u64) as usize;
        (0..count)
            .map(|k| &self.rooms[(start + k) % count])
            .find(|room| room.alive())
            .map(RoomLink::addr)
    }

    /// Delivers a unicast to every connection of `user`; returns how many connections.
    pub fn unicast(&self, user: &str, spec: PushSpec<'_>) -> usize {
        let (rooms, connections) = self.directory.rooms_of(user);
        if rooms.is_empty() {
            return 0;
        }
        let payload = spec.payload();
        let mut frame = None;
        for index in rooms {
            match &self.rooms[index] {
                RoomLink::Local(room) => {
                    let frame = frame
                        .get_or_insert_with(|| Arc::new(PushFrame::new(spec.id, payload.clone())));
                    room.room.unicast(user, frame);
                }
                RoomLink::Remote(room) => room.send(
                    &ToRoom::Unicast {
                        user: user.to_owned(),
                        id: spec.id.to_owned(),
                    },
                    &payload,
                ),
            }
        }
        connections
    }

    /// Fans a broadcast out to every room; returns how many connections it reaches.
    pub fn broadcast(&self, topic: Option<&str>, spec: PushSpec<'_>) -> u64 {
        let recipients = self.directory.recipients(topic);
        if self.rooms.is_empty() {
            return 0;
        }
        let payload = spec.payload();
        let mut frame = None;
        let mut remote_header = None;
        for link in &self.rooms {
            match link {
                RoomLink::Local(room) => {
                    let frame = frame
                        .get_or_insert_with(|| Arc::new(PushFrame::new(spec.id, payload.clone())));
                    room.room.broadcast(topic, frame);
                }
                RoomLink::Remote(room) => {
                    // One encoding of header and payload for every room process.
                    let bytes = remote_header.get_or_insert_with(|| {
                        control::encode(
                            &ToRoom::Broadcast {
                                topic: topic.map(str::to_owned),
                                id: spec.id.to_owned(),
                            },
                            &payload,
                        )
                    });
                    let _ = room.out.send(bytes.clone());
                }
            }
        }
        recipients
    }

    /// Sends new faults to the room processes (in-process rooms share the gateway's).
    pub fn set_faults(&self, faults: FaultConfig) {
        for link in &self.rooms {
            if let RoomLink::Remote(room) = link {
                room.send(&ToRoom::Faults { faults }, &[]);
            }
        }
    }

    /// The rooms' counters summed, asking each room process for fresh ones.
    pub async fn counters(&self) -> RoomCounters {
        let mut sum = RoomCounters::default();
        let mut waiting = Vec::new();
        for link in &self.rooms {
            match link {
                RoomLink::Local(room) => sum += room.room.counters.snapshot(),
                RoomLink::Remote(room) => waiting.push((room, room.request_stats())),
            }
        }
        for (room, answer) in waiting {
            sum += match tokio::time::timeout(STATS_TIMEOUT, answer).await {
                Ok(Ok(counters)) => counters,
                _ => room.shared.last_counters(),
            };
        }
        sum
    }

    /// The rooms' counters summed, using each room process's last report (at most ~250 ms
    /// old).
    pub fn counters_now(&self) -> RoomCounters {
        let mut sum = RoomCounters::default();
        for link in &self.rooms {
            sum += match link {
                RoomLink::Local(room) => room.room.counters.snapshot(),
                RoomLink::Remote(room) => room.shared.last_counters(),
            };
        }
        sum
    }

    /// The number of rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Stops the in-process rooms (closing their connections with `shutdown`) and closes the
    /// control links, which makes room processes do the same and exit.
    pub async fn shutdown(&self) {
        let mut children = Vec::new();
        for link in &self.rooms {
            match link {
                RoomLink::Local(room) => room.stop(),
                RoomLink::Remote(room) => {
                    room.shared.closing.store(true, Relaxed);
                    room.send(&ToRoom::Shutdown, &[]);
                    let child = common::sync::lock(&room.child).take();
                    children.extend(child);
                }
            }
        }
        for mut child in children {
            if tokio::time::timeout(Duration::from_secs(3), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

impl RoomLink {
    fn addr(&self) -> RoomAddr {
        match self {
            RoomLink::Local(room) => RoomAddr {
                name: room.room.name.clone(),
                ws: room.ws,
                tcp: room.tcp,
            },
            RoomLink::Remote(room) => room.addr.clone(),
        }
    }

    fn alive(&self) -> bool {
        match self {
            RoomLink::Local(_) => true,
            RoomLink::Remote(room) => room.shared.alive.load(Relaxed),
        }
    }
}

impl RemoteRoom {
    fn send(&self, header: &ToRoom, payload: &[u8]) {
        let _ = self.out.send(control::encode(header, payload));
    }

    fn request_stats(&self) -> oneshot::Receiver<RoomCounters> {
        let seq = self.shared.next_seq.fetch_add(1, Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        common::sync::lock(&self.shared.stats_waiters).insert(seq, tx);
        self.send(&ToRoom::Stats { seq }, &[]);
        rx
    }
}

impl RemoteShared {
    fn last_counters(&self) -> RoomCounters {
        *common::sync::lock(&self.last)
    }
}

fn room_name(index: usize) -> String {
    format!("room-{index}")
}

/// FNV-1a: a hash that is the same in every process and run, unlike `RandomState`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Starts `config.count` room processes and waits until each listens.
async fn start_processes(
    command: &RoomCommand,
    config: &RoomsConfig,
    settings: RoomSettings,
    faults: FaultConfig,
    directory: &Arc<Directory>,
) -> io::Result<Vec<RemoteRoom>> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let control_addr = listener.local_addr()?;
    let mut children = HashMap::new();
    for index in 0..config.count {
        let child = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .arg("--control")
            .arg(control_addr.to_string())
            .arg("--index")
            .arg(index.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot start room process {}: {e}",
                        command.program.display()
                    ),
                )
            })?;
        children.insert(index, child);
    }
    let mut rooms: Vec<Option<RemoteRoom>> = (0..config.count).map(|_| None).collect();
    for _ in 0..config.count {
        let (mut stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let Some((ToCenter::Hello { index }, _)) = control::read(&mut stream).await? else {
            return Err(protocol_error("a room process did not start with hello"));
        };
        let child = children
            .remove(&index)
            .ok_or_else(|| protocol_error("a room process announced an unknown index"))?;
        let name = room_name(index);
        control::write(
            &mut stream,
            &ToRoom::Config {
                name: name.clone(),
                host: config.host,
                settings,
                faults,
            },
            &[],
        )
        .await?;
        let Some((ToCenter::Ready { ws, tcp }, _)) = control::read(&mut stream).await? else {
            return Err(protocol_error(&format!(
                "room process {index} did not report ready"
            )));
        };
        let shared = Arc::new(RemoteShared {
            alive: AtomicBool::new(true),
            ..RemoteShared::default()
        });
        let (out, out_rx) = mpsc::unbounded_channel();
        let (reader, writer) = stream.into_split();
        tokio::spawn(write_control(writer, out_rx));
        tokio::spawn(read_control(
            reader,
            index,
            out.clone(),
            Arc::clone(&shared),
            Arc::clone(directory),
        ));
        rooms[index] = Some(RemoteRoom {
            addr: RoomAddr { name, ws, tcp },
            out,
            shared,
            child: Mutex::new(Some(child)),
        });
    }
    Ok(rooms.into_iter().flatten().collect())
}

fn protocol_error(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

async fn write_control(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) {
    use tokio::io::AsyncWriteExt;
    if control::write_frames(&mut writer, &mut frames)
        .await
        .is_ok()
    {
        let _ = writer.shutdown().await;
    }
}

/// Applies a room process's reports until its link closes, then forgets the room.
async fn read_control(
    reader: tokio::net::tcp::OwnedReadHalf,
    index: usize,
    out: mpsc::UnboundedSender<Bytes>,
    shared: Arc<RemoteShared>,
    directory: Arc<Directory>,
) {
    let mut reader = tokio::io::BufReader::with_capacity(control::READ_BUFFER, reader);
    loop {
        let frame: io::Result<Option<(ToCenter, Bytes)>> = control::read(&mut reader).await;
        let message = match frame {
            Ok(Some((message, _))) => message,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, room = index, "bad control frame from a room process");
                break;
            }
        };
        match message {
            ToCenter::Online { seq, user, topics } => {
                directory.online(index, &user, &topics);
                let _ = out.send(control::encode(&ToRoom::Online { seq }, &[]));
            }
            ToCenter::Offline { user, topics } => directory.offline(index, &user, &topics),
            ToCenter::Subscribed { topics } => directory.subscribed(index, &topics),
            ToCenter::Stats { seq, counters } => {
                *common::sync::lock(&shared.last) = counters;
                let waiter = common::sync::lock(&shared.stats_waiters).remove(&seq);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(counters);
                }
            }
            ToCenter::Hello { .. } | ToCenter::Ready { .. } => {}
        }
    }
    shared.alive.store(false, Relaxed);
    directory.forget_room(index);
    if !shared.closing.load(Relaxed) {
        tracing::warn!(
            room = index,
            "room process link closed; its devices are gone"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_counts_users_topics_and_forgets_rooms() {
        let directory = Directory::default();
        let news = vec!["news".to_owned()];
        directory.online(0, "u1", &news);
        directory.online(1, "u1", &[]);
        directory.online(1, "u2", &news);
        assert_eq!(directory.rooms_of("u1"), (vec![0, 1], 2));
        assert_eq!(directory.recipients(Some("news")), 2);
        assert_eq!(directory.recipients(None), 3);
        directory.offline(0, "u1", &news);
        assert_eq!(directory.rooms_of("u1"), (vec![1], 1));
        directory.forget_room(1);
        assert_eq!(directory.rooms_of("u1"), (vec![], 0));
        assert_eq!(directory.recipients(None), 0);
    }

    #[test]
    fn fnv1a_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
