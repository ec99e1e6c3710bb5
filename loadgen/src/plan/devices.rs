//! The device swarm's plan: how many devices each device journey runs and when (a count
//! schedule, or open-model arrival instants), their place in the global device index space,
//! and how the swarm is laid out over shard processes and loopback source addresses.
//!
//! Shards plan again from the same scenario text and duration and get the same answer, so
//! a global device index means the same device everywhere.

use std::time::Duration;

use crate::scenario::{Device, Scenario, Step};

use super::{Schedule, Share};

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
    /// First global device index of this journey (in this process).
    pub base: u32,
    /// `{{device.id}}` of the journey's device index 0 in the whole plan: device numbers
    /// count over the whole plan, so they are the same in every segment and worker (see
    /// [`DeviceJourneyPlan::id_of`]).
    pub id_base: u32,
    /// Device indices from here on are not in the whole plan (a worker's block, or the
    /// one extra device a worker's largest stripe may run): their numbers start at
    /// `past_id`, past the whole plan's.
    pub past_from: u32,
    /// See `past_from`.
    pub past_id: u32,
    /// Devices planned in this process (peak count, or arrival max; a segment's stripe of
    /// them).
    pub planned: u32,
    /// The journey's device index (`{{device.index}}`, and the default user id) of this
    /// process's device `k` is `first + stride × k` (see [`Share`]).
    pub first: u32,
    /// See `first`.
    pub stride: u32,
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
        DeviceJourneyPlan::all_shared(devices, duration, &Share::default())
    }

    /// This process's `share` of every device journey of `devices`: a segment's stripe of
    /// each journey's devices, or a Locust worker's block of device indices.
    pub fn all_shared(
        devices: &[Device],
        duration: Duration,
        share: &Share,
    ) -> Vec<DeviceJourneyPlan> {
        let wholes: Vec<(Option<Schedule>, Vec<f64>, u32)> = devices
            .iter()
            .map(|d| match (&d.count, &d.arrival) {
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
            })
            .collect();
        // Devices of the whole plan: a worker's block of ids starts past every other block.
        let whole_total = wholes
            .iter()
            .fold(0u32, |t, (_, _, p)| t.saturating_add(*p));
        let (n, i) = (share.segments.max(1), share.segment);
        let mut base = 0u32;
        let mut whole_base = 0u32;
        wholes
            .into_iter()
            .enumerate()
            .map(|(index, (count, arrivals, whole))| {
                let (planned, arrivals) = if n > 1 {
                    let mine = arrivals.into_iter().skip(i as usize);
                    (
                        share.devices_of(u64::from(whole)) as u32,
                        mine.step_by(n as usize).collect(),
                    )
                } else {
                    (whole, arrivals)
                };
                // Indices past the journey's whole count get numbers past the whole plan's:
                // a worker block `b` its own range `b × total …`, a stripe's extra device
                // (at most one per segment) `total + journey × segments …`.
                let (first, past_from, past_id) = if n > 1 {
                    let past = (index as u32).saturating_mul(n).saturating_add(whole_total);
                    (i, whole, past)
                } else {
                    let first = share.block.saturating_mul(whole);
                    let past = share
                        .block
                        .saturating_mul(whole_total)
                        .saturating_add(whole_base);
                    (first, if share.block > 0 { first } else { whole }, past)
                };
                let plan = DeviceJourneyPlan {
                    index,
                    base,
                    id_base: whole_base,
                    past_from,
                    past_id,
                    planned,
                    first,
                    stride: n,
                    count,
                    arrivals,
                };
                base = base.saturating_add(planned);
                whole_base = whole_base.saturating_add(whole);
                plan
            })
            .collect()
    }
}

impl DeviceJourneyPlan {
    /// `{{device.id}}` of the journey's device `index`: its number in the whole plan (the
    /// journey's first number plus `index`), or past the whole plan's for an index the
    /// whole plan does not have.
    pub fn id_of(&self, index: u32) -> u32 {
        if index < self.past_from {
            self.id_base.saturating_add(index)
        } else {
            self.past_id.saturating_add(index - self.past_from)
        }
    }

    /// The journey's device index of this process's device `k`.
    pub fn index_of(&self, k: u32) -> u32 {
        self.first.saturating_add(self.stride.saturating_mul(k))
    }

