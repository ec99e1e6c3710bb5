//! The per-task [`Recorder`]: where engines put samples on the hot path.
//!
//! Each task owns one recorder (no lock shared between tasks). A collector harvests the
//! delta with [`Recorder::take`] about once a second and hands it to a
//! [`RunBuilder`](crate::RunBuilder). Samples are bucketed by whole second since the run's
//! origin, so deltas harvested at any moment still land in the right second.
//!
//! [`Recorders`] keeps every recorder of a run (one per task, or one per runtime thread via
//! [`Recorders::for_thread`]) and takes all their deltas at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::sync::lock;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::hist;
use crate::key::{MetricId, MetricKey};

/// A counter for one second: `value`, and for hit/miss counters the number of trials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub value: u64,
    pub total: u64,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.value = self.value.saturating_add(other.value);
        self.total = self.total.saturating_add(other.total);
    }
}

/// One metric's samples, per second since the origin.
#[derive(Debug, Clone)]
pub(crate) enum Seconds {
    Histogram(BTreeMap<u32, Histogram<u64>>),
    Counter(BTreeMap<u32, Tally>),
    /// A level sampled per second (last value set in that second).
    Gauge(BTreeMap<u32, u64>),
}

impl Seconds {
    /// An empty metric of the same kind.
    pub(crate) fn empty_like(&self) -> Seconds {
        match self {
            Seconds::Histogram(_) => Seconds::Histogram(BTreeMap::new()),
            Seconds::Counter(_) => Seconds::Counter(BTreeMap::new()),
            Seconds::Gauge(_) => Seconds::Gauge(BTreeMap::new()),
        }
    }

    /// The latest second with data.
    pub(crate) fn last_second(&self) -> Option<u32> {
        match self {
            Seconds::Histogram(m) => m.keys().next_back().copied(),
            Seconds::Counter(m) => m.keys().next_back().copied(),
            Seconds::Gauge(m) => m.keys().next_back().copied(),
        }
    }
}

/// Samples recorded by one task since the last [`take`](Recorder::take).
///
/// Not meant to be shared: give every task its own and merge the deltas. Samples are stored
/// by [`MetricId`]: recording through an id is an index; through a [`MetricKey`] it interns
/// the key first (a hash and a read lock), so hot paths keep ids.
#[derive(Debug, Clone)]
pub struct Recorder {
    origin: Instant,
    metrics: Vec<Option<Seconds>>,
}

/// The second since `origin` that `at` falls in; instants before the origin go to second 0.
pub(crate) fn second_of(origin: Instant, at: Instant) -> u32 {
    u32::try_from(at.saturating_duration_since(origin).as_secs()).unwrap_or(u32::MAX)
}

impl Recorder {
    /// An empty recorder whose seconds count from `origin` (the run's start).
    pub fn new(origin: Instant) -> Recorder {
        Recorder {
            origin,
            metrics: Vec::new(),
        }
    }

    /// The instant second 0 starts at.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Records one histogram sample of `value_us` microseconds at `at`.
    ///
    /// A key already used as a counter ignores the sample (a programming error, not a panic).
    pub fn record(&mut self, key: impl Into<MetricId>, at: Instant, value_us: u64) {
        let second = second_of(self.origin, at);
        let fresh = || Seconds::Histogram(BTreeMap::new());
        self.update(key.into(), fresh, |seconds| {
            if let Seconds::Histogram(per_second) = seconds {
                let h = per_second.entry(second).or_insert_with(hist::new_histogram);
                hist::record(h, value_us);
            }
        });
    }

    /// Applies `f` to `id`'s seconds, made with `fresh` when it has none yet.
    fn update(
        &mut self,
        id: MetricId,
        fresh: impl FnOnce() -> Seconds,
        f: impl FnOnce(&mut Seconds),
    ) {
        f(self.slot(id).get_or_insert_with(fresh));
    }

    fn slot(&mut self, id: MetricId) -> &mut Option<Seconds> {
        let i = id.index();
        if i >= self.metrics.len() {
            self.metrics.resize_with(i + 1, || None);
        }
        &mut self.metrics[i]
    }

    /// Adds `n` to the counter `key` at `at`.
    ///
    /// A key already used as a histogram ignores the call.
    pub fn add(&mut self, key: impl Into<MetricId>, at: Instant, n: u64) {
        self.tally(key.into(), at, Tally { value: n, total: 0 });
    }

    /// Counts one trial of the rate counter `key` at `at`: its total grows by one and its
    /// value by one when `hit` (e.g. `http_req_failed`, whose rate is value / total).
    ///
    /// A key already used as a histogram ignores the call.
    pub fn count(&mut self, key: impl Into<MetricId>, at: Instant, hit: bool) {
        self.tally(
            key.into(),
            at,
            Tally {
                value: u64::from(hit),
                total: 1,
            },
        );
    }

