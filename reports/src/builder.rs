//! [`RunBuilder`]: absorbs recorder deltas during a run, answers live-progress questions, and
//! produces the [`Run`] at the end.
//!
//! Memory stays flat over long runs: each histogram metric keeps full per-second histograms
//! only for the last [`RECENT_SECONDS`] seconds; older seconds are sealed into series points
//! (summary + compressed histogram). A running total is kept per metric.
//!
//! Aggregates are kept live as samples arrive: for every metric name the plain-name total,
//! and for every rollup tag (default `journey`) the single-tag totals such as
//! `http_req_duration{journey=unicast}`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

use crate::hist::{self, Summary};
use crate::key::MetricKey;
use crate::recorder::{second_of, shift_seconds, shifted, Recorder, Seconds, Tally};
use crate::run::{
    sum_held_levels, CounterMetric, CounterPoint, GaugeMetric, GaugePoint, HistPoint,
    HistogramMetric, Metric, Run, Series, VERSION,
};

/// How many of the latest seconds keep their full histograms.
pub const RECENT_SECONDS: u32 = 15;

/// A histogram metric being built.
#[derive(Debug)]
struct HistState {
    total: Histogram<u64>,
    recent: BTreeMap<u32, Histogram<u64>>,
    sealed: BTreeMap<u32, HistPoint>,
}

impl HistState {
    fn new() -> HistState {
        HistState {
            total: hist::new_histogram(),
            recent: BTreeMap::new(),
            sealed: BTreeMap::new(),
        }
    }

    fn add(&mut self, second: u32, h: &Histogram<u64>) {
        // Adding to an auto-resizing histogram only fails on allocation limits; a second
        // lost that way is better than a collector that panics.
        let _ = hist::add(&mut self.total, h);
        let slot = self
            .recent
            .entry(second)
            .or_insert_with(hist::new_histogram);
        let _ = hist::add(slot, h);
    }

    /// Moves every recent second before `horizon` (all of them for `None`) into the sealed
    /// points.
    fn seal_before(&mut self, horizon: Option<u32>) {
        let keep = match horizon {
            Some(horizon) => self.recent.split_off(&horizon),
            None => BTreeMap::new(),
        };
        for (t, mut h) in std::mem::replace(&mut self.recent, keep) {
            // A late delta for an already sealed second: add the old histogram back in.
            if let Some(old) = self.sealed.get(&t).and_then(|p| hist::decode(&p.hist).ok()) {
                let _ = hist::add(&mut h, &old);
            }
            self.sealed.insert(t, HistPoint::from_histogram(t, &h));
        }
    }

    fn second(&self, t: u32) -> Option<Cow<'_, Histogram<u64>>> {
        if let Some(h) = self.recent.get(&t) {
            return Some(Cow::Borrowed(h));
        }
        let point = self.sealed.get(&t)?;
        hist::decode(&point.hist).ok().map(Cow::Owned)
    }

    fn window_into(&self, from: u32, to: u32, out: &mut Histogram<u64>) {
        let seconds = self
            .recent
            .range(from..=to)
            .map(|(t, _)| *t)
            .chain(self.sealed.range(from..=to).map(|(t, _)| *t));
        for t in seconds {
            if let Some(h) = self.second(t) {
                let _ = hist::add(out, &h);
            }
        }
    }
}

/// A counter metric being built: totals and every second (a few bytes each).
#[derive(Debug, Default)]
struct CounterState {
    total: Tally,
    per_second: BTreeMap<u32, Tally>,
}

#[derive(Debug)]
enum State {
    Histogram(HistState),
    Counter(CounterState),
    /// A gauge's level per second (a few bytes each).
    Gauge(BTreeMap<u32, u64>),
}

impl State {
    fn fresh_like(seconds: &Seconds) -> State {
        match seconds {
            Seconds::Histogram(_) => State::Histogram(HistState::new()),
            Seconds::Counter(_) => State::Counter(CounterState::default()),
            Seconds::Gauge(_) => State::Gauge(BTreeMap::new()),
        }
    }

    /// Adds one recorder's seconds, moved by `shift`; a key of the other kind is ignored.
    fn absorb(&mut self, seconds: &Seconds, shift: i64) {
        match (self, seconds) {
            (State::Histogram(state), Seconds::Histogram(per_second)) => {
                for (t, h) in per_second {
                    state.add(shifted(*t, shift), h);
                }
            }
            (State::Counter(state), Seconds::Counter(per_second)) => {
                for (t, tally) in per_second {
                    state.total.add(*tally);
                    state
                        .per_second
                        .entry(shifted(*t, shift))
                        .or_default()
                        .add(*tally);
                }
            }
            (State::Gauge(levels), Seconds::Gauge(per_second)) => {
                for (t, v) in per_second {
                    levels.insert(shifted(*t, shift), *v);
                }
            }
            _ => {}
        }
    }

