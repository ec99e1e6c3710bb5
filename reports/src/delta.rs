//! [`Delta`]: a [`Recorder`]'s samples in a serialisable form, so recorders of other processes
//! (swarm shards) reach the coordinating process's [`RunBuilder`](crate::RunBuilder) exactly:
//! histograms travel in the V2 compressed form of run files, counters and gauges as numbers.
//!
//! The origin does not travel: both sides count seconds from the same run start (the shard
//! derives its origin from the coordinator's wall-clock start), and the receiver rebuilds the
//! recorder with its own origin.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::hist;
use crate::key::MetricKey;
use crate::recorder::{Recorder, Seconds, Tally};

/// One recorder delta, ready for JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Metrics, each with its per-second values.
    pub metrics: Vec<DeltaMetric>,
}

/// One metric of a [`Delta`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaMetric {
    /// The key, e.g. `delivery_latency{journey=unicast}`.
    pub key: MetricKey,
    /// The samples, by kind.
    pub values: DeltaValues,
}

/// Per-second values of one metric: `(second, value)` pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaValues {
    /// Histograms in the compressed text form.
    Histogram(Vec<(u32, String)>),
    /// Counters: `(second, value, total)`.
    Counter(Vec<(u32, u64, u64)>),
    /// Gauge levels.
    Gauge(Vec<(u32, u64)>),
}

impl Delta {
    /// True when the delta holds no metric.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }
}

impl Recorder {
    /// The samples of this recorder in serialisable form (see [`Recorder::take`] for deltas).
    pub fn to_delta(&self) -> Delta {
        let mut metrics: Vec<DeltaMetric> = self
            .metrics_ref()
            .map(|(key, seconds)| DeltaMetric {
                key: (*key).clone(),
                values: match seconds {
                    Seconds::Histogram(m) => DeltaValues::Histogram(
                        m.iter().map(|(t, h)| (*t, hist::encode(h))).collect(),
                    ),
                    Seconds::Counter(m) => DeltaValues::Counter(
                        m.iter().map(|(t, c)| (*t, c.value, c.total)).collect(),
                    ),
                    Seconds::Gauge(m) => {
                        DeltaValues::Gauge(m.iter().map(|(t, v)| (*t, *v)).collect())
                    }
                },
            })
            .collect();
        metrics.sort_by(|a, b| a.key.cmp(&b.key));
        Delta { metrics }
    }

    /// A recorder holding `delta`'s samples, counting seconds from `origin`. A histogram
    /// that does not decode is skipped (and named in the returned list).
    pub fn from_delta(origin: Instant, delta: Delta) -> (Recorder, Vec<MetricKey>) {
        let mut r = Recorder::new(origin);
        let mut bad = Vec::new();
        for m in delta.metrics {
            let seconds = match m.values {
                DeltaValues::Histogram(v) => {
                    let mut out = BTreeMap::new();
                    for (t, text) in v {
                        match hist::decode(&text) {
                            Ok(h) => {
                                out.insert(t, h);
                            }
                            Err(_) => bad.push(m.key.clone()),
                        }
                    }
                    Seconds::Histogram(out)
                }
                DeltaValues::Counter(v) => Seconds::Counter(
                    v.into_iter()
                        .map(|(t, value, total)| (t, Tally { value, total }))
                        .collect(),
                ),
                DeltaValues::Gauge(v) => Seconds::Gauge(v.into_iter().collect()),
            };
            let mut one = Recorder::new(origin);
            one.insert_seconds(&m.key, seconds);
            r.merge(one);
        }
        (r, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_round_trips_through_json() {
        let origin = Instant::now();
        let mut r = Recorder::new(origin);
        let lat = MetricKey::new("delivery_latency").with_tag("journey", "u");
        r.record(&lat, origin, 1_500);
        r.record(&lat, origin, 2_500);
        r.add(MetricKey::new("delivery_lost"), origin, 3);
        r.count(MetricKey::new("failed"), origin, true);
        r.gauge(
            MetricKey::new("connections_active").with_tag("shard", "1"),
            origin,
            42,
        );
        let text = serde_json::to_string(&r.to_delta()).unwrap();
        let (back, bad) = Recorder::from_delta(origin, serde_json::from_str(&text).unwrap());
        assert!(bad.is_empty());
        assert_eq!(back.to_delta(), r.to_delta());
    }
}
