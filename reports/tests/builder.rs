//! Recorder → builder → finish, live windows, rollups, and exact merging across shards.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{at, counts, key, started_at};
use reports::run::{CounterMetric, Metric, Series};
use reports::{Recorder, Run, RunBuilder};

fn hist_summary(run: &Run, k: &str) -> reports::Summary {
    match &run.metrics[&key(k)] {
        Metric::Histogram(h) => h.summary,
        _ => panic!("{k} is not a histogram"),
    }
}

fn counter(run: &Run, k: &str) -> CounterMetric {
    match &run.metrics[&key(k)] {
        Metric::Counter(c) => *c,
        _ => panic!("{k} is not a counter"),
    }
}

#[test]
fn known_samples_give_exact_summary_and_series() {
    let origin = Instant::now();
    let mut rec = Recorder::new(origin);
    let d = key("http_req_duration{journey=unicast,step=push}");
    let reqs = key("http_reqs{journey=unicast,step=push}");
    let failed = key("http_req_failed{journey=unicast,step=push}");
    // 1..=1000 µs: 600 samples in second 0, 400 in second 2.
    for v in 1..=1000u64 {
        let t = if v <= 600 { 0.5 } else { 2.25 };
        rec.record(&d, at(origin, t), v);
        rec.add(&reqs, at(origin, t), 1);
        rec.count(&failed, at(origin, t), v % 100 == 0);
    }
    let mut b = RunBuilder::new("quickstart", started_at(), origin);
    b.absorb(rec.take());
    let run = b.finish(Duration::from_secs(3));

    let s = hist_summary(&run, "http_req_duration{journey=unicast,step=push}");
    assert_eq!((s.count, s.min, s.max), (1000, 1, 1000));
    assert_eq!(
        (s.p50, s.p90, s.p95, s.p99, s.p999),
        (500, 900, 950, 990, 999)
    );
    assert!((s.mean - 500.5).abs() < 1e-9);
    // The plain aggregate and the journey rollup hold the same samples.
    assert_eq!(hist_summary(&run, "http_req_duration"), s);
    assert_eq!(hist_summary(&run, "http_req_duration{journey=unicast}"), s);
    assert_eq!(
        counter(&run, "http_reqs"),
        CounterMetric {
            value: 1000,
            total: None
        }
    );
    assert_eq!(
        counter(&run, "http_req_failed{journey=unicast}"),
        CounterMetric {
            value: 10,
            total: Some(1000)
        }
    );

    match &run.series[&key("http_req_duration")] {
        Series::Histogram(points) => {
            let got: Vec<(u32, u64)> = points.iter().map(|p| (p.t, p.count)).collect();
            assert_eq!(got, vec![(0, 600), (2, 400)]);
            assert_eq!((points[1].p50, points[1].max), (800, 1000));
        }
        _ => panic!("wrong series kind"),
    }
    match &run.series[&key("http_req_failed")] {
        Series::Counter(points) => {
            let got: Vec<_> = points.iter().map(|p| (p.t, p.value, p.total)).collect();
            assert_eq!(got, vec![(0, 6, Some(600)), (2, 4, Some(400))]);
        }
        _ => panic!("wrong series kind"),
    }
    match &run.series[&key("http_reqs")] {
        Series::Counter(points) => assert!(points.iter().all(|p| p.total.is_none())),
        _ => panic!("wrong series kind"),
    }
    assert_eq!(run.duration_s, 3.0);
    assert_eq!(run.version, 1);
}

#[test]
fn finish_writes_recorded_keys_plain_aggregates_and_journey_rollups_only() {
    let origin = Instant::now();
    let mut rec = Recorder::new(origin);
    for (journey, step) in [("a", "x"), ("a", "y"), ("b", "x")] {
        let k = key("lat")
            .with_tag("journey", journey)
            .with_tag("step", step);
        rec.record(&k, origin, 100);
    }
    rec.add(key("iterations{journey=a}"), origin, 2);
    rec.add(key("conns{region=eu}"), origin, 1);
    let mut b = RunBuilder::new("s", started_at(), origin);
    b.absorb(rec.take());
    let run = b.finish(Duration::from_secs(1));
    let keys: Vec<String> = run.metrics.keys().map(ToString::to_string).collect();
    assert_eq!(
        keys,
        [
            "conns",
            "conns{region=eu}",
            "iterations",
            "iterations{journey=a}",
            "lat",
            "lat{journey=a}",
            "lat{journey=a,step=x}",
            "lat{journey=a,step=y}",
            "lat{journey=b}",
            "lat{journey=b,step=x}",
        ]
    );
    assert_eq!(hist_summary(&run, "lat{journey=a}").count, 2);
    assert_eq!(hist_summary(&run, "lat").count, 3);
    assert_eq!(run.series.len(), run.metrics.len());
}

