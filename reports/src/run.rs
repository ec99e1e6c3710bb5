//! The [`Run`] record: what one run measured, as the versioned JSON document every renderer,
//! gate and merge reads.
//!
//! Histograms travel in HdrHistogram V2 deflate form (base64), so runs from several shards,
//! processes or machines merge exactly: histograms are added, never percentiles averaged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::hist::{self, HistError, Summary};
use crate::key::MetricKey;

/// The run file version this crate writes and reads.
pub const VERSION: u32 = 1;

/// One run: its metrics, their one-second series and the threshold verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The run file version, [`VERSION`].
    pub version: u32,
    /// The scenario's name.
    pub scenario: String,
    /// This run's id, unique per run (a merged run gets a new one). Empty in files written
    /// before ids existed.
    #[serde(default)]
    pub id: String,
    /// The ids of the runs a merged run was made of (empty for a run that was not merged), so
    /// the same run is never merged in twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// When second 0 started.
    pub started_at: DateTime<Utc>,
    /// How long the run lasted, in seconds.
    pub duration_s: f64,
    /// Free-form context (scenario file, load shape, host, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
    /// Every metric, by key.
    pub metrics: BTreeMap<MetricKey, Metric>,
    /// Per-second points for every key in `metrics` (only seconds with data).
    #[serde(default)]
    pub series: BTreeMap<MetricKey, Series>,
    /// Threshold verdicts, as stored by `threshold::evaluate`'s caller.
    #[serde(default)]
    pub thresholds: Vec<Verdict>,
}

/// One metric's totals over the whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Metric {
    /// A distribution of values (latencies in µs).
    Histogram(HistogramMetric),
    /// A count, optionally out of a total.
    Counter(CounterMetric),
    /// A level over time, e.g. open connections.
    Gauge(GaugeMetric),
}

/// A gauge: a level sampled once a second (e.g. `connections_active`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaugeMetric {
    /// The level in the last second with data.
    pub value: u64,
    /// The lowest level of any second.
    pub min: u64,
    /// The highest level of any second.
    pub max: u64,
}

impl GaugeMetric {
    /// The gauge summarising `points` (in time order); all zero when there are none.
    pub fn of_points(points: &[GaugePoint]) -> GaugeMetric {
        GaugeMetric {
            value: points.last().map_or(0, |p| p.gauge),
            min: points.iter().map(|p| p.gauge).min().unwrap_or(0),
            max: points.iter().map(|p| p.gauge).max().unwrap_or(0),
        }
    }
}

/// A histogram metric: its summary and the compressed histogram itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramMetric {
    /// The unit of the values, `us` for latencies.
    #[serde(default = "unit_us")]
    pub unit: String,
    /// Count, min, mean, max and percentiles.
    #[serde(flatten)]
    pub summary: Summary,
    /// HdrHistogram V2 deflate, base64 standard.
    pub hist: String,
}

fn unit_us() -> String {
    "us".to_string()
}

impl HistogramMetric {
    /// The metric for histogram `h` (values in µs).
    pub fn from_histogram(h: &Histogram<u64>) -> HistogramMetric {
        HistogramMetric {
            unit: unit_us(),
            summary: Summary::of(h),
            hist: hist::encode(h),
        }
    }
}

/// A counter metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterMetric {
    /// The count (for hit/miss counters, the hits).
    pub value: u64,
    /// For hit/miss counters, the number of trials; their rate is `value / total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl CounterMetric {
    /// The sum of two counters.
    pub fn plus(self, other: CounterMetric) -> CounterMetric {
        CounterMetric {
            value: self.value.saturating_add(other.value),
            total: match (self.total, other.total) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// One metric's per-second points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Series {
    /// Points of a histogram metric.
    Histogram(Vec<HistPoint>),
    /// A gauge's level per second (tried before counters: its points carry `gauge`).
    Gauge(Vec<GaugePoint>),
    /// Points of a counter metric.
    Counter(Vec<CounterPoint>),
}

/// One second of a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaugePoint {
    /// Seconds since the run's start.
    pub t: u32,
    /// The level in that second.
    pub gauge: u64,
}

/// One second of a histogram metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistPoint {
    /// Second since the run started.
    pub t: u32,
    /// Samples in this second.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
    /// HdrHistogram V2 deflate, base64 standard.
    pub hist: String,
}

impl HistPoint {
    /// The point for second `t` holding histogram `h`.
    pub fn from_histogram(t: u32, h: &Histogram<u64>) -> HistPoint {
        let s = Summary::of(h);
        HistPoint {
            t,
            count: s.count,
            mean: s.mean,
            p50: s.p50,
            p90: s.p90,
            p99: s.p99,
            max: s.max,
            hist: hist::encode(h),
        }
    }
}

