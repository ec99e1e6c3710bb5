//! A worker's record log: what a worker sends the master besides Locust's own stats, so the
//! master's plugin (`deploy/locust/locustfile.py`) can write the exact record of the whole
//! run. Each [`Line`] travels as the data of one `pushbench_record` message, and the plugin
//! appends it, as JSON, to one `.jsonl` file per worker: the run's start (scenario, start
//! time, meta, thresholds), every recorder delta the worker took (exact HdrHistograms and
//! counters, [`reports::Delta`]), and its end.
//!
//! [`read`] turns such a file back into the [`Run`] the worker wrote itself: the same deltas
//! absorbed in the same order by the same builder. `loadgen report merge` reads these files
//! next to run records; a log without its end (the worker was killed, or lost its master)
//! still gives what was measured until its last report, and says so in `meta.worker_record`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reports::{Delta, Recorder, Run, RunBuilder, Threshold};
use serde::{Deserialize, Serialize};

/// One line of a record log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Line {
    /// A run started on the worker.
    Begin {
        /// The scenario's name.
        scenario: String,
        /// When second 0 started, Unix ns.
        started_at_unix_ns: u64,
        /// The run record's `meta`.
        meta: serde_json::Value,
        /// The scenario's thresholds, `(metric, expression)`.
        thresholds: Vec<(String, String)>,
        /// The worker's Locust client id.
        worker: String,
    },
    /// Samples since the last delta.
    Delta {
        /// The samples.
        delta: Delta,
    },
    /// The run ended on the worker; nothing follows.
    End {
        /// How long the run lasted, s.
        duration_s: f64,
        /// Why it ended early, if it did.
        stopped_early: Option<String>,
    },
}

/// Why a record log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A line is not a record-log line.
    #[error("line {line}: not a worker record line: {why}")]
    Line {
        /// 1-based.
        line: usize,
        /// The JSON error.
        why: String,
    },
    /// The first line is not the run's start.
    #[error("line 1: a worker record log starts with its `begin` record")]
    NoBegin,
}

/// True when `text` looks like a record log (its first line is a `begin` record).
pub fn is_log(text: &str) -> bool {
    text.lines()
        .next()
        .and_then(|l| serde_json::from_str::<Line>(l).ok())
        .is_some_and(|l| matches!(l, Line::Begin { .. }))
}

/// The run a record log describes.
pub fn read(text: &str) -> Result<Run, LogError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Line>(l).map_err(|e| LogError::Line {
                line: i + 1,
                why: e.to_string(),
            })
        });
    let Some(Line::Begin {
        scenario,
        started_at_unix_ns,
        mut meta,
        thresholds,
        worker,
    }) = lines.next().transpose()?
    else {
        return Err(LogError::NoBegin);
    };
    let origin = Instant::now();
    let started_at: DateTime<Utc> = DateTime::from_timestamp_nanos(started_at_unix_ns as i64);
    let mut builder = RunBuilder::new(&scenario, started_at, origin);
    let mut end = None;
    let mut last_second = 0u32;
    for line in lines {
        match line? {
            Line::Delta { delta } => {
                last_second = last_second.max(latest_second(&delta));
                let (recorder, bad) = Recorder::from_delta(origin, delta);
                for key in bad {
                    tracing::warn!("worker {worker}: histogram of {key} did not decode");
                }
                builder.absorb(recorder);
            }
            Line::End {
                duration_s,
                stopped_early,
            } => end = Some((duration_s, stopped_early)),
            Line::Begin { .. } => {}
        }
    }
    let complete = end.is_some();
    let (duration_s, stopped_early) = end.unwrap_or((f64::from(last_second) + 1.0, None));
    let mut run = builder.finish(Duration::from_secs_f64(duration_s.max(0.0)));
    if let Some(m) = meta.as_object_mut() {
        m.insert(
            "worker_record".into(),
            serde_json::json!({
                "worker": worker,
                "complete": complete,
                "note": if complete {
                    "the worker's whole run".to_string()
                } else {
                    format!("the worker did not report its end: this holds what it measured until its last report ({duration_s:.0} s into the run); the rest of its share is missing")
                },
            }),
        );
        if stopped_early.is_some() {
            m.insert("stopped_early".into(), serde_json::json!(stopped_early));
        }
    }
    run.meta = Some(meta);
    let gates: Vec<Threshold> = thresholds
        .iter()
        .filter_map(|(metric, expr)| Threshold::parse(metric, expr).ok())
        .collect();
    run.thresholds = reports::evaluate(&run, &gates);
    Ok(run)
}

fn latest_second(delta: &Delta) -> u32 {
    use reports::delta::DeltaValues;
    delta
        .metrics
        .iter()
        .filter_map(|m| match &m.values {
            DeltaValues::Histogram(v) => v.iter().map(|p| p.0).max(),
            DeltaValues::Counter(v) => v.iter().map(|p| p.0).max(),
            DeltaValues::Gauge(v) => v.iter().map(|p| p.0).max(),
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reports::MetricKey;

    fn begin() -> Line {
        Line::Begin {
            scenario: "s".into(),
            started_at_unix_ns: 1_700_000_000_000_000_000,
            meta: serde_json::json!({"scenario_file": "s.yaml"}),
            thresholds: vec![("http_reqs".into(), "count > 2".into())],
            worker: "w1".into(),
        }
    }

    #[test]
    fn a_log_reads_back_as_the_run_its_worker_built() {
        let origin = Instant::now();
        let mut builder = RunBuilder::new(
            "s",
            DateTime::from_timestamp_nanos(1_700_000_000_000_000_000),
            origin,
        );
        let mut lines = vec![serde_json::to_string(&begin()).unwrap()];
        for t in 0..3u64 {
            let mut r = Recorder::new(origin);
            let at = origin + Duration::from_secs(t);
            r.record(MetricKey::new("lat").with_tag("journey", "j"), at, 100 + t);
            r.add(MetricKey::new("http_reqs"), at, 1);
            lines.push(
                serde_json::to_string(&Line::Delta {
                    delta: r.to_delta(),
                })
                .unwrap(),
            );
            builder.absorb(r);
        }
        lines.push(
            serde_json::to_string(&Line::End {
                duration_s: 3.0,
                stopped_early: None,
            })
            .unwrap(),
        );
        let text = lines.join("\n");
        assert!(is_log(&text));
        let run = read(&text).unwrap();
        let own = builder.finish(Duration::from_secs(3));
        assert_eq!(run.metrics, own.metrics);
        assert_eq!(run.series, own.series);
        assert_eq!(run.started_at, own.started_at);
        assert!(run.thresholds[0].ok, "3 requests > 2");
        assert_eq!(run.meta.unwrap()["worker_record"]["complete"], true);
        // Without its end: what was measured, marked incomplete.
        let cut = lines[..3].join("\n");
        let partial = read(&cut).unwrap();
        assert_eq!(partial.duration_s, 2.0);
        assert_eq!(partial.meta.unwrap()["worker_record"]["complete"], false);
    }

    #[test]
    fn bad_lines_name_their_line() {
        let text = format!(
            "{}\n{{\"record\":\"nope\"}}\n",
            serde_json::to_string(&begin()).unwrap()
        );
        let e = read(&text).unwrap_err().to_string();
        assert!(
            e.starts_with("line 2: not a worker record line: unknown variant `nope`"),
            "{e}"
        );
        assert!(!is_log("{\"version\":1}"));
        assert_eq!(
            read("{\"record\":\"end\",\"duration_s\":1,\"stopped_early\":null}")
                .unwrap_err()
                .to_string(),
            "line 1: a worker record log starts with its `begin` record"
        );
    }
}
