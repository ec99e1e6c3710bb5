//! Live progress while a run goes: on a terminal one line redrawn each second (elapsed and
//! remaining, request rate, errors, rolling p50/p99); elsewhere a plain line every few
//! seconds, so CI logs stay readable.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use reports::{MetricKey, RunBuilder};

use crate::journey::names;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Quiet,
    /// A redrawn line (stderr is a terminal).
    Tty,
    /// A plain line every `every`.
    Lines(Duration),
}

impl Mode {
    /// Redrawn on a terminal, plain lines every 5 s elsewhere.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Tty
        } else {
            Mode::Lines(Duration::from_secs(5))
        }
    }
}

/// The progress printer.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    planned: Duration,
    last_line: Option<Instant>,
    duration: MetricKey,
    reqs: MetricKey,
    failed: MetricKey,
    dropped: MetricKey,
}

impl Progress {
    /// Progress of a run planned to last `planned`.
    pub fn new(mode: Mode, planned: Duration) -> Progress {
        Progress {
            mode,
            planned,
            last_line: None,
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

    /// Shows progress if it is time to.
    pub fn tick(&mut self, builder: &RunBuilder, origin: Instant) {
        let now = Instant::now();
        match self.mode {
            Mode::Quiet => {}
            Mode::Tty => {
                let line = self.line(builder, origin, now);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
            }
            Mode::Lines(every) => {
                if self
                    .last_line
                    .is_none_or(|t| now.duration_since(t) >= every)
                {
                    self.last_line = Some(now);
                    eprintln!("{}", self.line(builder, origin, now));
                }
            }
        }
    }

    /// Ends the redrawn line.
    pub fn finish(&self) {
        if self.mode == Mode::Tty {
            eprintln!();
        }
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
