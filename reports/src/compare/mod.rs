//! Baseline comparison that knows the noise: new runs against baseline runs (or A/B rounds),
//! metric by metric, as verdicts a CI gate can act on, each with the change, its interval and
//! the confidence it was tested at.
//!
//! # Method
//!
//! Histograms are compared at p50, p95 and p99, counters by their rate (per second, or the
//! hit fraction of hit/miss counters), gauges by their peak. Every statistic is compared on
//! the log scale, so a change is a ratio (`+12%`) and multiplicative noise is even.
//!
//! 1. **Each run's noise from its own seconds** (module `estimate`): the run's
//!    one-second series gives the variance of its statistic. Percentiles use Woodruff's
//!    interval (how much the share of samples under the percentile varies, carried through
//!    the run's histogram), rates and fractions a ratio estimator, never below Poisson or
//!    binomial noise for counts of failures. Per-second values are autocorrelated (a GC
//!    pause, a burst of timer lag, a slow connection spans several seconds), so seconds are
//!    grouped in batches — about `∛n` seconds and at least the series' integrated
//!    autocorrelation time, `(1 + ρ) / (1 − ρ)` from its lag-one correlation — and batches,
//!    not seconds, are the independent units (batch means).
//! 2. **Run-to-run noise from history** (module `combine`): with two or more runs on
//!    a side the spread of the runs' values measures everything that differs between runs of
//!    one build; the per-run variance is the larger of that spread and the within-run one,
//!    tested with Student's t on the runs' degrees of freedom — conservative by construction.
//!    With one run a side the run-to-run noise is not measured: the comparison says so
//!    ([`Comparison::run_to_run`]) and rests on within-run noise alone — unless an A/A noise
//!    profile ([`GateOptions::noise_profile`], from [`noise_report`]) brings the spread of
//!    earlier runs of the scenario, pooled with its degrees of freedom. A/B rounds run
//!    alternately are compared pair by pair, so drift of the machine cancels out.
//! 3. **One false-alarm rate for the whole comparison**: every check gets a two-sided
//!    p-value, and Holm's step-down procedure over the gated checks keeps the chance that an
//!    unchanged build shows *any* significant change at or below `alpha` (default 5%),
//!    whatever the correlation between checks. Holm rather than Benjamini–Hochberg: a gate
//!    fails the build on one false regression, so the family-wise rate is the promise that
//!    matters, and BH's false-discovery rate does not bound it when some metrics truly moved
//!    (an improvement elsewhere would make a false regression likelier); BH also assumes a
//!    dependence structure that p50/p95/p99 of overlapping tagged series need not have.
//!    Checks reported but not gated (see [`Scope`]) form a family of their own.
//! 4. **Verdicts**: *Regressed* (or *Improved*) needs significance after the correction and a
//!    point estimate at least the minimum effect (default 5%; for latencies also at least
//!    the absolute floor, default 50 µs) in the worse (better) direction. *Unchanged* needs
//!    the interval inside ± the minimum effect. Anything else — too few samples, or an
//!    interval wider than the minimum effect — is *Inconclusive*, never a pass or a failure.
//!    The interval is at the level Holm tested the check at, so it always agrees with the
//!    verdict. A run under three seconds cannot measure its own noise: its samples are taken
//!    as independent, and the check says so.
//!
//! Runs of different scenarios or load shapes are refused unless forced: their deltas would
//! measure the change of load, not of the system.
//!
//! # Assumptions
//!
//! The log of each run's statistic is roughly normal around its build's value (runs of a few
//! thousand samples make percentiles and rates so); the per-second autocorrelation is close
//! to AR(1) and fades within a batch (seconds-long stalls, not minutes-long drift: that is
//! what A/B rounds and several baselines are for); runs of one build have the same run-to-run noise in baseline
//! and new (the reason to compare like with like).

mod combine;
pub mod display;
mod engine;
mod estimate;
pub mod noise;
mod verdict;

use serde::{Deserialize, Serialize};

use crate::key::MetricKey;
use crate::run::{Metric, Run};

pub use noise::{noise_report, NoiseDesign, NoiseLine, NoiseReport};
pub use verdict::{Change, Check, Comparison, Design, Direction, Estimate, Unit};

/// How `compare` judges one run against one baseline (the options of the one-baseline CLI
/// flags). Every metric is compared and gates; see [`GateOptions`] for the full set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// The minimum effect: a change smaller than `±noise` (0.05 = 5%) is never a regression.
    pub noise: f64,
    /// Absolute minimum effect for latency statistics, µs.
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

