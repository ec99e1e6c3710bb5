//! [`DeliveryHooks`]: the senders' side of delivery tracking, in the coordinating process.
//! Each iteration gets a run-unique `{{msg_id}}` and a `{{random_device}}` (the user of a
//! device connected now); a successful tracked send becomes a [`TrackMsg`] routed to every
//! shard that owns a recipient; a broadcast's completion (last receipt − send) is known once
//! every shard has settled its part.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::sync::lock;

use super::{Target, TrackMsg};

/// Hands a tracking record to shard `k`.
pub type Route = Box<dyn Fn(u32, TrackMsg) + Send + Sync>;

/// Devices connected now, by global index, with O(1) insert, remove and random pick.
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

/// A broadcast some shards have not settled yet.
#[derive(Debug)]
struct BroadcastWait {
    journey: String,
    sent_ns: u64,
    /// Shards that have not answered yet.
    waiting: Vec<u32>,
    last_ns: u64,
    received: u64,
}

/// A tracked broadcast every shard has settled: its completion, µs, when any device got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastDone {
    /// The sender journey.
    pub journey: String,
    /// Last in-time receipt − send, µs; `None` when no device received it in time.
    pub completion_us: Option<u64>,
}

/// The senders' side of delivery tracking.
pub struct DeliveryHooks {
    tag: String,
    counter: AtomicU64,
    users: Vec<String>,
    by_user: HashMap<String, Vec<u32>>,
    shards: u32,
    route: Route,
    connected: Mutex<Connected>,
    broadcasts: Mutex<HashMap<String, BroadcastWait>>,
    max_deadline_ns: AtomicU64,
}

impl std::fmt::Debug for DeliveryHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryHooks")
            .field("tag", &self.tag)
            .field("devices", &self.users.len())
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl DeliveryHooks {
    /// Hooks for devices whose users are `users` (by global index), split over `shards`
    /// shards by global index modulo `shards`; `route` hands a record to one shard.
    pub fn new(users: Vec<String>, shards: u32, route: Route) -> DeliveryHooks {
        let mut by_user: HashMap<String, Vec<u32>> = HashMap::new();
        for (g, u) in users.iter().enumerate() {
            by_user.entry(u.clone()).or_default().push(g as u32);
        }
        DeliveryHooks {
            tag: format!("m{:06x}", fastrand::u32(..0xff_ffff)),
            counter: AtomicU64::new(0),
            users,
            by_user,
            shards: shards.max(1),
            route,
            connected: Mutex::new(Connected::default()),
            broadcasts: Mutex::new(HashMap::new()),
            max_deadline_ns: AtomicU64::new(0),
        }
    }

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

    /// Devices (global indices) that came up and went down.
    pub fn devices_changed(&self, up: &[u32], down: &[u32]) {
        let mut c = lock(&self.connected);
        for &g in down {
            c.down(g);
        }
        for &g in up {
            c.up(g);
        }
    }

    /// The latest deadline of any tracked send so far, Unix ns (0: none).
    pub fn last_deadline_ns(&self) -> u64 {
        self.max_deadline_ns.load(Ordering::Relaxed)
    }

    /// Registers a send that succeeded: its recipients must get `id` within `within`.
    pub fn track(&self, journey: &str, target: Target, id: String, sent_ns: u64, within: Duration) {
        let deadline_ns = sent_ns.saturating_add(u64::try_from(within.as_nanos()).unwrap_or(0));
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
            (self.route)(k, msg.clone());
        }
    }

    /// Shard `shard`'s part of broadcast `id` (`None`: the shard is gone and will not
    /// answer); when every shard has answered, the broadcast is done.
    pub fn broadcast_part(
        &self,
        id: &str,
        shard: u32,
        part: Option<(u64, u64)>,
    ) -> Option<BroadcastDone> {
        let mut b = lock(&self.broadcasts);
        let w = b.get_mut(id)?;
        let i = w.waiting.iter().position(|s| *s == shard)?;
        w.waiting.swap_remove(i);
        if let Some((last, received)) = part {
            w.last_ns = w.last_ns.max(last);
            w.received += received;
        }
        if !w.waiting.is_empty() {
            return None;
        }
        let w = b.remove(id)?;
        Some(BroadcastDone {
            journey: w.journey,
            completion_us: (w.received > 0 && w.last_ns >= w.sent_ns)
                .then(|| (w.last_ns - w.sent_ns) / 1_000),
        })
    }

    /// Broadcasts some shard has not settled yet.
    pub fn pending_broadcasts(&self) -> Vec<String> {
        lock(&self.broadcasts).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn records_go_to_the_shards_that_own_recipients_and_broadcasts_complete_once() {
        let sent: Arc<Mutex<Vec<(u32, String)>>> = Arc::default();
        let log = sent.clone();
        let users = vec!["a".into(), "b".into(), "a".into(), "c".into()];
        let hooks = DeliveryHooks::new(users, 2, Box::new(move |k, m| lock(&log).push((k, m.id))));
        hooks.track(
            "s",
            Target::Unicast { user: "a".into() },
            "m1".into(),
            10,
            Duration::from_secs(1),
        );
        assert_eq!(
            *lock(&sent),
            vec![(0, "m1".to_string())],
            "devices 0 and 2: shard 0 only"
        );
        hooks.track(
            "s",
            Target::Broadcast,
            "m2".into(),
            1_000,
            Duration::from_secs(1),
        );
        assert_eq!(lock(&sent).len(), 3);
        assert_eq!(hooks.broadcast_part("m2", 0, Some((5_000, 1))), None);
        assert_eq!(
            hooks.broadcast_part("m2", 0, Some((9_000, 1))),
            None,
            "a shard answers once"
        );
        assert_eq!(
            hooks.broadcast_part("m2", 1, Some((3_000, 2))),
            Some(BroadcastDone {
                journey: "s".into(),
                completion_us: Some(4)
            })
        );
        assert!(hooks.pending_broadcasts().is_empty());
        hooks.devices_changed(&[1], &[]);
        assert_eq!(hooks.random_device().as_deref(), Some("b"));
        hooks.devices_changed(&[], &[1]);
        assert_eq!(hooks.random_device(), None);
    }
}
