//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reports::MetricKey;

/// `origin + secs`.
pub fn at(origin: Instant, secs: f64) -> Instant {
    origin + Duration::from_secs_f64(secs)
}

/// Parses a key.
pub fn key(text: &str) -> MetricKey {
    text.parse().unwrap()
}

/// Every (value, count) a histogram holds.
pub fn counts(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// A fixed start time.
pub fn started_at() -> chrono::DateTime<chrono::Utc> {
    "2026-11-25T19:20:00.123Z".parse().unwrap()
}

/// A deterministic run of `scenario` shaped like a real one: HTTP senders (latency, requests,
/// failures by cause), a device swarm (delivery latency, received/expected/lost, active
/// connections), `seconds` long, latencies scaled by `slow`, random draws from `seed`.
pub fn fixture_run(scenario: &str, seed: u64, slow: f64, seconds: u32) -> reports::Run {
    use reports::{evaluate, Recorder, RunBuilder, Threshold};
    let origin = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut b = RunBuilder::new(scenario, started_at(), origin);
    let push = key("http_req_duration{journey=unicast,step=push}");
    let reqs = key("http_reqs{journey=unicast,step=push}");
    let failed = key("http_req_failed{journey=unicast,step=push}");
    let err503 = key("http_errors{cause=status 503,journey=unicast,step=push}");
    for s in 0..seconds {
        let mut rec = Recorder::new(origin);
        for i in 0..200u32 {
            let t = at(origin, f64::from(s) + f64::from(i) / 200.0);
            // Mostly 1–3 ms with a slow tail, every value from the seeded generator.
            let base = 1_000.0 + rng.f64() * 2_000.0;
            let tail = if rng.u32(0..300) == 0 {
                rng.f64() * 40_000.0
            } else {
                0.0
            };
            rec.record(&push, t, ((base + tail) * slow) as u64);
            rec.add(&reqs, t, 1);
            let bad = rng.u32(0..500) == 0;
            rec.count(&failed, t, bad);
            if bad {
                rec.add(&err503, t, 1);
            }
        }
        for i in 0..50u32 {
            let t = at(origin, f64::from(s) + f64::from(i) / 50.0);
            rec.record(
                key("delivery_latency"),
                t,
                ((5_000.0 + rng.f64() * 20_000.0) * slow) as u64,
            );
            rec.add(key("delivery_received"), t, 1);
            rec.add(key("delivery_expected"), t, 1);
        }
        if s == seconds / 2 {
            rec.add(key("delivery_lost"), at(origin, f64::from(s) + 0.5), 2);
        }
        rec.gauge(
            key("connections_active"),
            at(origin, f64::from(s) + 0.9),
            u64::from(1_000.min(100 * (s + 1))),
        );
        b.absorb(rec);
    }
    let mut run = b.finish(Duration::from_secs(u64::from(seconds)));
    run.meta = Some(serde_json::json!({
        "scenario_file": "scenarios/push-fanout.yaml",
        "target": "embedded:gateway",
        "planned_duration_s": f64::from(seconds),
        "users_peak": null,
        "senders": [{"name": "unicast", "model": "open", "steps": 1, "planned_iterations": 200 * seconds, "peak_rate": 200.0, "weight": 1}],
        "loadgen_version": "0.1.0",
        "host": "ci-runner-7",
    }));
    let gates = [
        Threshold::parse("http_req_duration", "p(99) < 40ms").unwrap(),
        Threshold::parse("http_req_failed", "rate < 1%").unwrap(),
        Threshold::parse("delivery_lost", "count == 0").unwrap(),
    ];
    run.thresholds = evaluate(&run, &gates);
    run
}
