//! From a scenario to a plan: what every engine reads. How long the run lasts, the
//! closed-model user [`schedule`], each open-model sender's arrival schedule, the device
//! swarm's layout ([`devices`]), the recording to replay ([`replay`]), the data feeders
//! ([`data`]) and the thresholds. `loadgen check` prints it ([`describe`]); `loadgen run`
//! executes it.

pub mod data;
pub mod describe;
pub mod devices;
pub mod limits;
pub mod replay;
pub mod schedule;
pub mod share;

pub use data::{FeederError, Feeders};
pub use devices::{DeviceJourneyPlan, SwarmPlan};
pub use limits::Machine;
pub use replay::{ReplayPlan, ReplayPlanError};
pub use schedule::{Arrivals, Schedule};
pub use share::Share;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::scenario::vars::Vars;
use crate::scenario::{self, Scenario, ScenarioError, Step};

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
    Replay(#[from] replay::ReplayPlanError),
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
#[derive(Debug, Clone)]
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
    pub replay: Option<Arc<replay::ReplayPlan>>,
    /// The scenario's text as parsed (its variables filled in), for the swarm's shards;
    /// `None` for a scenario built in code.
    pub source: Option<String>,
    /// This process's share of the plan (a static segment, a Locust worker's devices).
    pub share: Share,
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
            Some(spec) => Some(
                replay::ReplayPlan::new(spec, base_dir).map_err(|e| match e {
                    replay::ReplayPlanError::Option(m) => {
                        PlanError::Scenario(scenario::located(path, text, "replay:", m))
                    }
                    other => PlanError::Replay(other),
                })?,
            ),
            None => None,
        };
        let mut plan = Plan::new(scenario, path.to_path_buf(), feeders);
        if let Some(r) = replay {
            plan.set_replay(r);
        }
        Ok(plan)
    }

    /// The device swarm's layout (this process's share of it); `None` without device
    /// journeys.
    pub fn swarm(&self) -> Option<SwarmPlan> {
        SwarmPlan::new(&self.scenario, self.duration, &self.share)
    }

    /// Segment `share` of this plan (`--segment i/N`): every rate's and every count's share
    /// (see [`share`]); the duration and thresholds stay. A recording cannot be split (its
    /// requests are not independent arrivals): a plan with `replay:` is refused.
    pub fn segment(mut self, share: Share) -> Result<Plan, String> {
        if share.is_whole() {
            return Ok(self);
        }
        if self.replay.is_some() {
            return Err(format!(
                "{}: --segment cannot split a scenario with a `replay:` section",
                self.path.display()
            ));
        }
        if let Some(c) = &mut self.closed {
            c.users = c.users.segment_of_count(&share);
        }
        for o in &mut self.open {
            o.rate = o.rate.segment_of_rate(&share);
        }
        self.share = share;
        Ok(self)
    }

    /// A plan for a scenario built in code (`loadgen replay`), with its replay checked.
    pub fn with_replay(
        scenario: Scenario,
        path: PathBuf,
        replay: replay::ReplayPlan,
    ) -> Result<Plan, PlanError> {
        let feeders = Feeders::load(&scenario.data, Path::new("."))?;
        let mut plan = Plan::new(scenario, path, feeders);
        plan.set_replay(replay);
        Ok(plan)
    }

    /// Adds the replay; without a `duration` the run lasts until its last request is due
    /// plus one timeout.
    fn set_replay(&mut self, replay: replay::ReplayPlan) {
        if self.scenario.duration.is_none() {
            let bound = (replay.length + replay.timeout).as_secs_f64().ceil();
            self.duration = self.duration.max(Duration::from_secs(bound as u64));
        }
        self.replay = Some(Arc::new(replay));
    }

    fn new(scenario: Scenario, path: PathBuf, feeders: Feeders) -> Plan {
        let bound = scenario.duration.map(|d| d.get());
        let closed_senders: Vec<(usize, u32)> = scenario
            .senders
            .iter()
            .enumerate()
            .filter(|(_, s)| s.rate.is_none())
            .map(|(i, s)| (i, s.weight.unwrap_or(1)))
            .collect();
        let closed = scenario.users.as_ref().map(|u| ClosedPlan {
            users: Schedule::of_shape(u, bound),
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
            Some(shape @ scenario::Shape::Staged(_)) => {
                Some(Schedule::of_shape(shape, bound).length())
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
            share: Share::default(),
        }
    }
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
