//! Times every report format on a large run: 10M samples across 50 metrics (40 histogram
//! keys, 8 counters, 2 gauges) with one-second series over 600 s.
//!
//! `cargo run --release -p reports --example render_bench [-- OUT_DIR]` prints one line per
//! step and, with OUT_DIR, leaves `big.json` and the rendered files there (for timing
//! `loadgen report` end to end).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use reports::hist::new_histogram;
use reports::run::{
    CounterMetric, CounterPoint, GaugeMetric, GaugePoint, HistPoint, HistogramMetric, Metric,
    Series,
};
use reports::{render, Format, MetricKey, Run, Threshold};

const SECONDS: u32 = 600;
const SAMPLES: u64 = 10_000_000;

fn build() -> Run {
    let mut rng = fastrand::Rng::with_seed(7);
    let names = [
        "http_req_duration",
        "iteration_duration",
        "delivery_latency",
        "broadcast_completion",
        "ws_connecting",
        "heartbeat_rtt",
        "replay_send_lag",
        "http_req_waiting",
    ];
    let mut keys = Vec::new();
    for name in names {
        keys.push(MetricKey::new(name));
        for j in 0..4 {
            keys.push(MetricKey::new(name).with_tag("journey", format!("j{j}")));
        }
    }
    let per_second = SAMPLES / (keys.len() as u64 * u64::from(SECONDS));
    let mut metrics = BTreeMap::new();
    let mut series = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let mut whole = new_histogram();
        let mut points = Vec::with_capacity(SECONDS as usize);
        let scale = 500.0 * (1.0 + i as f64 / 4.0);
        for t in 0..SECONDS {
            let mut h = new_histogram();
            for _ in 0..per_second {
                // Log-normal-ish latencies with a rare slow tail.
                let v = scale
                    * (1.0 + rng.f64() * 3.0)
                    * if rng.u32(0..1000) == 0 { 50.0 } else { 1.0 };
                let _ = h.record(v as u64);
            }
            whole.add(&h).expect("same settings");
            points.push(HistPoint::from_histogram(t, &h));
        }
        metrics.insert(
            key.clone(),
            Metric::Histogram(HistogramMetric::from_histogram(&whole)),
        );
        series.insert(key.clone(), Series::Histogram(points));
    }
    for name in [
        "http_reqs",
        "http_req_failed",
        "http_errors",
        "delivery_received",
        "delivery_expected",
        "delivery_lost",
        "delivery_duplicates",
        "connections_failed",
    ] {
        let key = MetricKey::new(name);
        let with_total = name == "http_req_failed";
        let points: Vec<CounterPoint> = (0..SECONDS)
            .map(|t| CounterPoint {
                t,
                value: u64::from(rng.u32(0..2_000)),
                total: with_total.then_some(20_000),
            })
            .collect();
        let value = points.iter().map(|p| p.value).sum();
        metrics.insert(
            key.clone(),
            Metric::Counter(CounterMetric {
                value,
                total: with_total.then_some(20_000 * u64::from(SECONDS)),
            }),
        );
        series.insert(key, Series::Counter(points));
    }
    for name in ["connections_active", "connections_active{shard=1}"] {
        let key: MetricKey = name.parse().expect("valid key");
        let points: Vec<GaugePoint> = (0..SECONDS)
            .map(|t| GaugePoint {
                t,
                gauge: u64::from(t.min(300)) * 100,
            })
            .collect();
        metrics.insert(key.clone(), Metric::Gauge(GaugeMetric::of_points(&points)));
        series.insert(key, Series::Gauge(points));
    }
    let mut run = Run {
        version: reports::run::VERSION,
        scenario: "render-bench".into(),
        id: reports::run::new_id(),
        parts: Vec::new(),
        started_at: Utc::now(),
        duration_s: f64::from(SECONDS),
        meta: Some(serde_json::json!({"planned_duration_s": SECONDS, "host": "bench"})),
        metrics,
        series,
        thresholds: Vec::new(),
    };
    let gates = [
        Threshold::parse("http_req_duration", "p(99) < 250ms").expect("valid"),
        Threshold::parse("delivery_lost", "count == 0").expect("valid"),
    ];
    run.thresholds = reports::evaluate(&run, &gates);
    run
}

fn main() {
    let out_dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let t = Instant::now();
    let run = build();
    println!(
        "build run ({} metrics, {SAMPLES} samples, {SECONDS} s): {:.2?}",
        run.metrics.len(),
        t.elapsed()
    );

    let t = Instant::now();
    let json = run.to_json_pretty().expect("serialises");
    println!(
        "write JSON ({:.1} MB): {:.2?}",
        json.len() as f64 / 1e6,
        t.elapsed()
    );
    let t = Instant::now();
    let back = Run::from_json_str(&json).expect("reads back");
    println!("read JSON: {:.2?}", t.elapsed());
    let base = back.clone();
    let t = Instant::now();
    let comparison = reports::compare(&base, &run, &Default::default()).expect("comparable");
    println!(
        "compare, every metric ({} checks): {:.2?}",
        comparison.checks.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let history: Vec<reports::Labeled<'_>> =
        (0..9).map(|_| reports::Labeled::new("", &base)).collect();
    let gated = reports::compare_runs(
        &history,
        &[reports::Labeled::new("", &run)],
        &reports::GateOptions::default(),
    )
    .expect("comparable");
    println!(
        "compare against 9 baselines, the thresholds' metrics ({} checks): {:.2?}",
        gated.checks.len(),
        t.elapsed()
    );

    let all = Instant::now();
    for format in [
        Format::Html,
        Format::Markdown,
        Format::Junit,
        Format::Hlog,
        Format::Json,
    ] {
        let t = Instant::now();
        let bytes = render(format, &run, Some(&comparison)).expect("renders");
        println!(
            "render {format:<5} ({:>8.1} kB): {:.2?}",
            bytes.len() as f64 / 1e3,
            t.elapsed()
        );
        if let Some(dir) = &out_dir {
            std::fs::create_dir_all(dir).expect("out dir");
            std::fs::write(dir.join(format!("big.{}", format.name())), &bytes).expect("write");
        }
    }
    println!("render every format: {:.2?}", all.elapsed());
    if let Some(dir) = &out_dir {
        std::fs::write(dir.join("big.json"), json).expect("write");
    }
}
