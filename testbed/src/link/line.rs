//! One direction of an emulated link, as a model without I/O: given a packet's size and the
//! time it arrived, [`Line::offer`] says when it comes out at the far end, or why it is
//! dropped. The forwarding threads apply the verdicts to real packets; tests run the model on
//! made-up times.
//!
//! In order, a packet is
//! 1. dropped if the link is cut;
//! 2. dropped by the Gilbert–Elliott burst state (a two-state Markov chain stepped once per
//!    packet: outside a burst one starts with probability `burst_rate`; inside, each packet
//!    ends it with probability 1 / `burst_length`, and is lost with probability `burst_loss`);
//! 3. dropped at random with probability `loss`;
//! 4. queued for the bandwidth cap: a token bucket of `bucket` bytes filling at the rate, in
//!    front of which at most `queue` bytes wait (a packet that would exceed it is dropped);
//! 5. delayed by `rtt / 2 ± jitter` after it leaves the bucket, and, unless `reorder` is set,
//!    never before the packet ahead of it (a FIFO path: under a burst of packets the delay
//!    tends towards the top of the jitter range).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::profile::{Direction, Profile};

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The link was cut.
    Cut,
    /// Lost inside a Gilbert–Elliott burst.
    Burst,
    /// Lost at random.
    Random,
    /// The queue in front of the bandwidth cap was full.
    Queue,
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It comes out at the far end at this time.
    Deliver(Instant),
    /// It is dropped.
    Drop(Drop),
}

/// Packet counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Packets offered to the line.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Packets passed on (delivered or about to be).
    pub passed: u64,
    /// Dropped while the link was cut.
    pub dropped_cut: u64,
    /// Lost in loss bursts.
    pub lost_burst: u64,
    /// Lost at random.
    pub lost_random: u64,
    /// Dropped because the queue in front of the bandwidth cap was full.
    pub dropped_queue: u64,
}

/// The part of a [`Profile`] that one direction uses.
#[derive(Debug, Clone, PartialEq)]
struct Params {
    one_way: Duration,
    jitter: Duration,
    loss: f64,
    burst_rate: f64,
    burst_end: f64,
    burst_loss: f64,
    /// Bytes per second, if capped.
    rate: Option<f64>,
    queue: u64,
    bucket: f64,
    reorder: bool,
}

impl Params {
    fn new(profile: &Profile, direction: Direction) -> Params {
        Params {
            one_way: profile.rtt / 2,
            jitter: profile.jitter,
            loss: profile.loss.get(),
            burst_rate: profile.burst_rate.get(),
            burst_end: 1.0 / profile.burst_length.get(),
            burst_loss: profile.burst_loss.get(),
            rate: profile.rate(direction).map(|r| r.bytes_per_second()),
            queue: profile.queue_bytes(direction),
            bucket: profile.bucket.0 as f64,
            reorder: profile.reorder,
        }
    }
}

/// One direction of the link; see the [module](self) docs.
#[derive(Debug)]
pub struct Line {
    params: Params,
    rng: fastrand::Rng,
    in_burst: bool,
    /// Tokens in the bucket at `last_departure`.
    tokens: f64,
    last_departure: Instant,
    /// Packets waiting for the cap: (departure, size), in departure order.
    waiting: VecDeque<(Instant, u64)>,
    waiting_bytes: u64,
    last_delivery: Instant,
    counters: Counters,
}

impl Line {
    /// The `direction` of `profile`, starting at `start`, with its own random sequence.
    pub fn new(profile: &Profile, direction: Direction, start: Instant, seed: u64) -> Line {
        let params = Params::new(profile, direction);
        Line {
            tokens: params.bucket,
            params,
            rng: fastrand::Rng::with_seed(seed),
            in_burst: false,
            last_departure: start,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            last_delivery: start,
            counters: Counters::default(),
        }
    }

