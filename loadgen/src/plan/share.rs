//! A process's share of a plan when several processes run one scenario together.
//!
//! - **Static segments** (`loadgen run --segment i/N`, k6's execution segments): segment `i`
//!   of `N` takes every `N`-th unit starting at `i` — arrivals `i, i+N, i+2N, …` of every rate,
//!   users and devices with index `≡ i (mod N)` under every count. Striping rather than
//!   blocks keeps each segment's share proportional at every level of a ramp, and the
//!   segments' shares add up to the unsplit plan exactly (no rounding per segment).
//! - **Locust workers** (`loadgen worker`): device counts come from the master at run time
//!   (`controlled`). The master's plugin (`deploy/locust/locustfile.py`) tells each worker,
//!   before the run's first spawn, its place `i` among the `N` workers the master spreads
//!   users over: the worker plans `⌈P / N⌉` devices of a journey planned for `P` (Locust's
//!   dispatcher gives each worker `P / N` of a fixed-count class, the remainder to some of
//!   them) with the stripe's indices `i, i+N, …`, so its shard processes, open files and
//!   source addresses are sized by its share and the workers together run the indices one
//!   process would. Without the plugin's word a worker plans the whole journey and runs the
//!   indices `block × P …` of its master-given index `block`. Either way two workers never
//!   run the same device (user ids are made from the index).

use serde::{Deserialize, Serialize};

/// A process's share of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// This process's segment, from 0.
    pub segment: u32,
    /// Segments in all (1: the whole plan).
    pub segments: u32,
    /// Device index block: this process's devices of a journey planned for `P` devices have
    /// indices `block × P` to `block × P + P − 1` (a Locust worker the master's plugin gave
    /// no share; 0 otherwise).
    #[serde(default)]
    pub block: u32,
    /// Device counts are set at run time by a controller (a Locust master), not by the
    /// journeys' count schedules; every count starts at 0.
    #[serde(default)]
    pub controlled: bool,
}

impl Default for Share {
    fn default() -> Share {
        Share {
            segment: 0,
            segments: 1,
            block: 0,
            controlled: false,
        }
    }
}

impl Share {
    /// Segment `i/N` (`0/4` … `3/4`), as `--segment` takes it.
    pub fn parse_segment(text: &str) -> Result<Share, String> {
        let bad = || format!("--segment `{text}`: expected i/N with 0 ≤ i < N, such as 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let i: u32 = i.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        if n == 0 || i >= n {
            return Err(bad());
        }
        Ok(Share {
            segment: i,
            segments: n,
            ..Share::default()
        })
    }

    /// True for the whole plan in one process.
    pub fn is_whole(&self) -> bool {
        self.segments <= 1
    }

    /// The first of this process's `sources` loopback source addresses (see
    /// [`crate::engine::swarm::net::source_address`]): segments and workers each take a range
    /// of their own, so processes on one machine do not share a source's ephemeral ports.
    pub fn first_source(&self, sources: u32) -> u32 {
        self.segment.max(self.block).saturating_mul(sources)
    }

    /// How many of a journey's `planned` devices this process plans: all of them, a
    /// segment's stripe, or a Locust worker's largest stripe (`⌈planned / segments⌉`: the
    /// master's dispatcher decides which workers hold the remainder).
    pub fn devices_of(&self, planned: u64) -> u64 {
        match (self.segments > 1, self.controlled) {
            (false, _) => planned,
            (true, false) => self.stripe(planned),
            (true, true) => planned.div_ceil(u64::from(self.segments)),
        }
    }

    /// How many of the units `0 … level − 1` belong to this segment (those `≡ segment mod
    /// segments`). Summed over every segment this is `level`.
    pub fn stripe(&self, level: u64) -> u64 {
        let (i, n) = (u64::from(self.segment), u64::from(self.segments.max(1)));
        if level > i {
            (level - i).div_ceil(n)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parse_and_bad_ones_say_what_is_expected() {
        let s = Share::parse_segment("2/5").unwrap();
        assert_eq!((s.segment, s.segments), (2, 5));
        for bad in ["5/5", "1", "a/3", "0/0", "-1/2"] {
            let e = Share::parse_segment(bad).unwrap_err();
            assert_eq!(
                e,
                format!("--segment `{bad}`: expected i/N with 0 ≤ i < N, such as 0/4")
            );
        }
    }

    #[test]
    fn stripes_add_up_to_the_whole_at_every_level() {
        for n in 1..7u32 {
            for level in 0..40u64 {
                let sum: u64 = (0..n)
                    .map(|i| {
                        Share {
                            segment: i,
                            segments: n,
                            ..Share::default()
                        }
                        .stripe(level)
                    })
                    .sum();
                assert_eq!(sum, level, "n={n} level={level}");
            }
        }
    }
}
