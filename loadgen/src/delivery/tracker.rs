//! [`DeliveryTracker`]: one shard's end of delivery tracking. The coordinator forwards every
//! tracked send (message id, expected recipients, send time, deadline) to the shards that own
//! a recipient; devices report each push they receive. At the deadline each expected
//! (message, device) pair is settled:
//!
//! - **received** when it arrived by the deadline;
//! - else **lost** when the device was connected for the whole window [send, deadline], or,
//!   under a store-and-forward [`Promise`], when the device was known before the send and was
//!   connected at some time in the window;
//! - else **not verifiable** (the device was away, and the promise does not say it must get
//!   the push).
//!
//! Counts are recorded at the send's second, so a chart shows expected pairs where the sends
//! were made. Receipts beyond the first are
//! duplicates (or redeliveries when the push says so); receipts no tracked send explains are
//! unexpected. A push can overtake the tracking record (the send's HTTP answer comes after the
//! push reached the device): such receipts wait, and count as unexpected only when no record
//! arrives within [`ORPHAN_GRACE`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use reports::{MetricId, MetricKey, Recorder};

use super::clock::unix_ns;
use super::{names, Presence, Promise, Recipients, Target, TrackMsg};

/// How long a receipt of an unknown message waits for its tracking record.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// How long a settled message is remembered, to classify late copies.
const SETTLED_MEMORY: Duration = Duration::from_secs(120);

/// One received push, as the device saw it.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    /// The device (local index in the shard).
    pub local: u32,
    /// When it arrived, Unix ns.
    pub at_ns: u64,
    /// Marked as a redelivery by the gateway.
    pub redelivery: bool,
    /// The send time the push carries, Unix ns.
    pub sent_ns: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct FirstReceipt {
    at_ns: u64,
}

#[derive(Debug)]
struct Entry {
    msg: TrackMsg,
    receipts: HashMap<u32, FirstReceipt>,
    settled: bool,
}

#[derive(Debug)]
struct SenderKeys {
    latency: MetricId,
    received: MetricId,
    expected: MetricId,
    lost: MetricId,
    unverifiable: MetricId,
    duplicates: MetricId,
    redelivered: MetricId,
    unexpected: MetricId,
    unresolved: MetricId,
}

impl SenderKeys {
    fn new(journey: &str) -> SenderKeys {
        let k = |n: &str| MetricId::of(&MetricKey::new(n).with_tag("journey", journey));
        SenderKeys {
            latency: k(names::DELIVERY_LATENCY),
            received: k(names::DELIVERY_RECEIVED),
            expected: k(names::DELIVERY_EXPECTED),
            lost: k(names::DELIVERY_LOST),
            unverifiable: k(names::DELIVERY_UNVERIFIABLE),
            duplicates: k(names::DELIVERY_DUPLICATES),
            redelivered: k(names::DELIVERY_REDELIVERED),
            unexpected: k(names::DELIVERY_UNEXPECTED),
            unresolved: k(names::DELIVERY_UNRESOLVED),
        }
    }
}

/// A settled broadcast on this shard: `(id, last in-time receipt ns, in-time receipts)`.
pub type BroadcastSettled = (String, u64, u64);

/// One shard's delivery tracking state and its metrics.
#[derive(Debug)]
pub struct DeliveryTracker {
    rec: Recorder,
    msgs: HashMap<String, Entry>,
    /// Unsettled messages by (deadline, sequence).
    due: BTreeMap<(u64, u64), String>,
    seq: u64,
    forget: VecDeque<(u64, String)>,
    orphans: HashMap<String, Vec<Receipt>>,
    orphan_queue: VecDeque<(u64, String)>,
    keys: HashMap<String, SenderKeys>,
    unexpected: MetricId,
    settled_broadcasts: Vec<BroadcastSettled>,
    promise: Promise,
    /// `origin` as Unix ns, to place a send's counts in the send's second.
    origin: Instant,
    origin_ns: u64,
}

