//! From a scenario to a plan: how long the run lasts, the closed-model user schedule, each
//! open-model sender's arrival schedule, the data feeders and thresholds. `loadgen check`
//! prints it; `loadgen run` executes it.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::feeder::{FeederError, Feeders};
use crate::scenario::vars::Vars;
use crate::scenario::{self, Scenario, ScenarioError, Shape, Stage, Step};
use common::duration::format as format_duration;

/// Anything that stops a plan from being made; all are bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The scenario file.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A data feeder.
    #[error(transparent)]
    Feeder(#[from] FeederError),
    /// The recording of a `replay:` section.
    #[error(transparent)]
    Replay(#[from] crate::replay::ReplayPlanError),
}

/// A piecewise-linear level over time: users, or iterations per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// `(start, end, from, to)` in seconds and levels, contiguous from 0.
    pub segments: Vec<(f64, f64, f64, f64)>,
}

impl Schedule {
    /// A constant level for `length`.
    pub fn constant(level: f64, length: Duration) -> Schedule {
        Schedule {
            segments: vec![(0.0, length.as_secs_f64(), level, level)],
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
        let mut s = Schedule { segments };
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

/// Iterator over arrival instants, in seconds from the start.
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
        let target = self.n as f64;
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

/// An open-model sender's plan.
#[derive(Debug, Clone)]
pub struct OpenPlan {
    /// Index into `scenario.senders`.
    pub sender: usize,
    /// Iterations per second over time.
    pub rate: Schedule,
    /// The pool.
    pub pool: scenario::Pool,
}

/// The closed-model plan.
#[derive(Debug, Clone)]
pub struct ClosedPlan {
    /// Users over time.
    pub users: Schedule,
    /// `(sender index, weight)`.
    pub senders: Vec<(usize, u32)>,
}

/// A validated, ready-to-run scenario.
#[derive(Debug)]
pub struct Plan {
    /// The scenario.
    pub scenario: Scenario,
    /// Its file.
    pub path: PathBuf,
    /// Hard bound of the run.
    pub duration: Duration,
    /// Closed-model users, if any sender is closed-model.
    pub closed: Option<ClosedPlan>,
    /// Open-model senders.
    pub open: Vec<OpenPlan>,
    /// Data feeders.
    pub feeders: Arc<Feeders>,
    /// Thresholds to evaluate at the end.
    pub thresholds: Vec<reports::threshold::Threshold>,
    /// Recorded traffic to replay.
    pub replay: Option<Arc<crate::replay::ReplayPlan>>,
    /// The scenario's text as parsed (its variables filled in), for the swarm's shards;
    /// `None` for a scenario built in code.
    pub source: Option<String>,
}

impl Plan {
    /// Reads, validates and plans a scenario file, its variables taken from the environment.
    pub fn from_file(path: &Path) -> Result<Plan, PlanError> {
        Plan::from_file_with(path, &Vars::default())
    }

    /// Reads, validates and plans a scenario file, its variables filled in from `vars` first
    /// (see [`scenario::vars`]); errors name the file's own lines and columns.
    pub fn from_file_with(path: &Path, vars: &Vars) -> Result<Plan, PlanError> {
        let raw = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let expanded = scenario::vars::expand(path, &raw, vars)?;
        let mut plan = Plan::from_text(path, &expanded.text).map_err(|e| match e {
            PlanError::Scenario(e) => PlanError::Scenario(expanded.relocate(e)),
            other => other,
        })?;
        plan.source = Some(expanded.text);
        Ok(plan)
    }

    fn from_text(path: &Path, text: &str) -> Result<Plan, PlanError> {
        let scenario = scenario::load_str(path, text)?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let feeders = Feeders::load(&scenario.data, base_dir)?;
        for (i, sender) in scenario.senders.iter().enumerate() {
            for var in used_vars(&sender.steps) {
                if var.starts_with("data.") && !feeders.provides(var) {
                    return Err(scenario::located(
                        path,
                        text,
                        &format!("{{{{{var}"),
                        format!("senders[{i}]: `{var}`: the feeder has no such column"),
                    )
                    .into());
                }
            }
        }
        let replay = match &scenario.replay {
            Some(spec) => Some(crate::replay::ReplayPlan::new(spec, base_dir).map_err(
                |e| match e {
                    crate::replay::ReplayPlanError::Option(m) => {
                        PlanError::Scenario(scenario::located(path, text, "replay:", m))
                    }
                    other => PlanError::Replay(other),
                },
            )?),
            None => None,
        };
        let mut plan = Plan::new(scenario, path.to_path_buf(), feeders);
        if let Some(r) = replay {
            plan.set_replay(r);
        }
        Ok(plan)
    }

    /// A plan for a scenario built in code (`loadgen replay`), with its replay checked.
    pub fn with_replay(
        scenario: Scenario,
        path: PathBuf,
        replay: crate::replay::ReplayPlan,
    ) -> Result<Plan, PlanError> {
        let feeders = Feeders::load(&scenario.data, Path::new("."))?;
        let mut plan = Plan::new(scenario, path, feeders);
        plan.set_replay(replay);
        Ok(plan)
    }

    /// Adds the replay; without a `duration` the run lasts until its last request is due
    /// plus one timeout.
    fn set_replay(&mut self, replay: crate::replay::ReplayPlan) {
        if self.scenario.duration.is_none() {
            let bound = (replay.length + replay.timeout).as_secs_f64().ceil();
            self.duration = self.duration.max(Duration::from_secs(bound as u64));
        }
        self.replay = Some(Arc::new(replay));
    }

    fn new(scenario: Scenario, path: PathBuf, feeders: Feeders) -> Plan {
        let bound = scenario.duration.map(|d| d.get());
        let shape = |shape: &Shape| match shape {
            Shape::Constant(n) => Schedule::constant(*n as f64, bound.unwrap_or_default()),
            Shape::Staged(st) => Schedule::staged(st.start as f64, &st.stages, bound),
        };
        let closed_senders: Vec<(usize, u32)> = scenario
            .senders
            .iter()
            .enumerate()
            .filter(|(_, s)| s.rate.is_none())
            .map(|(i, s)| (i, s.weight.unwrap_or(1)))
            .collect();
        let closed = scenario.users.as_ref().map(|u| ClosedPlan {
            users: shape(u),
            senders: closed_senders,
        });
        let open: Vec<OpenPlan> = scenario
            .senders
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let rate = s.rate.as_ref()?;
                let schedule = match (&rate.per_second, &rate.stages) {
                    (Some(r), _) => Schedule::constant(*r, bound.unwrap_or_default()),
                    (None, Some(stages)) => {
                        Schedule::staged(rate.start.unwrap_or(0.0), stages, bound)
                    }
                    (None, None) => return None,
                };
                Some(OpenPlan {
                    sender: i,
                    rate: schedule,
                    pool: s.pool.clone().unwrap_or_default(),
                })
            })
            .collect();
        let device_stages = scenario.devices.iter().filter_map(|d| match &d.count {
            Some(Shape::Staged(st)) => {
                Some(Schedule::staged(st.start as f64, &st.stages, bound).length())
            }
            _ => None,
        });
        let longest = closed
            .iter()
            .map(|c| c.users.length())
            .chain(open.iter().map(|o| o.rate.length()))
            .chain(device_stages)
            .max()
            .unwrap_or_default();
        let duration = bound.unwrap_or(longest);
        let thresholds = scenario
            .thresholds
            .iter()
            .flat_map(|(key, exprs)| {
                exprs.iter().map(|e| reports::threshold::Threshold {
                    metric: key.0.clone(),
                    expr: e.expr,
                    source: e.source.clone(),
                })
            })
            .collect();
        Plan {
            scenario,
            path,
            duration,
            closed,
            open,
            feeders: Arc::new(feeders),
            thresholds,
            replay: None,
            source: None,
        }
    }

    /// The planned schedule as text, for `loadgen check`.
    pub fn describe(&self) -> String {
        let s = &self.scenario;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario `{}` ({}) is valid",
            s.name,
            self.path.display()
        );
        let target = match (&s.target.embedded, &s.target.base_url) {
            (Some(_), _) => {
                "embedded reference gateway on 127.0.0.1 (started by loadgen)".to_string()
            }
            (_, Some(url)) => url.clone(),
            _ => "?".into(),
        };
        let _ = writeln!(out, "target:   {target}");
        let _ = writeln!(
            out,
            "duration: {} (hard bound)",
            format_duration(self.duration)
        );
        for line in self.feeders.describe() {
            let _ = writeln!(out, "data:     {line}");
        }
        if let Some(c) = &self.closed {
            let total_weight: u32 = c.senders.iter().map(|(_, w)| w).sum();
            let _ = writeln!(
                out,
                "\nclosed model (goose): peak {} users",
                c.users.peak().round()
            );
            describe_phases(&mut out, &c.users, "users", |_| String::new());
            for (i, w) in &c.senders {
                let sd = &s.senders[*i];
                let _ = writeln!(
                    out,
                    "  journey `{}`: weight {w}/{total_weight}, {} request steps per iteration{}",
                    sd.name,
                    request_steps(&sd.steps),
                    sd.think.as_ref().map_or(String::new(), |t| format!(
                        ", think {} mean",
                        format_duration(t.mean())
                    ))
                );
            }
            let _ = writeln!(out, "  requests depend on response times (closed model)");
        }
        for o in &self.open {
            let sd = &s.senders[o.sender];
            let steps = request_steps(&sd.steps) as f64;
            let _ = writeln!(
                out,
                "\nopen model: journey `{}`, {} connections{}, {} request steps per iteration",
                sd.name,
                o.pool.connections,
                if o.pool.http2 {
                    format!(" (HTTP/2, {} streams each)", o.pool.streams)
                } else {
                    " (HTTP/1.1)".into()
                },
                steps
            );
            describe_phases(&mut out, &o.rate, "iterations/s", |segment| {
                // The phase's own levels: at a step (a 0 s ramp) the level just before it is
                // not the level of the phase after it.
                let its = Schedule {
                    segments: vec![segment],
                }
                .area();
                format!(
                    ", {} iterations, {} requests",
                    its.round(),
                    (its * steps).round()
                )
            });
            let total = o.rate.area();
            let _ = writeln!(
                out,
                "  expected: {} iterations, {} requests",
                total.round(),
                (total * steps).round()
            );
        }
        crate::swarm::describe(self, &mut out);
        if let Some(r) = &self.replay {
            out.push_str(&r.describe());
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(out, "\nthresholds:");
            for t in &self.thresholds {
                let _ = writeln!(out, "  {}: {}", t.metric, t.source);
            }
        }
        let _ = writeln!(out, "\nnothing was sent (check only)");
        out
    }
}

