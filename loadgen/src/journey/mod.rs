//! Step semantics every engine shares: a sender journey compiled for running ([`Journey`]),
//! one iteration of its steps ([`run_iteration`]) with what each step records, and the pieces
//! it is made of:
//!
//! - [`vars`]: the variables of one user or worker (let, capture, feeders, globals);
//! - [`request`]: rendering a step into a request, and the [`Transport`] that carries it;
//! - [`expect`]: what a response must be, and captures;
//! - [`extract`]: the one set of rules for reading values out of answers and messages, also
//!   used by the device swarm.
//!
//! The closed-model engine (goose) and the open-rate driver (hyper) differ only in how a
//! request reaches the wire; both implement [`Transport`] and call [`run_iteration`].

pub mod expect;
pub mod extract;
pub mod mqtt;
pub mod request;
pub mod vars;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reports::{MetricId, MetricKey, Recorder};

pub use request::{prepare, PrepareError, Prepared, Response, Transport, TransportError};
pub use vars::Vars;

use crate::delivery::{DeliveryHooks, Target};
use crate::plan::Feeders;
use crate::scenario::template::Scope;
use crate::scenario::{Sender, Step, Think};
use crate::stop::Stop;

/// Metric names every engine records.
pub mod names {
    /// Request latency, µs (full response, from the intended start in open-model work).
    pub const HTTP_REQ_DURATION: &str = "http_req_duration";
    /// Requests sent.
    pub const HTTP_REQS: &str = "http_reqs";
    /// Failed requests over all requests (transport error, timeout or unmet expectation).
    pub const HTTP_REQ_FAILED: &str = "http_req_failed";
    /// Failures by cause.
    pub const HTTP_ERRORS: &str = "http_errors";
    /// Whole iterations, µs.
    pub const ITERATION_DURATION: &str = "iteration_duration";
    /// Iterations completed (successfully or not).
    pub const ITERATIONS: &str = "iterations";
    /// Open model: iterations not started because the driver could not keep up (or the run
    /// ended while they waited for a connection), over all scheduled.
    pub const DROPPED_ITERATIONS: &str = "dropped_iterations";
    /// Open model and replay: how late each scheduled iteration or request started after its
    /// instant, µs — the pacer's lateness plus any wait for a free connection.
    pub const SCHEDULE_LAG: &str = "schedule_lag";
    /// Open model and replay: how late the pacer itself released each item, µs — the
    /// generator's own timing, whatever the target does.
    pub const PACER_LAG: &str = "pacer_lag";
}

/// How long an iteration that found no instance of a discovered target waits before it ends
/// (so the next one may find the list changed).
const NO_INSTANCE_PAUSE: Duration = Duration::from_millis(100);

/// Where each iteration's `{{base_url}}` comes from when the target's instances are
/// discovered (`run::target` follows them): one instance per iteration, leased for the
/// iteration's length, so balancing counts iterations in flight and a refused connection
/// passes the instance over for the iterations after.
pub trait TargetInstances: Send + Sync + std::fmt::Debug {
    /// The base URL of the instance for the next iteration, with its lease; or why no
    /// instance can be used.
    fn pick(&self) -> Result<(String, discovery::Lease), String>;
}

/// A journey compiled for running: the sender, its metric keys, and shared values.
#[derive(Debug)]
pub struct Journey {
    /// The sender as written.
    pub sender: Sender,
    /// Per-request timeout.
    pub timeout: Duration,
    steps: Vec<StepKeys>,
    iteration_duration: MetricId,
    iterations: MetricId,
    /// `dropped_iterations{journey=…}`.
    pub dropped: MetricId,
    /// `schedule_lag{journey=…}`.
    pub schedule_lag: MetricId,
    /// `pacer_lag{journey=…}`.
    pub pacer_lag: MetricId,
    errors_base: MetricKey,
    globals: Arc<HashMap<String, String>>,
    feeders: Arc<Feeders>,
    /// Delivery tracking helpers, when the scenario has a device swarm.
    delivery: Option<Arc<DeliveryHooks>>,
    /// Device journeys whose `{{random_device "JOURNEY"}}` the steps read.
    random_journeys: Vec<String>,
    /// Connections for steps that publish over MQTT (`mqtt://` URLs).
    mqtt: mqtt::Publishers,
    /// The target's discovered instances, when it has them.
    instances: Option<Arc<dyn TargetInstances>>,
}

#[derive(Debug)]
struct StepKeys {
    duration: MetricId,
    reqs: MetricId,
    failed: MetricId,
}

