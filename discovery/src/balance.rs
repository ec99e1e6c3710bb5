//! Choosing an instance for one piece of work, and hearing how it went: pick → use → report.
//!
//! - [`Balance::RoundRobin`] is smooth weighted round robin (nginx's): over any window each
//!   instance gets work in proportion to its `payload.weight`, interleaved rather than in bursts.
//! - [`Balance::LeastInFlight`] picks the instance with the fewest leases out per unit of
//!   weight; ties go round robin.
//!
//! Disabled instances and weight 0 take no work. An instance whose connection failed
//! ([`Lease::connect_failed`]) is passed over for `down_for`, unless every instance is down, in
//! which case they are tried anyway (one of them may be back). A [`Lease`] counts as in flight
//! until it is reported or dropped.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::ServiceInstance;

/// How work is spread over the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Fewest leases in flight per unit of weight.
    LeastInFlight,
}

/// One instance as a watcher holds it, with its live load.
#[derive(Debug)]
pub struct Member {
    node: String,
    instance: ServiceInstance,
    load: Arc<Load>,
}

/// What a member carries across list refreshes (kept by instance id).
#[derive(Debug, Default)]
pub(crate) struct Load {
    in_flight: AtomicU32,
    down_until: Mutex<Option<Instant>>,
    /// Smooth weighted round robin's running weight (changed under the picker's lock).
    current: AtomicI64,
}

impl Member {
    pub(crate) fn new(node: String, instance: ServiceInstance, load: Arc<Load>) -> Member {
        Member {
            node,
            instance,
            load,
        }
    }

    /// The znode's name (with Curator's protected prefix when it has one).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The instance.
    pub fn instance(&self) -> &ServiceInstance {
        &self.instance
    }

    /// Leases out now.
    pub fn in_flight(&self) -> u32 {
        self.load.in_flight.load(Ordering::Relaxed)
    }

    /// Whether a connect failure benches it now.
    pub fn is_down(&self) -> bool {
        common::sync::lock(&self.load.down_until).is_some_and(|t| t > Instant::now())
    }

    fn takes_work(&self) -> bool {
        self.instance.enabled && self.instance.weight() > 0
    }
}

/// One piece of work on one instance. Report how it went with [`Lease::done`] or
/// [`Lease::connect_failed`]; dropping it counts as done.
#[derive(Debug)]
pub struct Lease {
    member: Arc<Member>,
    down_for: Duration,
}

impl Lease {
    /// The instance to use.
    pub fn instance(&self) -> &ServiceInstance {
        &self.member.instance
    }

    /// The member (node name, load).
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// The work reached the instance (whatever its answer was).
    pub fn done(self) {}

    /// The instance could not be reached: it is passed over for a while; try another
    /// (see [`crate::Failover`]).
    pub fn connect_failed(self) {
        *common::sync::lock(&self.member.load.down_until) = Some(Instant::now() + self.down_for);
        tracing::info!(
            id = %self.member.instance.id,
            uri = %self.member.instance.uri(),
            down_for = ?self.down_for,
            "instance unreachable: passed over"
        );
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Picks members by one [`Balance`].
#[derive(Debug)]
pub(crate) struct Picker {
    balance: Balance,
    down_for: Duration,
    next: AtomicUsize,
    lock: Mutex<()>,
}

impl Picker {
    pub(crate) fn new(balance: Balance, down_for: Duration) -> Picker {
        Picker {
            balance,
            down_for,
            next: AtomicUsize::new(0),
            lock: Mutex::new(()),
        }
    }

    /// A lease on one of `members` that takes work and is not `excluded`; members up before
    /// members down. `None` when none takes work.
    pub(crate) fn pick(
        &self,
        members: &[Arc<Member>],
        excluded: impl Fn(&Member) -> bool,
    ) -> Option<Lease> {
        let eligible: Vec<&Arc<Member>> = members
            .iter()
            .filter(|m| m.takes_work() && !excluded(m))
            .collect();
        let up: Vec<&Arc<Member>> = eligible.iter().copied().filter(|m| !m.is_down()).collect();
        let candidates = if up.is_empty() { eligible } else { up };
        if candidates.is_empty() {
            return None;
        }
        let _guard = common::sync::lock(&self.lock);
        let chosen = match self.balance {
            Balance::RoundRobin => smooth_weighted(&candidates),
            Balance::LeastInFlight => self.least_in_flight(&candidates),
        };
        chosen.load.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            member: Arc::clone(chosen),
            down_for: self.down_for,
        })
    }