    /// Takes the new profile's settings; the queue, the bucket and the burst state carry on.
    pub fn set_profile(&mut self, profile: &Profile, direction: Direction) {
        self.params = Params::new(profile, direction);
        self.tokens = self.tokens.min(self.params.bucket);
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Decides the fate of a `size`-byte packet arriving at `now` (not before the previous
    /// one), `cut` telling whether the link is cut at that moment.
    pub fn offer(&mut self, now: Instant, size: usize, cut: bool) -> Verdict {
        let size = size as u64;
        self.counters.packets += 1;
        self.counters.bytes += size;
        let verdict = self.decide(now, size, cut);
        let c = &mut self.counters;
        match verdict {
            Verdict::Deliver(_) => c.passed += 1,
            Verdict::Drop(Drop::Cut) => c.dropped_cut += 1,
            Verdict::Drop(Drop::Burst) => c.lost_burst += 1,
            Verdict::Drop(Drop::Random) => c.lost_random += 1,
            Verdict::Drop(Drop::Queue) => c.dropped_queue += 1,
        }
        verdict
    }

    fn decide(&mut self, now: Instant, size: u64, cut: bool) -> Verdict {
        if cut {
            return Verdict::Drop(Drop::Cut);
        }
        let p = &self.params;
        if p.burst_rate > 0.0 {
            if self.in_burst {
                self.in_burst = self.rng.f64() >= p.burst_end;
            } else {
                self.in_burst = self.rng.f64() < p.burst_rate;
            }
            if self.in_burst && self.rng.f64() < p.burst_loss {
                return Verdict::Drop(Drop::Burst);
            }
        }
        if p.loss > 0.0 && self.rng.f64() < p.loss {
            return Verdict::Drop(Drop::Random);
        }
        let Some(departure) = self.shape(now, size) else {
            return Verdict::Drop(Drop::Queue);
        };
        let mut delivery = departure + self.delay();
        if !self.params.reorder {
            delivery = delivery.max(self.last_delivery);
        }
        self.last_delivery = self.last_delivery.max(delivery);
        Verdict::Deliver(delivery)
    }

    /// When the packet leaves the token bucket, or `None` when the queue is full.
    fn shape(&mut self, now: Instant, size: u64) -> Option<Instant> {
        let Some(rate) = self.params.rate else {
            return Some(now);
        };
        while self.waiting.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, bytes)) = self.waiting.pop_front() {
                self.waiting_bytes -= bytes;
            }
        }
        if self.waiting_bytes + size > self.params.queue {
            return None;
        }
        let start = now.max(self.last_departure);
        let refill = start.duration_since(self.last_departure).as_secs_f64() * rate;
        let tokens = (self.tokens + refill).min(self.params.bucket);
        let size_f = size as f64;
        let departure = if tokens >= size_f {
            self.tokens = tokens - size_f;
            start
        } else {
            self.tokens = 0.0;
            start + Duration::from_secs_f64((size_f - tokens) / rate)
        };
        self.last_departure = departure;
        if departure > now {
            self.waiting.push_back((departure, size));
            self.waiting_bytes += size;
        }
        Some(departure)
    }

    /// `one_way ± jitter`, uniform, never below zero.
    fn delay(&mut self) -> Duration {
        let p = &self.params;
        if p.jitter.is_zero() {
            return p.one_way;
        }
        let offset = (self.rng.f64() * 2.0 - 1.0) * p.jitter.as_secs_f64();
        Duration::from_secs_f64((p.one_way.as_secs_f64() + offset).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(profile: &str) -> (Line, Instant) {
        let start = Instant::now();
        let p = Profile::parse(profile).unwrap();
        (Line::new(&p, Direction::Up, start, 7), start)
    }

    fn ms(n: f64) -> Duration {
        Duration::from_secs_f64(n / 1e3)
    }

    #[test]
    fn a_plain_wire_passes_everything_at_once() {
        let (mut l, t) = line("");
        for i in 0..100 {
            let now = t + ms(i as f64);
            assert_eq!(l.offer(now, 1500, false), Verdict::Deliver(now));
        }
        assert_eq!(l.counters().passed, 100);
        assert_eq!(l.counters().bytes, 150_000);
    }

    #[test]
    fn delay_is_half_the_rtt_within_the_jitter_and_order_is_kept() {
        let (mut l, t) = line("rtt=180ms jitter=20ms");
        let mut last = t;
        let mut sum = Duration::ZERO;
        for i in 0..2000 {
            // Sparse packets (every 100 ms) keep their own delay; order never breaks.
            let now = t + ms(100.0 * i as f64);
            let Verdict::Deliver(at) = l.offer(now, 100, false) else {
                panic!("dropped on a lossless line")
            };
            let d = at - now;
            assert!(d >= ms(70.0) && d <= ms(110.0), "{d:?}");
            assert!(at >= last);
            last = at;
            sum += d;
        }
        let mean = sum / 2000;
        assert!(mean > ms(88.0) && mean < ms(92.0), "mean one-way {mean:?}");
        // Back-to-back packets cannot overtake each other.
        let mut last = t;
        for i in 0..1000 {
            let Verdict::Deliver(at) = l.offer(
                t + Duration::from_secs(300) + ms(0.01 * i as f64),
                100,
                false,
            ) else {
                panic!()
            };
            assert!(at >= last);
            last = at;
        }
    }

    #[test]
    fn reorder_lets_jitter_overtake() {
        let (mut l, t) = line("rtt=100ms jitter=20ms reorder=true");
        let mut overtaken = 0;
        let mut last = t;
        for i in 0..1000 {
            if let Verdict::Deliver(at) = l.offer(t + ms(i as f64), 100, false) {
                overtaken += usize::from(at < last);
                last = last.max(at);
            }
        }
        assert!(overtaken > 100, "{overtaken}");
    }

    #[test]
    fn random_loss_matches_the_probability() {
        let (mut l, t) = line("loss=3%");
        let n = 100_000;
        for i in 0..n {
            l.offer(t + ms(i as f64), 100, false);
        }
        let lost = l.counters().lost_random as f64 / n as f64;
        // Binomial: σ ≈ 0.054 %; 5σ bounds.
        assert!((lost - 0.03).abs() < 0.0027, "{lost}");
    }

    #[test]
    fn loss_bursts_have_the_configured_mean_length() {
        let (mut l, t) = line("burst_rate=0.5% burst_length=10");
        let n = 200_000;
        let (mut bursts, mut run) = (Vec::new(), 0);
        for i in 0..n {
            match l.offer(t + ms(i as f64), 100, false) {
                Verdict::Drop(Drop::Burst) => run += 1,
                _ if run > 0 => {
                    bursts.push(run);
                    run = 0;
                }
                _ => {}
            }
        }
        let mean = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
        assert!(
            (mean - 10.0).abs() < 1.0,
            "mean burst {mean} over {}",
            bursts.len()
        );
        // Stationary share of time in a burst: p / (p + r) = 0.005 / 0.105.
        let lost = l.counters().lost_burst as f64 / n as f64;
        assert!((lost - 0.005 / 0.105).abs() < 0.006, "{lost}");
        assert_eq!(l.counters().lost_random, 0);
    }

    #[test]
    fn the_cap_spaces_packets_at_the_rate() {
        // 8 Mbit/s: a 1,000-byte packet takes 1 ms.
        let (mut l, t) = line("rate=8mbit bucket=1000b queue=1mb");
        let mut deliveries = Vec::new();
        for _ in 0..100 {
            let Verdict::Deliver(at) = l.offer(t, 1000, false) else {
                panic!("dropped under the queue limit")
            };
            deliveries.push(at);
        }
        assert_eq!(deliveries[0], t, "the full bucket sends the first at once");
        let span = deliveries[99] - deliveries[0];
        assert!((span.as_secs_f64() - 0.099).abs() < 1e-6, "{span:?}");
        // After a pause the bucket is full again, but holds no more than its depth.
        let later = t + Duration::from_secs(1);
        assert_eq!(l.offer(later, 1000, false), Verdict::Deliver(later));
        assert_eq!(
            l.offer(later, 1000, false),
            Verdict::Deliver(later + ms(1.0))
        );
    }

    #[test]
    fn a_full_queue_drops_and_drains_at_the_rate() {
        // 10 packets of 1,000 bytes fit; the rest of a burst of 50 is dropped.
        let (mut l, t) = line("rate=8mbit bucket=1000b queue=10kb");
        let passed = (0..50)
            .filter(|_| matches!(l.offer(t, 1000, false), Verdict::Deliver(_)))
            .count();
        assert_eq!(passed, 11, "the bucket's packet and 10 queued ones");
        assert_eq!(l.counters().dropped_queue, 39);
        // 5 ms later five have left: five more fit.
        let passed = (0..10)
            .filter(|_| matches!(l.offer(t + ms(5.0), 1000, false), Verdict::Deliver(_)))
            .count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn a_cut_drops_everything_and_counts_it() {
        let (mut l, t) = line("rtt=10ms");
        assert_eq!(l.offer(t, 100, true), Verdict::Drop(Drop::Cut));
        assert_eq!(l.offer(t, 100, false), Verdict::Deliver(t + ms(5.0)));
        assert_eq!(l.counters().dropped_cut, 1);
    }

    #[test]
    fn a_new_profile_applies_to_the_next_packet() {
        let (mut l, t) = line("rtt=10ms");
        l.set_profile(&Profile::parse("rtt=100ms").unwrap(), Direction::Up);
        assert_eq!(l.offer(t, 100, false), Verdict::Deliver(t + ms(50.0)));
    }
}
