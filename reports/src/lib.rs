//! The pushbench metrics model: one [`Run`] record for every engine.
//!
//! Engines record samples into per-task [`Recorder`]s (no shared lock on the hot path). A
//! collector harvests each recorder's delta about once a second with [`Recorder::take`] and
//! absorbs it into a [`RunBuilder`], which also answers live-progress questions. At the end
//! [`RunBuilder::finish`] produces the [`Run`], which serialises to versioned JSON with
//! histograms in HdrHistogram V2 compressed form, so runs from several shards or processes
//! merge exactly ([`Run::merge`]). [`threshold`] evaluates gates such as `p(99) < 250ms`;
//! [`summary`] renders the terminal table; [`markdown`], [`html`], [`junit`] and [`hlog`]
//! render the reports for people and CI ([`render`](fn@render) picks one by name). [`compare`](fn@compare) judges
//! new runs against baseline runs statistically — one baseline, a history of them
//! ([`compare_runs`], with [`history`] keeping the folder), or alternating A/B rounds
//! ([`compare_paired`]) — with one false-alarm rate for the whole comparison, and
//! [`noise_report`] tells from A/A runs how small a change a gate can see ([`stats`] holds the
//! distribution functions).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use reports::{evaluate, MetricKey, Recorder, Run, RunBuilder, Threshold};
//!
//! let origin = Instant::now();
//! let mut builder = RunBuilder::new("quickstart", chrono::Utc::now(), origin);
//! let mut recorder = Recorder::new(origin); // one per task
//! let latency = MetricKey::new("http_req_duration").with_tag("journey", "unicast");
//! recorder.record(&latency, Instant::now(), 1_250); // µs
//! builder.absorb(recorder.take()); // about once a second, from the collector
//!
//! let mut run = builder.finish(Duration::from_secs(1));
//! let gate = Threshold::parse("http_req_duration", "p(99) < 250ms").unwrap();
//! run.thresholds = evaluate(&run, &[gate]);
//! assert!(run.thresholds[0].ok);
//! let back = Run::from_json_str(&run.to_json_pretty().unwrap()).unwrap();
//! assert_eq!(back, run);
//! ```
#![deny(missing_docs)]

pub mod builder;
pub mod chart;
pub mod compare;
pub mod delta;
pub mod hist;
pub mod history;
pub mod hlog;
pub mod html;
pub mod junit;
pub mod key;
pub mod markdown;
pub mod recorder;
pub mod render;
pub mod run;
pub mod saturation;
pub mod stats;
pub mod summary;
pub mod text;
pub mod threshold;

pub use builder::RunBuilder;
pub use compare::{
    compare, compare_paired, compare_runs, noise_report, Change, CompareOptions, Comparison,
    GateOptions, Labeled, NoiseReport, Scope,
};
pub use delta::Delta;
pub use hist::Summary;
pub use key::{KeyError, MetricId, MetricKey};
pub use recorder::{Recorder, RecorderHandle, Recorders};
pub use render::{render, Format, RenderError};
pub use run::{GaugeMetric, GaugePoint, MergeError, Metric, Run, RunError, Selected, Series};
pub use threshold::{evaluate, Expr, Threshold, Verdict};
