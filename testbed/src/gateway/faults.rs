//! Injected faults: latency with jitter, error responses at a given rate, and stalls on the HTTP
//! side; dropped, duplicated and delayed pushes, connection resets and refused hellos on the
//! long-connection side (the rooms roll those per delivery with `PushFault::roll`).
//!
//! [`FaultConfig`] is the serde form, settable at spawn, from the command line, from
//! [`GatewayHandle::set_faults`](super::GatewayHandle::set_faults) and through
//! `POST /admin/faults`. [`Faults`] holds the active configuration and turns it into a
//! [`Plan`] for each arriving request.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde::{Deserialize, Serialize};

/// The largest latency, jitter or stall accepted, in milliseconds (one hour).
pub const MAX_FAULT_MS: f64 = 3_600_000.0;

/// Faults the gateway injects into every request except `/healthz` and `/admin/*`.
///
/// Missing fields take their default (no fault; `error_status` 503); unknown fields are an error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Fixed latency added to every request, in milliseconds, measured from the request's
    /// arrival.
    pub latency_ms: f64,
    /// Extra latency drawn uniformly from `0..jitter_ms` for each request, in milliseconds.
    pub jitter_ms: f64,
    /// Probability in `0..=1` that a request is answered with `error_status` instead of being
    /// served (the action is then not performed).
    pub error_rate: f64,
    /// Status of injected errors (400–599).
    pub error_status: u16,
    /// When above zero, requests arriving in the next `stall_ms` milliseconds are held until
    /// that window ends, then this goes back to 0 by itself.
    pub stall_ms: u64,
    /// Probability that one (push, connection) delivery is dropped for good: never sent, never
    /// redelivered.
    pub push_drop_rate: f64,
    /// Probability that one delivery is sent twice back to back (both `redelivery: false`).
    pub push_duplicate_rate: f64,
    /// Probability that one delivery is held `push_delay_ms` before it is sent.
    pub push_delay_rate: f64,
    /// How long a delayed delivery is held, in milliseconds.
    pub push_delay_ms: f64,
    /// Fraction of connections reset (TCP RST, no close frame) per second.
    pub conn_reset_rate: f64,
    /// Probability that a hello is refused (`error` with code `refused`, then close).
    pub refuse_rate: f64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0.0,
            jitter_ms: 0.0,
            error_rate: 0.0,
            error_status: 503,
            stall_ms: 0,
            push_drop_rate: 0.0,
            push_duplicate_rate: 0.0,
            push_delay_rate: 0.0,
            push_delay_ms: 0.0,
            conn_reset_rate: 0.0,
            refuse_rate: 0.0,
        }
    }
}

/// A [`FaultConfig`] value out of range; the message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultConfigError {
    /// `latency_ms` negative, not finite or above an hour.
    #[error("latency_ms must be between 0 and 3600000 milliseconds, got {0}")]
    Latency(f64),
    /// `jitter_ms` negative, not finite or above an hour.
    #[error("jitter_ms must be between 0 and 3600000 milliseconds, got {0}")]
    Jitter(f64),
    /// `error_rate` outside `0..=1`.
    #[error("error_rate must be between 0 and 1, got {0}")]
    ErrorRate(f64),
    /// `error_status` not an HTTP error status.
    #[error("error_status must be an HTTP error status between 400 and 599, got {0}")]
    ErrorStatus(u16),
    /// `stall_ms` above an hour.
    #[error("stall_ms must be at most 3600000 milliseconds, got {0}")]
    Stall(u64),
    /// A long-connection fault rate (named) outside `0..=1`.
    #[error("{0} must be between 0 and 1, got {1}")]
    Rate(&'static str, f64),
    /// `push_delay_ms` negative, not finite or above an hour.
    #[error("push_delay_ms must be between 0 and 3600000 milliseconds, got {0}")]
    PushDelay(f64),
}

