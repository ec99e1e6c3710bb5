//! HdrHistogram interval logs (`.hlog`), the format HdrHistogram's own tools read
//! (`HistogramLogProcessor`, HdrHistogram Python's `HistogramLogReader`, the hdrhistogram
//! crate's `IntervalLogIterator`).
//!
//! One log holds every histogram metric of a run: each second of each metric's series is one
//! interval line tagged with the metric key, in time order. `StartTime` and `BaseTime` are the
//! run's start, so interval timestamps are seconds since the start. Values are µs; the
//! `MaxValueDivisor` of 1000 makes the max column milliseconds. A tag cannot hold `,` or
//! spaces, so [`tag_for`] writes `,` as `;` and whitespace as `_`.

use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::hist::{self, HistError};
use crate::key::MetricKey;
use crate::run::{Run, Series};

/// Why an interval log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HlogError {
    /// A histogram in the run is damaged.
    #[error("metric `{key}` second {t}: its histogram cannot be decoded: {source}")]
    Histogram {
        /// The metric.
        key: MetricKey,
        /// The second.
        t: u32,
        /// What went wrong.
        source: HistError,
    },
    /// The serializer or writer failed.
    #[error("cannot write the interval log: {0}")]
    Write(String),
}

/// The interval-log tag of a metric key.
pub fn tag_for(key: &MetricKey) -> String {
    key.to_string()
        .chars()
        .map(|c| match c {
            ',' => ';',
            c if c.is_whitespace() => '_',
            c => c,
        })
        .collect()
}

/// Writes every histogram series of `run` as one interval log.
pub fn render(run: &Run) -> Result<Vec<u8>, HlogError> {
    let start: SystemTime = run.started_at.into();
    let mut lines: Vec<(u32, &MetricKey, String, &str)> = Vec::new();
    for (key, series) in &run.series {
        if let Series::Histogram(points) = series {
            let tag = tag_for(key);
            for p in points {
                lines.push((p.t, key, tag.clone(), p.hist.as_str()));
            }
        }
    }
    // Time order first (readers expect it), then key order within a second.
    lines.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));

    let mut buf = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "pushbench run `{}`: one interval per second per metric, tagged by metric key; values in microseconds",
            run.scenario.replace(['\n', '\r'], " ")
        ))
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut buf, &mut serializer)
        .map_err(|e| HlogError::Write(e.to_string()))?;
    for (t, key, tag, text) in &lines {
        let h = hist::decode(text).map_err(|source| HlogError::Histogram {
            key: (*key).clone(),
            t: *t,
            source,
        })?;
        writer
            .write_histogram(
                &h,
                Duration::from_secs(u64::from(*t)),
                Duration::from_secs(1),
                Tag::new(tag),
            )
            .map_err(|e| HlogError::Write(e.to_string()))?;
    }
    Ok(buf)
}
