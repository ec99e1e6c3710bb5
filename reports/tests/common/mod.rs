//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reports::MetricKey;

/// `origin + secs`.
pub fn at(origin: Instant, secs: f64) -> Instant {
    origin + Duration::from_secs_f64(secs)
}

/// Parses a key.
pub fn key(text: &str) -> MetricKey {
    text.parse().unwrap()
}

/// Every (value, count) a histogram holds.
pub fn counts(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// A fixed start time.
pub fn started_at() -> chrono::DateTime<chrono::Utc> {
    "2026-11-25T19:20:00.123Z".parse().unwrap()
}
