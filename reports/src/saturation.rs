//! Was the harness, not the target, the limit? A second of a run is **saturated** when the
//! generator's own signals say the load asked for was not applied as planned:
//!
//! - the pacer released work late: `pacer_lag` p99 in that second above [`PACER_LAG_LIMIT_US`];
//! - iterations were dropped (`dropped_iterations`): due, but no connection was free and the
//!   queue was full, or the run ended while they waited;
//! - the generator's CPU (`generator_cpu`, this process and its shards, % of the machine's
//!   cores) reached [`CPU_LIMIT_PERCENT`].
//!
//! [`assess`] adds `generator_saturated` (a counter: saturated seconds out of the seconds of
//! the run, with its per-second series, and one per `cause`: `pacer`, `dropped`, `cpu`), which
//! thresholds can gate on (`generator_saturated: ["count == 0"]`), and [`note`] is the
//! sentence every report shows when it is not zero.

use std::collections::BTreeSet;

use crate::key::MetricKey;
use crate::run::{CounterMetric, CounterPoint, Metric, Run, Series};

/// The metric [`assess`] adds.
pub const GENERATOR_SATURATED: &str = "generator_saturated";

/// A pacer releasing work later than this (p99 of a second, µs) is the generator's own lag.
pub const PACER_LAG_LIMIT_US: u64 = 5_000;

/// The generator's CPU, % of the machine's cores, at which it is the limit.
pub const CPU_LIMIT_PERCENT: u64 = 90;

/// Adds `generator_saturated` to `run` from its series (replacing one already there, e.g.
/// in a merged run).
pub fn assess(run: &mut Run) {
    let mut causes: Vec<(&str, BTreeSet<u32>)> = Vec::new();
    if let Some(Series::Histogram(points)) = run.series.get(&MetricKey::new("pacer_lag")) {
        let late = points
            .iter()
            .filter(|p| p.p99 > PACER_LAG_LIMIT_US)
            .map(|p| p.t);
        causes.push(("pacer", late.collect()));
    }
    if let Some(Series::Counter(points)) = run.series.get(&MetricKey::new("dropped_iterations")) {
        causes.push((
            "dropped",
            points.iter().filter(|p| p.value > 0).map(|p| p.t).collect(),
        ));
    }
    if let Some(Series::Gauge(points)) = run.series.get(&MetricKey::new("generator_cpu")) {
        let busy = points
            .iter()
            .filter(|p| p.gauge >= CPU_LIMIT_PERCENT)
            .map(|p| p.t);
        causes.push(("cpu", busy.collect()));
    }
    let all: BTreeSet<u32> = causes.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    let seconds = (run.duration_s.ceil().max(1.0) as u32).max(all.last().map_or(0, |t| t + 1));
    let mut put = |key: MetricKey, set: &BTreeSet<u32>| {
        run.metrics.insert(
            key.clone(),
            Metric::Counter(CounterMetric {
                value: set.len() as u64,
                total: Some(u64::from(seconds)),
            }),
        );
        run.series.insert(
            key,
            Series::Counter(
                (0..seconds)
                    .map(|t| CounterPoint {
                        t,
                        value: u64::from(set.contains(&t)),
                        total: Some(1),
                    })
                    .collect(),
            ),
        );
    };
    put(MetricKey::new(GENERATOR_SATURATED), &all);
    for (cause, set) in &causes {
        put(
            MetricKey::new(GENERATOR_SATURATED).with_tag("cause", *cause),
            set,
        );
    }
}

/// The sentence reports show when the generator was saturated in some seconds.
pub fn note(run: &Run) -> Option<String> {
    let count = |key: &MetricKey| match run.metrics.get(key) {
        Some(Metric::Counter(c)) => Some((c.value, c.total.unwrap_or(c.value))),
        _ => None,
    };
    let (value, total) = count(&MetricKey::new(GENERATOR_SATURATED)).filter(|(v, _)| *v > 0)?;
    let why: Vec<String> = [
        ("pacer", "its pacer late"),
        ("dropped", "iterations dropped"),
        ("cpu", "its CPU at 90 % or more"),
    ]
    .into_iter()
    .filter_map(|(cause, text)| {
        let (n, _) = count(&MetricKey::new(GENERATOR_SATURATED).with_tag("cause", cause))?;
        (n > 0).then(|| format!("{text} in {n} s"))
    })
    .collect();
    Some(format!(
        "The generator was saturated in {value} of {total} seconds ({}): in those seconds the harness, not the target, limited the load.",
        why.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Recorder, RunBuilder};
    use std::time::{Duration, Instant};

    #[test]
    fn seconds_with_late_pacing_drops_or_full_cpu_are_saturated() {
        let origin = Instant::now();
        let mut b = RunBuilder::new("s", chrono::Utc::now(), origin);
        let mut r = Recorder::new(origin);
        let at = |s: u64| origin + Duration::from_millis(s * 1000 + 10);
        let lag = MetricKey::new("pacer_lag").with_tag("journey", "a");
        let dropped = MetricKey::new("dropped_iterations").with_tag("journey", "a");
        let cpu = MetricKey::new("generator_cpu");
        for s in 0..6 {
            r.record(&lag, at(s), if s == 1 { 20_000 } else { 50 });
            r.count(&dropped, at(s), s == 3);
            r.gauge(&cpu, at(s), if s == 4 { 97 } else { 30 });
        }
        b.absorb(r);
        let mut run = b.finish(Duration::from_secs(6));
        assert_eq!(note(&run), None);
        assess(&mut run);
        match &run.metrics[&MetricKey::new(GENERATOR_SATURATED)] {
            Metric::Counter(c) => assert_eq!((c.value, c.total), (3, Some(6))),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            note(&run).unwrap(),
            "The generator was saturated in 3 of 6 seconds (its pacer late in 1 s, iterations dropped in 1 s, its CPU at 90 % or more in 1 s): in those seconds the harness, not the target, limited the load."
        );
        // Thresholds can gate on it.
        let gate = crate::Threshold::parse(GENERATOR_SATURATED, "count == 0").unwrap();
        assert!(!crate::evaluate(&run, &[gate])[0].ok);
    }
}
