//! The live progress line of a run: elapsed and planned time, request rate, errors, rolling
//! p50/p99 — computed from the record so far. The command line decides how and how often to
//! show it.

use std::time::{Duration, Instant};

use reports::{MetricKey, RunBuilder};

use crate::journey::names;

/// What the progress line is made of.
#[derive(Debug)]
pub struct Progress {
    planned: Duration,
    duration: MetricKey,
    reqs: MetricKey,
    failed: MetricKey,
    dropped: MetricKey,
}

impl Progress {
    /// Progress of a run planned to last `planned`.
    pub fn new(planned: Duration) -> Progress {
        Progress {
            planned,
            duration: MetricKey::new(names::HTTP_REQ_DURATION),
            reqs: MetricKey::new(names::HTTP_REQS),
            failed: MetricKey::new(names::HTTP_REQ_FAILED),
            dropped: MetricKey::new(names::DROPPED_ITERATIONS),
        }
    }

    /// The status line for the state of `builder` at `now`.
    pub fn line(&self, builder: &RunBuilder, origin: Instant, now: Instant) -> String {
        let elapsed = now.saturating_duration_since(origin);
        let window = 5;
        let (reqs, _) = builder.counter_window(&self.reqs, now, window);
        let secs = elapsed.as_secs_f64().clamp(1.0, window as f64);
        let rate = reqs as f64 / secs;
        let (failed, total) = builder.total_counter(&self.failed);
        let (dropped, _) = builder.total_counter(&self.dropped);
        let lat = builder
            .window(&self.duration, now, window)
            .map(|s| format!("p50 {} p99 {}", fmt_us(s.p50), fmt_us(s.p99)))
            .unwrap_or_else(|| "p50 – p99 –".into());
        let err_pct = if total > 0 {
            failed as f64 * 100.0 / total as f64
        } else {
            0.0
        };
        let mut line = format!(
            "[{:>5.0}s / {:.0}s] {:>9.1} req/s  {} requests  errors {:.2}%  {lat}",
            elapsed.as_secs_f64(),
            self.planned.as_secs_f64(),
            rate,
            total,
            err_pct,
        );
        if dropped > 0 {
            line += &format!("  dropped {dropped}");
        }
        line
    }
}

fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}
