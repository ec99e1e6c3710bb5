//! The one-baseline comparison (`compare`, what `report compare BASE NEW` calls): refusals
//! of unlike runs, direction-aware verdicts, the minimum effect, and the sample floor.
//!
//! Since the comparison became statistical (issue 16) a change is judged against the noise
//! each run's own seconds show, not a fixed band: a change inside the minimum effect whose
//! interval still reaches past it, or a handful of errors either way, is now *Inconclusive*
//! (too little data to tell) where the fixed band said *Unchanged*; neither is a regression.

mod common;

use common::fixture_run;
use reports::compare::{CompareError, Direction};
use reports::{compare, Change, CompareOptions};

fn verdict<'a>(
    c: &'a reports::Comparison,
    metric: &str,
    stat: &str,
) -> &'a reports::compare::Check {
    c.checks
        .iter()
        .find(|k| k.metric == metric && k.stat == stat)
        .unwrap_or_else(|| panic!("no check {metric} {stat}"))
}

#[test]
fn unlike_scenarios_and_load_shapes_are_refused_unless_forced() {
    let base = fixture_run("push-fanout", 1, 1.0, 5);
    let mut other = fixture_run("push-fanout", 1, 1.0, 5);
    other.meta.as_mut().unwrap()["senders"][0]["peak_rate"] = serde_json::json!(400.0);
    other.meta.as_mut().unwrap()["load_shape"] = serde_json::json!({"rates": [[0, 5, 400, 400]]});
    let err = compare(&base, &other, &CompareOptions::default()).unwrap_err();
    let CompareError::Unlike(why) = &err else {
        panic!("not a refusal: {err}")
    };
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(err.to_string().contains("load shape `senders`"), "{err}");
    assert!(
        err.to_string()
            .contains("load shape `load_shape`: null vs {\"rates\""),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("pass --force to compare anyway"),
        "{err}"
    );

    let renamed = fixture_run("another", 1, 1.0, 5);
    let err = compare(&base, &renamed, &CompareOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("scenario `push-fanout` vs `another`"),
        "{err}"
    );

    let forced = CompareOptions {
        force: true,
        ..Default::default()
    };
    let c = compare(&base, &other, &forced).unwrap();
    assert_eq!(c.mismatches.len(), 2);
    assert!(!c.regressed(), "same numbers: {:?}", c.checks);
}

/// Adds `extra` to every second of every counter named `name` (metric and series alike,
/// as a run that counted them would).
fn add_per_second(run: &mut reports::Run, name: &str, extra: i64) {
    use reports::run::{CounterPoint, Metric, Series};
    let shift = |v: u64| u64::try_from(v as i64 + extra).unwrap_or(0);
    let seconds = run.duration_s.ceil() as u32;
    for (key, series) in run.series.iter_mut() {
        if key.name != name {
            continue;
        }
        let Series::Counter(points) = series else {
            continue;
        };
        let mut sum = 0;
        let mut all = Vec::new();
        for t in 0..seconds {
            let old = points.iter().find(|p| p.t == t).map_or(0, |p| p.value);
            sum += shift(old);
            all.push(CounterPoint {
                t,
                value: shift(old),
                total: None,
            });
        }
        *points = all;
        if let Some(Metric::Counter(c)) = run.metrics.get_mut(key) {
            c.value = sum;
        }
    }
}

#[test]
fn verdicts_follow_each_metrics_direction() {
    let base = fixture_run("push-fanout", 1, 1.0, 10);
    let slow = fixture_run("push-fanout", 1, 1.5, 10);
    let c = compare(&base, &slow, &CompareOptions::default()).unwrap();
    let p50 = verdict(&c, "http_req_duration", "p50");
    assert_eq!(
        (p50.change, p50.direction),
        (Change::Regressed, Direction::LowerIsBetter)
    );
    assert!((p50.delta.unwrap() - 0.5).abs() < 0.02, "{p50:?}");
    let e = p50.estimate.unwrap();
    assert!(e.low > 0.05 && e.low < 0.5 && e.high > 0.5, "{e:?}");
    assert!(!e.run_to_run && !c.run_to_run, "one run a side");
    // Same seed: counts are identical.
    assert_eq!(verdict(&c, "http_reqs", "rate").change, Change::Unchanged);

    // The other way round, latency improved.
    let c = compare(&slow, &base, &CompareOptions::default()).unwrap();
    assert_eq!(
        verdict(&c, "http_req_duration", "p95").change,
        Change::Improved
    );

    // Fewer requests per second is worse; more errors is worse.
    let mut fewer = base.clone();
    add_per_second(&mut fewer, "http_reqs", -100);
    let c = compare(&base, &fewer, &CompareOptions::default()).unwrap();
    let reqs = verdict(&c, "http_reqs", "rate");
    assert_eq!(
        (reqs.change, reqs.direction),
        (Change::Regressed, Direction::HigherIsBetter)
    );
    assert!((reqs.delta.unwrap() + 0.5).abs() < 1e-9, "{reqs:?}");
    // The same handful of errors on both sides cannot show a change of a few percent...
    let errors = verdict(&c, "http_errors", "rate");
    assert_eq!(errors.change, Change::Inconclusive, "{errors:?}");
    assert_eq!(
        verdict(&c, "connections_active", "peak").change,
        Change::Unchanged
    );
    // ...three times as many, each side with enough of them to measure, can. (Six errors
    // in a single baseline run cannot anchor a rate: they say little about how bursty the
    // errors are, and the verdict would be Inconclusive; a history of runs pools them.)
    let mut erring = base.clone();
    add_per_second(&mut erring, "http_errors", 10);
    let mut failing = base.clone();
    add_per_second(&mut failing, "http_errors", 30);
    let c = compare(&erring, &failing, &CompareOptions::default()).unwrap();
    let e = verdict(&c, "http_errors", "rate");
    assert_eq!(
        (e.change, e.direction),
        (Change::Regressed, Direction::LowerIsBetter),
        "{e:?}"
    );
    let c = compare(&failing, &erring, &CompareOptions::default()).unwrap();
    assert_eq!(verdict(&c, "http_errors", "rate").change, Change::Improved);
}