/// One second of a counter metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterPoint {
    /// Second since the run started.
    pub t: u32,
    /// The count in this second.
    pub value: u64,
    /// For hit/miss counters, the trials in this second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// A metric chosen by [`Run::select`], decoded and ready for questions.
#[derive(Debug, Clone, PartialEq)]
pub enum Selected {
    /// A histogram (merged over every matching key).
    Histogram(Histogram<u64>),
    /// A counter (summed over every matching key).
    Counter(CounterMetric),
    /// A gauge (levels added over every matching key).
    Gauge(GaugeMetric),
}

/// Why a run file could not be read or queried.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Not JSON, or not shaped like a run.
    #[error("not a pushbench run file: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by an incompatible version.
    #[error("unsupported run file version {0}: this build reads version {VERSION}")]
    Version(u32),
    /// A metric's histogram is damaged.
    #[error("metric `{key}`: its histogram cannot be decoded: {source}")]
    Histogram {
        /// The metric.
        key: MetricKey,
        /// What went wrong.
        source: HistError,
    },
}

/// Why two runs could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The runs are of different scenarios.
    #[error("runs of different scenarios cannot be merged: `{0}` and `{1}`")]
    Scenario(String, String),
    /// A run is already part of the other (the same file twice, or a part of a merged run).
    #[error("run `{0}` is already in the merge: merging it twice would count it twice")]
    SameRun(String),
    /// The same key is a histogram in one run and a counter in the other.
    #[error("metric `{0}` is a histogram in one run and a counter in the other")]
    Kind(MetricKey),
    /// A histogram (total or one second of its series) is damaged.
    #[error("metric `{key}`: its histogram cannot be decoded: {source}")]
    Histogram {
        /// The metric.
        key: MetricKey,
        /// What went wrong.
        source: HistError,
    },
}

impl Run {
    /// Reads a run file, checking its version and that every metric's histogram decodes.
    pub fn from_json_str(text: &str) -> Result<Run, RunError> {
        let run: Run = serde_json::from_str(text)?;
        if run.version != VERSION {
            return Err(RunError::Version(run.version));
        }
        for (key, metric) in &run.metrics {
            if let Metric::Histogram(m) = metric {
                hist::decode(&m.hist).map_err(|source| RunError::Histogram {
                    key: key.clone(),
                    source,
                })?;
            }
        }
        Ok(run)
    }

