//! Load shapes over time: a piecewise-linear [`Schedule`] of users, connections or iterations
//! per second, built from a scenario's stages, and the arrival schedule of an open-model rate
//! ([`Schedule::arrivals`]: the instants at which iterations start).

use std::time::Duration;

use crate::scenario::{Shape, Stage};

/// A piecewise-linear level over time: users, or iterations per second.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    /// `(start, end, from, to)` in seconds and levels, contiguous from 0.
    pub segments: Vec<(f64, f64, f64, f64)>,
    /// Arrivals fall where the area under the rate reaches `n + phase` (0 but for a segment's
    /// share of a rate: see [`Schedule::segment_of_rate`]).
    pub phase: f64,
}

impl Schedule {
    /// A constant level for `length`.
    pub fn constant(level: f64, length: Duration) -> Schedule {
        Schedule {
            segments: vec![(0.0, length.as_secs_f64(), level, level)],
            phase: 0.0,
        }
    }

    /// Stages from `start`, cut at `bound` when given.
    pub fn staged(start: f64, stages: &[Stage], bound: Option<Duration>) -> Schedule {
        let mut segments = Vec::new();
        let (mut t, mut level) = (0.0, start);
        for st in stages {
            let (len, to) = match (st.to, st.over, st.hold) {
                (Some(to), Some(over), _) => (over.get().as_secs_f64(), to as f64),
                (_, _, Some(hold)) => (hold.get().as_secs_f64(), level),
                _ => continue,
            };
            segments.push((t, t + len, level, to));
            t += len;
            level = to;
        }
        let mut s = Schedule {
            segments,
            phase: 0.0,
        };
        if let Some(b) = bound {
            s.cut(b.as_secs_f64());
        }
        s
    }

    fn cut(&mut self, bound: f64) {
        self.segments.retain(|s| s.0 < bound);
        if let Some(last) = self.segments.last_mut() {
            if last.1 > bound {
                let level = last.2 + (last.3 - last.2) * (bound - last.0) / (last.1 - last.0);
                *last = (last.0, bound, last.2, level);
            }
        }
    }

    /// Length of the schedule.
    pub fn length(&self) -> Duration {
        Duration::from_secs_f64(self.segments.last().map_or(0.0, |s| s.1))
    }

    /// The level at `t` seconds.
    pub fn level_at(&self, t: f64) -> f64 {
        for &(a, b, from, to) in &self.segments {
            if t >= a && t <= b {
                return if b > a {
                    from + (to - from) * (t - a) / (b - a)
                } else {
                    to
                };
            }
        }
        0.0
    }

    /// The largest level reached.
    pub fn peak(&self) -> f64 {
        self.segments
            .iter()
            .map(|s| s.2.max(s.3))
            .fold(0.0, f64::max)
    }

    /// ∫ level dt over the whole schedule: expected iterations of a rate schedule.
    pub fn area(&self) -> f64 {
        self.segments
            .iter()
            .map(|&(a, b, f, t)| (b - a) * (f + t) / 2.0)
            .sum()
    }

    /// Arrival instants (seconds from start) of a rate schedule: the n-th arrival is where
    /// the area under the rate reaches n (the first at the first instant the rate is > 0).
    pub fn arrivals(&self) -> Arrivals<'_> {
        Arrivals {
            schedule: self,
            segment: 0,
            area_before: 0.0,
            n: 0,
        }
    }

    /// Goose's test plan: `users,milliseconds` steps (goose ramps each to its level).
    pub fn goose_steps(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        if let Some(first) = self.segments.first() {
            if first.2 > 0.0 {
                out.push((first.2.round() as usize, 0));
            }
        }
        for &(a, b, _, to) in &self.segments {
            out.push((to.round() as usize, ((b - a) * 1000.0).round() as usize));
        }
        out
    }
}

/// The arrival schedule of a rate: arrival instants, in seconds from the start.
#[derive(Debug)]
pub struct Arrivals<'a> {
    schedule: &'a Schedule,
    segment: usize,
    area_before: f64,
    n: u64,
}

impl Iterator for Arrivals<'_> {
    type Item = f64;
    fn next(&mut self) -> Option<f64> {
        let target = self.n as f64 + self.schedule.phase;
        while let Some(&(a, b, from, to)) = self.schedule.segments.get(self.segment) {
            let seg_area = (b - a) * (from + to) / 2.0;
            let need = target - self.area_before;
            if need < seg_area {
                let len = b - a;
                let slope = if len > 0.0 { (to - from) / len } else { 0.0 };
                let dt = if slope.abs() < 1e-12 {
                    if from <= 0.0 {
                        len
                    } else {
                        need / from
                    }
                } else {
                    let disc = from * from + 2.0 * slope * need;
                    (-from + disc.max(0.0).sqrt()) / slope
                };
                self.n += 1;
                return Some(a + dt.clamp(0.0, len));
            }
            self.area_before += seg_area;
            self.segment += 1;
        }
        None
    }
}

