//! Retry pacing towards APNs: full-jitter exponential backoff and a retry budget (a token
//! bucket that first attempts fill), so that an APNs outage is not multiplied by retries.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RetryConfig;

/// Backoff and budget.
pub struct RetryPolicy {
    config: RetryConfig,
    bucket: Mutex<(f64, Instant)>,
}

impl RetryPolicy {
    /// A policy from the config; the bucket starts with one second's floor.
    pub fn new(config: RetryConfig) -> RetryPolicy {
        let start = config.budget_min_per_second.max(1.0);
        RetryPolicy {
            config,
            bucket: Mutex::new((start, Instant::now())),
        }
    }

    /// Attempts allowed per push.
    pub fn max_attempts(&self) -> u32 {
        self.config.max_attempts
    }

    fn cap(&self) -> f64 {
        // Up to ten seconds' floor or a thousand first attempts' worth, whichever is larger.
        (self.config.budget_min_per_second * 10.0)
            .max(1000.0 * self.config.budget_ratio)
            .max(1.0)
    }

    fn refill(&self, b: &mut (f64, Instant)) {
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * self.config.budget_min_per_second)
            .min(self.cap());
        b.1 = now;
    }

    /// A first attempt earns `budget_ratio` tokens.
    pub fn on_first_attempt(&self) {
        let mut b = common::sync::lock(&self.bucket);
        self.refill(&mut b);
        b.0 = (b.0 + self.config.budget_ratio).min(self.cap());
    }

    /// Takes a token for a retry; false when the budget is spent.
    pub fn try_retry(&self) -> bool {
        let mut b = common::sync::lock(&self.bucket);
        self.refill(&mut b);
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// The pause before attempt `attempt + 1` (full jitter: uniform in 0..=base·2^(attempt-1)).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let ceiling = exp.min(self.config.backoff_max);
        ceiling.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_runs_out_and_first_attempts_refill_it() {
        let policy = RetryPolicy::new(RetryConfig {
            budget_min_per_second: 0.0,
            budget_ratio: 0.5,
            ..Default::default()
        });
        assert!(policy.try_retry(), "the bucket starts with one token");
        assert!(!policy.try_retry());
        policy.on_first_attempt();
        policy.on_first_attempt();
        assert!(policy.try_retry());
        assert!(!policy.try_retry());
    }

    #[test]
    fn backoff_is_bounded() {
        let policy = RetryPolicy::new(RetryConfig::default());
        for attempt in 1..20 {
            assert!(policy.backoff(attempt) <= RetryConfig::default().backoff_max);
        }
    }
}
