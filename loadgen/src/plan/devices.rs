//! The device swarm's plan: how many devices each device journey runs and when (a count
//! schedule, or open-model arrival instants), their place in the global device index space,
//! and how the swarm is laid out over shard processes and loopback source addresses.
//!
//! Shards plan again from the same scenario text and duration and get the same answer, so
//! a global device index means the same device everywhere.

use std::time::Duration;

use crate::scenario::{Device, Scenario, Step};

use super::Schedule;

/// Default most connections per shard process.
pub const DEFAULT_PER_SHARD: u32 = 15_000;

/// Ephemeral ports usable per (source, destination) pair on this kind of machine
/// (32768–60999).
pub const EPHEMERAL_PORTS: u64 = 28_232;

/// The share of the ephemeral range planned per (source, destination) pair: `connect()`
/// slows sharply near exhaustion, and TIME_WAIT from churn holds ports for a while.
pub const PORT_SHARE: f64 = 0.6;

/// One device journey's devices.
#[derive(Debug, Clone)]
pub struct DeviceJourneyPlan {
    /// Its position in `scenario.devices`.
    pub index: usize,
    /// First global device index of this journey.
    pub base: u32,
    /// Devices planned (peak count, or arrival max).
    pub planned: u32,
    /// Closed model: connections over time.
    pub count: Option<Schedule>,
    /// Open model: arrival instants (seconds from the start), one per device index.
    pub arrivals: Vec<f64>,
}

impl DeviceJourneyPlan {
    /// How many devices each journey of `devices` plans, bounded by `duration`, without
    /// listing them (the limits check runs before any list is made).
    pub fn counts(devices: &[Device], duration: Duration) -> Vec<u64> {
        devices
            .iter()
            .map(|d| match (&d.count, &d.arrival) {
                (Some(shape), _) => Schedule::of_shape(shape, Some(duration)).peak().round() as u64,
                (None, Some(a)) => {
                    // Arrivals at 0, 1/rate, 2/rate, … before the bound, at most `max`.
                    let within = (a.per_second * duration.as_secs_f64()).ceil();
                    if within.is_finite() && within >= 0.0 {
                        (within as u64).min(a.max)
                    } else {
                        a.max
                    }
                }
                (None, None) => 0,
            })
            .collect()
    }

    /// Every device journey of `devices`, bounded by `duration`, in global index order.
    pub fn all(devices: &[Device], duration: Duration) -> Vec<DeviceJourneyPlan> {
        let mut base = 0u32;
        devices
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let (count, arrivals, planned) = match (&d.count, &d.arrival) {
                    (Some(shape), _) => {
                        let s = Schedule::of_shape(shape, Some(duration));
                        let peak = s.peak().round() as u32;
                        (Some(s), Vec::new(), peak)
                    }
                    (None, Some(a)) => {
                        let s = Schedule::constant(a.per_second, duration);
                        let arrivals: Vec<f64> = s.arrivals().take(a.max as usize).collect();
                        let n = arrivals.len() as u32;
                        (None, arrivals, n)
                    }
                    (None, None) => (None, Vec::new(), 0),
                };
                let plan = DeviceJourneyPlan {
                    index,
                    base,
                    planned,
                    count,
                    arrivals,
                };
                base = base.saturating_add(planned);
                plan
            })
            .collect()
    }
}

/// The swarm's layout.
#[derive(Debug, Clone)]
pub struct SwarmPlan {
    /// Every device journey.
    pub journeys: Vec<DeviceJourneyPlan>,
    /// Devices in all.
    pub total: u64,
    /// Shard processes; 0 = the devices run in the loadgen process.
    pub shards: u32,
    /// Loopback source addresses to spread connections over.
    pub sources: u32,
}

impl SwarmPlan {
    /// The swarm of `scenario` bounded by `duration`; `None` without device journeys.
    pub fn new(scenario: &Scenario, duration: Duration) -> Option<SwarmPlan> {
        if scenario.devices.is_empty() {
            return None;
        }
        let journeys = DeviceJourneyPlan::all(&scenario.devices, duration);
        let total: u64 = journeys.iter().map(|j| u64::from(j.planned)).sum();
        let opts = scenario.swarm.clone().unwrap_or_default();
        let per = u64::from(opts.per_shard.unwrap_or(DEFAULT_PER_SHARD));
        let shards = opts.shards.unwrap_or(if total > per {
            u32::try_from(total.div_ceil(per)).unwrap_or(u32::MAX)
        } else {
            0
        });
        let sources = opts
            .source_addresses
            .unwrap_or_else(|| sources_needed(total));
        Some(SwarmPlan {
            journeys,
            total,
            shards,
            sources,
        })
    }
}

/// Source addresses needed so that `devices` connections to one destination stay within
/// [`PORT_SHARE`] of the ephemeral range per source.
pub fn sources_needed(devices: u64) -> u32 {
    let per = (EPHEMERAL_PORTS as f64 * PORT_SHARE) as u64;
    u32::try_from(devices.div_ceil(per).max(1)).unwrap_or(u32::MAX)
}

/// The longest tracked-delivery deadline of the scenario's senders (how long the swarm
/// outlives the senders at the end of a run).
pub fn longest_deadline(scenario: &Scenario) -> Duration {
    scenario
        .senders
        .iter()
        .flat_map(|s| s.steps.iter())
        .filter_map(|st| match st {
            Step::Request(r) => r.track.as_ref().map(|t| t.within()),
            Step::Let(_) => None,
        })
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_planned_from_the_port_budget() {
        assert_eq!(sources_needed(1), 1);
        assert_eq!(sources_needed(16_000), 1);
        assert_eq!(sources_needed(100_000), 6);
    }
}