/// Which metrics a comparison looks at, and which of them gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Gate the named metric keys (exact keys or tag filters). Empty: the new runs' gate
    /// lists or the metrics their thresholds name ([`gate_keys`]), or every plain-name metric
    /// when they have neither.
    Asked(Vec<MetricKey>),
    /// As `Asked`, and also compare every other metric: reported, in a family of their own
    /// (corrected for their number), never gating.
    AskedAndRest(Vec<MetricKey>),
    /// Every metric gates, in one family (what [`compare`] does for the one-baseline CLI).
    Every,
}

/// How runs are compared.
#[derive(Debug, Clone, PartialEq)]
pub struct GateOptions {
    /// The false-alarm rate of the whole comparison: the chance that an unchanged build shows
    /// any significant change among the gated checks (0.05 = 5%).
    pub alpha: f64,
    /// The minimum effect: a regression is at least this large a relative change (0.05).
    pub min_effect: f64,
    /// The absolute minimum effect of latency statistics, µs (50).
    pub floor_us: f64,
    /// Fewer samples than this in a run (histogram count, hit/miss trials) makes the check
    /// `Inconclusive` (100).
    pub min_samples: u64,
    /// Which metrics are compared and gate.
    pub scope: Scope,
    /// Run-to-run noise measured before, from A/A runs of this scenario ([`noise_report`]):
    /// pooled with the spread of the compared runs, so even one run a side is judged against
    /// the noise between runs, not only within them. Unpaired comparisons only.
    pub noise_profile: Option<NoiseReport>,
    /// Compare even runs of different scenarios or load shapes (the mismatches are listed).
    pub force: bool,
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            alpha: 0.05,
            min_effect: 0.05,
            floor_us: 50.0,
            min_samples: 100,
            scope: Scope::Asked(Vec::new()),
            noise_profile: None,
            force: false,
        }
    }
}

impl From<&CompareOptions> for GateOptions {
    fn from(o: &CompareOptions) -> GateOptions {
        GateOptions {
            min_effect: o.noise,
            floor_us: o.floor_us,
            min_samples: o.min_samples,
            scope: Scope::Every,
            force: o.force,
            ..GateOptions::default()
        }
    }
}

/// A run with the name it is reported by (its file, usually).
#[derive(Debug, Clone, Copy)]
pub struct Labeled<'a> {
    /// How messages name the run; empty for none.
    pub label: &'a str,
    /// The run.
    pub run: &'a Run,
}

impl<'a> Labeled<'a> {
    /// `run` named `label`.
    pub fn new(label: &'a str, run: &'a Run) -> Labeled<'a> {
        Labeled { label, run }
    }
}

/// Why runs were not compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompareError {
    /// Different scenarios or load shapes, and not forced.
    #[error("refusing to compare unlike runs ({}); pass --force to compare anyway", .0.join("; "))]
    Unlike(Vec<String>),
    /// A side without enough runs.
    #[error("expected at least {needed} {what}, got {got}")]
    TooFewRuns {
        /// What is missing, in the number `needed` asks for: `baseline run`, `new run`,
        /// `A/B round`, `runs of one build`.
        what: &'static str,
        /// How many are needed.
        needed: usize,
        /// How many were given.
        got: usize,
    },
    /// A/B arms of different lengths.
    #[error("A/B rounds need as many A runs as B runs, got {a} A and {b} B")]
    Unpaired {
        /// A runs.
        a: usize,
        /// B runs.
        b: usize,
    },
    /// A run file is damaged (a histogram does not decode).
    #[error("{label}: {message}")]
    Damaged {
        /// The run.
        label: String,
        /// What is damaged.
        message: String,
    },
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