    /// The run as pretty-printed JSON.
    pub fn to_json_pretty(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The decoded histogram of exactly `key`; `None` when there is no such key or it is a
    /// counter.
    pub fn histogram(&self, key: &MetricKey) -> Result<Option<Histogram<u64>>, RunError> {
        match self.metrics.get(key) {
            Some(Metric::Histogram(m)) => decode_for(key, &m.hist).map(Some),
            _ => Ok(None),
        }
    }

    /// The metric `filter` names: the exact key when present, else the merge of every key
    /// that [`matches`](MetricKey::matches) it (k6 submetric semantics); `None` when nothing
    /// matches. Keys of another kind than the first match are left out.
    pub fn select(&self, filter: &MetricKey) -> Result<Option<Selected>, RunError> {
        if let Some(metric) = self.metrics.get(filter) {
            return selected(filter, metric).map(Some);
        }
        let mut out: Option<Selected> = None;
        for (key, metric) in self.metrics.iter().filter(|(k, _)| k.matches(filter)) {
            out = Some(match (out, metric) {
                (None, m) => selected(key, m)?,
                (Some(Selected::Histogram(mut acc)), Metric::Histogram(m)) => {
                    let h = decode_for(key, &m.hist)?;
                    hist::add(&mut acc, &h).map_err(|source| RunError::Histogram {
                        key: key.clone(),
                        source,
                    })?;
                    Selected::Histogram(acc)
                }
                (Some(Selected::Counter(acc)), Metric::Counter(c)) => {
                    Selected::Counter(acc.plus(*c))
                }
                // Parts of one level (e.g. per shard): the levels add up.
                (Some(Selected::Gauge(acc)), Metric::Gauge(g)) => Selected::Gauge(GaugeMetric {
                    value: acc.value + g.value,
                    min: acc.min + g.min,
                    max: acc.max + g.max,
                }),
                (Some(other), _) => other,
            });
        }
        Ok(out)
    }

    /// Adds `other` into this run: histograms decoded and added exactly, counters summed,
    /// series aligned on absolute time (whole seconds, from both `started_at`). The result
    /// starts at the earlier start and ends at the later end. Thresholds are cleared: they
    /// must be evaluated again on the merged run.
    pub fn merge(&mut self, other: &Run) -> Result<(), MergeError> {
        if self.scenario != other.scenario {
            return Err(MergeError::Scenario(
                self.scenario.clone(),
                other.scenario.clone(),
            ));
        }
        let mine = self.part_ids();
        let theirs = other.part_ids();
        if let Some(twice) = theirs.iter().find(|id| mine.contains(id)) {
            return Err(MergeError::SameRun(twice.to_string()));
        }
        let parts: Vec<String> = mine.into_iter().chain(theirs).map(String::from).collect();
        let start = self.started_at.min(other.started_at);
        let offset = |at: DateTime<Utc>| (at - start).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let end = (offset(self.started_at) + self.duration_s)
            .max(offset(other.started_at) + other.duration_s);
        let (mine_shift, theirs_shift) = (
            offset(self.started_at).round() as u32,
            offset(other.started_at).round() as u32,
        );

        // Built aside and swapped in at the end, so a failed merge leaves `self` untouched.
        let mut metrics = self.metrics.clone();
        for (key, theirs) in &other.metrics {
            let merged = match self.metrics.get(key) {
                None => theirs.clone(),
                Some(mine) => merge_metrics(key, mine, theirs)?,
            };
            metrics.insert(key.clone(), merged);
        }
        let mut series = self.series.clone();
        for s in series.values_mut() {
            shift_series(s, mine_shift);
        }
        for (key, theirs) in &other.series {
            let mut theirs = theirs.clone();
            shift_series(&mut theirs, theirs_shift);
            let merged = match series.remove(key) {
                None => theirs,
                Some(mine) => merge_series(key, mine, theirs)?,
            };
            series.insert(key.clone(), merged);
        }
        for (key, metric) in metrics.iter_mut() {
            if let (Metric::Gauge(g), Some(Series::Gauge(points))) = (&mut *metric, series.get(key))
            {
                *g = GaugeMetric::of_points(points);
            }
        }
        self.metrics = metrics;
        self.series = series;
        self.started_at = start;
        self.duration_s = end;
        let load_end = (offset(self.started_at) + self.load_s())
            .max(offset(other.started_at) + other.load_s());
        self.parts = parts;
        self.id = new_id();
        if self.meta.is_none() {
            self.meta.clone_from(&other.meta);
        }
        if let Some(serde_json::Value::Object(m)) = &mut self.meta {
            if m.contains_key("load_s") {
                m.insert("load_s".into(), load_end.into());
            }
        }
        self.thresholds.clear();
        Ok(())
    }
}

/// A fresh run id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Run {
    /// How long load was applied, in seconds: `meta.load_s` when the run says (the run less
    /// the drain of work in flight at its end), else the whole run. Rates are counts over
    /// this, so a drain does not dilute them.
    pub fn load_s(&self) -> f64 {
        self.meta
            .as_ref()
            .and_then(|m| m.get("load_s"))
            .and_then(serde_json::Value::as_f64)
            .filter(|s| *s > 0.0 && *s <= self.duration_s)
            .unwrap_or(self.duration_s)
    }

    /// The run's length as reports head it: `12.3 s`, or `12.3 s (load applied 10.0 s, rates
    /// are over it)` when the run ended with a drain.
    pub fn length_text(&self) -> String {
        let load = self.load_s();
        if load + 0.05 < self.duration_s {
            format!(
                "{:.1} s (load applied {load:.1} s, rates are over it)",
                self.duration_s
            )
        } else {
            format!("{:.1} s", self.duration_s)
        }
    }

    /// The ids of the runs this one holds: its parts when merged, else itself (none for a
    /// file written before ids existed).
    pub fn part_ids(&self) -> Vec<&str> {
        if !self.parts.is_empty() {
            self.parts.iter().map(String::as_str).collect()
        } else if !self.id.is_empty() {
            vec![self.id.as_str()]
        } else {
            Vec::new()
        }
    }
}

fn decode_for(key: &MetricKey, text: &str) -> Result<Histogram<u64>, RunError> {
    hist::decode(text).map_err(|source| RunError::Histogram {
        key: key.clone(),
        source,
    })
}

fn selected(key: &MetricKey, metric: &Metric) -> Result<Selected, RunError> {
    Ok(match metric {
        Metric::Histogram(m) => Selected::Histogram(decode_for(key, &m.hist)?),
        Metric::Counter(c) => Selected::Counter(*c),
        Metric::Gauge(g) => Selected::Gauge(*g),
    })
}

/// Decodes two compressed histograms of `key` and returns their sum.
fn add_encoded(key: &MetricKey, a: &str, b: &str) -> Result<Histogram<u64>, MergeError> {
    let err = |source| MergeError::Histogram {
        key: key.clone(),
        source,
    };
    let mut sum = hist::decode(a).map_err(err)?;
    let other = hist::decode(b).map_err(err)?;
    hist::add(&mut sum, &other).map_err(err)?;
    Ok(sum)
}

