//! Baseline comparison: one [`Run`] against another, metric by metric, as verdicts that a CI
//! gate can act on.
//!
//! Histograms are compared at p50, p95 and p99, counters by their rate (per second, or the
//! hit fraction of hit/miss counters), gauges by their peak. Each delta is judged against a
//! noise band (relative, with an absolute floor: a set one for tiny latencies, three standard
//! deviations of Poisson counts or binomial fractions for counters) and in the metric's
//! direction: latency and errors up are worse, throughput up is better. A metric with too few
//! samples on either side is `Inconclusive`, never a regression. Runs of different scenarios
//! or load shapes are refused unless forced: their deltas would measure the change of load,
//! not of the system.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::key::MetricKey;
use crate::run::{Metric, Run};

/// How two runs are compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// Relative noise band: a change within `±noise` (0.05 = 5%) is `Unchanged`.
    pub noise: f64,
    /// Absolute noise floor for latency statistics, µs: a change smaller than this is
    /// `Unchanged` whatever its relative size.
    pub floor_us: f64,
    /// Fewer samples than this on either side (histogram count, hit/miss trials) makes the
    /// check `Inconclusive`.
    pub min_samples: u64,
    /// Compare even runs of different scenarios or load shapes (the mismatches are listed).
    pub force: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            noise: 0.05,
            floor_us: 50.0,
            min_samples: 100,
            force: false,
        }
    }
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Lower is better: latencies, errors, losses.
    LowerIsBetter,
    /// Higher is better: throughput, deliveries, connections held.
    HigherIsBetter,
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Better by more than the noise band.
    Improved,
    /// Worse by more than the noise band.
    Regressed,
    /// Within the noise band.
    Unchanged,
    /// Too few samples to say.
    Inconclusive,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Improved => "Improved",
            Change::Regressed => "Regressed",
            Change::Unchanged => "Unchanged",
            Change::Inconclusive => "Inconclusive",
        })
    }
}

/// What the compared numbers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Microseconds.
    Micros,
    /// Events per second.
    PerSecond,
    /// A fraction (hits / trials).
    Fraction,
    /// A level (gauges).
    Level,
}

/// One compared statistic of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The metric key.
    pub metric: String,
    /// The statistic: `p50`, `p95`, `p99`, `rate` or `peak`.
    pub stat: String,
    /// The baseline's value.
    pub base: f64,
    /// The new run's value.
    pub new: f64,
    /// `new / base - 1`; `None` when the baseline is 0.
    pub delta: Option<f64>,
    /// The unit of `base` and `new`.
    pub unit: Unit,
    /// Which way is better.
    pub direction: Direction,
    /// The verdict.
    pub change: Change,
    /// Why the verdict is what it is, when that is not the delta alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The comparison of a run with its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline's scenario.
    pub base_scenario: String,
    /// When the baseline started.
    pub base_started_at: chrono::DateTime<chrono::Utc>,
    /// The relative noise band used.
    pub noise: f64,
    /// The absolute latency floor used, µs.
    pub floor_us: f64,
    /// The minimum sample count used.
    pub min_samples: u64,
    /// Differences of scenario or load shape that `force` let through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
    /// Metrics present in only one of the runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<String>,
    /// Every check, in metric key order.
    pub checks: Vec<Check>,
}

impl Comparison {
    /// Whether any check regressed.
    pub fn regressed(&self) -> bool {
        self.checks.iter().any(|c| c.change == Change::Regressed)
    }

    /// How many checks have verdict `change`.
    pub fn count(&self, change: Change) -> usize {
        self.checks.iter().filter(|c| c.change == change).count()
    }
}

/// Why two runs were not compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompareError {
    /// Different scenarios or load shapes, and not forced.
    #[error("refusing to compare unlike runs ({}); pass --force to compare anyway", .0.join("; "))]
    Unlike(Vec<String>),
}

/// The parts of `Run.meta` that describe the load shape; runs differing in any of them are
/// not comparable. Absent on both sides counts as equal.
pub const SHAPE_FIELDS: &[&str] = &[
    "planned_duration_s",
    "users_peak",
    "senders",
    "devices",
    "replay",
    "load_shape",
];