#[test]
fn extra_rollup_tags_are_written() {
    let origin = Instant::now();
    let mut rec = Recorder::new(origin);
    rec.record(key("lat{journey=a,step=x}"), origin, 1);
    rec.record(key("lat{journey=b,step=x}"), origin, 1);
    let mut b = RunBuilder::new("s", started_at(), origin);
    b.rollup_tag("step");
    b.absorb(rec.take());
    let run = b.finish(Duration::from_secs(1));
    assert_eq!(hist_summary(&run, "lat{step=x}").count, 2);
}

#[test]
fn live_windows_cover_the_last_seconds_across_matching_keys() {
    let origin = Instant::now();
    let mut b = RunBuilder::new("s", started_at(), origin);
    let mut rec = Recorder::new(origin);
    let ka = key("lat{journey=a,step=x}");
    let kb = key("lat{journey=b,step=x}");
    let failed = key("failed{journey=a,step=x}");
    // Seconds 0..40, one sample per key per second, value = 1000 + second.
    for s in 0..40u64 {
        let t = at(origin, s as f64 + 0.5);
        rec.record(&ka, t, 1000 + s);
        rec.record(&kb, t, 5000 + s);
        rec.count(&failed, t, s % 2 == 0);
        b.absorb(rec.take());
    }
    let now = at(origin, 39.9);
    let w = b.window(&key("lat"), now, 5).unwrap();
    assert_eq!((w.count, w.min, w.max), (10, 1035, 5039));
    let w = b.window(&key("lat{journey=a}"), now, 5).unwrap();
    assert_eq!((w.count, w.min, w.max), (5, 1035, 1039));
    // A tag filter that is not a rollup merges the matching recorded keys.
    let w = b.window(&key("lat{step=x}"), now, 1).unwrap();
    assert_eq!((w.count, w.min, w.max), (2, 1039, 5039));
    // Seconds older than the recent window are sealed and still answer.
    let w = b.window(&key("lat{journey=b}"), now, 40).unwrap();
    assert_eq!((w.count, w.min, w.max), (40, 5000, 5039));
    assert!(b.window(&key("lat"), at(origin, 100.0), 10).is_none());
    assert!(b.window(&key("nope"), now, 10).is_none());
    assert!(b.window(&key("lat"), now, 0).is_none());

    assert_eq!(b.counter_window(&key("failed"), now, 4), (2, 4));
    assert_eq!(b.counter_window(&key("failed{step=x}"), now, 4), (2, 4));
    assert_eq!(b.total_counter(&key("failed")), (20, 40));
    assert_eq!(b.total_counter(&key("failed{journey=z}")), (0, 0));

    let run = b.finish(Duration::from_secs(40));
    match &run.series[&key("lat")] {
        Series::Histogram(points) => {
            assert_eq!(points.len(), 40);
            assert!(points
                .iter()
                .enumerate()
                .all(|(i, p)| p.t == i as u32 && p.count == 2));
        }
        _ => panic!("wrong series kind"),
    }
}

#[test]
fn late_deltas_for_sealed_seconds_are_added_not_lost() {
    let origin = Instant::now();
    let k = key("lat");
    let mut b = RunBuilder::new("s", started_at(), origin);
    let mut early = Recorder::new(origin);
    early.record(&k, at(origin, 1.0), 10);
    b.absorb(early.take());
    let mut fast = Recorder::new(origin);
    fast.record(&k, at(origin, 60.0), 20);
    b.absorb(fast.take()); // seals second 1
    early.record(&k, at(origin, 1.5), 30);
    b.absorb(early.take()); // late sample for sealed second 1
    let run = b.finish(Duration::from_secs(61));
    match &run.series[&k] {
        Series::Histogram(p) => {
            assert_eq!(
                p.iter().map(|p| (p.t, p.count)).collect::<Vec<_>>(),
                [(1, 2), (60, 1)]
            );
        }
        _ => panic!("wrong series kind"),
    }
}

/// One random sample: key index, second offset (f64), value, counter hit.
type Sample = (usize, f64, u64, bool);

fn samples(seed: u64, n: usize) -> Vec<Sample> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|_| {
            let magnitude = rng.u32(0..8);
            let value = rng.u64(0..10u64.pow(magnitude) * 3);
            (rng.usize(0..4), rng.f64() * 45.0, value, rng.bool())
        })
        .collect()
}