fn describe_phases(
    out: &mut String,
    s: &Schedule,
    unit: &str,
    extra: impl Fn((f64, f64, f64, f64)) -> String,
) {
    for &(a, b, from, to) in &s.segments {
        let span = format!(
            "{:>7} – {:<7}",
            format_duration(Duration::from_secs_f64(a)),
            format_duration(Duration::from_secs_f64(b))
        );
        let what = if (from - to).abs() < 1e-9 {
            format!("hold {} {unit}", fmt_level(to))
        } else {
            format!("ramp {} → {} {unit}", fmt_level(from), fmt_level(to))
        };
        let _ = writeln!(out, "  {span} {what}{}", extra((a, b, from, to)));
    }
}

fn fmt_level(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round())
    } else {
        format!("{x:.2}")
    }
}

fn request_steps(steps: &[Step]) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Request(_)))
        .count()
}

fn used_vars(steps: &[Step]) -> Vec<&str> {
    use crate::scenario::step::Body;
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Let(vars) => vars.iter().for_each(|(_, t)| out.extend(t.vars())),
            Step::Request(r) => {
                out.extend(r.url.vars());
                r.headers.iter().for_each(|(_, t)| out.extend(t.vars()));
                out.extend(r.expect.body_contains.iter().flat_map(|t| t.vars()));
                match &r.body {
                    Body::Json(j) => out.extend(j.vars()),
                    Body::Raw(t) => out.extend(t.vars()),
                    Body::None => {}
                }
            }
        }
    }
    out
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
            over: Some(crate::scenario::Dur(Duration::from_secs(10))),
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
    fn stages_are_cut_at_the_bound() {
        let stages = [
            Stage {
                to: Some(10),
                over: Some(crate::scenario::Dur(Duration::from_secs(10))),
                hold: None,
            },
            Stage {
                to: None,
                over: None,
                hold: Some(crate::scenario::Dur(Duration::from_secs(10))),
            },
        ];
        let s = Schedule::staged(0.0, &stages, Some(Duration::from_secs(5)));
        assert_eq!(s.length(), Duration::from_secs(5));
        assert!((s.level_at(5.0) - 5.0).abs() < 1e-9);
    }
}
