//! One run's estimate of one compared statistic: its value, its logarithm (the scale every
//! test works on) and the variance of that logarithm from the run's own one-second series,
//! with the seconds grouped into batches so autocorrelated seconds do not pass for
//! independent ones.
//!
//! - Percentiles: Woodruff's interval. The share of samples at or below the run's percentile
//!   is counted batch by batch; the spread of those counts (a cluster-robust variance, never
//!   below the binomial one) is carried through the run's histogram: the values at
//!   `q ± one standard error` of that share give the percentile's standard error (one side
//!   alone when the other falls off the end of the distribution).
//! - Counter rates and hit/miss fractions: a ratio estimator over the batches (events or hits
//!   per batch against seconds or trials per batch), never below the Poisson or binomial
//!   variance for counts of things going wrong, whose zeros would otherwise claim certainty;
//!   a half event is added to every count so that zero has a logarithm.
//! - Gauges: the peak level, which has no within-run noise estimate (only runs give one).
//!
//! Batches are about `∛n` seconds long over the run's `n` seconds, and at least the
//! integrated autocorrelation time of the per-second residuals (from their lag-one
//! correlation, once there are 8 seconds to estimate it from), so batches, not seconds, are
//! close to independent; the last batch takes the remainder.

use hdrhistogram::Histogram;

use crate::hist;
use crate::key::MetricKey;
use crate::run::{Metric, Run, RunError, Selected, Series};

/// A statistic a check compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stat {
    /// A percentile of a histogram, `0 < q < 1`.
    Percentile(f64),
    /// Events per second of a plain counter.
    Rate,
    /// Hits per trial of a hit/miss counter.
    Fraction,
    /// The highest level of a gauge.
    Peak,
}

impl Stat {
    /// The statistics compared for `metric`.
    pub(crate) fn for_metric(metric: &Metric) -> Vec<Stat> {
        match metric {
            Metric::Histogram(_) => vec![
                Stat::Percentile(0.50),
                Stat::Percentile(0.95),
                Stat::Percentile(0.99),
            ],
            Metric::Counter(c) if c.total.is_some() => vec![Stat::Fraction],
            Metric::Counter(_) => vec![Stat::Rate],
            Metric::Gauge(_) => vec![Stat::Peak],
        }
    }

    /// Its name in a check: `p50`, `p95`, `p99`, `rate`, `peak`.
    pub(crate) fn name(self) -> String {
        match self {
            Stat::Percentile(q) => format!("p{}", (q * 100.0).round()),
            Stat::Rate | Stat::Fraction => "rate".to_string(),
            Stat::Peak => "peak".to_string(),
        }
    }
}

/// One run's estimate of one statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RunEstimate {
    /// The statistic as shown (µs, per second, a fraction, a level).
    pub value: f64,
    /// Its logarithm (counts with half an event added).
    pub y: f64,
    /// The variance of `y` from the run's own seconds.
    pub var: f64,
    /// Degrees of freedom of `var`: batches − 1, infinite where a Poisson or binomial floor
    /// (a model, not an estimate) set it, 0 where there is no within-run estimate.
    pub df: f64,
    /// Whether nothing at all was counted (a zero count, a zero fraction, a zero peak).
    pub none: bool,
    /// Whether the run was too short to measure its own noise (fewer than [`MIN_BATCHES`]
    /// batches) and its samples were taken as independent.
    pub independent: bool,
}

/// Fewer batches than this cannot measure a run's own noise (one or two batches leave the
/// variance with 0 or 1 degree of freedom): the samples are then taken as independent
/// (binomial or Poisson noise), and the check says so.
pub(crate) const MIN_BATCHES: usize = 3;

/// The within-run variance of a statistic from its batches (`None` or too few batches: not
/// measurable) and the variance independent samples would give: `(variance, degrees of
/// freedom, taken as independent)`. The batches' estimate stands when it is the larger (with
/// `batches − 1` degrees of freedom); the model's floor otherwise (no estimation error).
fn within_run(batched: Option<(f64, usize)>, independent: f64) -> (f64, f64, bool) {
    match batched {
        Some((var, batches)) if batches >= MIN_BATCHES => {
            if var > independent {
                (var, batches as f64 - 1.0, false)
            } else {
                (independent, f64::INFINITY, false)
            }
        }
        _ => (independent, f64::INFINITY, true),
    }
}

/// One metric of one run, with its seconds, ready for estimates.
pub(crate) enum MetricData {
    /// A histogram and its per-second histograms.
    Histogram {
        total: Histogram<u64>,
        seconds: Vec<(u32, Histogram<u64>)>,
    },
    /// A counter and its per-second `(value, trials)`.
    Counter {
        value: u64,
        total: Option<u64>,
        seconds: Vec<(u32, u64, u64)>,
    },
    /// A gauge's peak.
    Gauge { peak: u64 },
}

