//! Fault injection for the mock APNs: latency, error responses (429/500/503) at given rates,
//! REFUSED_STREAM, reset after the request was read, GOAWAY after N streams, and a stream
//! limit.
//!
//! Rates are drawn from a generator seeded with [`ApnsFaults::seed`]: the same sequence of
//! streams meets the same sequence of faults in every run. Where a test needs exact numbers,
//! [`Fault`]s queued with [`MockApnsHandle::push_faults`](super::MockApnsHandle::push_faults)
//! apply to the next streams in arrival order, before any rate is drawn.
//!
//! REFUSED_STREAM is decided before a stream is read. Injected error answers (429/500/503,
//! [`Fault::Reject`]) replace the success of a valid request only: an invalid one still gets
//! its own reason, as the fault stands for APNs' trouble, not the request's. A reset after
//! reading resets any request, and records it only when it was valid.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::Reason;

/// Faults in force on a mock APNs. Missing fields take their default (no fault).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsFaults {
    /// Delay before every answer (success or error), in milliseconds, counted from the end of
    /// the request.
    pub latency_ms: u64,
    /// Fraction of streams answered 429 `TooManyRequests` (not delivered).
    pub rate_429: f64,
    /// Fraction of streams answered 500 `InternalServerError` (not delivered).
    pub rate_500: f64,
    /// Fraction of streams answered 503 `ServiceUnavailable` (not delivered).
    pub rate_503: f64,
    /// Fraction of streams reset with REFUSED_STREAM before being read (not delivered; safe
    /// to retry).
    pub refused_stream_rate: f64,
    /// Fraction of streams read in full, delivered (recorded), then reset with
    /// RST_STREAM(INTERNAL_ERROR) instead of answered: the client cannot know the outcome.
    pub reset_after_read_rate: f64,
    /// After this many streams on one connection, the mock sends GOAWAY (NO_ERROR) and serves
    /// only the streams up to the GOAWAY's last-stream-id; later streams are not processed.
    pub goaway_after: Option<u32>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to new connections (APNs' is about 1000,
    /// the default here).
    pub max_concurrent_streams: Option<u32>,
    /// Seed of the generator the rates draw from.
    pub seed: u64,
    /// A connection with no open stream for this many milliseconds is closed with GOAWAY, as
    /// APNs closes idle connections.
    pub idle_timeout_ms: Option<u64>,
}

impl Default for ApnsFaults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            rate_429: 0.0,
            rate_500: 0.0,
            rate_503: 0.0,
            refused_stream_rate: 0.0,
            reset_after_read_rate: 0.0,
            goaway_after: None,
            max_concurrent_streams: None,
            seed: 1,
            idle_timeout_ms: None,
        }
    }
}

/// An [`ApnsFaults`] value out of range; the message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApnsFaultsError {
    /// A rate outside `0..=1`.
    #[error("{field} must be between 0 and 1, got {value}")]
    Rate {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// The rates add up to more than 1.
    #[error("the fault rates add up to {0}, more than 1")]
    RateSum(f64),
    /// `goaway_after`, `max_concurrent_streams` or `idle_timeout_ms` is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl ApnsFaults {
    /// Checks that every rate is in `0..=1`, that they add up to at most 1 (each stream meets
    /// at most one of them) and that the counts are positive.
    pub fn validate(&self) -> Result<(), ApnsFaultsError> {
        let rates = self.rates();
        for (field, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(ApnsFaultsError::Rate { field, value });
            }
        }
        let sum: f64 = rates.iter().map(|(_, r)| r).sum();
        if sum > 1.0 + 1e-9 {
            return Err(ApnsFaultsError::RateSum(sum));
        }
        if self.goaway_after == Some(0) {
            return Err(ApnsFaultsError::Zero("goaway_after"));
        }
        if self.max_concurrent_streams == Some(0) {
            return Err(ApnsFaultsError::Zero("max_concurrent_streams"));
        }
        if self.idle_timeout_ms == Some(0) {
            return Err(ApnsFaultsError::Zero("idle_timeout_ms"));
        }
        Ok(())
    }

    fn rates(&self) -> [(&'static str, f64); 5] {
        [
            ("refused_stream_rate", self.refused_stream_rate),
            ("reset_after_read_rate", self.reset_after_read_rate),
            ("rate_429", self.rate_429),
            ("rate_500", self.rate_500),
            ("rate_503", self.rate_503),
        ]
    }
}

