//! The gateway's in-memory truth: devices, each user's device list, topic subscriptions and
//! counters.
//!
//! Maps are split into shards, each behind its own `RwLock` that is held only for a map
//! operation (never across an await), so requests on different keys rarely meet. Counters are
//! atomics.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::room::RoomCounters;

/// Counters of one gateway, as served by `GET /stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Devices registered now.
    pub devices: u64,
    /// Users with at least one device now.
    pub users: u64,
    /// Pushes accepted (`202` from `POST /push`).
    pub pushes: u64,
    /// Broadcasts accepted (`202` from `POST /broadcast`).
    pub broadcasts: u64,
    /// HTTP requests received, on every route, including injected errors.
    pub requests: u64,
    /// Requests answered with an injected error.
    pub injected_errors: u64,
    /// Device connections open now, in all rooms.
    pub connections: u64,
    /// Open device connections whose hello was accepted, in all rooms.
    #[serde(default)]
    pub joined: u64,
    /// Push frames written to devices, including redeliveries and injected duplicates.
    pub pushes_delivered: u64,
    /// Acks received from devices.
    pub acks: u64,
    /// Redeliveries of pushes not acked within the ack timeout.
    pub redelivered: u64,
    /// (push, connection) deliveries dropped by the `push_drop_rate` fault.
    pub injected_push_drops: u64,
    /// Deliveries sent twice by the `push_duplicate_rate` fault.
    pub injected_push_duplicates: u64,
    /// Connections reset by the `conn_reset_rate` fault.
    pub injected_resets: u64,
    /// Hellos refused by the `refuse_rate` fault.
    pub injected_refusals: u64,
    /// Device connections closed for not reading: more than `max_queued_frames` frames
    /// waited for their socket.
    #[serde(default)]
    pub slow_consumer_closed: u64,
    /// Rooms running.
    pub rooms: u64,
}

