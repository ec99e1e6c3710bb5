//! Baseline comparison: refusals of unlike runs, direction-aware verdicts, the noise band and
//! the sample floor.

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
    let CompareError::Unlike(why) = &err;
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
    fewer.duration_s *= 2.0;
    let c = compare(&base, &fewer, &CompareOptions::default()).unwrap();
    let reqs = verdict(&c, "http_reqs", "rate");
    assert_eq!(
        (reqs.change, reqs.direction),
        (Change::Regressed, Direction::HigherIsBetter)
    );
    // A handful of errors either way is Poisson noise...
    assert_eq!(verdict(&c, "http_errors", "rate").change, Change::Unchanged);
    assert_eq!(
        verdict(&c, "connections_active", "peak").change,
        Change::Unchanged
    );
    // ...a hundred is not.
    let mut failing = base.clone();
    let errors = reports::MetricKey::new("http_errors");
    if let Some(reports::Metric::Counter(e)) = failing.metrics.get_mut(&errors) {
        e.value = 100;
    }
    let c = compare(&base, &failing, &CompareOptions::default()).unwrap();
    let e = verdict(&c, "http_errors", "rate");
    assert_eq!(
        (e.change, e.direction),
        (Change::Regressed, Direction::LowerIsBetter)
    );
    let c = compare(&failing, &base, &CompareOptions::default()).unwrap();
    assert_eq!(verdict(&c, "http_errors", "rate").change, Change::Improved);
}

#[test]
fn noise_band_floor_and_sample_floor() {
    let base = fixture_run("push-fanout", 1, 1.0, 10);
    let slower = fixture_run("push-fanout", 1, 1.04, 10);
    let c = compare(&base, &slower, &CompareOptions::default()).unwrap();
    assert_eq!(
        verdict(&c, "http_req_duration", "p50").change,
        Change::Unchanged,
        "4% is noise"
    );
    let tight = CompareOptions {
        noise: 0.01,
        ..Default::default()
    };
    let c = compare(&base, &slower, &tight).unwrap();
    assert_eq!(
        verdict(&c, "delivery_latency", "p50").change,
        Change::Regressed,
        "4% > 1%"
    );
    // The absolute floor: a 4% change of ~2 ms is 80 µs, under a 100 µs floor.
    let floored = CompareOptions {
        noise: 0.01,
        floor_us: 100.0,
        ..Default::default()
    };
    let c = compare(&base, &slower, &floored).unwrap();
    assert_eq!(
        verdict(&c, "http_req_duration", "p50").change,
        Change::Unchanged
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
