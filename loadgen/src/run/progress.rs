//! The live progress line of a run: elapsed and planned time, request rate, errors, rolling
//! p50/p99 — computed from the record so far. The command line decides how and how often to
//! show it.

use std::time::{Duration, Instant};

use reports::{MetricKey, RunBuilder};

use crate::delivery::names as delivery;
use crate::engine::swarm::names as swarm;
use crate::journey::names;

/// What the progress line is made of.
#[derive(Debug)]
pub struct Progress {
    planned: Duration,
    requests: bool,
    duration: MetricKey,
    reqs: MetricKey,
    failed: MetricKey,
    dropped: MetricKey,
    active: MetricKey,
    opened: MetricKey,
    conn_failed: MetricKey,
    received: MetricKey,
    lost: MetricKey,
    unverifiable: MetricKey,
}

/// Seconds of the rolling rate and percentiles.
const WINDOW: u32 = 5;

impl Progress {
    /// Progress of a run planned to last `planned`; `requests` when it sends HTTP requests
    /// (senders or replay), so their part shows from the start.
    pub fn new(planned: Duration, requests: bool) -> Progress {
        Progress {
            planned,
            requests,
            duration: MetricKey::new(names::HTTP_REQ_DURATION),
            reqs: MetricKey::new(names::HTTP_REQS),
            failed: MetricKey::new(names::HTTP_REQ_FAILED),
            dropped: MetricKey::new(names::DROPPED_ITERATIONS),
            active: MetricKey::new(swarm::CONNECTIONS_ACTIVE),
            opened: MetricKey::new(swarm::CONNECTIONS_OPENED),
            conn_failed: MetricKey::new(swarm::CONNECTIONS_FAILED),
            received: MetricKey::new(delivery::DELIVERY_RECEIVED),
            lost: MetricKey::new(delivery::DELIVERY_LOST),
            unverifiable: MetricKey::new(delivery::DELIVERY_UNVERIFIABLE),
        }
    }

    /// The status line for the state of `builder` at `now`: the request rate is over the
    /// last complete seconds (up to five), so a second still being recorded does not pull it
    /// down.
    pub fn line(&self, builder: &RunBuilder, origin: Instant, now: Instant) -> String {
        let elapsed = now.saturating_duration_since(origin);
        let complete = u32::try_from(elapsed.as_secs())
            .unwrap_or(u32::MAX)
            .min(WINDOW);
        let rate = match now.checked_sub(Duration::from_secs(1)) {
            Some(last_complete) if complete > 0 => {
                let (reqs, _) = builder.counter_window(&self.reqs, last_complete, complete);
                format!("{:>9.1} req/s", reqs as f64 / f64::from(complete))
            }
            _ => format!("{:>9} req/s", "–"),
        };
        let (failed, total) = builder.total_counter(&self.failed);
        let mut line = format!(
            "[{:>5.0}s / {:.0}s]",
            elapsed.as_secs_f64(),
            self.planned.as_secs_f64()
        );
        if self.requests || total > 0 {
            let lat = builder
                .window(&self.duration, now, WINDOW)
                .map(|s| format!("p50 {} p99 {}", fmt_us(s.p50), fmt_us(s.p99)))
                .unwrap_or_else(|| "p50 – p99 –".into());
            let err_pct = if total > 0 {
                failed as f64 * 100.0 / total as f64
            } else {
                0.0
            };
            line += &format!("  {rate}  {total} requests  errors {err_pct:.2}%  {lat}");
        }
        let (dropped, _) = builder.total_counter(&self.dropped);
        if dropped > 0 {
            line += &format!("  dropped {dropped}");
        }
        if let Some(active) = builder.gauge_now(&self.active) {
            let (opened, _) = builder.total_counter(&self.opened);
            let (failed, _) = builder.total_counter(&self.conn_failed);
            line += &format!("  devices {active} up, {opened} opened, {failed} failed");
        }
        let (received, _) = builder.total_counter(&self.received);
        let (lost, _) = builder.total_counter(&self.lost);
        let (unverifiable, _) = builder.total_counter(&self.unverifiable);
        if received + lost + unverifiable > 0 {
            line += &format!(
                "  deliveries {received} received, {lost} lost, {unverifiable} unverifiable"
            );
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