    fn into_metric(self) -> (Metric, Series) {
        match self {
            State::Histogram(mut state) => {
                state.seal_before(None);
                let metric = Metric::Histogram(HistogramMetric::from_histogram(&state.total));
                (
                    metric,
                    Series::Histogram(state.sealed.into_values().collect()),
                )
            }
            State::Counter(state) => {
                let total = |t: Tally| (t.total > 0).then_some(t.total);
                let metric = Metric::Counter(CounterMetric {
                    value: state.total.value,
                    total: total(state.total),
                });
                let points = state
                    .per_second
                    .into_iter()
                    .map(|(t, tally)| CounterPoint {
                        t,
                        value: tally.value,
                        total: total(tally),
                    })
                    .collect();
                (metric, Series::Counter(points))
            }
            State::Gauge(levels) => {
                let points: Vec<GaugePoint> = levels
                    .into_iter()
                    .map(|(t, gauge)| GaugePoint { t, gauge })
                    .collect();
                (
                    Metric::Gauge(GaugeMetric::of_points(&points)),
                    Series::Gauge(points),
                )
            }
        }
    }
}

/// Collects recorder deltas into a [`Run`].
#[derive(Debug)]
pub struct RunBuilder {
    scenario: String,
    started_at: DateTime<Utc>,
    origin: Instant,
    rollup_tags: Vec<String>,
    /// Recorded keys that are not themselves aggregates.
    recorded: HashMap<MetricKey, State>,
    /// Plain-name and single-tag rollups, each the merge of every recorded key matching it.
    rollups: HashMap<MetricKey, State>,
    latest_second: u32,
}

impl RunBuilder {
    /// A builder for a run of `scenario` that started at `started_at`, the wall-clock time of
    /// `origin` (the instant recorders count seconds from).
    pub fn new(scenario: &str, started_at: DateTime<Utc>, origin: Instant) -> RunBuilder {
        RunBuilder {
            scenario: scenario.to_string(),
            started_at,
            origin,
            rollup_tags: vec!["journey".to_string()],
            recorded: HashMap::new(),
            rollups: HashMap::new(),
            latest_second: 0,
        }
    }

    /// Also writes single-tag rollups for `tag` (`journey` is there by default).
    ///
    /// Call it before the first [`absorb`](RunBuilder::absorb): rollups are kept as samples
    /// arrive, so a tag added later only rolls up later deltas.
    pub fn rollup_tag(&mut self, tag: &str) {
        if !self.rollup_tags.iter().any(|t| t == tag) {
            self.rollup_tags.push(tag.to_string());
        }
    }

    /// The aggregates `key` feeds: its plain name and its rollup-tag keys.
    fn rollup_targets(&self, key: &MetricKey) -> Vec<MetricKey> {
        let mut targets = vec![key.plain()];
        for tag in &self.rollup_tags {
            if let Some(value) = key.tags.get(tag) {
                targets.push(key.plain().with_tag(tag.as_str(), value.as_str()));
            }
        }
        targets
    }

    /// Adds one recorder delta.
    pub fn absorb(&mut self, delta: Recorder) {
        let shift = shift_seconds(self.origin, delta.origin());
        for (key, seconds) in delta.into_metrics() {
            if let Some(last) = seconds.last_second() {
                self.latest_second = self.latest_second.max(shifted(last, shift));
            }
            // A gauge's aggregates are sums of its writers' levels, made in `finish`.
            if matches!(seconds, Seconds::Gauge(_)) {
                self.recorded
                    .entry(key)
                    .or_insert_with(|| State::fresh_like(&seconds))
                    .absorb(&seconds, shift);
                continue;
            }
            let targets = self.rollup_targets(&key);
            for target in &targets {
                self.rollups
                    .entry(target.clone())
                    .or_insert_with(|| State::fresh_like(&seconds))
                    .absorb(&seconds, shift);
            }
            if !targets.contains(&key) {
                self.recorded
                    .entry(key)
                    .or_insert_with(|| State::fresh_like(&seconds))
                    .absorb(&seconds, shift);
            }
        }
        let horizon = self.latest_second.saturating_sub(RECENT_SECONDS - 1);
        for state in self.rollups.values_mut().chain(self.recorded.values_mut()) {
            if let State::Histogram(h) = state {
                h.seal_before(Some(horizon));
            }
        }
    }