/// Which way is better for `key`, by its kind and name.
pub fn direction(key: &MetricKey, metric: &Metric) -> Direction {
    match metric {
        Metric::Histogram(_) => Direction::LowerIsBetter,
        Metric::Gauge(_) => Direction::HigherIsBetter,
        Metric::Counter(c) if c.total.is_some() => Direction::LowerIsBetter,
        Metric::Counter(_) if is_bad_count(&key.name) => Direction::LowerIsBetter,
        Metric::Counter(_) => Direction::HigherIsBetter,
    }
}

/// Whether a counter named `name` counts something that went wrong.
pub fn is_bad_count(name: &str) -> bool {
    const BAD: &[&str] = &[
        "fail",
        "error",
        "dropped",
        "lost",
        "duplicate",
        "unexpected",
        "redelivered",
        "mismatch",
        "timeout",
        "refused",
    ];
    BAD.iter().any(|b| name.contains(b))
}

/// Compares `new` with `base`.
pub fn compare(base: &Run, new: &Run, opts: &CompareOptions) -> Result<Comparison, CompareError> {
    let mismatches = unlike(base, new);
    if !mismatches.is_empty() && !opts.force {
        return Err(CompareError::Unlike(mismatches));
    }
    let mut checks = Vec::new();
    let mut unmatched = Vec::new();
    for (key, b) in &base.metrics {
        let Some(n) = new.metrics.get(key) else {
            unmatched.push(format!("{key} (baseline only)"));
            continue;
        };
        checks.extend(check_metric(key, b, base, n, new, opts));
    }
    for key in new.metrics.keys() {
        if !base.metrics.contains_key(key) {
            unmatched.push(format!("{key} (new run only)"));
        }
    }
    Ok(Comparison {
        base_scenario: base.scenario.clone(),
        base_started_at: base.started_at,
        noise: opts.noise,
        floor_us: opts.floor_us,
        min_samples: opts.min_samples,
        mismatches,
        unmatched,
        checks,
    })
}

