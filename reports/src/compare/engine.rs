//! The comparison itself: which checks (the scope), each run's estimates, the combined change,
//! Holm's correction per family, and the verdicts.

use super::combine::{self, Combined};
use super::estimate::{self, MetricData, NoEstimate, RunEstimate, Stat};
use super::{
    direction, gate_keys, is_bad_count, shape_differences, Change, Check, CompareError, Comparison,
    Design, Direction, Estimate, GateOptions, Labeled, Scope, Unit,
};
use crate::key::MetricKey;
use crate::run::{Metric, Run};
use crate::stats;

/// A metric to compare and whether it gates.
pub(crate) struct Planned {
    pub key: MetricKey,
    pub gated: bool,
}

/// One statistic of one metric with every run's estimate (or why there is none).
pub(crate) struct Measured {
    pub key: MetricKey,
    pub stat: Stat,
    pub unit: Unit,
    pub direction: Direction,
    pub gated: bool,
    pub base: Vec<RunEstimate>,
    pub new: Vec<RunEstimate>,
    /// The fewest samples of a baseline run and of a new run.
    pub samples: (u64, u64),
    /// Set when the statistic cannot be tested.
    pub missing: Option<String>,
}

/// How `runs` differ from `reference` in scenario and load shape, each line naming the run.
pub(crate) fn unlike(reference: &Run, runs: &[Labeled<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    for l in runs {
        let who = if l.label.is_empty() {
            String::new()
        } else {
            format!("{}: ", l.label)
        };
        let why = shape_differences(
            (&reference.scenario, reference.meta.as_ref()),
            (&l.run.scenario, l.run.meta.as_ref()),
        );
        out.extend(why.into_iter().map(|w| format!("{who}{w}")));
    }
    out
}

/// The metrics to compare, gated first: for `Every` and the rest of `AskedAndRest`, every key
/// of the first baseline and the first new run.
pub(crate) fn plan(scope: &Scope, base: &[Labeled<'_>], new: &[Labeled<'_>]) -> Vec<Planned> {
    let mut every: Vec<MetricKey> = base
        .iter()
        .take(1)
        .chain(new.iter().take(1))
        .flat_map(|l| l.run.metrics.keys().cloned())
        .collect();
    every.sort();
    every.dedup();
    let asked = |keys: &Vec<MetricKey>| -> Vec<MetricKey> {
        if !keys.is_empty() {
            return keys.clone();
        }
        let mut named: Vec<MetricKey> = Vec::new();
        for l in new {
            for k in gate_keys(l.run) {
                if !named.contains(&k) {
                    named.push(k);
                }
            }
        }
        if named.is_empty() {
            named = every
                .iter()
                .filter(|k| k.tags.is_empty())
                .cloned()
                .collect();
        }
        named.sort();
        named
    };
    let planned = |keys: Vec<MetricKey>, gated: bool| {
        keys.into_iter()
            .map(move |key| Planned { key, gated })
            .collect::<Vec<_>>()
    };
    match scope {
        Scope::Every => planned(every, true),
        Scope::Asked(keys) => planned(asked(keys), true),
        Scope::AskedAndRest(keys) => {
            let gated = asked(keys);
            // A gated key the runs hold is that metric alone; a gated filter they do not hold
            // is the merge of the keys it selects, which are then not reported again.
            let covers =
                |g: &MetricKey, k: &MetricKey| g == k || (!every.contains(g) && k.matches(g));
            let rest = every
                .iter()
                .filter(|k| !gated.iter().any(|g| covers(g, k)))
                .cloned()
                .collect();
            let mut out = planned(gated, true);
            out.extend(planned(rest, false));
            out
        }
    }
}

/// Every baseline run's and every new run's data of one metric, or why the metric cannot be
/// compared (for the unmatched list).
type Gathered = Result<(Vec<MetricData>, Vec<MetricData>), String>;

/// Every run's data for `key`, or why the metric cannot be compared (for the unmatched list).
fn gather(
    key: &MetricKey,
    base: &[Labeled<'_>],
    new: &[Labeled<'_>],
) -> Result<Gathered, CompareError> {
    let load = |side: &[Labeled<'_>]| -> Result<Vec<Option<MetricData>>, CompareError> {
        side.iter()
            .map(|l| {
                MetricData::of(l.run, key).map_err(|e| CompareError::Damaged {
                    label: if l.label.is_empty() {
                        l.run.scenario.clone()
                    } else {
                        l.label.to_string()
                    },
                    message: e.to_string(),
                })
            })
            .collect()
    };
    let (b, n) = (load(base)?, load(new)?);
    let missing = |v: &[Option<MetricData>]| v.iter().filter(|d| d.is_none()).count();
    let (mb, mn) = (missing(&b), missing(&n));
    if mb == b.len() && mn == 0 {
        return Ok(Err(format!("{key} (new run only)")));
    }
    if mn == n.len() && mb == 0 {
        return Ok(Err(format!("{key} (baseline only)")));
    }
    if mb + mn > 0 {
        return Ok(Err(format!(
            "{key} (missing from {} of {} runs)",
            mb + mn,
            b.len() + n.len()
        )));
    }
    let (b, n): (Vec<MetricData>, Vec<MetricData>) = (
        b.into_iter().flatten().collect(),
        n.into_iter().flatten().collect(),
    );
    let kind = b[0].kind();
    if b.iter().chain(&n).any(|d| d.kind() != kind) {
        return Ok(Err(format!("{key} (a {kind} in some runs, not in others)")));
    }
    Ok(Ok((b, n)))
}

/// The unit, direction and statistics of `key` as a metric of kind `data`.
fn describe(key: &MetricKey, run: &Run, data: &MetricData) -> (Unit, Direction, Vec<Stat>) {
    let metric = run.metrics.get(key).cloned().unwrap_or_else(|| match data {
        MetricData::Histogram { total, .. } => {
            Metric::Histogram(crate::run::HistogramMetric::from_histogram(total))
        }
        MetricData::Counter { value, total, .. } => Metric::Counter(crate::run::CounterMetric {
            value: *value,
            total: *total,
        }),
        MetricData::Gauge { peak } => Metric::Gauge(crate::run::GaugeMetric {
            value: *peak,
            min: *peak,
            max: *peak,
        }),
    });
    let unit = match &metric {
        Metric::Histogram(_) => Unit::Micros,
        Metric::Counter(c) if c.total.is_some() => Unit::Fraction,
        Metric::Counter(_) => Unit::PerSecond,
        Metric::Gauge(_) => Unit::Level,
    };
    (unit, direction(key, &metric), Stat::for_metric(&metric))
}

/// Every run's estimate of every statistic of the planned metrics; the unmatched list.
pub(crate) fn measure(
    planned: &[Planned],
    base: &[Labeled<'_>],
    new: &[Labeled<'_>],
) -> Result<(Vec<Measured>, Vec<String>), CompareError> {
    let mut out = Vec::new();
    let mut unmatched = Vec::new();
    for p in planned {
        let (bd, nd) = match gather(&p.key, base, new)? {
            Ok(data) => data,
            Err(why) => {
                unmatched.push(why);
                continue;
            }
        };
        let (unit, direction, stats) = describe(&p.key, new[0].run, &nd[0]);
        let bad = is_bad_count(&p.key.name);
        for stat in stats {
            let mut missing = None;
            let mut side = |labeled: &[Labeled<'_>], data: &[MetricData]| -> Vec<RunEstimate> {
                let mut v = Vec::new();
                for (l, d) in labeled.iter().zip(data) {
                    match estimate::estimate(l.run, d, stat, bad) {
                        Ok(e) => v.push(e),
                        Err(NoEstimate::Empty) => missing = Some("no samples".to_string()),
                    }
                }
                v
            };
            let (be, ne) = (side(base, &bd), side(new, &nd));
            let fewest = |data: &[MetricData]| data.iter().map(MetricData::samples).min();
            out.push(Measured {
                key: p.key.clone(),
                stat,
                unit,
                direction,
                gated: p.gated,
                base: be,
                new: ne,
                samples: (fewest(&bd).unwrap_or(0), fewest(&nd).unwrap_or(0)),
                missing,
            });
        }
    }
    Ok((out, unmatched))
}

/// The mean of the values shown: geometric for latencies (the scale they are tested on),
/// arithmetic for counts and levels (which can be 0).
fn shown(unit: Unit, runs: &[RunEstimate]) -> f64 {
    let n = runs.len().max(1) as f64;
    match unit {
        Unit::Micros => (runs.iter().map(|r| r.value.max(1.0).ln()).sum::<f64>() / n).exp(),
        _ => runs.iter().map(|r| r.value).sum::<f64>() / n,
    }
}

/// A check before its verdict: the numbers, the test when there is one, and whether a run
/// was too short to measure its own noise.
struct Pending {
    check: Check,
    test: Option<(Combined, f64)>,
    independent: bool,
}

fn pending(m: &Measured, paired: bool, opts: &GateOptions) -> Pending {
    let (mut base, mut new) = (0.0, 0.0);
    if m.missing.is_none() {
        base = shown(m.unit, &m.base);
        new = shown(m.unit, &m.new);
    }
    let min_effect = if m.unit == Unit::Micros && base > 0.0 {
        opts.min_effect.max(opts.floor_us / base)
    } else {
        opts.min_effect
    };
    let mut check = Check {
        metric: m.key.to_string(),
        stat: m.stat.name(),
        base,
        new,
        delta: (base != 0.0).then(|| new / base - 1.0),
        unit: m.unit,
        direction: m.direction,
        change: Change::Inconclusive,
        gated: m.gated,
        estimate: None,
        min_effect,
        note: None,
    };
    let (fb, fnew) = m.samples;
    if fb.min(fnew) < opts.min_samples {
        check.note = Some(format!(
            "too few samples: {fb} vs {fnew} (need {})",
            opts.min_samples
        ));
        return Pending {
            check,
            test: None,
            independent: false,
        };
    }
    if let Some(why) = &m.missing {
        check.note = Some(why.clone());
        return Pending {
            check,
            test: None,
            independent: false,
        };
    }
    if m.base.iter().chain(&m.new).all(|r| r.none) {
        check.change = Change::Unchanged;
        check.note = Some("none on either side".to_string());
        return Pending {
            check,
            test: None,
            independent: false,
        };
    }
    let combined = if paired {
        let pairs: Vec<(RunEstimate, RunEstimate)> =
            m.base.iter().copied().zip(m.new.iter().copied()).collect();
        combine::paired(&pairs)
    } else {
        let prior = opts.noise_profile.as_ref().and_then(|profile| {
            let line = profile.lines.iter().find(|l| {
                l.metric == check.metric && l.stat == check.stat && l.run_to_run.is_some()
            })?;
            let spread = (1.0 + line.run_to_run?).ln();
            Some((spread * spread, profile.runs.saturating_sub(1) as f64))
        });
        combine::unpaired(&m.base, &m.new, prior)
    };
    let p = if combined.se > 0.0 {
        stats::t_two_sided_p(combined.d / combined.se, combined.df)
    } else if combined.d == 0.0 {
        1.0
    } else {
        0.0
    };
    Pending {
        check,
        test: Some((combined, p)),
        independent: m.base.iter().chain(&m.new).any(|r| r.independent),
    }
}

/// Holm over one family, then each check's verdict.
fn decide(family: &mut [Pending], alpha: f64) {
    let tested: Vec<usize> = (0..family.len())
        .filter(|&i| family[i].test.is_some())
        .collect();
    let ps: Vec<f64> = tested
        .iter()
        .filter_map(|&i| family[i].test.map(|(_, p)| p))
        .collect();
    for (&i, (rejected, level)) in tested.iter().zip(stats::holm(&ps, alpha)) {
        let Some((c, p)) = family[i].test else {
            continue;
        };
        let half = if c.se > 0.0 {
            stats::t_quantile(1.0 - level / 2.0, c.df) * c.se
        } else {
            0.0
        };
        let estimate = Estimate {
            change: c.d.exp() - 1.0,
            low: (c.d - half).exp() - 1.0,
            high: (c.d + half).exp() - 1.0,
            confidence: 1.0 - level,
            p,
            df: c.df,
            run_to_run: c.run_to_run,
        };
        let independent = family[i].independent;
        let check = &mut family[i].check;
        let (change, note) = verdict(&estimate, rejected, check.direction, check.min_effect);
        check.change = change;
        check.note = note;
        if independent {
            let short = format!(
                "a run under {} batches of seconds cannot measure its own noise: its samples were taken as independent",
                super::estimate::MIN_BATCHES
            );
            check.note = Some(match check.note.take() {
                Some(n) => format!("{n}; {short}"),
                None => short,
            });
        }
        check.estimate = Some(estimate);
    }
}

/// The verdict of a tested check.
fn verdict(
    e: &Estimate,
    significant: bool,
    direction: Direction,
    min_effect: f64,
) -> (Change, Option<String>) {
    let worse = match direction {
        Direction::LowerIsBetter => e.change,
        Direction::HigherIsBetter => -e.change,
    };
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    if significant && worse >= min_effect {
        return (Change::Regressed, None);
    }
    if significant && -worse >= min_effect {
        return (Change::Improved, None);
    }
    if e.low > -min_effect && e.high < min_effect {
        let note = significant.then(|| {
            format!(
                "a real change, smaller than the ±{} minimum effect",
                pct(min_effect)
            )
        });
        return (Change::Unchanged, note);
    }
    let note = if significant {
        format!(
            "a real change short of the ±{} minimum effect, but the interval reaches past it",
            pct(min_effect)
        )
    } else {
        format!(
            "the interval reaches past the ±{} minimum effect: too few samples or runs for the requested confidence",
            pct(min_effect)
        )
    };
    (Change::Inconclusive, Some(note))
}

/// Compares `new` with `base` (paired round by round when `paired`).
pub(crate) fn run(
    base: &[Labeled<'_>],
    new: &[Labeled<'_>],
    paired: bool,
    opts: &GateOptions,
) -> Result<Comparison, CompareError> {
    let (what_base, what_new) = if paired {
        ("A/B round", "A/B round")
    } else {
        ("baseline run", "new run")
    };
    if base.is_empty() {
        return Err(CompareError::TooFewRuns {
            what: what_base,
            needed: 1,
            got: 0,
        });
    }
    if new.is_empty() {
        return Err(CompareError::TooFewRuns {
            what: what_new,
            needed: 1,
            got: 0,
        });
    }
    let reference = base[0].run;
    let mut mismatches = unlike(reference, &base[1..]);
    mismatches.extend(unlike(reference, new));
    let profile = opts.noise_profile.as_ref().filter(|_| !paired);
    if let Some(p) = profile {
        if p.scenario != reference.scenario {
            mismatches.push(format!(
                "noise profile: scenario `{}` vs `{}`",
                reference.scenario, p.scenario
            ));
        }
    }
    if !mismatches.is_empty() && !opts.force {
        return Err(CompareError::Unlike(mismatches));
    }
    let planned = plan(&opts.scope, base, new);
    let (measured, unmatched) = measure(&planned, base, new)?;
    let (mut gated, mut reported): (Vec<Pending>, Vec<Pending>) = measured
        .iter()
        .map(|m| pending(m, paired, opts))
        .partition(|p| p.check.gated);
    decide(&mut gated, opts.alpha);
    decide(&mut reported, opts.alpha);
    let run_to_run = if paired {
        base.len() >= 2
    } else {
        base.len() + new.len() >= 3 || profile.is_some_and(|p| p.runs >= 2)
    };
    Ok(Comparison {
        base_scenario: reference.scenario.clone(),
        base_started_at: base
            .iter()
            .map(|l| l.run.started_at)
            .max()
            .unwrap_or(reference.started_at),
        min_effect: opts.min_effect,
        floor_us: opts.floor_us,
        min_samples: opts.min_samples,
        alpha: opts.alpha,
        design: if paired {
            Design::Paired { pairs: base.len() }
        } else {
            Design::Unpaired {
                baselines: base.len(),
                new: new.len(),
            }
        },
        run_to_run,
        noise_profile_runs: profile.map(|p| p.runs),
        gated_metrics: planned
            .iter()
            .filter(|p| p.gated)
            .map(|p| p.key.to_string())
            .collect(),
        mismatches,
        unmatched,
        checks: gated.into_iter().chain(reported).map(|p| p.check).collect(),
    })
}