const KEYS: [&str; 4] = [
    "d{journey=a,step=x}",
    "d{journey=a,step=y}",
    "d{journey=b,step=x}",
    "d{journey=c}",
];

fn record(rec: &mut Recorder, origin: Instant, (k, t, v, hit): Sample) {
    let hist = key(KEYS[k]);
    let ctr = key(&KEYS[k].replacen('d', "f", 1));
    rec.record(&hist, at(origin, t), v);
    rec.count(&ctr, at(origin, t), hit);
}

/// Per key: (second or `u32::MAX` for the whole run, every (value, count)).
type Fingerprint = BTreeMap<String, Vec<(u32, Vec<(u64, u64)>)>>;

/// Every metric and every series point as comparable plain data.
fn fingerprint(run: &Run) -> Fingerprint {
    let mut out = BTreeMap::new();
    for (k, series) in &run.series {
        let mut rows = Vec::new();
        let whole = match &run.metrics[k] {
            Metric::Histogram(_) => counts(&run.histogram(k).unwrap().unwrap()),
            Metric::Counter(c) => vec![(c.value, c.total.unwrap_or(0))],
            Metric::Gauge(g) => vec![(g.value, g.max)],
        };
        rows.push((u32::MAX, whole));
        match series {
            Series::Histogram(points) => {
                for p in points {
                    rows.push((p.t, counts(&reports::hist::decode(&p.hist).unwrap())));
                }
            }
            Series::Counter(points) => {
                for p in points {
                    rows.push((p.t, vec![(p.value, p.total.unwrap_or(0))]));
                }
            }
            Series::Gauge(points) => {
                for p in points {
                    rows.push((p.t, vec![(p.gauge, 0)]));
                }
            }
        }
        out.insert(k.to_string(), rows);
    }
    out
}

#[test]
fn splitting_samples_across_recorders_and_shards_merges_exactly() {
    for seed in [1, 42, 2026] {
        let all = samples(seed, 1500);
        assert!(all.iter().any(|s| s.2 > 1_000_000));
        let origin = Instant::now();

        let mut one = Recorder::new(origin);
        all.iter().for_each(|s| record(&mut one, origin, *s));
        let mut b = RunBuilder::new("s", started_at(), origin);
        b.absorb(one);
        let reference = b.finish(Duration::from_secs(45));

        // N shards, each with its own builder fed by several recorders harvested in time
        // order (so sealing and late deltas happen), merged as run files.
        let mut rng = fastrand::Rng::with_seed(seed ^ 0xfeed);
        let shards = 2 + (seed % 3) as usize;
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut builders: Vec<RunBuilder> = (0..shards)
            .map(|_| RunBuilder::new("s", started_at(), origin))
            .collect();
        let mut recorders: Vec<Recorder> = (0..shards * 3).map(|_| Recorder::new(origin)).collect();
        for (i, s) in sorted.iter().enumerate() {
            let r = rng.usize(0..recorders.len());
            record(&mut recorders[r], origin, *s);
            if i % 97 == 0 {
                let r = rng.usize(0..recorders.len());
                builders[r % shards].absorb(recorders[r].take());
            }
        }
        for (r, rec) in recorders.iter_mut().enumerate() {
            builders[r % shards].absorb(rec.take());
        }
        let mut runs = builders.into_iter().map(|b| {
            Run::from_json_str(&b.finish(Duration::from_secs(45)).to_json_pretty().unwrap())
                .unwrap()
        });
        let mut merged = runs.next().unwrap();
        for r in runs {
            merged.merge(&r).unwrap();
        }
        assert_eq!(fingerprint(&merged), fingerprint(&reference), "seed {seed}");
        // The compressed text may differ (histogram sizes differ); the numbers may not.
        let summaries = |run: &Run| -> Vec<(String, Option<reports::Summary>)> {
            let summary = |m: &Metric| match m {
                Metric::Histogram(h) => Some(h.summary),
                _ => None,
            };
            run.metrics
                .iter()
                .map(|(k, m)| (k.to_string(), summary(m)))
                .collect()
        };
        assert_eq!(summaries(&merged), summaries(&reference), "seed {seed}");
        assert_eq!(merged.duration_s, reference.duration_s);
    }
}