impl Stats {
    /// Adds the rooms' counters to the HTTP side's.
    pub(crate) fn with_rooms(mut self, counters: RoomCounters, rooms: usize) -> Self {
        self.connections = counters.connections;
        self.joined = counters.joined;
        self.pushes_delivered = counters.pushes_delivered;
        self.acks = counters.acks;
        self.redelivered = counters.redelivered;
        self.injected_push_drops = counters.injected_push_drops;
        self.injected_push_duplicates = counters.injected_push_duplicates;
        self.injected_resets = counters.injected_resets;
        self.injected_refusals = counters.injected_refusals;
        self.slow_consumer_closed = counters.slow_consumer_closed;
        self.rooms = rooms as u64;
        self
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Device {
    pub device_id: String,
    pub user: String,
    pub topics: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// What a client gives to register a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NewDevice {
    pub user: String,
    pub topics: Vec<String>,
    pub platform: Option<String>,
    pub token: Option<String>,
}

/// Devices, users, topics and counters of one gateway.
#[derive(Debug, Default)]
pub(crate) struct State {
    devices: Sharded<String, Arc<Device>>,
    /// User → ids of that user's devices, in registration order.
    users: Sharded<String, Vec<String>>,
    /// Topic → ids of the devices subscribed to it.
    topics: Sharded<String, HashSet<String>>,
    device_count: AtomicU64,
    user_count: AtomicU64,
    pushes: AtomicU64,
    broadcasts: AtomicU64,
    requests: AtomicU64,
    injected_errors: AtomicU64,
}

impl State {
    /// Registers a device under a fresh id; duplicate topics are kept once.
    pub fn register(&self, new: NewDevice) -> Arc<Device> {
        let mut topics = Vec::with_capacity(new.topics.len());
        for topic in new.topics {
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        let device = Arc::new(Device {
            device_id: uuid::Uuid::new_v4().to_string(),
            user: new.user,
            topics,
            platform: new.platform,
            token: new.token,
        });
        let id = &device.device_id;
        self.devices
            .write(id, |map| map.insert(id.clone(), Arc::clone(&device)));
        self.device_count.fetch_add(1, Relaxed);
        self.users.write(&device.user, |map| {
            let devices = map.entry(device.user.clone()).or_default();
            if devices.is_empty() {
                self.user_count.fetch_add(1, Relaxed);
            }
            devices.push(id.clone());
        });
        for topic in &device.topics {
            self.topics.write(topic, |map| {
                map.entry(topic.clone()).or_default().insert(id.clone())
            });
        }
        device
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<Arc<Device>> {
        self.devices.read(id, |map| map.get(id).cloned())
    }

    /// Removes a device from the registry, its user and its topics.
    pub fn remove(&self, id: &str) -> Option<Arc<Device>> {
        let device = self.devices.write(id, |map| map.remove(id))?;
        self.device_count.fetch_sub(1, Relaxed);
        self.users.write(&device.user, |map| {
            if let Entry::Occupied(mut entry) = map.entry(device.user.clone()) {
                entry.get_mut().retain(|other| other != id);
                if entry.get().is_empty() {
                    entry.remove();
                    self.user_count.fetch_sub(1, Relaxed);
                }
            }
        });
        for topic in &device.topics {
            self.topics.write(topic, |map| {
                if let Entry::Occupied(mut entry) = map.entry(topic.clone()) {
                    entry.get_mut().remove(id);
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                }
            });
        }
        Some(device)
    }

    /// The number of devices registered for `user`.
    pub fn devices_of(&self, user: &str) -> usize {
        self.users
            .read(user, |map| map.get(user).map_or(0, Vec::len))
    }

    /// Counts an accepted push.
    pub fn count_push(&self) {
        self.pushes.fetch_add(1, Relaxed);
    }

    /// Counts a broadcast and returns its recipients: the devices subscribed to `topic`, or
    /// every device when there is no topic.
    pub fn broadcast(&self, topic: Option<&str>) -> u64 {
        self.broadcasts.fetch_add(1, Relaxed);
        match topic {
            Some(topic) => self.topics.read(topic, |map| {
                map.get(topic).map_or(0, |ids| ids.len() as u64)
            }),
            None => self.device_count.load(Relaxed),
        }
    }

    /// Counts a received request.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    /// Counts an injected error.
    pub fn count_injected_error(&self) {
        self.injected_errors.fetch_add(1, Relaxed);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        Stats {
            devices: self.device_count.load(Relaxed),
            users: self.user_count.load(Relaxed),
            pushes: self.pushes.load(Relaxed),
            broadcasts: self.broadcasts.load(Relaxed),
            requests: self.requests.load(Relaxed),
            injected_errors: self.injected_errors.load(Relaxed),
            ..Stats::default()
        }
    }
}

const SHARDS: usize = 64;

/// A hash map split into `SHARDS` independently locked parts.
#[derive(Debug)]
struct Sharded<K, V> {
    shards: Box<[RwLock<HashMap<K, V>>]>,
    hasher: RandomState,
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<K: Eq + Hash, V> Sharded<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<K, V>> {
        // `K: Borrow<Q>` hashes like `Q`, so a `String` key and its `&str` land in one shard.
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[index]
    }

    fn read<Q: Hash + ?Sized, R>(&self, key: &Q, f: impl FnOnce(&HashMap<K, V>) -> R) -> R {
        f(&common::sync::read(self.shard(key)))
    }

    fn write<Q: Hash + ?Sized, R>(&self, key: &Q, f: impl FnOnce(&mut HashMap<K, V>) -> R) -> R {
        f(&mut common::sync::write(self.shard(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_device(user: &str, topics: &[&str]) -> NewDevice {
        NewDevice {
            user: user.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            ..NewDevice::default()
        }
    }

    #[test]
    fn registry_tracks_users_topics_and_counts() {
        let state = State::default();
        let a = state.register(new_device("u1", &["news", "news", "sport"]));
        let b = state.register(new_device("u1", &["news"]));
        let c = state.register(new_device("u2", &[]));
        assert_eq!(a.topics, ["news", "sport"]);
        assert_ne!(a.device_id, b.device_id);
        assert_eq!(state.device(&c.device_id), Some(Arc::clone(&c)));
        assert_eq!(state.devices_of("u1"), 2);
        assert_eq!(state.devices_of("nobody"), 0);
        state.count_push();
        assert_eq!(state.broadcast(Some("news")), 2);
        assert_eq!(state.broadcast(Some("weather")), 0);
        assert_eq!(state.broadcast(None), 3);
        let stats = state.stats();
        assert_eq!(
            (stats.devices, stats.users, stats.pushes, stats.broadcasts),
            (3, 2, 1, 3)
        );

        assert_eq!(state.remove(&a.device_id), Some(a.clone()));
        assert_eq!(state.remove(&a.device_id), None);
        assert_eq!(state.broadcast(Some("news")), 1);
        assert_eq!(state.broadcast(Some("sport")), 0);
        state.remove(&b.device_id);
        assert_eq!(state.devices_of("u1"), 0);
        let stats = state.stats();
        assert_eq!((stats.devices, stats.users), (1, 1));
    }
}