impl Journey {
    /// Compiles `sender`; `globals` holds `base_url` and friends.
    pub fn new(
        sender: Sender,
        globals: Arc<HashMap<String, String>>,
        feeders: Arc<Feeders>,
    ) -> Journey {
        let tagged = |name: &str| MetricKey::new(name).with_tag("journey", &sender.name);
        let steps = sender
            .steps
            .iter()
            .map(|s| {
                let step_name = match s {
                    Step::Request(r) => r.name.as_str(),
                    Step::Let(_) => "let",
                };
                let k = |n: &str| MetricId::of(&tagged(n).with_tag("step", step_name));
                StepKeys {
                    duration: k(names::HTTP_REQ_DURATION),
                    reqs: k(names::HTTP_REQS),
                    failed: k(names::HTTP_REQ_FAILED),
                }
            })
            .collect();
        let mut random_journeys: Vec<String> = step_vars(&sender.steps)
            .filter_map(crate::scenario::template::random_device_journey)
            .map(str::to_string)
            .collect();
        random_journeys.sort();
        random_journeys.dedup();
        Journey {
            random_journeys,
            mqtt: mqtt::Publishers::default(),
            timeout: sender.timeout(),
            steps,
            iteration_duration: MetricId::of(&tagged(names::ITERATION_DURATION)),
            iterations: MetricId::of(&tagged(names::ITERATIONS)),
            dropped: MetricId::of(&tagged(names::DROPPED_ITERATIONS)),
            schedule_lag: MetricId::of(&tagged(names::SCHEDULE_LAG)),
            pacer_lag: MetricId::of(&tagged(names::PACER_LAG)),
            errors_base: tagged(names::HTTP_ERRORS),
            sender,
            globals,
            feeders,
            delivery: None,
            instances: None,
        }
    }

    /// Gives the journey the target's discovered instances: each iteration sets
    /// `{{base_url}}` to one of them.
    pub fn with_instances(mut self, instances: Option<Arc<dyn TargetInstances>>) -> Journey {
        self.instances = instances;
        self
    }

    /// Gives the journey the swarm's delivery helpers: `{{msg_id}}`, `{{random_device}}` and
    /// `track:` on request steps.
    pub fn with_delivery(mut self, hooks: Option<Arc<DeliveryHooks>>) -> Journey {
        self.delivery = hooks;
        self
    }

    /// The journey's name.
    pub fn name(&self) -> &str {
        &self.sender.name
    }

    /// Fresh variables for one user or worker.
    pub fn vars(&self, user_id: u64) -> Vars {
        Vars::new(self.globals.clone(), user_id)
    }

    fn error_key(&self, step: &str, cause: &str) -> MetricKey {
        self.errors_base
            .clone()
            .with_tag("step", step)
            .with_tag("cause", cause)
    }
}

/// Sleeps for a think time (nothing when `None`), waking early when the run stops.
pub async fn think(t: Option<&Think>, stop: &Stop) {
    if let Some(t) = t {
        let d = t.sample();
        if !d.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = stop.wait() => {}
            }
        }
    }
}

