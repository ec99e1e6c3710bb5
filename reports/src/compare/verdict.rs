//! What a comparison produces: each check's verdict with its numbers and tested change, and
//! the comparison as a whole (how it was made, whether it regressed).

use std::fmt;

use serde::{Deserialize, Serialize};

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
    /// Significantly better, by at least the minimum effect.
    Improved,
    /// Significantly worse, by at least the minimum effect.
    Regressed,
    /// The interval lies within ± the minimum effect.
    Unchanged,
    /// Not enough data for the requested confidence: neither a pass nor a failure.
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

/// The tested change of one check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The estimated relative change, `new / base - 1` of the runs' geometric means (counts
    /// with half an event added).
    pub change: f64,
    /// Lower end of the interval of `change`.
    pub low: f64,
    /// Upper end of the interval of `change`.
    pub high: f64,
    /// The confidence of the interval: `1 -` the level Holm tested the check at.
    pub confidence: f64,
    /// The two-sided p-value of "no change", before correction.
    pub p: f64,
    /// Degrees of freedom of the test (`null` in JSON for a known, zero variance).
    #[serde(with = "finite_or_null")]
    pub df: f64,
    /// Whether run-to-run noise was measured (several runs or pairs) or only within-run noise.
    pub run_to_run: bool,
}

/// One compared statistic of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The metric key.
    pub metric: String,
    /// The statistic: `p50`, `p95`, `p99`, `rate` or `peak`.
    pub stat: String,
    /// The baseline's value (the geometric mean of the baseline runs for latencies, else
    /// their mean).
    pub base: f64,
    /// The new value, averaged the same way over the new runs.
    pub new: f64,
    /// `new / base - 1`; `None` when the baseline is 0.
    pub delta: Option<f64>,
    /// The unit of `base` and `new`.
    pub unit: Unit,
    /// Which way is better.
    pub direction: Direction,
    /// The verdict.
    pub change: Change,
    /// Whether the verdict gates (a regression fails the comparison) or is only reported.
    #[serde(default = "yes")]
    pub gated: bool,
    /// The tested change with its interval; `None` when the check was not tested (too few
    /// samples, nothing on either side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// The minimum effect that applied to this check (relative; the latency floor can raise it).
    #[serde(default)]
    pub min_effect: f64,
    /// Why the verdict is what it is, when that is not the numbers alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn yes() -> bool {
    true
}

/// How the runs were laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Design {
    /// Baseline runs against new runs.
    Unpaired {
        /// Baseline runs.
        baselines: usize,
        /// New runs.
        new: usize,
    },
    /// Alternating A/B rounds, compared round by round.
    Paired {
        /// Rounds.
        pairs: usize,
    },
}

impl Default for Design {
    fn default() -> Self {
        Design::Unpaired {
            baselines: 1,
            new: 1,
        }
    }
}

impl fmt::Display for Design {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |n: usize| if n == 1 { "" } else { "s" };
        match *self {
            Design::Unpaired { baselines, new } => write!(
                f,
                "{baselines} baseline run{} against {new} new run{}",
                s(baselines),
                s(new)
            ),
            Design::Paired { pairs } => write!(f, "{pairs} alternating A/B round{}", s(pairs)),
        }
    }
}

/// The comparison of new runs with their baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline's scenario.
    pub base_scenario: String,
    /// When the latest baseline run started.
    pub base_started_at: chrono::DateTime<chrono::Utc>,
    /// The minimum effect (relative), as [`GateOptions::min_effect`](super::GateOptions::min_effect)
    /// (`noise` in run files written before it had this name).
    #[serde(alias = "noise")]
    pub min_effect: f64,
    /// The absolute latency floor of the minimum effect, µs.
    pub floor_us: f64,
    /// The minimum sample count used.
    pub min_samples: u64,
    /// The false-alarm rate of the whole comparison (per family, Holm-corrected).
    #[serde(default)]
    pub alpha: f64,
    /// How the runs were laid out.
    #[serde(default)]
    pub design: Design,
    /// Whether run-to-run noise was measured (several runs or rounds, or a noise profile).
    #[serde(default)]
    pub run_to_run: bool,
    /// How many A/A runs the noise profile that was pooled in came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_profile_runs: Option<usize>,
    /// The metric keys that gate.
    #[serde(default)]
    pub gated_metrics: Vec<String>,
    /// Differences of scenario or load shape that `force` let through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
    /// Metrics present in only some of the runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<String>,
    /// Every check: gated ones first, each group in metric key order.
    pub checks: Vec<Check>,
}

impl Comparison {
    /// Whether any gated check regressed.
    pub fn regressed(&self) -> bool {
        self.checks
            .iter()
            .any(|c| c.gated && c.change == Change::Regressed)
    }

    /// How many gated checks regressed: what fails the gate.
    pub fn regressions(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.gated && c.change == Change::Regressed)
            .count()
    }

    /// How many checks (gated or not) have verdict `change`.
    pub fn count(&self, change: Change) -> usize {
        self.checks.iter().filter(|c| c.change == change).count()
    }

    /// How many tested checks the family of gated (`true`) or reported checks holds: the
    /// number Holm corrected for.
    pub fn tests(&self, gated: bool) -> usize {
        self.checks
            .iter()
            .filter(|c| c.gated == gated && c.estimate.is_some())
            .count()
    }
}

/// Serialises a float that may be infinite as `null`.
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}