impl MetricData {
    /// The metric `key` of `run` (an exact key, or the merge of every key a filter matches),
    /// `None` when the run has no such metric.
    pub(crate) fn of(run: &Run, key: &MetricKey) -> Result<Option<MetricData>, RunError> {
        let Some(selected) = run.select(key)? else {
            return Ok(None);
        };
        let series: Vec<(&MetricKey, &Series)> = if run.series.contains_key(key) {
            run.series.get_key_value(key).into_iter().collect()
        } else {
            run.series.iter().filter(|(k, _)| k.matches(key)).collect()
        };
        Ok(Some(match selected {
            Selected::Histogram(total) => {
                let mut by_t: std::collections::BTreeMap<u32, Histogram<u64>> =
                    std::collections::BTreeMap::new();
                for (k, s) in series {
                    let Series::Histogram(points) = s else {
                        continue;
                    };
                    for p in points {
                        let h = hist::decode(&p.hist).map_err(|source| RunError::Histogram {
                            key: k.clone(),
                            source,
                        })?;
                        match by_t.get_mut(&p.t) {
                            Some(acc) => {
                                hist::add(acc, &h).map_err(|source| RunError::Histogram {
                                    key: k.clone(),
                                    source,
                                })?
                            }
                            None => {
                                by_t.insert(p.t, h);
                            }
                        }
                    }
                }
                MetricData::Histogram {
                    total,
                    seconds: by_t.into_iter().collect(),
                }
            }
            Selected::Counter(c) => {
                let mut by_t: std::collections::BTreeMap<u32, (u64, u64)> =
                    std::collections::BTreeMap::new();
                for (_, s) in series {
                    let Series::Counter(points) = s else {
                        continue;
                    };
                    for p in points {
                        let slot = by_t.entry(p.t).or_default();
                        slot.0 += p.value;
                        slot.1 += p.total.unwrap_or(0);
                    }
                }
                MetricData::Counter {
                    value: c.value,
                    total: c.total,
                    seconds: by_t.into_iter().map(|(t, (v, n))| (t, v, n)).collect(),
                }
            }
            Selected::Gauge(g) => MetricData::Gauge { peak: g.max },
        }))
    }

    /// Samples for the minimum-sample rule: a histogram's count, a hit/miss counter's trials;
    /// `u64::MAX` where the rule does not apply (plain counters, gauges: an absent event is
    /// not too few samples).
    pub(crate) fn samples(&self) -> u64 {
        match self {
            MetricData::Histogram { total, .. } => total.len(),
            MetricData::Counter {
                total: Some(total), ..
            } => *total,
            _ => u64::MAX,
        }
    }

    /// The kind of metric, as a [`Metric`]-like label for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            MetricData::Histogram { .. } => "histogram",
            MetricData::Counter { total: Some(_), .. } => "hit/miss counter",
            MetricData::Counter { .. } => "counter",
            MetricData::Gauge { .. } => "gauge",
        }
    }
}

/// The batch length for per-second pairs `(x, n)` of a ratio `Σx / Σn`: about `∛s` seconds
/// of the `s` (rounded; the MSE-optimal growth of batch means, Song & Schmeiser 1995), and,
/// from 8 seconds on, at least the integrated autocorrelation time `(1 + ρ) / (1 − ρ)` of the
/// per-second residuals `x − r·n` (lag-one correlation `ρ` of an AR(1) fit, corrected for its
/// `−1/s` bias and held within `[0, 0.9]`), so that autocorrelated seconds get longer batches.
/// (Kendall's fuller bias correction, `(1 + 3ρ)/s`, made batches longer but the 10-second
/// single-run comparisons of the tests no better calibrated: with so few seconds the variance
/// of a longer batch's estimate costs what its smaller bias gains.)
fn batch_len(per_second: &[(f64, f64)]) -> usize {
    let s = per_second.len();
    let base = (s as f64).cbrt().round().max(1.0) as usize;
    let (x, n) = per_second
        .iter()
        .fold((0.0, 0.0), |(sx, sn), (x, n)| (sx + x, sn + n));
    if n <= 0.0 || s < 8 {
        return base;
    }
    let r = x / n;
    let res: Vec<f64> = per_second.iter().map(|(x, n)| x - r * n).collect();
    let mean = res.iter().sum::<f64>() / s as f64;
    let var: f64 = res.iter().map(|e| (e - mean).powi(2)).sum();
    if var <= 0.0 {
        return base;
    }
    let lag1: f64 = res.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum();
    let rho = (lag1 / var + 1.0 / s as f64).clamp(0.0, 0.9);
    base.max(((1.0 + rho) / (1.0 - rho) - 1e-9).ceil() as usize)
}

