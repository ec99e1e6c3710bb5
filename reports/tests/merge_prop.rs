//! Property: merging per-shard runs gives exactly the run recorded from all samples in one
//! place — the same histograms (every bucket), counters, and one-second series.

mod common;

use std::time::{Duration, Instant};

use common::{at, counts, key, started_at};
use proptest::prelude::*;
use reports::run::{Metric, Series};
use reports::{MetricKey, Recorder, Run, RunBuilder};

const SHARDS: usize = 4;
const SECONDS: u32 = 6;

/// One sample: (shard, metric, second, millisecond within it, value µs, failed).
type Sample = (usize, usize, u32, u32, u64, bool);

fn keys() -> [MetricKey; 3] {
    [
        key("http_req_duration{journey=unicast,step=push}"),
        key("http_req_duration{journey=broadcast,step=fanout}"),
        key("delivery_latency"),
    ]
}

fn build(samples: &[&Sample], origin: Instant) -> Run {
    let keys = keys();
    let mut rec = Recorder::new(origin);
    for (_, metric, s, ms, value, failed) in samples {
        let t = at(origin, f64::from(*s) + f64::from(*ms) / 1000.0);
        rec.record(&keys[*metric], t, *value);
        rec.add(key("http_reqs{journey=unicast}"), t, 1);
        rec.count(key("http_req_failed{journey=unicast}"), t, *failed);
    }
    let mut b = RunBuilder::new("shards", started_at(), origin);
    b.absorb(rec);
    b.finish(Duration::from_secs(u64::from(SECONDS)))
}

fn same_run(merged: &Run, whole: &Run) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        merged.metrics.keys().collect::<Vec<_>>(),
        whole.metrics.keys().collect::<Vec<_>>()
    );
    for (k, m) in &whole.metrics {
        match m {
            Metric::Histogram(h) => {
                let a = merged.histogram(k).unwrap().unwrap();
                let b = whole.histogram(k).unwrap().unwrap();
                prop_assert_eq!(counts(&a), counts(&b), "{}", k);
                let Metric::Histogram(mh) = &merged.metrics[k] else {
                    return Err(TestCaseError::fail(format!("{k} changed kind")));
                };
                prop_assert_eq!(mh.summary, h.summary, "{}", k);
            }
            other => prop_assert_eq!(&merged.metrics[k], other, "{}", k),
        }
    }
    for (k, s) in &whole.series {
        match (s, &merged.series[k]) {
            (Series::Histogram(a), Series::Histogram(b)) => {
                prop_assert_eq!(a.len(), b.len(), "{}", k);
                for (p, q) in a.iter().zip(b) {
                    prop_assert_eq!(p.t, q.t);
                    let (hp, hq) = (
                        reports::hist::decode(&p.hist).unwrap(),
                        reports::hist::decode(&q.hist).unwrap(),
                    );
                    prop_assert_eq!(counts(&hp), counts(&hq), "{} second {}", k, p.t);
                    prop_assert_eq!(
                        (p.count, p.p50, p.p99, p.max),
                        (q.count, q.p50, q.p99, q.max)
                    );
                }
            }
            (a, b) => prop_assert_eq!(a, b, "{}", k),
        }
    }
    prop_assert_eq!(merged.duration_s, whole.duration_s);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn merged_shards_equal_one_recording(
        samples in prop::collection::vec(
            (0..SHARDS, 0..3usize, 0..SECONDS, 0..1000u32,
             prop_oneof![1..2_000u64, 1..5_000_000u64], any::<bool>()),
            1..300,
        )
    ) {
        let origin = Instant::now();
        let whole = build(&samples.iter().collect::<Vec<_>>(), origin);
        let mut merged: Option<Run> = None;
        for shard in 0..SHARDS {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.0 == shard).collect();
            let run = build(&mine, origin);
            match &mut merged {
                None => merged = Some(run),
                Some(m) => m.merge(&run).unwrap(),
            }
        }
        let merged = merged.unwrap();
        // Through the JSON file too, as runs from other machines arrive.
        let merged = Run::from_json_str(&merged.to_json_pretty().unwrap()).unwrap();
        same_run(&merged, &whole)?;
    }
}