impl FaultConfig {
    /// Checks that every field is in range.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        let in_range = |ms: f64| (0.0..=MAX_FAULT_MS).contains(&ms);
        if !in_range(self.latency_ms) {
            return Err(FaultConfigError::Latency(self.latency_ms));
        }
        if !in_range(self.jitter_ms) {
            return Err(FaultConfigError::Jitter(self.jitter_ms));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(FaultConfigError::ErrorRate(self.error_rate));
        }
        if !(400..=599).contains(&self.error_status) {
            return Err(FaultConfigError::ErrorStatus(self.error_status));
        }
        if self.stall_ms as f64 > MAX_FAULT_MS {
            return Err(FaultConfigError::Stall(self.stall_ms));
        }
        for (name, rate) in self.rates() {
            if !(0.0..=1.0).contains(&rate) {
                return Err(FaultConfigError::Rate(name, rate));
            }
        }
        if !in_range(self.push_delay_ms) {
            return Err(FaultConfigError::PushDelay(self.push_delay_ms));
        }
        Ok(())
    }

    /// The long-connection fault rates, by field name.
    fn rates(&self) -> [(&'static str, f64); 5] {
        [
            ("push_drop_rate", self.push_drop_rate),
            ("push_duplicate_rate", self.push_duplicate_rate),
            ("push_delay_rate", self.push_delay_rate),
            ("conn_reset_rate", self.conn_reset_rate),
            ("refuse_rate", self.refuse_rate),
        ]
    }

    /// The nearest valid configuration: out-of-range numbers are clamped (NaN becomes 0) and an
    /// invalid status becomes 503.
    pub(crate) fn clamped(self) -> Self {
        let clamp_ms = |ms: f64| {
            if ms.is_nan() {
                0.0
            } else {
                ms.clamp(0.0, MAX_FAULT_MS)
            }
        };
        let clamp_rate = |rate: f64| {
            if rate.is_nan() {
                0.0
            } else {
                rate.clamp(0.0, 1.0)
            }
        };
        Self {
            latency_ms: clamp_ms(self.latency_ms),
            jitter_ms: clamp_ms(self.jitter_ms),
            error_rate: clamp_rate(self.error_rate),
            error_status: if (400..=599).contains(&self.error_status) {
                self.error_status
            } else {
                503
            },
            stall_ms: self.stall_ms.min(MAX_FAULT_MS as u64),
            push_drop_rate: clamp_rate(self.push_drop_rate),
            push_duplicate_rate: clamp_rate(self.push_duplicate_rate),
            push_delay_rate: clamp_rate(self.push_delay_rate),
            push_delay_ms: clamp_ms(self.push_delay_ms),
            conn_reset_rate: clamp_rate(self.conn_reset_rate),
            refuse_rate: clamp_rate(self.refuse_rate),
        }
    }
}

/// What the faults decided for one (push, connection) delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PushFault {
    /// Never send it, never redeliver it.
    pub drop: bool,
    /// Send it twice back to back.
    pub duplicate: bool,
    /// Hold it this many microseconds first (0: send at once). Kept small because it travels
    /// in every connection's command channel.
    pub delay_us: u32,
}

impl PushFault {
    /// Rolls the dice for one delivery under `config`.
    pub fn roll(config: &FaultConfig) -> Self {
        let hit = |rate: f64| rate > 0.0 && fastrand::f64() < rate;
        if hit(config.push_drop_rate) {
            return Self {
                drop: true,
                ..Self::default()
            };
        }
        Self {
            drop: false,
            duplicate: hit(config.push_duplicate_rate),
            // At most an hour (validated), which fits in u32 microseconds.
            delay_us: if config.push_delay_ms > 0.0 && hit(config.push_delay_rate) {
                (config.push_delay_ms * 1e3) as u32
            } else {
                0
            },
        }
    }
}

/// What the faults decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    /// Do not answer before this instant.
    pub deadline: Option<Instant>,
    /// Answer with this status instead of serving the request.
    pub injected: Option<StatusCode>,
}

impl Plan {
    /// No delay, no error: for routes exempt from faults.
    pub const NONE: Plan = Plan {
        deadline: None,
        injected: None,
    };
}

/// The active faults of one gateway.
#[derive(Debug)]
pub(crate) struct Faults {
    active: RwLock<Active>,
}

#[derive(Debug, Clone, Copy)]
struct Active {
    config: FaultConfig,
    stall_until: Option<Instant>,
}

impl Faults {
    /// Faults starting from `config` (clamped to valid values).
    pub fn new(config: FaultConfig) -> Self {
        Self {
            active: RwLock::new(Active::starting_now(config.clamped())),
        }
    }

    /// Replaces the faults (clamped to valid values); a non-zero `stall_ms` opens a stall
    /// window from now.
    pub fn set(&self, config: FaultConfig) {
        let active = Active::starting_now(config.clamped());
        *common::sync::write(&self.active) = active;
    }

    /// The faults in force, with `stall_ms` back at 0 once the stall window has ended.
    pub fn current(&self) -> FaultConfig {
        let active = self.read();
        let mut config = active.config;
        if active.stall_until.is_none_or(|end| end <= Instant::now()) {
            config.stall_ms = 0;
        }
        config
    }

