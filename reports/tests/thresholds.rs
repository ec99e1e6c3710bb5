//! Threshold expressions: every accepted form, every error message, and evaluation.

mod common;

use std::time::{Duration, Instant};

use common::{key, started_at};
use reports::threshold::{evaluate, Agg, Expr, Op, Threshold};
use reports::{Recorder, Run, RunBuilder};

fn expr(s: &str) -> Expr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> String {
    s.parse::<Expr>().unwrap_err().to_string()
}

#[test]
fn parses_every_aggregate_op_and_unit() {
    let cases: &[(&str, Agg, Op, f64)] = &[
        ("p(99) < 250ms", Agg::P(99.0), Op::Lt, 250_000.0),
        ("p(50)<=1s", Agg::P(50.0), Op::Le, 1_000_000.0),
        ("p(90) > 900us", Agg::P(90.0), Op::Gt, 900.0),
        ("p(95) >= 900µs", Agg::P(95.0), Op::Ge, 900.0),
        ("p(99.9) < 1.5s", Agg::P(99.9), Op::Lt, 1_500_000.0),
        ("p(100) < 2m", Agg::P(100.0), Op::Lt, 120_000_000.0),
        ("p(97.5) < 12", Agg::P(97.5), Op::Lt, 12_000.0),
        ("avg < 0.5ms", Agg::Avg, Op::Lt, 500.0),
        ("med != 3 ms", Agg::Med, Op::Ne, 3_000.0),
        ("min == 0", Agg::Min, Op::Eq, 0.0),
        ("max < 10s", Agg::Max, Op::Lt, 10_000_000.0),
        ("count == 0", Agg::Count, Op::Eq, 0.0),
        ("count >= 1000", Agg::Count, Op::Ge, 1000.0),
        ("rate < 0.1%", Agg::Rate, Op::Lt, 0.001),
        ("rate < 0.01", Agg::Rate, Op::Lt, 0.01),
        ("rate > 100", Agg::Rate, Op::Gt, 100.0),
        ("  rate   <=   5 %  ", Agg::Rate, Op::Le, 0.05),
    ];
    for &(text, agg, op, value) in cases {
        assert_eq!(expr(text), Expr { agg, op, value }, "{text}");
    }
}

#[test]
fn display_gives_back_normalised_text_that_parses_again() {
    let cases = [
        ("p(99)<250ms", "p(99) < 250ms"),
        ("p(99.9) < 1.5s", "p(99.9) < 1.5s"),
        ("p(90) > 900µs", "p(90) > 900us"),
        ("avg < 2500us", "avg < 2.5ms"),
        ("max <= 2m", "max <= 120s"),
        ("med < 12", "med < 12ms"),
        ("rate<0.1%", "rate < 0.001"),
        ("count==0", "count == 0"),
        ("min != 0", "min != 0us"),
    ];
    for (text, normal) in cases {
        let e = expr(text);
        assert_eq!(e.to_string(), normal);
        assert_eq!(expr(normal), e, "{normal}");
    }
}

#[test]
fn parse_errors_say_what_was_expected() {
    assert_eq!(
        err("p99 <"),
        "expected `<aggregate> <op> <value>` such as `p(99) < 250ms`, got `p99 <`"
    );
    assert_eq!(
        err("p(99) 250ms"),
        "expected `<aggregate> <op> <value>` such as `p(99) < 250ms`, got `p(99) 250ms`"
    );
    assert_eq!(
        err(""),
        "expected `<aggregate> <op> <value>` such as `p(99) < 250ms`, got ``"
    );
    assert_eq!(
        err("< 5ms"),
        "expected `<aggregate> <op> <value>` such as `p(99) < 250ms`, got `< 5ms`"
    );
    assert_eq!(
        err("p99 < 5ms"),
        "expected an aggregate `p(N)`, `avg`, `med`, `min`, `max`, `count`, `rate`, `value` or `peak` such as `p(99) < 250ms`, got `p99`"
    );
    assert_eq!(
        err("mean = 5"),
        "expected `<aggregate> <op> <value>` such as `p(99) < 250ms`, got `mean = 5`"
    );
    for bad in ["p(0)", "p(101)", "p(x)", "p()"] {
        assert_eq!(
            err(&format!("{bad} < 5ms")),
            format!("expected a percentile above 0 and at most 100 such as `p(99.9)`, got `{bad}`")
        );
    }
    assert_eq!(
        err("p(99) < 5kb"),
        "expected a number with an optional unit (`us`, `µs`, `ms`, `s`, `m` or `%`) such as `250ms`, got `5kb`"
    );
    assert_eq!(
        err("p(99) < fast"),
        "expected a number with an optional unit (`us`, `µs`, `ms`, `s`, `m` or `%`) such as `250ms`, got `fast`"
    );
    assert_eq!(
        err("p(99) < 1%"),
        "expected a duration for `p(99)` such as `p(99) < 250ms`, got `1%`"
    );
    assert_eq!(
        err("count < 5s"),
        "expected a plain number for `count` such as `count == 0`, got `5s`"
    );
    assert_eq!(
        err("rate < 5ms"),
        "expected a fraction, a percentage or a number per second for `rate` such as `rate < 0.1%`, got `5ms`"
    );
}

fn run() -> Run {
    let origin = Instant::now();
    let mut rec = Recorder::new(origin);
    // 100 samples 1..=100 ms for journey a, 10 samples of 500 ms for journey b.
    for v in 1..=100u64 {
        rec.record(key("lat{journey=a,step=x}"), origin, v * 1000);
        rec.count(key("failed{journey=a,step=x}"), origin, v <= 2);
    }
    for _ in 0..10 {
        rec.record(key("lat{journey=b,step=x}"), origin, 500_000);
        rec.count(key("failed{journey=b,step=x}"), origin, false);
    }
    rec.add(key("reqs"), origin, 110);
    rec.add(key("lost"), origin, 0);
    let mut b = RunBuilder::new("s", started_at(), origin);
    b.absorb(rec.take());
    b.finish(Duration::from_secs(10))
}