impl DeliveryTracker {
    /// A tracker recording into seconds counted from `origin`, judging away devices by the
    /// gateway's `promise`.
    pub fn new(origin: Instant, promise: Promise) -> DeliveryTracker {
        DeliveryTracker {
            promise,
            origin,
            origin_ns: super::clock::unix_of(origin),
            rec: Recorder::new(origin),
            msgs: HashMap::new(),
            due: BTreeMap::new(),
            seq: 0,
            forget: VecDeque::new(),
            orphans: HashMap::new(),
            orphan_queue: VecDeque::new(),
            keys: HashMap::new(),
            unexpected: MetricId::of(&MetricKey::new(names::DELIVERY_UNEXPECTED)),
            settled_broadcasts: Vec::new(),
        }
    }

    /// Takes the metrics recorded since the last call.
    pub fn take_metrics(&mut self) -> Recorder {
        self.rec.take()
    }

    /// Takes the broadcasts settled since the last call.
    pub fn take_settled_broadcasts(&mut self) -> Vec<BroadcastSettled> {
        std::mem::take(&mut self.settled_broadcasts)
    }

    fn keys(&mut self, journey: &str) -> &SenderKeys {
        if !self.keys.contains_key(journey) {
            self.keys
                .insert(journey.to_string(), SenderKeys::new(journey));
        }
        &self.keys[journey]
    }

    /// Registers a tracked send; receipts that arrived before it are applied now.
    pub fn track(&mut self, msg: TrackMsg, devices: &impl Recipients) {
        let id = msg.id.clone();
        self.seq += 1;
        self.due.insert((msg.deadline_ns, self.seq), id.clone());
        self.keys(&msg.journey);
        self.msgs.insert(
            id.clone(),
            Entry {
                msg,
                receipts: HashMap::new(),
                settled: false,
            },
        );
        if let Some(early) = self.orphans.remove(&id) {
            for r in early {
                self.receipt(&id, r, devices);
            }
        }
    }

    /// A device received push `id`.
    pub fn receipt(&mut self, id: &str, r: Receipt, devices: &impl Recipients) {
        let now = Instant::now();
        let Some(entry) = self.msgs.get_mut(id) else {
            self.orphans.entry(id.to_string()).or_default().push(r);
            self.orphan_queue.push_back((r.at_ns, id.to_string()));
            return;
        };
        let keys = &self.keys[&entry.msg.journey];
        if !devices.is_recipient(&entry.msg.target, r.local) {
            self.rec.add(keys.unexpected, now, 1);
            return;
        }
        if r.redelivery {
            self.rec.add(keys.redelivered, now, 1);
        }
        match entry.receipts.get(&r.local) {
            Some(_) => {
                if !r.redelivery {
                    self.rec.add(keys.duplicates, now, 1);
                }
            }
            None => {
                entry
                    .receipts
                    .insert(r.local, FirstReceipt { at_ns: r.at_ns });
                if !entry.settled && r.at_ns <= entry.msg.deadline_ns {
                    self.rec.add(keys.received, now, 1);
                    let from = r.sent_ns.unwrap_or(entry.msg.sent_ns);
                    self.rec
                        .record(keys.latency, now, r.at_ns.saturating_sub(from) / 1_000);
                }
            }
        }
    }

    /// Settles every message whose deadline has passed, and gives up on old orphans.
    pub fn settle_due(&mut self, now_ns: u64, devices: &impl Recipients) {
        while let Some(((deadline, _), _)) = self.due.first_key_value() {
            if *deadline > now_ns {
                break;
            }
            let Some((_, id)) = self.due.pop_first() else {
                break;
            };
            self.settle(&id, devices, false);
            self.forget
                .push_back((now_ns + SETTLED_MEMORY.as_nanos() as u64, id));
        }
        while self.forget.front().is_some_and(|(t, _)| *t <= now_ns) {
            if let Some((_, id)) = self.forget.pop_front() {
                self.msgs.remove(&id);
            }
        }
        let grace = ORPHAN_GRACE.as_nanos() as u64;
        while self
            .orphan_queue
            .front()
            .is_some_and(|(t, _)| t + grace <= now_ns)
        {
            if let Some((_, id)) = self.orphan_queue.pop_front() {
                if let Some(rs) = self.orphans.remove(&id) {
                    self.rec
                        .add(self.unexpected, Instant::now(), rs.len() as u64);
                }
            }
        }
    }