    /// Decides latency and error injection for a request that arrived at `arrival`.
    ///
    /// The answer is held until `arrival + latency + uniform(0..jitter)`, or until the end of a
    /// stall window that was open when the request arrived, whichever is later.
    pub fn plan(&self, arrival: Instant) -> Plan {
        let Active {
            config,
            stall_until,
        } = self.read();
        let mut delay_ms = config.latency_ms;
        if config.jitter_ms > 0.0 {
            delay_ms += fastrand::f64() * config.jitter_ms;
        }
        let mut deadline = (delay_ms > 0.0)
            .then(|| arrival.checked_add(Duration::from_secs_f64(delay_ms / 1e3)))
            .flatten();
        if let Some(end) = stall_until.filter(|end| arrival < *end) {
            deadline = Some(deadline.map_or(end, |d| d.max(end)));
        }
        let injected = (config.error_rate > 0.0 && fastrand::f64() < config.error_rate)
            .then(|| StatusCode::from_u16(config.error_status).ok())
            .flatten();
        Plan { deadline, injected }
    }

    fn read(&self) -> Active {
        *common::sync::read(&self.active)
    }
}

impl Active {
    fn starting_now(config: FaultConfig) -> Self {
        let stall_until = (config.stall_ms > 0)
            .then(|| Instant::now().checked_add(Duration::from_millis(config.stall_ms)))
            .flatten();
        Self {
            config,
            stall_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_with_defaults_and_unknown_fields_rejected() {
        let config: FaultConfig =
            serde_json::from_str(r#"{"latency_ms": 5.0, "error_rate": 0.5}"#).expect("valid");
        assert_eq!(
            config,
            FaultConfig {
                latency_ms: 5.0,
                error_rate: 0.5,
                ..FaultConfig::default()
            }
        );
        let error = serde_json::from_str::<FaultConfig>(r#"{"latency": 5}"#).expect_err("typo");
        assert!(
            error.to_string().contains("unknown field `latency`"),
            "{error}"
        );
    }

    #[test]
    fn validate_names_the_field() {
        let base = FaultConfig::default();
        let cases = [
            (
                FaultConfig {
                    latency_ms: -1.0,
                    ..base
                },
                "latency_ms must be between 0 and 3600000 milliseconds, got -1",
            ),
            (
                FaultConfig {
                    jitter_ms: f64::NAN,
                    ..base
                },
                "jitter_ms must be between 0 and 3600000 milliseconds, got NaN",
            ),
            (
                FaultConfig {
                    error_rate: 1.5,
                    ..base
                },
                "error_rate must be between 0 and 1, got 1.5",
            ),
            (
                FaultConfig {
                    error_status: 200,
                    ..base
                },
                "error_status must be an HTTP error status between 400 and 599, got 200",
            ),
            (
                FaultConfig {
                    stall_ms: u64::MAX,
                    ..base
                },
                "stall_ms must be at most 3600000 milliseconds, got 18446744073709551615",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(
                config.validate().map_err(|e| e.to_string()),
                Err(message.to_owned())
            );
            assert_eq!(config.clamped().validate(), Ok(()));
        }
        assert_eq!(base.validate(), Ok(()));
    }

    #[test]
    fn plan_adds_latency_jitter_and_stall() {
        let faults = Faults::new(FaultConfig {
            latency_ms: 5.0,
            jitter_ms: 2.0,
            ..FaultConfig::default()
        });
        let arrival = Instant::now();
        for _ in 0..100 {
            let plan = faults.plan(arrival);
            let delay = plan.deadline.expect("deadline") - arrival;
            assert!(delay >= Duration::from_millis(5) && delay < Duration::from_millis(7));
            assert_eq!(plan.injected, None);
        }
        faults.set(FaultConfig {
            stall_ms: 50,
            ..FaultConfig::default()
        });
        assert_eq!(faults.current().stall_ms, 50);
        let plan = faults.plan(Instant::now());
        assert!(plan.deadline.expect("stalled") > Instant::now() + Duration::from_millis(40));
        let after = Instant::now() + Duration::from_millis(60);
        assert_eq!(faults.plan(after), Plan::NONE);
    }

    #[test]
    fn error_rate_one_always_injects_the_status() {
        let faults = Faults::new(FaultConfig {
            error_rate: 1.0,
            error_status: 429,
            ..FaultConfig::default()
        });
        let plan = faults.plan(Instant::now());
        assert_eq!(plan.injected, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(plan.deadline, None);
    }
}