fn check(run: &Run, metric: &str, e: &str) -> reports::Verdict {
    let t = Threshold::parse(metric, e).unwrap();
    evaluate(run, &[t]).remove(0)
}

#[test]
fn evaluation_passes_and_fails_each_aggregate() {
    let run = run();
    let observed = |m: &str, e: &str| check(&run, m, e).observed.unwrap();
    let lat_a = "lat{journey=a}";
    assert_eq!(observed(lat_a, "p(99) < 1s"), 99_007.0); // 3 significant digits
    assert_eq!(observed(lat_a, "p(50) < 1s"), 50_015.0);
    assert_eq!(observed(lat_a, "med < 1s"), 50_015.0);
    assert_eq!(observed(lat_a, "min < 1s"), 1_000.0);
    assert_eq!(observed(lat_a, "max < 1s"), 100_031.0);
    assert_eq!(observed(lat_a, "count < 1"), 100.0);
    assert_eq!(observed(lat_a, "rate < 1"), 10.0); // samples per second
    assert!((observed(lat_a, "avg < 1s") - 50_500.0).abs() < 100.0);
    let cases = [
        ("lat{journey=a}", "p(99) < 100ms", true),
        ("lat{journey=a}", "p(99) < 99ms", false),
        ("lat", "p(95) < 100ms", false),
        ("lat", "p(90) <= 100ms", true),
        ("lat", "max >= 500ms", true),
        ("lat", "min > 1ms", false),
        ("lat", "avg < 100ms", true),
        ("lat", "med == 55ms", false),
        ("lat", "count == 110", true),
        ("lat", "count != 110", false),
        ("reqs", "count == 110", true),
        ("reqs", "rate == 11", true),
        ("reqs", "rate > 11", false),
        ("lost", "count == 0", true),
        ("failed", "rate < 2%", true),
        ("failed", "rate < 1%", false),
        ("failed{journey=a}", "rate == 2%", true),
        ("failed{journey=b}", "count == 0", true),
    ];
    for (metric, e, ok) in cases {
        let v = check(&run, metric, e);
        assert_eq!(v.ok, ok, "{metric} {e}: {v:?}");
        assert!(v.message.is_none(), "{v:?}");
        assert_eq!((v.metric.as_str(), v.expr.as_str()), (metric, e));
    }
    assert!((observed("failed", "rate < 1") - 2.0 / 110.0).abs() < 1e-12);
}

#[test]
fn tag_filter_selects_the_merged_submetric() {
    let run = run();
    // `step=x` is no rollup: the matching keys are merged.
    let v = check(&run, "lat{step=x}", "count == 110");
    assert!(v.ok, "{v:?}");
    let v = check(&run, "failed{step=x}", "rate < 2%");
    assert_eq!(v.observed, Some(2.0 / 110.0));
}

#[test]
fn unknown_metrics_and_senseless_aggregates_fail_with_a_message() {
    let run = run();
    let v = check(&run, "latency", "p(99) < 1s");
    assert!(!v.ok);
    assert_eq!(v.message.as_deref(), Some("unknown metric `latency`"));
    assert_eq!(v.observed, None);
    let v = check(&run, "lat{journey=zzz}", "count == 0");
    assert!(!v.ok);
    assert_eq!(
        v.message.as_deref(),
        Some("unknown metric `lat{journey=zzz}`")
    );
    let v = check(&run, "reqs", "p(99) < 1s");
    assert!(!v.ok);
    assert_eq!(
        v.message.as_deref(),
        Some("`p(99)` needs a histogram but `reqs` is a counter (use `count` or `rate`)")
    );
}

#[test]
fn rate_on_a_counter_with_zero_total_is_zero() {
    let mut run = run();
    run.metrics.insert(
        key("empty"),
        reports::Metric::Counter(reports::run::CounterMetric {
            value: 0,
            total: Some(0),
        }),
    );
    let v = check(&run, "empty", "rate == 0");
    assert!(v.ok && v.observed == Some(0.0), "{v:?}");
}

#[test]
fn verdicts_are_stored_in_the_run_json() {
    let mut run = run();
    let thresholds = [
        Threshold::parse("lat", "p(99) < 1s").unwrap(),
        Threshold::parse("nope", "count == 0").unwrap(),
    ];
    run.thresholds = evaluate(&run, &thresholds);
    let v: serde_json::Value = serde_json::from_str(&run.to_json_pretty().unwrap()).unwrap();
    assert_eq!(
        v["thresholds"],
        serde_json::json!([
            {"metric": "lat", "expr": "p(99) < 1s", "ok": true, "observed": 500223.0},
            {"metric": "nope", "expr": "count == 0", "ok": false, "message": "unknown metric `nope`"},
        ])
    );
    assert_eq!(
        Run::from_json_str(&run.to_json_pretty().unwrap()).unwrap(),
        run
    );
}

#[test]
fn threshold_parse_reports_bad_keys_and_exprs() {
    assert_eq!(
        Threshold::parse("lat{x", "count == 0")
            .unwrap_err()
            .to_string(),
        "threshold metric: unbalanced braces in metric key `lat{x`: expected `name{tag=value,...}`"
    );
    assert_eq!(
        Threshold::parse("lat", "p99").unwrap_err().to_string(),
        "threshold `p99`: expected `<aggregate> <op> <value>` such as `p(99) < 250ms`, got `p99`"
    );
}