    /// Sets the gauge `key` (a level such as open connections) to `value` at `at`; the
    /// last value set in a second is that second's value.
    ///
    /// A gauge has one writer: where several tasks or shards hold parts of a level, each
    /// writes its own tagged key (e.g. `connections_active{shard=2}`) and the plain-name
    /// aggregate adds them up. A key already used as another kind ignores the call.
    pub fn gauge(&mut self, key: impl Into<MetricId>, at: Instant, value: u64) {
        let second = second_of(self.origin, at);
        let fresh = || Seconds::Gauge(BTreeMap::new());
        self.update(key.into(), fresh, |seconds| {
            if let Seconds::Gauge(per_second) = seconds {
                per_second.insert(second, value);
            }
        });
    }

    fn tally(&mut self, id: MetricId, at: Instant, t: Tally) {
        let second = second_of(self.origin, at);
        let fresh = || Seconds::Counter(BTreeMap::new());
        self.update(id, fresh, |seconds| {
            if let Seconds::Counter(per_second) = seconds {
                per_second.entry(second).or_default().add(t);
            }
        });
    }

    /// Returns everything recorded so far and leaves this recorder empty, with the same
    /// origin.
    pub fn take(&mut self) -> Recorder {
        Recorder {
            origin: self.origin,
            metrics: std::mem::take(&mut self.metrics),
        }
    }

    /// Whether nothing has been recorded since creation or the last [`take`](Recorder::take).
    pub fn is_empty(&self) -> bool {
        self.metrics.iter().all(Option::is_none)
    }

    /// Adds everything `other` recorded into this recorder.
    ///
    /// When the origins differ, `other`'s seconds are moved by the whole seconds between
    /// them. A key recorded as a histogram in one and a counter in the other keeps this
    /// recorder's kind; the other's samples for it are dropped.
    pub fn merge(&mut self, other: Recorder) {
        let shift = shift_seconds(self.origin, other.origin);
        for (i, theirs) in other.metrics.into_iter().enumerate() {
            let Some(theirs) = theirs else { continue };
            let slot = self.slot(MetricId::at(i));
            let mine = slot.get_or_insert_with(|| theirs.empty_like());
            merge_seconds(mine, theirs, shift);
        }
    }

    /// The recorded metrics with their keys, by reference (for
    /// [`Delta`](crate::delta::Delta)).
    pub(crate) fn metrics_ref(&self) -> impl Iterator<Item = (Arc<MetricKey>, &Seconds)> {
        self.metrics
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((MetricId::at(i).key(), s.as_ref()?)))
    }

    /// Sets one metric's seconds (for [`Delta`](crate::delta::Delta)).
    pub(crate) fn insert_seconds(&mut self, key: &MetricKey, seconds: Seconds) {
        *self.slot(MetricId::of(key)) = Some(seconds);
    }

    /// The recorded metrics with their keys, consumed (for the builder).
    pub(crate) fn into_metrics(self) -> impl Iterator<Item = (MetricKey, Seconds)> {
        self.metrics
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| Some(((*MetricId::at(i).key()).clone(), s?)))
    }
}

/// One task's recorder.
pub type RecorderHandle = Arc<Mutex<Recorder>>;

/// Every recorder of the run.
#[derive(Debug)]
pub struct Recorders {
    origin: Instant,
    handles: Mutex<Vec<RecorderHandle>>,
}

impl Recorders {
    /// Recorders timed from `origin` (the run's start).
    pub fn new(origin: Instant) -> Recorders {
        Recorders {
            origin,
            handles: Mutex::new(Vec::new()),
        }
    }

    /// The run's start.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// A new recorder for one task.
    pub fn handle(&self) -> RecorderHandle {
        let h = Arc::new(Mutex::new(Recorder::new(self.origin)));
        lock(&self.handles).push(h.clone());
        h
    }

    /// The recorder of the calling thread (made on first use). Tasks record through their
    /// thread's recorder between awaits, so thousands of goose users cost one recorder per
    /// runtime thread, not one each.
    pub fn for_thread(&self) -> RecorderHandle {
        thread_local! {
            static MINE: std::cell::RefCell<Option<(usize, RecorderHandle)>> = const { std::cell::RefCell::new(None) };
        }
        let id = self as *const Recorders as usize;
        MINE.with(|m| {
            let mut m = m.borrow_mut();
            match &*m {
                Some((owner, h)) if *owner == id => h.clone(),
                _ => {
                    let h = self.handle();
                    *m = Some((id, h.clone()));
                    h
                }
            }
        })
    }

    /// Takes what every recorder holds since the last harvest.
    pub fn harvest(&self) -> Recorder {
        let handles: Vec<RecorderHandle> = lock(&self.handles).clone();
        let mut all = Recorder::new(self.origin);
        for h in handles {
            let delta = lock(&h).take();
            all.merge(delta);
        }
        all
    }
}

