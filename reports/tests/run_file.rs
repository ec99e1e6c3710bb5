//! The JSON contract: round trip, version and damage errors, merging runs.

mod common;

use std::time::{Duration, Instant};

use common::{at, counts, key, started_at};
use reports::run::{Metric, Series};
use reports::{MergeError, Recorder, Run, RunBuilder, Selected};

fn sample_run(start: chrono::DateTime<chrono::Utc>, seconds: &[f64], value: u64) -> Run {
    let origin = Instant::now();
    let mut rec = Recorder::new(origin);
    for &s in seconds {
        rec.record(key("lat{journey=a,step=x}"), at(origin, s), value);
        rec.add(key("reqs{journey=a}"), at(origin, s), 1);
        rec.count(key("failed{journey=a}"), at(origin, s), false);
    }
    let mut b = RunBuilder::new("quickstart", start, origin);
    b.absorb(rec.take());
    b.finish(Duration::from_secs_f64(
        seconds.iter().cloned().fold(0.0, f64::max) + 1.0,
    ))
}

#[test]
fn json_round_trip_keeps_everything() {
    let mut run = sample_run(started_at(), &[0.1, 0.2, 3.5], 1500);
    run.meta = Some(serde_json::json!({"host": "ci-7", "shape": {"rate": 100}}));
    let text = run.to_json_pretty().unwrap();
    let back = Run::from_json_str(&text).unwrap();
    assert_eq!(back, run);

    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["started_at"], "2026-11-25T19:20:00.123Z");
    let lat = &v["metrics"]["lat{journey=a,step=x}"];
    assert_eq!(lat["kind"], "histogram");
    assert_eq!(lat["unit"], "us");
    assert_eq!(lat["count"], 3);
    assert_eq!(lat["p999"], 1500);
    assert!(lat["hist"].as_str().unwrap().starts_with("HISTFAAA"));
    assert_eq!(
        v["metrics"]["reqs"],
        serde_json::json!({"kind": "counter", "value": 3})
    );
    assert_eq!(
        v["metrics"]["failed"],
        serde_json::json!({"kind": "counter", "value": 0, "total": 3})
    );
    assert_eq!(
        v["series"]["reqs"],
        serde_json::json!([{"t": 0, "value": 2}, {"t": 3, "value": 1}])
    );
    assert_eq!(v["series"]["lat"][1]["t"], 3);
    assert_eq!(v["series"]["lat"][1]["count"], 1);
    assert_eq!(v["thresholds"], serde_json::json!([]));
}

#[test]
fn unknown_fields_from_newer_writers_are_ignored() {
    let text = r#"{"version":1,"scenario":"s","started_at":"2026-11-25T19:20:00Z","duration_s":1.5,
        "metrics":{"n":{"kind":"counter","value":2,"extra":true}},"future":{}}"#;
    let run = Run::from_json_str(text).unwrap();
    assert_eq!(run.duration_s, 1.5);
    assert!(run.series.is_empty() && run.thresholds.is_empty() && run.meta.is_none());
}

#[test]
fn bad_files_say_what_is_wrong() {
    let run = sample_run(started_at(), &[0.5], 10);
    let mut v: serde_json::Value = serde_json::from_str(&run.to_json_pretty().unwrap()).unwrap();
    v["metrics"]["lat{journey=a}"]["hist"] = "not-a-histogram!".into();
    let err = Run::from_json_str(&v.to_string()).unwrap_err().to_string();
    assert!(
        err.starts_with("metric `lat{journey=a}`: its histogram cannot be decoded: not base64"),
        "{err}"
    );

    v["version"] = 2.into();
    let err = Run::from_json_str(&v.to_string()).unwrap_err().to_string();
    assert_eq!(
        err,
        "unsupported run file version 2: this build reads version 1"
    );

    let err = Run::from_json_str("{").unwrap_err().to_string();
    assert!(err.starts_with("not a pushbench run file: "), "{err}");
}

#[test]
fn merge_aligns_series_on_absolute_time() {
    let a_start = started_at();
    let b_start = a_start + chrono::Duration::seconds(3);
    // a: seconds 0 and 1 (absolute 0, 1); b: seconds 0 and 2 (absolute 3, 5).
    let mut a = sample_run(a_start, &[0.5, 1.5], 100);
    let b = sample_run(b_start, &[0.5, 2.5], 200);
    // b lasts 3.5 s from +3 s: the merged run ends at 6.5 s.
    a.thresholds.push(reports::Verdict {
        metric: "lat".into(),
        expr: "p(99) < 1ms".into(),
        ok: true,
        observed: Some(100.0),
        message: None,
    });
    a.merge(&b).unwrap();
    assert_eq!(a.started_at, a_start);
    assert!((a.duration_s - 6.5).abs() < 1e-9, "{}", a.duration_s);
    assert!(a.thresholds.is_empty());
    match &a.series[&key("lat")] {
        Series::Histogram(p) => {
            let got: Vec<_> = p.iter().map(|p| (p.t, p.count, p.max)).collect();
            assert_eq!(got, [(0, 1, 100), (1, 1, 100), (3, 1, 200), (5, 1, 200)]);
        }
        _ => panic!("wrong kind"),
    }
    match &a.series[&key("failed{journey=a}")] {
        Series::Counter(p) => {
            let got: Vec<_> = p.iter().map(|p| (p.t, p.total)).collect();
            assert_eq!(
                got,
                [(0, Some(1)), (1, Some(1)), (3, Some(1)), (5, Some(1))]
            );
        }
        _ => panic!("wrong kind"),
    }
    let h = a.histogram(&key("lat")).unwrap().unwrap();
    assert_eq!(counts(&h), [(100, 2), (200, 2)]);

    // The later run merged into the earlier one gives the same result.
    let mut b2 = sample_run(b_start, &[0.5, 2.5], 200);
    b2.merge(&sample_run(a_start, &[0.5, 1.5], 100)).unwrap();
    assert_eq!(b2.started_at, a_start);
    assert_eq!(b2.series[&key("reqs")], a.series[&key("reqs")]);
}

