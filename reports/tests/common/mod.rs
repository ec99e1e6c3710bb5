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
            // Lost pairs are expected pairs too.
            let t = at(origin, f64::from(s) + 0.5);
            rec.add(key("delivery_lost"), t, 2);
            rec.add(key("delivery_expected"), t, 2);
        }
        rec.gauge(
            key("connections_active"),
            at(origin, f64::from(s) + 0.9),
            u64::from(1_000.min(100 * (s + 1))),
        );
        b.absorb(rec);
    }
    let mut run = b.finish(Duration::from_secs(u64::from(seconds)));
    // Deterministic, for the golden files.
    run.id = format!("fixture-{scenario}-{seed}");
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

/// How noisy a synthetic run is: the log of every latency sample is the run's offset
/// (`N(0, run_sd)`, the run-to-run noise) plus the second's level (an AR(1) series with
/// standard deviation `second_sd` and lag-one correlation `rho`: autocorrelated seconds)
/// plus the sample's own `N(0, sample_sd)`.
#[derive(Debug, Clone, Copy)]
pub struct Noise {
    pub run_sd: f64,
    pub second_sd: f64,
    pub rho: f64,
    pub sample_sd: f64,
    pub seconds: u32,
    pub per_second: u32,
}

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u = 1.0 - rng.f64();
    let v = rng.f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A synthetic run of scenario `synthetic`, built directly (no recorder: thousands of runs
/// must stay fast): `http_req_duration` around 2 ms with `noise`, every latency multiplied by
/// `scale` and by `exp(offset)` (a drift shared by the runs of one A/B round); `http_reqs`;
/// `http_req_failed` failing 0.2% of requests; thresholds on `http_req_duration` and
/// `http_req_failed` (what a comparison gates by default).
pub fn synthetic_run(
    rng: &mut fastrand::Rng,
    noise: &Noise,
    scale: f64,
    offset: f64,
) -> reports::Run {
    use reports::run::{CounterMetric, CounterPoint, HistPoint, HistogramMetric, Metric, Series};
    use reports::{evaluate, Threshold};
    let run_level = noise.run_sd * normal(rng) + offset + (2_000.0 * scale).ln();
    let innovation = noise.second_sd * (1.0 - noise.rho * noise.rho).sqrt();
    let mut level = noise.second_sd * normal(rng);
    let mut total = reports::hist::new_histogram();
    let (mut points, mut reqs, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut failures = 0;
    for t in 0..noise.seconds {
        level = noise.rho * level + innovation * normal(rng);
        let mut h = reports::hist::new_histogram();
        let mut bad = 0;
        for _ in 0..noise.per_second {
            let v = (run_level + level + noise.sample_sd * normal(rng)).exp();
            h.record(v as u64).unwrap();
            bad += u64::from(rng.u32(0..500) == 0);
        }
        total.add(&h).unwrap();
        points.push(HistPoint::from_histogram(t, &h));
        let n = u64::from(noise.per_second);
        reqs.push(CounterPoint {
            t,
            value: n,
            total: None,
        });
        failed.push(CounterPoint {
            t,
            value: bad,
            total: Some(n),
        });
        failures += bad;
    }
    let requests = u64::from(noise.per_second * noise.seconds);
    let mut run = reports::Run {
        version: reports::run::VERSION,
        scenario: "synthetic".into(),
        id: reports::run::new_id(),
        parts: Vec::new(),
        started_at: started_at(),
        duration_s: f64::from(noise.seconds),
        meta: Some(serde_json::json!({"planned_duration_s": f64::from(noise.seconds)})),
        metrics: Default::default(),
        series: Default::default(),
        thresholds: Vec::new(),
    };
    let entries = [
        (
            "http_req_duration",
            Metric::Histogram(HistogramMetric::from_histogram(&total)),
            Series::Histogram(points),
        ),
        (
            "http_reqs",
            Metric::Counter(CounterMetric {
                value: requests,
                total: None,
            }),
            Series::Counter(reqs),
        ),
        (
            "http_req_failed",
            Metric::Counter(CounterMetric {
                value: failures,
                total: Some(requests),
            }),
            Series::Counter(failed),
        ),
    ];
    for (name, metric, series) in entries {
        run.metrics.insert(key(name), metric);
        run.series.insert(key(name), series);
    }
    let gates = [
        Threshold::parse("http_req_duration", "p(99) < 100ms").unwrap(),
        Threshold::parse("http_req_failed", "rate < 1%").unwrap(),
    ];
    run.thresholds = evaluate(&run, &gates);
    run
}
