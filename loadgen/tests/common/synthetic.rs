//! Run records made in the test, without load: a steady latency and request rate, so the
//! numbers a comparison prints are known.

use std::time::{Duration, Instant};

use reports::{MetricKey, Recorder, RunBuilder};

/// A run of `scenario`: `n` requests a second for 5 s at `latency_us`, `failed` of them failing.
pub fn run_json(scenario: &str, latency_us: u64, n: u32, failed: u32) -> String {
    run_json_at(scenario, latency_us, n, failed, 0)
}

/// As [`run_json`], started `minute` minutes later (runs of a history differ in start time).
/// Thresholds name `http_req_failed` and `http_req_duration`: what a comparison gates.
pub fn run_json_at(scenario: &str, latency_us: u64, n: u32, failed: u32, minute: i64) -> String {
    let origin = Instant::now();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-25T19:20:00Z".parse().unwrap();
    let mut rec = Recorder::new(origin);
    let lat: MetricKey = "http_req_duration{journey=unicast}".parse().unwrap();
    let reqs: MetricKey = "http_reqs{journey=unicast}".parse().unwrap();
    let fail: MetricKey = "http_req_failed{journey=unicast}".parse().unwrap();
    for s in 0..5u32 {
        for i in 0..n {
            let at = origin + Duration::from_secs_f64(f64::from(s) + f64::from(i) / f64::from(n));
            rec.record(&lat, at, latency_us + u64::from(i % 10));
            rec.add(&reqs, at, 1);
            rec.count(&fail, at, i < failed);
        }
    }
    let mut b = RunBuilder::new(scenario, start + chrono::Duration::minutes(minute), origin);
    b.absorb(rec);
    let mut run = b.finish(Duration::from_secs(5));
    run.meta = Some(serde_json::json!({"planned_duration_s": 5.0, "target": "embedded:gateway"}));
    let gates = [
        reports::Threshold::parse("http_req_failed", "rate < 1%").unwrap(),
        reports::Threshold::parse("http_req_duration", "p(99) < 1s").unwrap(),
    ];
    run.thresholds = reports::evaluate(&run, &gates);
    run.to_json_pretty().unwrap()
}