    /// Judges every expected pair of push `id`. `cut`: the run ended before the deadline, so a
    /// pair not received yet is unresolved (its window was not over), not lost.
    fn settle(&mut self, id: &str, devices: &impl Recipients, cut: bool) {
        let now = Instant::now();
        let Some(entry) = self.msgs.get_mut(id) else {
            return;
        };
        entry.settled = true;
        let m = &entry.msg;
        let (mut expected, mut lost, mut unverifiable, mut unresolved) = (0u64, 0u64, 0u64, 0u64);
        let (mut received, mut last) = (0u64, 0u64);
        let promise = self.promise;
        devices.for_each_recipient(&m.target, &mut |local, slot| {
            let in_time = entry
                .receipts
                .get(&local)
                .filter(|r| r.at_ns <= m.deadline_ns);
            if let Some(r) = in_time {
                received += 1;
                expected += 1;
                last = last.max(r.at_ns);
                return;
            }
            if cut {
                unresolved += 1;
                return;
            }
            let owed = slot.connected_through(m.sent_ns, m.deadline_ns)
                || (promise == Promise::StoreAndForward
                    && slot.known_before(m.sent_ns)
                    && slot.connected_during(m.sent_ns, m.deadline_ns));
            if owed {
                expected += 1;
                lost += 1;
            } else {
                unverifiable += 1;
            }
        });
        let keys = &self.keys[&m.journey];
        let sent_at =
            self.origin + std::time::Duration::from_nanos(m.sent_ns.saturating_sub(self.origin_ns));
        let at = sent_at.min(now);
        self.rec.add(keys.expected, at, expected);
        self.rec.add(keys.lost, at, lost);
        self.rec.add(keys.unverifiable, at, unverifiable);
        if unresolved > 0 {
            self.rec.add(keys.unresolved, at, unresolved);
        }
        // Present even when nothing went wrong, so `count == 0` thresholds can be checked.
        for k in [&keys.duplicates, &keys.redelivered, &keys.unexpected] {
            self.rec.add(k, now, 0);
        }
        if !cut && !matches!(m.target, Target::Unicast { .. }) {
            self.settled_broadcasts.push((m.id.clone(), last, received));
        }
    }