/// One fault for one stream, queued with
/// [`MockApnsHandle::push_faults`](super::MockApnsHandle::push_faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// No fault: the stream is served normally (rates are not drawn for it either).
    Pass,
    /// Answer with this reason and its status, without delivering (e.g.
    /// `Reason::TooManyRequests`, `Reason::Shutdown`).
    Reject(Reason),
    /// Reset the stream with REFUSED_STREAM before reading it.
    RefusedStream,
    /// Read and deliver the notification, then reset the stream with INTERNAL_ERROR.
    ResetAfterRead,
    /// Serve the stream normally, then send GOAWAY on its connection.
    GoAway,
}

/// The active faults plus the queue and the generator.
pub(crate) struct Faults {
    inner: Mutex<Inner>,
}

struct Inner {
    config: ApnsFaults,
    rng: fastrand::Rng,
    queue: VecDeque<Fault>,
}

impl Faults {
    pub(crate) fn new(config: ApnsFaults) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rng: fastrand::Rng::with_seed(config.seed),
                config,
                queue: VecDeque::new(),
            }),
        }
    }

    pub(crate) fn current(&self) -> ApnsFaults {
        self.lock().config.clone()
    }

    /// Replaces the configuration and reseeds the generator.
    pub(crate) fn set(&self, config: ApnsFaults) {
        let mut inner = self.lock();
        inner.rng = fastrand::Rng::with_seed(config.seed);
        inner.config = config;
    }

    pub(crate) fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().queue.extend(faults);
    }

    /// The fault for a newly arrived stream: the next queued one, else one drawn from the
    /// rates (a single draw, so the outcomes are exclusive).
    pub(crate) fn next_stream(&self) -> Fault {
        let mut inner = self.lock();
        if let Some(fault) = inner.queue.pop_front() {
            return fault;
        }
        let rates = inner.config.rates();
        if rates.iter().all(|(_, r)| *r <= 0.0) {
            return Fault::Pass;
        }
        let draw = inner.rng.f64();
        let mut edge = 0.0;
        for (field, rate) in rates {
            edge += rate;
            if draw < edge {
                return match field {
                    "refused_stream_rate" => Fault::RefusedStream,
                    "reset_after_read_rate" => Fault::ResetAfterRead,
                    "rate_429" => Fault::Reject(Reason::TooManyRequests),
                    "rate_500" => Fault::Reject(Reason::InternalServerError),
                    _ => Fault::Reject(Reason::ServiceUnavailable),
                };
            }
        }
        Fault::Pass
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        common::sync::lock(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_validated_and_exclusive() {
        let bad = ApnsFaults {
            rate_429: 1.5,
            ..ApnsFaults::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "rate_429 must be between 0 and 1, got 1.5"
        );
        let sum = ApnsFaults {
            rate_500: 0.6,
            rate_503: 0.6,
            ..ApnsFaults::default()
        };
        assert!(sum
            .validate()
            .unwrap_err()
            .to_string()
            .contains("more than 1"));
        let zero = ApnsFaults {
            goaway_after: Some(0),
            ..ApnsFaults::default()
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "goaway_after must be at least 1"
        );
    }

    #[test]
    fn draws_repeat_per_seed_and_queue_comes_first() {
        let config = ApnsFaults {
            rate_503: 0.3,
            refused_stream_rate: 0.2,
            seed: 7,
            ..ApnsFaults::default()
        };
        let draw = |faults: &Faults| (0..200).map(|_| faults.next_stream()).collect::<Vec<_>>();
        let a = draw(&Faults::new(config.clone()));
        let b = draw(&Faults::new(config.clone()));
        assert_eq!(a, b);
        let refused = a.iter().filter(|f| **f == Fault::RefusedStream).count();
        let unavailable = a
            .iter()
            .filter(|f| **f == Fault::Reject(Reason::ServiceUnavailable))
            .count();
        assert!((20..=60).contains(&refused), "{refused}");
        assert!((35..=85).contains(&unavailable), "{unavailable}");

        let faults = Faults::new(ApnsFaults::default());
        faults.push([Fault::GoAway, Fault::Reject(Reason::Shutdown)]);
        assert_eq!(faults.next_stream(), Fault::GoAway);
        assert_eq!(faults.next_stream(), Fault::Reject(Reason::Shutdown));
        assert_eq!(faults.next_stream(), Fault::Pass);
    }
}