/// The cluster-robust variance of a ratio `Σx / Σn` from per-second pairs grouped into
/// batches (the last batch taking the remainder; batches without trials dropped), and the
/// number of batches; `None` with fewer than two. Batches are never so long that fewer than
/// [`MIN_BATCHES`] remain: a short, strongly autocorrelated run then gets few degrees of
/// freedom (a wide interval), not no estimate at all.
fn batched_ratio_variance(per_second: &[(f64, f64)]) -> Option<(f64, usize)> {
    let len = batch_len(per_second).min((per_second.len() / MIN_BATCHES).max(1));
    let count = (per_second.len() / len).max(1);
    let mut batches = vec![(0.0, 0.0); count];
    for (t, (x, n)) in per_second.iter().enumerate() {
        let b = &mut batches[(t / len).min(count - 1)];
        b.0 += x;
        b.1 += n;
    }
    batches.retain(|(_, n)| *n > 0.0);
    ratio_variance(&batches).map(|v| (v, batches.len()))
}

/// The cluster-robust variance of a ratio `Σx / Σn` over batches `(x, n)`; `None` with
/// fewer than two batches (no spread to measure).
fn ratio_variance(batches: &[(f64, f64)]) -> Option<f64> {
    let b = batches.len();
    if b < 2 {
        return None;
    }
    let (x, n): (f64, f64) = batches
        .iter()
        .fold((0.0, 0.0), |(sx, sn), (x, n)| (sx + x, sn + n));
    if n <= 0.0 {
        return Some(0.0);
    }
    let r = x / n;
    let ss: f64 = batches.iter().map(|(bx, bn)| (bx - r * bn).powi(2)).sum();
    Some(ss * b as f64 / (b as f64 - 1.0) / (n * n))
}

/// The seconds a run's per-second data spans: up to its duration, or its last second with
/// data when that is later.
fn span(run: &Run, last: Option<u32>) -> u32 {
    let by_duration = run.duration_s.ceil().max(0.0) as u32;
    by_duration.max(last.map_or(0, |t| t + 1))
}

/// Why a run's statistic cannot be estimated.
pub(crate) enum NoEstimate {
    /// A percentile of an empty histogram (or a statistic the metric does not have).
    Empty,
}

/// The estimate of `stat` for `data` from `run`.
pub(crate) fn estimate(
    run: &Run,
    data: &MetricData,
    stat: Stat,
    bad_count: bool,
) -> Result<RunEstimate, NoEstimate> {
    match (data, stat) {
        (MetricData::Histogram { total, seconds }, Stat::Percentile(q)) => {
            percentile(run, total, seconds, q)
        }
        (MetricData::Counter { value, seconds, .. }, Stat::Rate) => {
            rate(run, *value, seconds, bad_count)
        }
        (
            MetricData::Counter {
                value,
                total: Some(total),
                seconds,
            },
            Stat::Fraction,
        ) => fraction(run, *value, *total, seconds),
        (MetricData::Gauge { peak }, Stat::Peak) => {
            let v = *peak as f64;
            Ok(RunEstimate {
                value: v,
                y: v.max(1.0).ln(),
                var: 0.0,
                df: 0.0,
                none: *peak == 0,
                independent: false,
            })
        }
        _ => Err(NoEstimate::Empty),
    }
}

fn percentile(
    run: &Run,
    total: &Histogram<u64>,
    seconds: &[(u32, Histogram<u64>)],
    q: f64,
) -> Result<RunEstimate, NoEstimate> {
    if total.is_empty() {
        return Err(NoEstimate::Empty);
    }
    let theta = total.value_at_quantile(q);
    let mut per_second = vec![(0.0, 0.0); span(run, seconds.last().map(|(t, _)| *t)) as usize];
    for (t, h) in seconds {
        per_second[*t as usize] = (h.count_between(0, theta) as f64, h.len() as f64);
    }
    let n = total.len() as f64;
    // Never below the binomial variance of independent samples.
    let binomial = q * (1.0 - q) / n;
    let (var_share, df, independent) = within_run(batched_ratio_variance(&per_second), binomial);
    let se_share = var_share.sqrt();
    // Woodruff: the values at q ± one standard error of the share, on the log scale. A side
    // that falls off the distribution (q + se past 1 lands on the single largest sample, an
    // extreme, not a slope) is left out and the other side stands for both.
    let y = (theta as f64).max(1.0).ln();
    let at = |share: f64| (total.value_at_quantile(share) as f64).max(1.0).ln();
    let below = (q - se_share > 0.0).then(|| y - at(q - se_share));
    let above = (q + se_share < 1.0).then(|| at(q + se_share) - y);
    let se = match (below, above) {
        (Some(b), Some(a)) => (a + b) / 2.0,
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => (at(1.0) - at(0.0)) / 2.0,
    };
    Ok(RunEstimate {
        value: theta as f64,
        y,
        var: se * se,
        df,
        none: false,
        independent,
    })
}