/// The metric keys `run`'s thresholds name, in order, each once.
pub fn threshold_keys(run: &Run) -> Vec<MetricKey> {
    let mut keys: Vec<MetricKey> = Vec::new();
    for v in &run.thresholds {
        if let Ok(k) = v.metric.parse::<MetricKey>() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

/// What a comparison gates by default: the scenario's `gate:` list when the run carries one
/// (`meta.gate`, metric keys or tag filters), else the metric keys its thresholds name.
pub fn gate_keys(run: &Run) -> Vec<MetricKey> {
    let listed = run
        .meta
        .as_ref()
        .and_then(|m| m.get("gate"))
        .and_then(|g| g.as_array());
    match listed {
        Some(keys) if !keys.is_empty() => {
            let mut out: Vec<MetricKey> = Vec::new();
            for k in keys.iter().filter_map(|k| k.as_str()?.parse().ok()) {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
            out
        }
        _ => threshold_keys(run),
    }
}

/// How `other` differs from `reference` in scenario name and load shape ([`SHAPE_FIELDS`]
/// of their `meta`), one line per difference: empty when they are alike. What
/// [`differences`] checks for runs, for plans not run yet (`loadgen ab` checks its arms
/// before sending anything).
pub fn shape_differences(
    reference: (&str, Option<&serde_json::Value>),
    other: (&str, Option<&serde_json::Value>),
) -> Vec<String> {
    let field = |meta: Option<&serde_json::Value>, name: &str| {
        meta.and_then(|m| m.get(name))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let mut out = Vec::new();
    if reference.0 != other.0 {
        out.push(format!("scenario `{}` vs `{}`", reference.0, other.0));
    }
    for name in SHAPE_FIELDS {
        let (b, n) = (field(reference.1, name), field(other.1, name));
        if b != n {
            out.push(format!("load shape `{name}`: {b} vs {n}"));
        }
    }
    out
}

/// How `others` differ from `reference` in scenario and load shape ([`SHAPE_FIELDS`]), one
/// line per difference naming the run by its label: empty when all are alike.
pub fn differences(reference: &Run, others: &[Labeled<'_>]) -> Vec<String> {
    engine::unlike(reference, others)
}

/// Compares `new` with one baseline run, every metric gating (the one-baseline form).
pub fn compare(base: &Run, new: &Run, opts: &CompareOptions) -> Result<Comparison, CompareError> {
    engine::run(
        &[Labeled::new("", base)],
        &[Labeled::new("", new)],
        false,
        &GateOptions::from(opts),
    )
}

/// Compares new runs with baseline runs (the baseline history): the noise comes from the
/// spread of the runs, the change from their means.
pub fn compare_runs(
    baselines: &[Labeled<'_>],
    new: &[Labeled<'_>],
    opts: &GateOptions,
) -> Result<Comparison, CompareError> {
    engine::run(baselines, new, false, opts)
}

/// Compares alternating A/B rounds: `a[i]` and `b[i]` ran back to back in round `i`, and the
/// change of B against A is judged round by round, so drift shared by a round cancels out.
pub fn compare_paired(
    a: &[Labeled<'_>],
    b: &[Labeled<'_>],
    opts: &GateOptions,
) -> Result<Comparison, CompareError> {
    if a.len() != b.len() {
        return Err(CompareError::Unpaired {
            a: a.len(),
            b: b.len(),
        });
    }
    engine::run(a, b, true, opts)
}

/// One arm of an A/B round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arm {
    /// The baseline build.
    A,
    /// The candidate build.
    B,
}

/// The order to run `rounds` A/B rounds in: A B, B A, A B, … — each round alternates which
/// arm goes first, so a steady drift favours neither arm (ABBA counterbalancing).
pub fn ab_schedule(rounds: usize) -> Vec<[Arm; 2]> {
    (0..rounds)
        .map(|i| {
            if i % 2 == 0 {
                [Arm::A, Arm::B]
            } else {
                [Arm::B, Arm::A]
            }
        })
        .collect()
}

/// Parses a relative effect or band: `5%`, `0.05`, `5 %`.
pub fn parse_noise(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("expected a relative change such as `5%` or `0.05`, got `{text}`"))?;
    if !(0.0..10.0).contains(&value) {
        return Err(format!(
            "expected a relative change between 0% and 1000%, got `{text}`"
        ));
    }
    Ok(value)
}

/// Parses a false-alarm rate: `5%`, `0.01`; strictly between 0 and 50%.
pub fn parse_alpha(text: &str) -> Result<f64, String> {
    match parse_noise(text) {
        Ok(v) if v > 0.0 && v < 0.5 => Ok(v),
        _ => Err(format!(
            "expected a false-alarm rate above 0% and below 50% such as `5%`, got `{text}`"
        )),
    }
}

/// Parses the power a detectable change is for: `80%`, `0.9`; at least 50%, below 100%.
pub fn parse_power(text: &str) -> Result<f64, String> {
    match parse_noise(text) {
        Ok(v) if (0.5..1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected a power of at least 50% and below 100% such as `80%`, got `{text}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_and_alpha_parse_percent_and_fraction() {
        assert_eq!(parse_noise("5%").unwrap(), 0.05);
        assert_eq!(parse_noise("0.1").unwrap(), 0.1);
        assert!(parse_noise("five").unwrap_err().contains("`five`"));
        assert!(parse_noise("-3%").is_err());
        assert_eq!(parse_alpha("1%").unwrap(), 0.01);
        assert_eq!(parse_power("90%").unwrap(), 0.9);
        assert!(parse_power("100%").unwrap_err().contains("`100%`"));
        assert_eq!(
            parse_alpha("0").unwrap_err(),
            "expected a false-alarm rate above 0% and below 50% such as `5%`, got `0`"
        );
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

    #[test]
    fn ab_rounds_alternate_which_arm_goes_first() {
        assert_eq!(
            ab_schedule(3),
            vec![[Arm::A, Arm::B], [Arm::B, Arm::A], [Arm::A, Arm::B]]
        );
    }
}