#[test]
fn minimum_effect_floor_and_sample_floor() {
    let base = fixture_run("push-fanout", 1, 1.0, 10);
    let slower = fixture_run("push-fanout", 1, 1.04, 10);
    let c = compare(&base, &slower, &CompareOptions::default()).unwrap();
    let p50 = verdict(&c, "http_req_duration", "p50");
    assert_ne!(p50.change, Change::Regressed, "4% is under the 5% minimum");
    assert!(!c.regressed(), "{:?}", c.checks);
    // A certain change of +50%: a 60% minimum effect absorbs it, 40% does not.
    let slow = fixture_run("push-fanout", 1, 1.5, 10);
    let wide = CompareOptions {
        noise: 0.6,
        ..Default::default()
    };
    let c = compare(&base, &slow, &wide).unwrap();
    assert!(!c.regressed(), "{:?}", c.checks);
    let narrower = CompareOptions {
        noise: 0.4,
        ..Default::default()
    };
    let c = compare(&base, &slow, &narrower).unwrap();
    assert_eq!(
        verdict(&c, "delivery_latency", "p50").change,
        Change::Regressed,
        "50% > 40%"
    );
    // The absolute floor: +50% of ~2 ms is 1 ms, under a 2 ms floor; of ~15 ms it is not.
    let floored = CompareOptions {
        noise: 0.01,
        floor_us: 2_000.0,
        ..Default::default()
    };
    let c = compare(&base, &slow, &floored).unwrap();
    let p50 = verdict(&c, "http_req_duration", "p50");
    assert_ne!(p50.change, Change::Regressed, "{p50:?}");
    assert!(
        (p50.min_effect - 2_000.0 / p50.base).abs() < 1e-12,
        "{p50:?}"
    );
    assert_eq!(
        verdict(&c, "delivery_latency", "p50").change,
        Change::Regressed
    );

    let short = fixture_run("push-fanout", 1, 3.0, 1);
    let mut short_meta = short.clone();
    short_meta.meta = base.meta.clone();
    let c = compare(
        &base,
        &short_meta,
        &CompareOptions {
            min_samples: 1_000,
            ..Default::default()
        },
    )
    .unwrap();
    let k = verdict(&c, "delivery_latency", "p99");
    assert_eq!(k.change, Change::Inconclusive);
    assert_eq!(
        k.note.as_deref(),
        Some("too few samples: 500 vs 50 (need 1000)")
    );
    assert!(!c
        .checks
        .iter()
        .any(|k| k.metric == "delivery_latency" && k.change == Change::Regressed));
}

#[test]
fn a_tag_filter_compares_the_merge_of_the_keys_it_matches() {
    use reports::{compare_runs, GateOptions, Labeled, Scope};
    let base = fixture_run("push-fanout", 1, 1.0, 10);
    let slow = fixture_run("push-fanout", 2, 1.5, 10);
    // No key is exactly `{step=push}`: the filter selects `{journey=unicast,step=push}`.
    let filter: reports::MetricKey = "http_req_duration{step=push}".parse().unwrap();
    assert!(!base.metrics.contains_key(&filter));
    let opts = GateOptions {
        scope: Scope::Asked(vec![filter]),
        ..GateOptions::default()
    };
    let c = compare_runs(
        &[Labeled::new("", &base)],
        &[Labeled::new("", &slow)],
        &opts,
    )
    .unwrap();
    assert_eq!(c.gated_metrics, vec!["http_req_duration{step=push}"]);
    let p50 = verdict(&c, "http_req_duration{step=push}", "p50");
    assert_eq!(p50.change, Change::Regressed, "{p50:?}");
    assert!(p50.estimate.is_some());
}