    /// How many of this process's devices a journey-wide count of `level` devices means
    /// (its devices with an index below `level`), at most `planned`.
    pub fn local_count(&self, level: f64) -> u32 {
        let level = level.floor().max(0.0) as u64;
        let mine = if self.stride > 1 {
            Share {
                segment: self.first,
                segments: self.stride,
                ..Share::default()
            }
            .stripe(level)
        } else {
            level
        };
        u32::try_from(mine).unwrap_or(u32::MAX).min(self.planned)
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
    /// This process's `share` of the swarm of `scenario` bounded by `duration`; `None`
    /// without device journeys.
    pub fn new(scenario: &Scenario, duration: Duration, share: &Share) -> Option<SwarmPlan> {
        if scenario.devices.is_empty() {
            return None;
        }
        let journeys = DeviceJourneyPlan::all_shared(&scenario.devices, duration, share);
        let total: u64 = journeys.iter().map(|j| u64::from(j.planned)).sum();
        let opts = scenario.swarm.clone().unwrap_or_default();
        let shards = SwarmPlan::shards_for(scenario, total);
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

impl SwarmPlan {
    /// Shard processes for `total` devices of `scenario` in one process: `swarm.shards`, or
    /// one per `swarm.per_shard` devices when there are more (0: none, the devices run in
    /// the loadgen process).
    pub fn shards_for(scenario: &Scenario, total: u64) -> u32 {
        let opts = scenario.swarm.clone().unwrap_or_default();
        let per = u64::from(opts.per_shard.unwrap_or(DEFAULT_PER_SHARD));
        opts.shards.unwrap_or(if total > per {
            u32::try_from(total.div_ceil(per)).unwrap_or(u32::MAX)
        } else {
            0
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

    /// Device journey `name` of `count` (its YAML) devices.
    fn device(name: &str, count: &str) -> Device {
        serde_norway::from_str(&format!(
            "name: {name}\ncount: {count}\nconnect: {{ url: \"ws://127.0.0.1:1/ws\" }}\n"
        ))
        .unwrap()
    }

    /// Segment `i` of `n`; a Locust worker's share when `controlled`.
    fn share(i: u32, n: u32, controlled: bool) -> Share {
        Share {
            segment: i,
            segments: n,
            controlled,
            ..Share::default()
        }
    }

    #[test]
    fn segments_take_stripes_of_device_indices() {
        let devices = [device("d", "{ stages: [ { to: 10, over: 10s } ] }")];
        let mut seen = Vec::new();
        for i in 0..3 {
            let share = share(i, 3, false);
            let p = &DeviceJourneyPlan::all_shared(&devices, Duration::from_secs(10), &share)[0];
            seen.extend((0..p.planned).map(|k| p.index_of(k)));
            // At level 5 (devices 0–4 wanted) segment i runs those of its stripe below 5.
            assert_eq!(p.local_count(5.0), [2, 2, 1][i as usize]);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<u32>>());
        let worker = Share {
            block: 2,
            controlled: true,
            ..Share::default()
        };
        let p = &DeviceJourneyPlan::all_shared(&devices, Duration::from_secs(10), &worker)[0];
        assert_eq!((p.index_of(0), p.index_of(9), p.planned), (20, 29, 10));
    }

    #[test]
    fn workers_given_a_share_plan_the_largest_stripe_and_never_share_a_device() {
        let devices = [device("d", "10")];
        let mut seen = Vec::new();
        for i in 0..3 {
            let share = share(i, 3, true);
            let p = &DeviceJourneyPlan::all_shared(&devices, Duration::from_secs(10), &share)[0];
            // Locust gives 10 devices to 3 workers as 4, 3, 3 in an order of its own: each
            // plans 4.
            assert_eq!(p.planned, 4);
            seen.extend((0..p.planned).map(|k| p.index_of(k)));
            let text = "version: 1\nname: s\nduration: 10s\ntarget: { base_url: \"http://127.0.0.1:1\" }\nswarm: { per_shard: 2 }\ndevices:\n  - name: d\n    count: 10\n    connect: { url: \"ws://127.0.0.1:1/ws\" }\n";
            let swarm = SwarmPlan::new(
                &crate::scenario::load_str(std::path::Path::new("s.yaml"), text).unwrap(),
                Duration::from_secs(10),
                &share,
            )
            .unwrap();
            // Shard processes for its share (4 devices, 2 per shard), not for all 10.
            assert_eq!((swarm.total, swarm.shards), (4, 2));
        }
        seen.sort_unstable();
        let before = seen.len();
        seen.dedup();
        assert_eq!(seen.len(), before, "no index twice");
        assert!((0..10).all(|g| seen.contains(&g)), "{seen:?}");
    }

    #[test]
    fn device_ids_count_over_the_whole_plan_in_every_share() {
        let devices = [device("a", "5"), device("b", "4")];
        let ten = Duration::from_secs(10);
        // (journey, index) → id in one process.
        let whole: Vec<(usize, u32, u32)> = DeviceJourneyPlan::all(&devices, ten)
            .iter()
            .flat_map(|p| {
                (0..p.planned).map(move |k| (p.index, p.index_of(k), p.id_of(p.index_of(k))))
            })
            .collect();
        assert_eq!(
            whole.iter().map(|w| w.2).collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        for controlled in [false, true] {
            let mut seen = Vec::new();
            for i in 0..2 {
                let share = share(i, 2, controlled);
                for p in DeviceJourneyPlan::all_shared(&devices, ten, &share) {
                    for k in 0..p.planned {
                        let index = p.index_of(k);
                        let id = p.id_of(index);
                        if let Some(w) = whole.iter().find(|w| (w.0, w.1) == (p.index, index)) {
                            assert_eq!(w.2, id, "journey {} index {index}", p.index);
                        }
                        seen.push(id);
                    }
                }
            }
            seen.sort_unstable();
            let n = seen.len();
            seen.dedup();
            assert_eq!(seen.len(), n, "an id twice: {seen:?}");
        }
        // A worker without a share (block 1) numbers its devices past the whole plan's.
        let block = Share {
            block: 1,
            controlled: true,
            ..Share::default()
        };
        let ids: Vec<u32> = DeviceJourneyPlan::all_shared(&devices, ten, &block)
            .iter()
            .flat_map(|p| (0..p.planned).map(move |k| p.id_of(p.index_of(k))))
            .collect();
        assert_eq!(ids, (9..18).collect::<Vec<_>>());
    }

    #[test]
    fn sources_are_planned_from_the_port_budget() {
        assert_eq!(sources_needed(1), 1);
        assert_eq!(sources_needed(16_000), 1);
        assert_eq!(sources_needed(100_000), 6);
    }
}