impl Schedule {
    /// Segment `share`'s part of a rate: the arrivals `segment, segment + N, …` of this
    /// schedule (k6's execution segments). The rate is divided by N and the arrivals shifted
    /// by `segment / N` of an iteration, so the segments' arrivals together are exactly this
    /// schedule's.
    pub fn segment_of_rate(&self, share: &super::Share) -> Schedule {
        let n = f64::from(share.segments.max(1));
        Schedule {
            segments: self
                .segments
                .iter()
                .map(|&(a, b, from, to)| (a, b, from / n, to / n))
                .collect(),
            phase: (self.phase + f64::from(share.segment)) / n,
        }
    }

    /// Segment `share`'s part of a count (users): at each stage's ends, the units below the
    /// level that belong to the segment ([`Share::stripe`](super::Share::stripe)), so the
    /// segments' levels add up to this schedule's at every stage boundary.
    pub fn segment_of_count(&self, share: &super::Share) -> Schedule {
        let level = |l: f64| share.stripe(l.round().max(0.0) as u64) as f64;
        Schedule {
            segments: self
                .segments
                .iter()
                .map(|&(a, b, from, to)| (a, b, level(from), level(to)))
                .collect(),
            phase: 0.0,
        }
    }

    /// The schedule of a load shape (`users`, device `count`), bounded by `bound`.
    pub fn of_shape(shape: &Shape, bound: Option<Duration>) -> Schedule {
        match shape {
            Shape::Constant(n) => Schedule::constant(*n as f64, bound.unwrap_or_default()),
            Shape::Staged(st) => Schedule::staged(st.start as f64, &st.stages, bound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_arrivals_are_evenly_spaced() {
        let s = Schedule::constant(10.0, Duration::from_secs(2));
        let a: Vec<f64> = s.arrivals().collect();
        assert_eq!(a.len(), 20);
        assert!((a[1] - 0.1).abs() < 1e-9 && (a[19] - 1.9).abs() < 1e-9);
    }

    #[test]
    fn ramp_arrivals_match_the_area() {
        let stages = [Stage {
            to: Some(100),
            over: Some(common::Dur(Duration::from_secs(10))),
            hold: None,
        }];
        let s = Schedule::staged(0.0, &stages, None);
        assert_eq!(s.area(), 500.0);
        let a: Vec<f64> = s.arrivals().collect();
        assert_eq!(a.len(), 500);
        // Half the area of a linear ramp from 0 is reached at t = T/√2.
        assert!((a[250] - 10.0 / 2f64.sqrt()).abs() < 0.01, "{}", a[250]);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn segments_of_a_rate_share_its_arrivals_exactly() {
        let stages = [
            Stage {
                to: Some(37),
                over: Some(common::Dur(Duration::from_secs(3))),
                hold: None,
            },
            Stage {
                to: None,
                over: None,
                hold: Some(common::Dur(Duration::from_millis(1700))),
            },
        ];
        let whole = Schedule::staged(0.0, &stages, None);
        let all: Vec<f64> = whole.arrivals().collect();
        for n in [1u32, 2, 3, 7] {
            let mut parts: Vec<f64> = (0..n)
                .flat_map(|i| {
                    let share = super::super::Share {
                        segment: i,
                        segments: n,
                        ..Default::default()
                    };
                    whole
                        .segment_of_rate(&share)
                        .arrivals()
                        .collect::<Vec<f64>>()
                })
                .collect();
            parts.sort_by(f64::total_cmp);
            assert_eq!(parts.len(), all.len(), "n={n}");
            for (p, a) in parts.iter().zip(&all) {
                assert!((p - a).abs() < 1e-6, "n={n}: {p} vs {a}");
            }
        }
    }

    #[test]
    fn stages_are_cut_at_the_bound() {
        let stages = [
            Stage {
                to: Some(10),
                over: Some(common::Dur(Duration::from_secs(10))),
                hold: None,
            },
            Stage {
                to: None,
                over: None,
                hold: Some(common::Dur(Duration::from_secs(10))),
            },
        ];
        let s = Schedule::staged(0.0, &stages, Some(Duration::from_secs(5)));
        assert_eq!(s.length(), Duration::from_secs(5));
        assert!((s.level_at(5.0) - 5.0).abs() < 1e-9);
    }
}
