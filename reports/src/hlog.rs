//! HdrHistogram interval logs (`.hlog`), the format HdrHistogram's own tools read
//! (`HistogramLogProcessor`, HdrHistogram Python's `HistogramLogReader`, the hdrhistogram
//! crate's `IntervalLogIterator`).
//!
//! One log holds every histogram metric of a run: each second of each metric's series is one
//! interval line tagged with the metric key, in time order. `StartTime` and `BaseTime` are the
//! run's start, so interval timestamps are seconds since the start. Values are µs; the
//! `MaxValueDivisor` of 1000 makes the max column milliseconds. A tag cannot hold `,` or
//! spaces, so [`tag_for`] writes `,` as `;` and whitespace as `_`. The run file already holds
//! each second's histogram in the log's own encoding (V2 deflate, base64), so interval lines
//! carry it as stored, in the exact line format of the crate's `IntervalLogWriter`.

use std::io::Write as _;
use std::time::SystemTime;

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::hist::{self, HistError};
use crate::key::MetricKey;
use crate::run::{HistPoint, Run, Series};

/// Values are µs; the max column is in ms.
const MAX_VALUE_DIVISOR: f64 = 1000.0;

/// How a V2-deflate histogram's base64 text starts (its cookie, 0x1c849304).
const V2_DEFLATE_BASE64: &str = "HISTF";

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
    let mut lines: Vec<(u32, &MetricKey, String, &HistPoint)> = Vec::new();
    for (key, series) in &run.series {
        if let Series::Histogram(points) = series {
            let tag = tag_for(key);
            for p in points {
                lines.push((p.t, key, tag.clone(), p));
            }
        }
    }
    // Time order first (readers expect it), then key order within a second.
    lines.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));

    let mut buf = Vec::new();
    // The crate's writer writes the headers; interval lines follow below.
    let mut serializer = V2DeflateSerializer::new();
    IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "pushbench run `{}`: one interval per second per metric, tagged by metric key; values in microseconds",
            run.scenario.replace(['\n', '\r'], " ")
        ))
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(MAX_VALUE_DIVISOR)
        .begin_log_with(&mut buf, &mut serializer)
        .map_err(|e| HlogError::Write(e.to_string()))?;
    for (t, key, tag, point) in &lines {
        // The interval log's encoding is the run file's (V2 deflate, base64): written as the
        // crate's writer would write it, without decoding and encoding it again.
        let encoded = if point.hist.starts_with(V2_DEFLATE_BASE64) {
            std::borrow::Cow::Borrowed(point.hist.trim())
        } else {
            let h = hist::decode(&point.hist).map_err(|source| HlogError::Histogram {
                key: (*key).clone(),
                t: *t,
                source,
            })?;
            std::borrow::Cow::Owned(hist::encode(&h))
        };
        writeln!(
            buf,
            "Tag={tag},{t}.000,1.000,{:.3},{encoded}",
            point.max as f64 / MAX_VALUE_DIVISOR
        )
        .map_err(|e| HlogError::Write(e.to_string()))?;
    }
    Ok(buf)
}