#[test]
fn gauges_of_several_writers_add_up_per_second_and_merge_across_runs() {
    let origin = Instant::now();
    let mut b = RunBuilder::new("swarm", started_at(), origin);
    let shard = |n: &str| key(&format!("connections_active{{shard={n}}}"));
    // Two shards, each the single writer of its own level.
    let mut r = Recorder::new(origin);
    r.gauge(shard("0"), at(origin, 0.2), 100);
    r.gauge(shard("0"), at(origin, 0.9), 120); // last in second 0 wins
    r.gauge(shard("1"), at(origin, 0.5), 80);
    b.absorb(r.take());
    assert_eq!(b.gauge_now(&key("connections_active")), Some(200));
    r.gauge(shard("0"), at(origin, 1.5), 150);
    r.gauge(shard("1"), at(origin, 1.5), 50);
    b.absorb(r.take());
    let run = b.finish(Duration::from_secs(2));
    let plain = key("connections_active");
    match &run.metrics[&plain] {
        Metric::Gauge(g) => assert_eq!((g.value, g.min, g.max), (200, 200, 200)),
        other => panic!("not a gauge: {other:?}"),
    }
    match &run.series[&plain] {
        Series::Gauge(points) => {
            assert_eq!(
                points.iter().map(|p| (p.t, p.gauge)).collect::<Vec<_>>(),
                vec![(0, 200), (1, 200)]
            );
        }
        other => panic!("not a gauge series: {other:?}"),
    }
    match &run.metrics[&shard("0")] {
        Metric::Gauge(g) => assert_eq!((g.value, g.min, g.max), (150, 120, 150)),
        other => panic!("not a gauge: {other:?}"),
    }
    // JSON round trip keeps the kind; merging another process's run adds the levels.
    let back = Run::from_json_str(&run.to_json_pretty().unwrap()).unwrap();
    assert_eq!(back, run);
    let mut merged = run.clone();
    let mut other_process = run.clone();
    other_process.id = reports::run::new_id();
    merged.merge(&other_process).unwrap();
    match &merged.metrics[&plain] {
        Metric::Gauge(g) => assert_eq!((g.value, g.max), (400, 400)),
        other => panic!("not a gauge: {other:?}"),
    }
    // Thresholds read a gauge's last and highest level.
    let gates = [
        reports::Threshold::parse("connections_active", "value == 200").unwrap(),
        reports::Threshold::parse("connections_active", "peak >= 200").unwrap(),
        reports::Threshold::parse("connections_active", "p(99) < 1ms").unwrap(),
    ];
    let verdicts = reports::evaluate(&run, &gates);
    assert!(verdicts[0].ok && verdicts[1].ok, "{verdicts:?}");
    assert!(!verdicts[2].ok);
    assert!(
        verdicts[2].message.as_deref().unwrap().contains("gauge"),
        "{verdicts:?}"
    );
}

#[test]
fn a_shard_reporting_late_holds_its_level_in_the_summed_gauge() {
    let origin = Instant::now();
    let mut b = RunBuilder::new("swarm", started_at(), origin);
    let shard = |n: &str| key(&format!("connections_active{{shard={n}}}"));
    let mut r = Recorder::new(origin);
    // Shard 0 reports every second; shard 1 misses second 1 and 3 (a second late), then
    // reports again at a new level; shard 2 starts reporting only at second 2.
    for (t, level) in [(0.1, 100), (1.1, 100), (2.1, 100), (3.1, 100), (4.1, 100)] {
        r.gauge(shard("0"), at(origin, t), level);
    }
    for (t, level) in [(0.2, 50), (2.2, 50), (4.2, 70)] {
        r.gauge(shard("1"), at(origin, t), level);
    }
    r.gauge(shard("2"), at(origin, 2.3), 10);
    b.absorb(r.take());
    let run = b.finish(Duration::from_secs(5));
    let series = |run: &Run| match &run.series[&key("connections_active")] {
        Series::Gauge(points) => points.iter().map(|p| (p.t, p.gauge)).collect::<Vec<_>>(),
        other => panic!("not a gauge series: {other:?}"),
    };
    assert_eq!(
        series(&run),
        vec![(0, 150), (1, 150), (2, 160), (3, 160), (4, 180)]
    );
    match &run.metrics[&key("connections_active")] {
        Metric::Gauge(g) => assert_eq!((g.value, g.min, g.max), (180, 150, 180)),
        other => panic!("not a gauge: {other:?}"),
    }

    // Merging two processes' runs: the one without a point in a second holds its level.
    let mut other = RunBuilder::new("swarm", started_at(), origin);
    let mut r = Recorder::new(origin);
    r.gauge(shard("9"), at(origin, 0.5), 1000);
    r.gauge(shard("9"), at(origin, 3.5), 900);
    other.absorb(r.take());
    let other = other.finish(Duration::from_secs(5));
    let mut merged = run.clone();
    merged.merge(&other).unwrap();
    assert_eq!(
        series(&merged),
        vec![(0, 1150), (1, 1150), (2, 1160), (3, 1060), (4, 1080)]
    );
}
