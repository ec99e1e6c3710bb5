//! [`DeliveryHooks`]: the senders' side of delivery tracking, in the coordinating process.
//! Each iteration gets a run-unique `{{msg_id}}`, a `{{random_device}}` (the user of a
//! device connected now) and `{{random_device "JOURNEY"}}` (the user of a device of that
//! device journey connected now); a successful tracked send becomes a [`TrackMsg`] routed to every
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

/// Devices connected now: all of them, and per device journey.
#[derive(Debug, Default)]
struct Live {
    all: Connected,
    by_journey: Vec<Connected>,
}

/// The global device indices of one device journey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyRange {
    /// The device journey's name.
    pub name: String,
    /// Its first global index.
    pub base: u32,
    /// Its devices.
    pub count: u32,
}

/// The senders' side of delivery tracking.
pub struct DeliveryHooks {
    tag: String,
    counter: AtomicU64,
    users: Vec<String>,
    by_user: HashMap<String, Vec<u32>>,
    journeys: Vec<JourneyRange>,
    shards: u32,
    route: Route,
    connected: Mutex<Live>,
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
    /// Hooks for devices whose users are `users` (by global index), of the device journeys
    /// `journeys` (in global index order), split over `shards` shards by global index modulo
    /// `shards`; `route` hands a record to one shard.
    pub fn new(
        users: Vec<String>,
        journeys: Vec<JourneyRange>,
        shards: u32,
        route: Route,
    ) -> DeliveryHooks {
        let mut by_user: HashMap<String, Vec<u32>> = HashMap::new();
        for (g, u) in users.iter().enumerate() {
            by_user.entry(u.clone()).or_default().push(g as u32);
        }
        DeliveryHooks {
            tag: format!("m{:06x}", fastrand::u32(..0xff_ffff)),
            counter: AtomicU64::new(0),
            users,
            by_user,
            connected: Mutex::new(Live {
                all: Connected::default(),
                by_journey: journeys.iter().map(|_| Connected::default()).collect(),
            }),
            journeys,
            shards: shards.max(1),
            route,
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

    /// The user of a device connected now, chosen at random: of any device journey
    /// (`{{random_device}}`, `journey` `None`) or of the named one
    /// (`{{random_device "phones"}}`). `None` when no such device is connected.
    pub fn random_device(&self, journey: Option<&str>) -> Option<String> {
        let live = lock(&self.connected);
        let c = match journey {
            None => &live.all,
            Some(name) => {
                let j = self.journeys.iter().position(|r| r.name == name)?;
                live.by_journey.get(j)?
            }
        };
        if c.list.is_empty() {
            return None;
        }
        let g = c.list[fastrand::usize(..c.list.len())];
        self.users.get(g as usize).cloned()
    }

    /// Devices connected now: of every journey, or of the named one.
    pub fn connected(&self, journey: Option<&str>) -> usize {
        let live = lock(&self.connected);
        match journey {
            None => live.all.list.len(),
            Some(name) => self
                .journeys
                .iter()
                .position(|r| r.name == name)
                .and_then(|j| live.by_journey.get(j))
                .map_or(0, |c| c.list.len()),
        }
    }

    /// The device journey (index into `journeys`) global device `g` belongs to.
    fn journey_of(&self, g: u32) -> Option<usize> {
        let j = self
            .journeys
            .partition_point(|r| r.base <= g)
            .checked_sub(1)?;
        let r = &self.journeys[j];
        (g - r.base < r.count).then_some(j)
    }

    /// Devices (global indices) that came up and went down.
    pub fn devices_changed(&self, up: &[u32], down: &[u32]) {
        let mut live = lock(&self.connected);
        for &g in down {
            live.all.down(g);
            if let Some(c) = self.journey_of(g).and_then(|j| live.by_journey.get_mut(j)) {
                c.down(g);
            }
        }
        for &g in up {
            live.all.up(g);
            if let Some(c) = self.journey_of(g).and_then(|j| live.by_journey.get_mut(j)) {
                c.up(g);
            }
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
        let journeys = vec![JourneyRange {
            name: "d".into(),
            base: 0,
            count: 4,
        }];
        let hooks = DeliveryHooks::new(
            users,
            journeys,
            2,
            Box::new(move |k, m| lock(&log).push((k, m.id))),
        );
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
        assert_eq!(hooks.random_device(None).as_deref(), Some("b"));
        hooks.devices_changed(&[], &[1]);
        assert_eq!(hooks.random_device(None), None);
    }

    #[test]
    fn random_devices_are_drawn_from_the_named_journeys_live_devices() {
        let users = ["p0", "p1", "p2", "b0", "b1"].map(String::from).to_vec();
        let journeys = vec![
            JourneyRange {
                name: "phones".into(),
                base: 0,
                count: 3,
            },
            JourneyRange {
                name: "all".into(),
                base: 3,
                count: 2,
            },
        ];
        let hooks = DeliveryHooks::new(users, journeys, 1, Box::new(|_, _| {}));
        hooks.devices_changed(&[0, 2, 3, 4], &[]);
        hooks.devices_changed(&[], &[0]);
        assert_eq!(hooks.connected(Some("phones")), 1);
        assert_eq!(hooks.connected(Some("all")), 2);
        assert_eq!(hooks.connected(None), 3);
        for _ in 0..50 {
            assert_eq!(hooks.random_device(Some("phones")).as_deref(), Some("p2"));
            let b = hooks.random_device(Some("all")).unwrap();
            assert!(b == "b0" || b == "b1", "{b}");
        }
        assert_eq!(hooks.random_device(Some("nobody")), None);
        hooks.devices_changed(&[], &[2]);
        assert_eq!(hooks.random_device(Some("phones")), None);
    }
}