/// Runs one iteration of `journey`: every step in order, stopping at the first failure.
/// `intended` is when the iteration should have started (open model) — the first request's
/// latency is measured from it, so time spent waiting for a free connection counts.
/// Returns whether every step succeeded.
pub async fn run_iteration<T: Transport>(
    journey: &Journey,
    transport: &mut T,
    vars: &mut Vars,
    recorder: &std::sync::Mutex<Recorder>,
    intended: Instant,
    stop: &Stop,
) -> bool {
    if stop.is_stopped() {
        // Not started: the caller counts it (dropped, or not at all in the closed model).
        return false;
    }
    vars.next_iteration();
    let mut lease = match &journey.instances {
        None => None,
        Some(instances) => match instances.pick() {
            Ok((base_url, lease)) => {
                vars.set("base_url", base_url);
                Some(lease)
            }
            Err(why) => {
                tracing::debug!(journey = journey.name(), "no instance: {why}");
                let step = journey.sender.steps.iter().find_map(|s| match s {
                    Step::Request(r) => Some(r.name.as_str()),
                    Step::Let(_) => None,
                });
                let now = Instant::now();
                record_error(journey, recorder, step.unwrap_or("-"), "no_instance", now);
                common::sync::lock(recorder).add(journey.iterations, now, 1);
                // A pause before the next try: a user without think time would otherwise spin
                // without yielding while the list is empty.
                tokio::select! {
                    _ = tokio::time::sleep(NO_INSTANCE_PAUSE) => {}
                    _ = stop.wait() => {}
                }
                return false;
            }
        },
    };
    vars.fill(&journey.feeders);
    if let Some(h) = &journey.delivery {
        vars.set("msg_id", h.next_msg_id());
        match h.random_device(None) {
            Some(u) => vars.set("random_device", u),
            None => vars.unset("random_device"),
        }
        for name in &journey.random_journeys {
            let var = crate::scenario::template::random_device_var(name);
            match h.random_device(Some(name)) {
                Some(u) => vars.set(&var, u),
                None => vars.unset(&var),
            }
        }
    }
    let mut ok = true;
    let mut step_start = intended;
    for (i, step) in journey.sender.steps.iter().enumerate() {
        if stop.is_stopped() {
            break;
        }
        let req = match step {
            Step::Let(assignments) => {
                for (name, t) in assignments {
                    match t.render(vars) {
                        Ok(v) => vars.set(name, v),
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    record_error(journey, recorder, "let", "template", Instant::now());
                    break;
                }
                continue;
            }
            Step::Request(r) => r,
        };
        let keys = &journey.steps[i];
        let prepared = match prepare(req, vars) {
            Ok(p) => p,
            Err(e) => {
                record_error(journey, recorder, &req.name, e.cause(), Instant::now());
                ok = false;
                break;
            }
        };
        let sent_ns = crate::delivery::clock::unix_ns();
        // A request still in flight when the run's grace ends (or the run is interrupted)
        // is cut and counted as failed (`unfinished`) with the time it had taken so far: a
        // target that never answers shows as requests that all failed, not as no traffic.
        let result = if mqtt::is_mqtt(&prepared.url) {
            tokio::select! {
                r = journey.mqtt.publish(prepared, journey.timeout) => r,
                () = stop.wait_cut() => Err(TransportError::Unfinished),
            }
        } else {
            tokio::select! {
                r = transport.send(&req.name, prepared, journey.timeout) => r,
                () = stop.wait_cut() => Err(TransportError::Unfinished),
            }
        };
        let done = Instant::now();
        let latency = done.saturating_duration_since(step_start);
        let outcome = match result {
            Ok(resp) => expect::verify(req, &resp, vars),
            Err(e) => {
                tracing::debug!(journey = journey.name(), step = %req.name, "request failed: {e}");
                if matches!(e, TransportError::Connect(_)) {
                    if let Some(lease) = lease.take() {
                        lease.connect_failed();
                    }
                }
                Err(e.cause().to_string())
            }
        };
        {
            let mut rec = common::sync::lock(recorder);
            rec.record(keys.duration, done, latency.as_micros() as u64);
            rec.add(keys.reqs, done, 1);
            rec.count(keys.failed, done, outcome.is_err());
            if let Err(cause) = &outcome {
                rec.add(journey.error_key(&req.name, cause), done, 1);
            }
        }
        if outcome.is_err() {
            ok = false;
            break;
        }
        if let (Some(t), Some(h)) = (&req.track, &journey.delivery) {
            track(journey.name(), t, h, vars, sent_ns);
        }
        think(req.think.as_ref(), stop).await;
        step_start = Instant::now();
    }
    let done = Instant::now();
    let mut rec = common::sync::lock(recorder);
    rec.record(
        journey.iteration_duration,
        done,
        done.saturating_duration_since(intended).as_micros() as u64,
    );
    rec.add(journey.iterations, done, 1);
    ok
}

/// Registers a successful send's delivery expectation with the swarm.
fn track(
    journey: &str,
    t: &crate::scenario::device::Track,
    hooks: &DeliveryHooks,
    vars: &Vars,
    sent_ns: u64,
) {
    let id = match &t.id {
        Some(id) => id.render(vars).ok(),
        None => vars.var("msg_id").map(str::to_string),
    };
    let target = if let Some(u) = &t.unicast {
        u.render(vars).ok().map(|user| Target::Unicast { user })
    } else if let Some(topic) = &t.topic {
        topic.render(vars).ok().map(|topic| Target::Topic { topic })
    } else if let Some(journey) = &t.journey {
        Some(Target::Journey {
            journey: journey.clone(),
        })
    } else {
        Some(Target::Broadcast)
    };
    if let (Some(id), Some(target)) = (id, target) {
        hooks.track(journey, target, id, sent_ns, t.within());
    }
}

/// Every variable the steps read (URLs, headers, bodies, `let` values, `track:` templates).
pub fn step_vars(steps: &[Step]) -> impl Iterator<Item = &str> {
    steps.iter().flat_map(|step| {
        let mut used: Vec<&str> = Vec::new();
        match step {
            Step::Let(assignments) => {
                for (_, t) in assignments {
                    used.extend(t.vars());
                }
            }
            Step::Request(r) => {
                used.extend(r.url.vars());
                for (_, h) in &r.headers {
                    used.extend(h.vars());
                }
                match &r.body {
                    crate::scenario::step::Body::Json(j) => used.extend(j.vars()),
                    crate::scenario::step::Body::Raw(t) => used.extend(t.vars()),
                    crate::scenario::step::Body::None => {}
                }
                if let Some(t) = &r.track {
                    for x in [&t.unicast, &t.topic, &t.id].into_iter().flatten() {
                        used.extend(x.vars());
                    }
                }
            }
        }
        used
    })
}

fn record_error(
    journey: &Journey,
    recorder: &std::sync::Mutex<Recorder>,
    step: &str,
    cause: &str,
    at: Instant,
) {
    common::sync::lock(recorder).add(journey.error_key(step, cause), at, 1);
}