    fn least_in_flight<'a>(&self, candidates: &[&'a Arc<Member>]) -> &'a Arc<Member> {
        let n = candidates.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = candidates[start];
        for i in 1..n {
            let m = candidates[(start + i) % n];
            // in_flight / weight, compared without division.
            let lhs = u64::from(m.in_flight()) * u64::from(best.instance.weight());
            let rhs = u64::from(best.in_flight()) * u64::from(m.instance.weight());
            if lhs < rhs {
                best = m;
            }
        }
        best
    }
}

/// nginx's smooth weighted round robin: every candidate gains its weight, the richest is
/// chosen and pays the total.
fn smooth_weighted<'a>(candidates: &[&'a Arc<Member>]) -> &'a Arc<Member> {
    let mut total = 0i64;
    let mut best = candidates[0];
    let mut best_current = i64::MIN;
    for m in candidates {
        let w = i64::from(m.instance.weight());
        total += w;
        let current = m.load.current.fetch_add(w, Ordering::Relaxed) + w;
        if current > best_current {
            best = m;
            best_current = current;
        }
    }
    best.load.current.fetch_sub(total, Ordering::Relaxed);
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(weights: &[u32]) -> Vec<Arc<Member>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut inst = ServiceInstance::new("s", "h").with_weight(*w);
                inst.id = format!("m{i}");
                Arc::new(Member::new(format!("n{i}"), inst, Arc::default()))
            })
            .collect()
    }

    fn ids(picker: &Picker, ms: &[Arc<Member>], n: usize) -> String {
        (0..n)
            .map(|_| picker.pick(ms, |_| false).unwrap().instance().id.clone())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn round_robin_is_smooth_and_weighted() {
        let p = Picker::new(Balance::RoundRobin, Duration::from_secs(5));
        // nginx's example: weights 5, 1, 1 → a a b a c a a.
        assert_eq!(ids(&p, &members(&[5, 1, 1]), 7), "m0 m0 m1 m0 m2 m0 m0");
        let p = Picker::new(Balance::RoundRobin, Duration::from_secs(5));
        assert_eq!(ids(&p, &members(&[1, 1, 0]), 4), "m0 m1 m0 m1");
    }

    #[test]
    fn least_in_flight_follows_the_leases_out() {
        let p = Picker::new(Balance::LeastInFlight, Duration::from_secs(5));
        let ms = members(&[1, 2]);
        let a = p.pick(&ms, |_| false).unwrap();
        let b = p.pick(&ms, |_| false).unwrap();
        let c = p.pick(&ms, |_| false).unwrap();
        // Weight 2 takes two leases for one of weight 1.
        let on = |id: &str| {
            [&a, &b, &c]
                .iter()
                .filter(|l| l.instance().id == id)
                .count()
        };
        assert_eq!((on("m0"), on("m1")), (1, 2));
        assert_eq!(ms[1].in_flight(), 2);
        drop(b);
        c.done();
        assert_eq!(ms[0].in_flight() + ms[1].in_flight(), 1);
        assert_eq!(p.pick(&ms, |_| false).unwrap().instance().id, "m1");
    }

    #[test]
    fn a_failed_connect_benches_until_all_are_down() {
        let p = Picker::new(Balance::RoundRobin, Duration::from_secs(60));
        let ms = members(&[1, 1]);
        let first = p.pick(&ms, |_| false).unwrap();
        let first_id = first.instance().id.clone();
        first.connect_failed();
        for _ in 0..4 {
            assert_ne!(p.pick(&ms, |_| false).unwrap().instance().id, first_id);
        }
        p.pick(&ms, |m| m.instance().id == first_id)
            .unwrap()
            .connect_failed();
        // Both down: they are still tried rather than nothing.
        assert!(p.pick(&ms, |_| false).is_some());
        assert!(p.pick(&ms, |_| true).is_none());
        let mut off = members(&[1]);
        Arc::get_mut(&mut off[0]).unwrap().instance.enabled = false;
        assert!(p.pick(&off, |_| false).is_none());
    }
}