/// Whole seconds to add to a second counted from `from` to count it from `to`.
pub(crate) fn shift_seconds(to: Instant, from: Instant) -> i64 {
    if from >= to {
        i64::try_from(from.duration_since(to).as_secs()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(to.duration_since(from).as_secs()).unwrap_or(i64::MAX)
    }
}

/// `second + shift`, clamped to the u32 range.
pub(crate) fn shifted(second: u32, shift: i64) -> u32 {
    u32::try_from((i64::from(second) + shift).max(0)).unwrap_or(u32::MAX)
}

fn merge_seconds(mine: &mut Seconds, theirs: Seconds, shift: i64) {
    match (mine, theirs) {
        (Seconds::Histogram(mine), Seconds::Histogram(theirs)) => {
            for (second, h) in theirs {
                match mine.entry(shifted(second, shift)) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(h);
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        let _ = hist::add(o.get_mut(), &h);
                    }
                }
            }
        }
        (Seconds::Counter(mine), Seconds::Counter(theirs)) => {
            for (second, t) in theirs {
                mine.entry(shifted(second, shift)).or_default().add(t);
            }
        }
        // One writer per gauge key: the later recorder's level replaces the earlier one.
        (Seconds::Gauge(mine), Seconds::Gauge(theirs)) => {
            for (second, v) in theirs {
                mine.insert(shifted(second, shift), v);
            }
        }
        // Same key, different kinds: a programming error in the engine; keep ours.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn get<'r>(r: &'r Recorder, key: &MetricKey) -> &'r Seconds {
        r.metrics[MetricId::of(key).index()]
            .as_ref()
            .expect("recorded")
    }

    fn secs(r: &Recorder, key: &MetricKey) -> Vec<u32> {
        match get(r, key) {
            Seconds::Histogram(m) => m.keys().copied().collect(),
            Seconds::Counter(m) => m.keys().copied().collect(),
            Seconds::Gauge(m) => m.keys().copied().collect(),
        }
    }

    #[test]
    fn a_gauge_keeps_the_last_level_of_each_second() {
        let origin = Instant::now();
        let mut r = Recorder::new(origin);
        let k = MetricKey::new("connections_active");
        r.gauge(&k, origin, 5);
        r.gauge(&k, origin + Duration::from_millis(500), 7);
        r.gauge(&k, origin + Duration::from_millis(1500), 9);
        let mut later = Recorder::new(origin);
        later.gauge(&k, origin + Duration::from_millis(1900), 4);
        r.merge(later);
        match get(&r, &k) {
            Seconds::Gauge(m) => assert_eq!(
                m.iter().map(|(t, v)| (*t, *v)).collect::<Vec<_>>(),
                vec![(0, 7), (1, 4)]
            ),
            _ => panic!("kind changed"),
        }
    }

    #[test]
    fn samples_land_in_their_second_and_early_ones_in_zero() {
        let origin = Instant::now() + Duration::from_secs(5);
        let mut r = Recorder::new(origin);
        let k = MetricKey::new("lat");
        r.record(&k, origin - Duration::from_secs(3), 10);
        r.record(&k, origin + Duration::from_millis(999), 10);
        r.record(&k, origin + Duration::from_millis(2500), 10);
        assert_eq!(secs(&r, &k), vec![0, 2]);
    }

    #[test]
    fn take_leaves_an_empty_recorder_with_the_same_origin() {
        let origin = Instant::now();
        let mut r = Recorder::new(origin);
        assert!(r.is_empty());
        r.add(MetricKey::new("n"), origin, 3);
        let delta = r.take();
        assert!(r.is_empty());
        assert!(!delta.is_empty());
        assert_eq!(r.origin(), origin);
        assert_eq!(delta.origin(), origin);
    }

    #[test]
    fn mixing_kinds_on_one_key_is_ignored_not_a_panic() {
        let origin = Instant::now();
        let mut r = Recorder::new(origin);
        let k = MetricKey::new("x");
        r.record(&k, origin, 5);
        r.add(&k, origin, 1);
        r.count(&k, origin, true);
        let mut other = Recorder::new(origin);
        other.add(&k, origin, 1);
        r.merge(other);
        match get(&r, &k) {
            Seconds::Histogram(m) => assert_eq!(m[&0].len(), 1),
            _ => panic!("kind changed"),
        }
    }

    #[test]
    fn merge_adds_and_rebases_other_origins() {
        let origin = Instant::now();
        let k = MetricKey::new("n");
        let mut a = Recorder::new(origin);
        a.count(&k, origin, true);
        let mut b = Recorder::new(origin + Duration::from_secs(2));
        b.count(&k, origin + Duration::from_secs(2), false);
        b.count(&k, origin + Duration::from_secs(2), true);
        a.merge(b);
        match get(&a, &k) {
            Seconds::Counter(m) => {
                assert_eq!(m[&0], Tally { value: 1, total: 1 });
                assert_eq!(m[&2], Tally { value: 1, total: 2 });
            }
            _ => panic!("kind changed"),
        }
    }
}