#[test]
fn merge_refuses_unlike_runs() {
    let mut a = sample_run(started_at(), &[0.5], 1);
    let mut other = sample_run(started_at(), &[0.5], 1);
    other.scenario = "other".into();
    let err = a.merge(&other).unwrap_err();
    assert_eq!(
        err.to_string(),
        "runs of different scenarios cannot be merged: `quickstart` and `other`"
    );

    let mut clash = sample_run(started_at(), &[0.5], 1);
    let lat = clash.metrics.remove(&key("lat")).unwrap();
    clash.metrics.insert(key("reqs"), lat);
    let before = a.clone();
    let err = a.merge(&clash).unwrap_err();
    assert_eq!(a, before, "a failed merge changes nothing");
    assert!(matches!(err, MergeError::Kind(_)));
    assert_eq!(
        err.to_string(),
        "metric `reqs` is a histogram in one run and a counter in the other"
    );
}

/// The same run twice (the same file given twice, or a run already inside a merged one) is
/// refused: its counts would be doubled. The id survives the JSON round trip.
#[test]
fn merge_refuses_the_same_run_twice() {
    let a = sample_run(started_at(), &[0.5], 1);
    let b = sample_run(started_at(), &[1.5], 1);
    assert_ne!(a.id, b.id);
    let a_again = Run::from_json_str(&a.to_json_pretty().unwrap()).unwrap();
    let mut m = a.clone();
    let err = m.merge(&a_again).unwrap_err();
    assert!(matches!(err, MergeError::SameRun(_)));
    assert_eq!(
        err.to_string(),
        format!(
            "run `{}` is already in the merge: merging it twice would count it twice",
            a.id
        )
    );
    assert_eq!(m, a, "a refused merge changes nothing");
    m.merge(&b).unwrap();
    assert_eq!(m.parts, vec![a.id.clone(), b.id.clone()]);
    assert!(m.id != a.id && m.id != b.id, "a merged run is a new run");
    // A part of a merged run, and a merged run holding a part, are both refused.
    let mut again = m.clone();
    assert!(matches!(again.merge(&b), Err(MergeError::SameRun(_))));
    let mut b2 = b.clone();
    assert!(matches!(b2.merge(&m), Err(MergeError::SameRun(_))));
    // Files written before ids existed merge as before.
    let (mut old_a, mut old_b) = (a.clone(), b.clone());
    old_a.id.clear();
    old_b.id.clear();
    old_a.merge(&old_b).unwrap();
}

#[test]
fn select_prefers_the_exact_key_else_merges_matching_keys() {
    let origin = Instant::now();
    let mut rec = Recorder::new(origin);
    rec.record(key("lat{journey=a,step=x}"), origin, 10);
    rec.record(key("lat{journey=b,step=x}"), origin, 20);
    rec.record(key("lat{journey=b,step=y}"), origin, 30);
    rec.count(key("failed{journey=a,step=x}"), origin, true);
    rec.count(key("failed{journey=b,step=x}"), origin, false);
    let mut b = RunBuilder::new("s", started_at(), origin);
    b.absorb(rec.take());
    let run = b.finish(Duration::from_secs(1));
    let hist = |k: &str| match run.select(&key(k)).unwrap() {
        Some(Selected::Histogram(h)) => counts(&h),
        other => panic!("{other:?}"),
    };
    assert_eq!(hist("lat"), [(10, 1), (20, 1), (30, 1)]);
    assert_eq!(hist("lat{journey=b}"), [(20, 1), (30, 1)]);
    assert_eq!(hist("lat{step=x}"), [(10, 1), (20, 1)]);
    assert_eq!(hist("lat{step=x,journey=b}"), [(20, 1)]);
    match run.select(&key("failed{step=x}")).unwrap() {
        Some(Selected::Counter(c)) => assert_eq!((c.value, c.total), (1, Some(2))),
        other => panic!("{other:?}"),
    }
    assert!(run.select(&key("lat{step=z}")).unwrap().is_none());
    assert!(run.select(&key("nope")).unwrap().is_none());
    assert!(run.histogram(&key("failed")).unwrap().is_none());
    assert!(matches!(run.metrics[&key("failed")], Metric::Counter(_)));
}