fn merge_metrics(key: &MetricKey, mine: &Metric, theirs: &Metric) -> Result<Metric, MergeError> {
    match (mine, theirs) {
        (Metric::Histogram(a), Metric::Histogram(b)) => {
            let sum = add_encoded(key, &a.hist, &b.hist)?;
            Ok(Metric::Histogram(HistogramMetric {
                unit: a.unit.clone(),
                ..HistogramMetric::from_histogram(&sum)
            }))
        }
        (Metric::Counter(a), Metric::Counter(b)) => Ok(Metric::Counter(a.plus(*b))),
        // Recomputed from the merged series by `merge`; this is the fallback without one.
        (Metric::Gauge(a), Metric::Gauge(b)) => Ok(Metric::Gauge(GaugeMetric {
            value: a.value + b.value,
            min: a.min.min(b.min),
            max: a.max + b.max,
        })),
        _ => Err(MergeError::Kind(key.clone())),
    }
}

fn shift_series(series: &mut Series, by: u32) {
    match series {
        Series::Histogram(points) => points.iter_mut().for_each(|p| p.t = p.t.saturating_add(by)),
        Series::Counter(points) => points.iter_mut().for_each(|p| p.t = p.t.saturating_add(by)),
        Series::Gauge(points) => points.iter_mut().for_each(|p| p.t = p.t.saturating_add(by)),
    }
}

/// The sum of several writers' gauge levels (second → level) at every second any of them
/// reported: a writer that did not report in a second counts with its last level before it
/// (0 before its first report), so one late report does not dip the sum.
pub(crate) fn sum_held_levels<'a>(
    writers: impl IntoIterator<Item = &'a BTreeMap<u32, u64>>,
) -> BTreeMap<u32, u64> {
    let writers: Vec<&BTreeMap<u32, u64>> = writers.into_iter().collect();
    let seconds: std::collections::BTreeSet<u32> =
        writers.iter().flat_map(|w| w.keys().copied()).collect();
    seconds
        .into_iter()
        .map(|t| {
            let level = writers
                .iter()
                .map(|w| w.range(..=t).next_back().map_or(0, |(_, v)| *v))
                .sum();
            (t, level)
        })
        .collect()
}

fn merge_series(key: &MetricKey, mine: Series, theirs: Series) -> Result<Series, MergeError> {
    match (mine, theirs) {
        (Series::Histogram(a), Series::Histogram(b)) => {
            let mut by_t: BTreeMap<u32, HistPoint> = a.into_iter().map(|p| (p.t, p)).collect();
            for p in b {
                let merged = match by_t.remove(&p.t) {
                    None => p,
                    Some(q) => HistPoint::from_histogram(p.t, &add_encoded(key, &q.hist, &p.hist)?),
                };
                by_t.insert(merged.t, merged);
            }
            Ok(Series::Histogram(by_t.into_values().collect()))
        }
        (Series::Counter(a), Series::Counter(b)) => {
            let mut by_t: BTreeMap<u32, CounterMetric> = BTreeMap::new();
            for p in a.into_iter().chain(b) {
                let c = CounterMetric {
                    value: p.value,
                    total: p.total,
                };
                let slot = by_t.entry(p.t).or_insert(CounterMetric {
                    value: 0,
                    total: None,
                });
                *slot = slot.plus(c);
            }
            Ok(Series::Counter(
                by_t.into_iter()
                    .map(|(t, c)| CounterPoint {
                        t,
                        value: c.value,
                        total: c.total,
                    })
                    .collect(),
            ))
        }
        // Two processes' levels add up (each held its own connections), each holding its last
        // level through the seconds it did not report.
        (Series::Gauge(a), Series::Gauge(b)) => {
            let levels = |points: Vec<GaugePoint>| -> BTreeMap<u32, u64> {
                points.into_iter().map(|p| (p.t, p.gauge)).collect()
            };
            let (a, b) = (levels(a), levels(b));
            Ok(Series::Gauge(
                sum_held_levels([&a, &b])
                    .into_iter()
                    .map(|(t, gauge)| GaugePoint { t, gauge })
                    .collect(),
            ))
        }
        // An empty list reads back as a histogram series; it merges as the other kind.
        (Series::Histogram(a), b) if a.is_empty() => Ok(b),
        (a, Series::Histogram(b)) if b.is_empty() => Ok(a),
        _ => Err(MergeError::Kind(key.clone())),
    }
}

/// The outcome of one threshold (`threshold::evaluate`), as stored in [`Run::thresholds`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The metric key as written.
    pub metric: String,
    /// The expression as written.
    pub expr: String,
    /// Whether it passed.
    pub ok: bool,
    /// The value compared (µs for latencies, a fraction for rates of hit/miss counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
    /// Why it failed without a comparison (unknown metric, wrong kind, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