/// How `new` differs from `base` in scenario and load shape.
fn unlike(base: &Run, new: &Run) -> Vec<String> {
    let mut out = Vec::new();
    if base.scenario != new.scenario {
        out.push(format!(
            "scenario `{}` vs `{}`",
            base.scenario, new.scenario
        ));
    }
    let field = |run: &Run, name: &str| {
        run.meta
            .as_ref()
            .and_then(|m| m.get(name))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    for name in SHAPE_FIELDS {
        let (b, n) = (field(base, name), field(new, name));
        if b != n {
            out.push(format!("load shape `{name}`: {b} vs {n}"));
        }
    }
    out
}

/// The checks of one metric present in both runs (none when their kinds differ).
fn check_metric(
    key: &MetricKey,
    b: &Metric,
    base: &Run,
    n: &Metric,
    new: &Run,
    opts: &CompareOptions,
) -> Vec<Check> {
    let direction = direction(key, b);
    let check = |stat: &str, unit: Unit, (bv, nv): (f64, f64), floor: f64, samples: (u64, u64)| {
        let delta = (bv != 0.0).then(|| nv / bv - 1.0);
        let (change, note) = if samples.0.min(samples.1) < opts.min_samples {
            (
                Change::Inconclusive,
                Some(format!(
                    "too few samples: {} vs {} (need {})",
                    samples.0, samples.1, opts.min_samples
                )),
            )
        } else {
            judge(bv, nv, opts.noise, floor, direction)
        };
        Check {
            metric: key.to_string(),
            stat: stat.to_string(),
            base: bv,
            new: nv,
            delta,
            unit,
            direction,
            change,
            note,
        }
    };
    match (b, n) {
        (Metric::Histogram(bh), Metric::Histogram(nh)) => {
            let (bs, ns) = (&bh.summary, &nh.summary);
            let samples = (bs.count, ns.count);
            let floor = opts.floor_us;
            vec![
                check(
                    "p50",
                    Unit::Micros,
                    (bs.p50 as f64, ns.p50 as f64),
                    floor,
                    samples,
                ),
                check(
                    "p95",
                    Unit::Micros,
                    (bs.p95 as f64, ns.p95 as f64),
                    floor,
                    samples,
                ),
                check(
                    "p99",
                    Unit::Micros,
                    (bs.p99 as f64, ns.p99 as f64),
                    floor,
                    samples,
                ),
            ]
        }
        (Metric::Counter(bc), Metric::Counter(nc)) => match (bc.total, nc.total) {
            (Some(bt), Some(nt)) => {
                let frac = |v: u64, t: u64| if t == 0 { 0.0 } else { v as f64 / t as f64 };
                let (bf, nf) = (frac(bc.value, bt), frac(nc.value, nt));
                // Binomial noise: three standard errors of the larger fraction over the
                // smaller number of trials (at least 3 trials' worth when both are 0).
                let trials = bt.min(nt).max(1) as f64;
                let p = bf.max(nf);
                let floor = 3.0 * (p * (1.0 - p)).max(1.0 / trials).sqrt() / trials.sqrt();
                vec![check("rate", Unit::Fraction, (bf, nf), floor, (bt, nt))]
            }
            _ => {
                let per_s = |v: u64, run: &Run| {
                    if run.duration_s > 0.0 {
                        v as f64 / run.duration_s
                    } else {
                        0.0
                    }
                };
                // Counts of independent events are Poisson: a change within three standard
                // deviations (of the larger count) is noise, so 0 errors then 3 is not a
                // regression but 0 then 50 is. An absent event is not too few samples.
                let larger = (bc.value as f64 * new.duration_s / base.duration_s.max(1e-9))
                    .max(nc.value as f64);
                let floor = 3.0 * larger.sqrt() / new.duration_s.max(1e-9);
                let enough = (u64::MAX, u64::MAX);
                let rates = (per_s(bc.value, base), per_s(nc.value, new));
                vec![check("rate", Unit::PerSecond, rates, floor, enough)]
            }
        },
        (Metric::Gauge(bg), Metric::Gauge(ng)) => vec![check(
            "peak",
            Unit::Level,
            (bg.max as f64, ng.max as f64),
            0.0,
            (u64::MAX, u64::MAX),
        )],
        _ => Vec::new(),
    }
}

/// The verdict for a change from `b` to `n`.
fn judge(b: f64, n: f64, noise: f64, floor: f64, direction: Direction) -> (Change, Option<String>) {
    let diff = n - b;
    if diff == 0.0 || diff.abs() <= floor {
        return (Change::Unchanged, None);
    }
    if b != 0.0 && (diff / b).abs() <= noise {
        return (Change::Unchanged, None);
    }
    let better = match direction {
        Direction::LowerIsBetter => diff < 0.0,
        Direction::HigherIsBetter => diff > 0.0,
    };
    let note = (b == 0.0).then(|| "baseline was 0".to_string());
    if better {
        (Change::Improved, note)
    } else {
        (Change::Regressed, note)
    }
}

/// Parses a noise band: `5%`, `0.05`, `5 %`.
pub fn parse_noise(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("expected a noise band such as `5%` or `0.05`, got `{text}`"))?;
    if !(0.0..10.0).contains(&value) {
        return Err(format!(
            "expected a noise band between 0% and 1000%, got `{text}`"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_respects_direction_noise_and_floor() {
        use Direction::*;
        assert_eq!(
            judge(1000.0, 1040.0, 0.05, 0.0, LowerIsBetter).0,
            Change::Unchanged
        );
        assert_eq!(
            judge(1000.0, 1100.0, 0.05, 0.0, LowerIsBetter).0,
            Change::Regressed
        );
        assert_eq!(
            judge(1000.0, 900.0, 0.05, 0.0, LowerIsBetter).0,
            Change::Improved
        );
        assert_eq!(
            judge(1000.0, 1100.0, 0.05, 0.0, HigherIsBetter).0,
            Change::Improved
        );
        assert_eq!(
            judge(100.0, 140.0, 0.05, 50.0, LowerIsBetter).0,
            Change::Unchanged
        );
        assert_eq!(
            judge(0.0, 3.0, 0.05, 0.0, LowerIsBetter).0,
            Change::Regressed
        );
        assert_eq!(
            judge(0.0, 0.0, 0.05, 0.0, LowerIsBetter).0,
            Change::Unchanged
        );
    }

    #[test]
    fn noise_parses_percent_and_fraction() {
        assert_eq!(parse_noise("5%").unwrap(), 0.05);
        assert_eq!(parse_noise("0.1").unwrap(), 0.1);
        assert!(parse_noise("five").unwrap_err().contains("`five`"));
        assert!(parse_noise("-3%").is_err());
    }

    #[test]
    fn bad_counts_are_named_by_what_went_wrong() {
        for bad in [
            "http_req_failed",
            "http_errors",
            "delivery_lost",
            "delivery_duplicates",
        ] {
            assert!(is_bad_count(bad), "{bad}");
        }
        for good in ["http_reqs", "iterations", "delivery_received"] {
            assert!(!is_bad_count(good), "{good}");
        }
    }
}