    /// The states `filter` selects: its rollup when it is one, else every recorded key that
    /// matches it.
    fn selected<'a>(&'a self, filter: &MetricKey) -> Box<dyn Iterator<Item = &'a State> + 'a> {
        if let Some(state) = self.rollups.get(filter) {
            return Box::new(std::iter::once(state));
        }
        let filter = filter.clone();
        Box::new(
            self.recorded
                .iter()
                .filter(move |(k, _)| k.matches(&filter))
                .map(|(_, s)| s),
        )
    }

    /// The seconds `[now - secs + 1, now]` (the current second included).
    fn window_seconds(&self, now: Instant, secs: u32) -> Option<(u32, u32)> {
        let to = second_of(self.origin, now);
        (secs > 0).then(|| (to.saturating_sub(secs - 1), to))
    }

    /// The summary of histogram samples of every key matching `key` over the last `secs`
    /// seconds up to `now` (the current, incomplete second included); `None` when there are
    /// none.
    pub fn window(&self, key: &MetricKey, now: Instant, secs: u32) -> Option<Summary> {
        let (from, to) = self.window_seconds(now, secs)?;
        let mut merged = hist::new_histogram();
        for state in self.selected(key) {
            if let State::Histogram(h) = state {
                h.window_into(from, to, &mut merged);
            }
        }
        (!merged.is_empty()).then(|| Summary::of(&merged))
    }

    /// `(value, total)` of every counter matching `key` over the last `secs` seconds up to
    /// `now`; total is 0 for plain counters.
    pub fn counter_window(&self, key: &MetricKey, now: Instant, secs: u32) -> (u64, u64) {
        let Some((from, to)) = self.window_seconds(now, secs) else {
            return (0, 0);
        };
        let mut sum = Tally::default();
        for state in self.selected(key) {
            if let State::Counter(c) = state {
                c.per_second.range(from..=to).for_each(|(_, t)| sum.add(*t));
            }
        }
        (sum.value, sum.total)
    }

    /// `(value, total)` of every counter matching `key` since the start.
    pub fn total_counter(&self, key: &MetricKey) -> (u64, u64) {
        let mut sum = Tally::default();
        for state in self.selected(key) {
            if let State::Counter(c) = state {
                sum.add(c.total);
            }
        }
        (sum.value, sum.total)
    }

    /// The current level of every gauge matching `key` added up (each writer's latest
    /// level); `None` when no gauge matches.
    pub fn gauge_now(&self, key: &MetricKey) -> Option<u64> {
        let mut sum = None;
        for (k, state) in &self.recorded {
            if let (true, State::Gauge(levels)) = (k.matches(key), state) {
                let last = levels.values().next_back().copied().unwrap_or(0);
                sum = Some(sum.unwrap_or(0) + last);
            }
        }
        sum
    }

    /// The finished run, `duration` long: every recorded key, every plain-name aggregate and
    /// every rollup, each with its series.
    pub fn finish(mut self, duration: Duration) -> Run {
        // Gauge aggregates: the writers' levels added up, second by second, each writer
        // holding its last level until it reports again (a shard a second late is no dip).
        let mut gauge_writers: HashMap<MetricKey, Vec<&BTreeMap<u32, u64>>> = HashMap::new();
        for (key, state) in &self.recorded {
            if let State::Gauge(levels) = state {
                for target in self.rollup_targets(key) {
                    if &target != key {
                        gauge_writers.entry(target).or_default().push(levels);
                    }
                }
            }
        }
        let gauge_rollups: Vec<(MetricKey, BTreeMap<u32, u64>)> = gauge_writers
            .into_iter()
            .map(|(key, writers)| (key, sum_held_levels(writers)))
            .collect();
        for (key, levels) in gauge_rollups {
            self.rollups.insert(key, State::Gauge(levels));
        }
        let mut metrics = BTreeMap::new();
        let mut series = BTreeMap::new();
        for (key, state) in self.rollups.into_iter().chain(self.recorded) {
            let (metric, points) = state.into_metric();
            metrics.insert(key.clone(), metric);
            series.insert(key, points);
        }
        Run {
            version: VERSION,
            scenario: self.scenario,
            id: crate::run::new_id(),
            parts: Vec::new(),
            started_at: self.started_at,
            duration_s: duration.as_secs_f64(),
            meta: None,
            metrics,
            series,
            thresholds: Vec::new(),
        }
    }
}