fn rate(
    run: &Run,
    value: u64,
    seconds: &[(u32, u64, u64)],
    bad_count: bool,
) -> Result<RunEstimate, NoEstimate> {
    let n = span(run, seconds.last().map(|(t, _, _)| *t));
    // Every second of the run is exposure, also the ones without events.
    let mut per_second = vec![(0.0, 1.0); n as usize];
    for (t, v, _) in seconds {
        per_second[*t as usize].0 = *v as f64;
    }
    let corrected = value as f64 + 0.5;
    let per_exposure = corrected / f64::from(n);
    let batched =
        batched_ratio_variance(&per_second).map(|(v, b)| (v / (per_exposure * per_exposure), b));
    // Counts of failures never claim less than Poisson noise; other counts fall back on it
    // only when the run is too short to measure its own.
    let poisson = 1.0 / corrected;
    let (var, df, independent) = match within_run(batched, poisson) {
        (_, _, false) if !bad_count => {
            let (v, b) = batched.unwrap_or((0.0, 1));
            (v, b as f64 - 1.0, false)
        }
        measured => measured,
    };
    let duration = if run.duration_s > 0.0 {
        run.duration_s
    } else {
        f64::from(n)
    };
    Ok(RunEstimate {
        value: value as f64 / duration,
        y: (corrected / duration).ln(),
        var,
        df,
        none: value == 0,
        independent,
    })
}

fn fraction(
    run: &Run,
    value: u64,
    total: u64,
    seconds: &[(u32, u64, u64)],
) -> Result<RunEstimate, NoEstimate> {
    let mut per_second = vec![(0.0, 0.0); span(run, seconds.last().map(|(t, _, _)| *t)) as usize];
    for (t, v, n) in seconds {
        per_second[*t as usize] = (*v as f64, *n as f64);
    }
    let trials = total as f64;
    let p = (value as f64 + 0.5) / (trials + 1.0);
    // Hits are things going wrong: never below the binomial variance.
    let batched = batched_ratio_variance(&per_second).map(|(v, b)| (v / (p * p), b));
    let (var, df, independent) = within_run(batched, (1.0 - p) / (value as f64 + 0.5));
    Ok(RunEstimate {
        value: if total == 0 {
            0.0
        } else {
            value as f64 / trials
        },
        y: p.ln(),
        var,
        df,
        none: value == 0,
        independent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_with_the_cube_root_and_with_autocorrelation() {
        let flat: Vec<(f64, f64)> = (0..27).map(|t| (f64::from(t % 2), 2.0)).collect();
        assert_eq!(
            batch_len(&flat),
            3,
            "alternating seconds: no positive correlation"
        );
        // Long slow waves: neighbours nearly equal, the correlation time is long.
        let wave: Vec<(f64, f64)> = (0..27)
            .map(|t| (10.0 + 5.0 * (f64::from(t) / 4.0).sin(), 20.0))
            .collect();
        assert_eq!(batch_len(&wave), 19, "ρ held at 0.9");
        let (v, batches) = batched_ratio_variance(&flat).unwrap();
        assert_eq!(batches, 9);
        assert!(v > 0.0);
        assert!(
            batched_ratio_variance(&[(1.0, 2.0)]).is_none(),
            "one second"
        );
        let (_, batches) = batched_ratio_variance(&wave[..10]).unwrap();
        assert_eq!(batches, MIN_BATCHES, "never fewer than three batches");
    }

    #[test]
    fn ratio_variance_is_zero_for_even_batches_and_grows_with_their_spread() {
        assert_eq!(ratio_variance(&[(5.0, 10.0)]), None);
        assert_eq!(ratio_variance(&[(5.0, 10.0), (5.0, 10.0)]), Some(0.0));
        let v = ratio_variance(&[(2.0, 10.0), (8.0, 10.0)]).unwrap();
        // Shares 0.2 and 0.8 around 0.5: (3² + 3²) · 2 / 1 / 20².
        assert!((v - 0.09).abs() < 1e-12, "{v}");
    }
}