    /// The end of the run: settles what is due; pushes whose deadline has not come are cut:
    /// their received pairs count as received (and expected), the others as unresolved; leftover
    /// orphans count as unexpected.
    pub fn finish(&mut self, devices: &impl Recipients) {
        let now_ns = unix_ns();
        self.settle_due(now_ns, devices);
        let now = Instant::now();
        for (_, id) in std::mem::take(&mut self.due) {
            self.settle(&id, devices, true);
        }
        let orphans: u64 = self.orphans.drain().map(|(_, v)| v.len() as u64).sum();
        if orphans > 0 {
            self.rec.add(self.unexpected, now, orphans);
        }
        self.orphan_queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device's one session, `[start, end)` in ns (`end` 0: still up); `first`: when it
    /// first connected.
    struct Dev {
        first: u64,
        start: u64,
        end: u64,
    }

    impl Presence for Dev {
        fn connected_through(&self, from: u64, to: u64) -> bool {
            self.start != 0 && self.start <= from && (self.end == 0 || self.end >= to)
        }
        fn connected_during(&self, from: u64, to: u64) -> bool {
            self.start != 0 && self.start <= to && (self.end == 0 || self.end >= from)
        }
        fn known_before(&self, at: u64) -> bool {
            self.first != 0 && self.first <= at
        }
    }

    struct Devs(Vec<Dev>);

    impl Recipients for Devs {
        type Device = Dev;
        fn is_recipient(&self, _: &Target, local: u32) -> bool {
            (local as usize) < self.0.len()
        }
        fn for_each_recipient(&self, _: &Target, f: &mut dyn FnMut(u32, &Dev)) {
            for (i, d) in self.0.iter().enumerate() {
                f(i as u32, d);
            }
        }
    }

    fn counts(t: &mut DeliveryTracker, origin: Instant) -> BTreeMap<String, u64> {
        let mut b = reports::RunBuilder::new("t", chrono::Utc::now(), origin);
        b.absorb(t.take_metrics());
        let run = b.finish(Duration::from_secs(1));
        run.metrics
            .iter()
            .filter(|(k, _)| k.tags.is_empty())
            .filter_map(|(k, m)| match m {
                reports::run::Metric::Counter(c) => Some((k.name.clone(), c.value)),
                _ => None,
            })
            .collect()
    }

    /// Each device's pair of one broadcast sent at 100 with deadline 200, under each promise:
    /// received (in time), lost, not verifiable — and, when the run is cut before the
    /// deadline, received or unresolved. received + lost = expected throughout.
    #[test]
    fn every_pair_gets_one_outcome() {
        let s = 1_000_000_000u64;
        let devices = Devs(vec![
            // 0: up throughout, receives in time → received
            Dev {
                first: s,
                start: s,
                end: 0,
            },
            // 1: up throughout, never receives → lost
            Dev {
                first: s,
                start: s,
                end: 0,
            },
            // 2: known, away at the send, back before the deadline → lost only under
            //    store-and-forward
            Dev {
                first: s,
                start: 150 * s,
                end: 0,
            },
            // 3: first connected after the send → never owed
            Dev {
                first: 150 * s,
                start: 150 * s,
                end: 0,
            },
            // 4: up throughout, receives after the deadline → lost (late)
            Dev {
                first: s,
                start: s,
                end: 0,
            },
        ]);
        let msg = || TrackMsg {
            id: "m".into(),
            journey: "j".into(),
            target: Target::Broadcast,
            sent_ns: 100 * s,
            deadline_ns: 200 * s,
        };
        let receipt = |local, at_s| Receipt {
            local,
            at_ns: at_s * s,
            redelivery: false,
            sent_ns: None,
        };
        for (promise, lost, unverifiable) in
            [(Promise::Online, 2, 2), (Promise::StoreAndForward, 3, 1)]
        {
            let origin = Instant::now();
            let mut t = DeliveryTracker::new(origin, promise);
            t.track(msg(), &devices);
            t.receipt("m", receipt(0, 120), &devices);
            t.receipt("m", receipt(4, 250), &devices);
            t.settle_due(300 * s, &devices);
            let c = counts(&mut t, origin);
            assert_eq!(c["delivery_received"], 1, "{promise:?} {c:?}");
            assert_eq!(c["delivery_lost"], lost, "{promise:?} {c:?}");
            assert_eq!(c["delivery_expected"], 1 + lost, "{promise:?} {c:?}");
            assert_eq!(
                c["delivery_unverifiable"], unverifiable,
                "{promise:?} {c:?}"
            );
            assert!(!c.contains_key("delivery_unresolved"), "{c:?}");
        }
        // Cut before the deadline (an interrupt): the received pair counts, the others are
        // unresolved, none is lost.
        let origin = Instant::now();
        let mut t = DeliveryTracker::new(origin, Promise::StoreAndForward);
        let mut far = msg();
        far.deadline_ns = u64::MAX;
        t.track(far, &devices);
        t.receipt("m", receipt(0, 120), &devices);
        t.finish(&devices);
        let c = counts(&mut t, origin);
        assert_eq!(c["delivery_received"], 1, "{c:?}");
        assert_eq!(c["delivery_expected"], 1, "{c:?}");
        assert_eq!(c["delivery_lost"], 0, "{c:?}");
        assert_eq!(c["delivery_unresolved"], 4, "{c:?}");
    }
}
