//! Running a sender journey's steps, whatever carries the requests: variables, request
//! rendering, expectations, captures, and what each step records.
//!
//! The closed-model engine (goose) and the open-rate driver (hyper) differ only in how a
//! request reaches the wire; both implement [`Transport`] and call [`run_iteration`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reports::{MetricKey, Recorder};

use crate::feeder::Feeders;
use crate::scenario::step::{Body, CaptureSource, Request};
use crate::scenario::template::{Scope, Unset};
use crate::scenario::{Sender, Step, Think};

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
    /// Open model: iterations not started because the driver could not keep up, over all
    /// scheduled.
    pub const DROPPED_ITERATIONS: &str = "dropped_iterations";
}

/// A request ready for the wire.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The method.
    pub method: http::Method,
    /// The absolute URL.
    pub url: String,
    /// Headers, as rendered.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Bytes>,
}

/// A response as the journey sees it.
#[derive(Debug, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Why a request failed before a response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made.
    #[error("connect: {0}")]
    Connect(String),
    /// No response within the timeout.
    #[error("timeout")]
    Timeout,
    /// The connection failed mid-request.
    #[error("{0}")]
    Io(String),
    /// The URL cannot be requested.
    #[error("bad url: {0}")]
    BadUrl(String),
}

impl TransportError {
    fn cause(&self) -> &'static str {
        match self {
            TransportError::Connect(_) => "connect",
            TransportError::Timeout => "timeout",
            TransportError::Io(_) => "io",
            TransportError::BadUrl(_) => "bad_url",
        }
    }
}

/// Carries one request and reads the whole response.
pub trait Transport {
    /// Sends `req` under `name` (the step name), returning the whole response.
    fn send(
        &mut self,
        name: &str,
        req: Prepared,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Response, TransportError>> + Send;
}

/// A journey compiled for running: the sender, its metric keys, and shared values.
#[derive(Debug)]
pub struct Journey {
    /// The sender as written.
    pub sender: Sender,
    /// Per-request timeout.
    pub timeout: Duration,
    steps: Vec<StepKeys>,
    iteration_duration: MetricKey,
    iterations: MetricKey,
    /// `dropped_iterations{journey=…}`.
    pub dropped: MetricKey,
    errors_base: MetricKey,
    globals: Arc<HashMap<String, String>>,
    feeders: Arc<Feeders>,
    /// Delivery tracking helpers, when the scenario has a device swarm.
    delivery: Option<Arc<crate::swarm::DeliveryHooks>>,
}

#[derive(Debug)]
struct StepKeys {
    duration: MetricKey,
    reqs: MetricKey,
    failed: MetricKey,
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
                let k = |n: &str| tagged(n).with_tag("step", step_name);
                StepKeys {
                    duration: k(names::HTTP_REQ_DURATION),
                    reqs: k(names::HTTP_REQS),
                    failed: k(names::HTTP_REQ_FAILED),
                }
            })
            .collect();
        Journey {
            timeout: sender.timeout.map_or(Duration::from_secs(30), |d| d.get()),
            steps,
            iteration_duration: tagged(names::ITERATION_DURATION),
            iterations: tagged(names::ITERATIONS),
            dropped: tagged(names::DROPPED_ITERATIONS),
            errors_base: tagged(names::HTTP_ERRORS),
            sender,
            globals,
            feeders,
            delivery: None,
        }
    }

    /// Gives the journey the swarm's delivery helpers: `{{msg_id}}`, `{{random_device}}` and
    /// `track:` on request steps.
    pub fn with_delivery(mut self, hooks: Option<Arc<crate::swarm::DeliveryHooks>>) -> Journey {
        self.delivery = hooks;
        self
    }

    /// The journey's name.
    pub fn name(&self) -> &str {
        &self.sender.name
    }

    /// Fresh variables for one user or worker.
    pub fn vars(&self, user_id: u64) -> Vars {
        Vars {
            globals: self.globals.clone(),
            local: HashMap::new(),
            iteration: 0,
            user_id,
        }
    }

    fn error_key(&self, step: &str, cause: &str) -> MetricKey {
        self.errors_base
            .clone()
            .with_tag("step", step)
            .with_tag("cause", cause)
    }
}

/// The variables of one running user or worker.
#[derive(Debug, Clone)]
pub struct Vars {
    globals: Arc<HashMap<String, String>>,
    local: HashMap<String, String>,
    iteration: u64,
    user_id: u64,
}

impl Vars {
    /// Sets a variable.
    pub fn set(&mut self, name: &str, value: String) {
        self.local.insert(name.to_string(), value);
    }

    /// Unsets a variable.
    pub fn unset(&mut self, name: &str) {
        self.local.remove(name);
    }
}

impl Scope for Vars {
    fn var(&self, name: &str) -> Option<&str> {
        self.local
            .get(name)
            .or_else(|| self.globals.get(name))
            .map(String::as_str)
    }
    fn iteration(&self) -> u64 {
        self.iteration
    }
    fn user_id(&self) -> u64 {
        self.user_id
    }
}

/// Renders a request step.
pub fn prepare(req: &Request, vars: &Vars) -> Result<Prepared, Unset> {
    let url = req.url.render(vars)?;
    let mut headers = Vec::with_capacity(req.headers.len() + 1);
    for (name, value) in &req.headers {
        headers.push((name.clone(), value.render(vars)?));
    }
    let body = match &req.body {
        Body::None => None,
        Body::Raw(t) => Some(Bytes::from(t.render(vars)?)),
        Body::Json(j) => {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("content-type".into(), "application/json".into()));
            }
            let mut out = String::with_capacity(256);
            j.render_into(vars, &mut out)?;
            Some(Bytes::from(out))
        }
    };
    Ok(Prepared {
        method: method_of(req),
        url,
        headers,
        body,
    })
}

fn method_of(req: &Request) -> http::Method {
    use crate::scenario::Method as M;
    match req.method {
        M::Get => http::Method::GET,
        M::Post => http::Method::POST,
        M::Put => http::Method::PUT,
        M::Patch => http::Method::PATCH,
        M::Delete => http::Method::DELETE,
        M::Head => http::Method::HEAD,
    }
}

/// Why a response did not meet the step: the `cause` tag of `http_errors`.
pub fn check(req: &Request, resp: &Response, vars: &mut Vars) -> Result<(), String> {
    let status_ok = match &req.expect.status {
        Some(set) => set.accepts(resp.status),
        None => (200..400).contains(&resp.status),
    };
    if !status_ok {
        return Err(format!("status {}", resp.status));
    }
    if let Some(needle) = &req.expect.body_contains {
        let needle = needle.render(vars).map_err(|_| "template".to_string())?;
        if !memfind(&resp.body, needle.as_bytes()) {
            return Err("body".into());
        }
    }
    if let Some(re) = &req.expect.body_matches {
        if !re.is_match(&String::from_utf8_lossy(&resp.body)) {
            return Err("body".into());
        }
    }
    if req.capture.is_empty() {
        return Ok(());
    }
    let mut json: Option<serde_json::Value> = None;
    for (name, cap) in &req.capture {
        let value = match &cap.source {
            CaptureSource::Json(pointer) => {
                if json.is_none() {
                    json = serde_json::from_slice(&resp.body).ok();
                }
                json.as_ref()
                    .and_then(|j| j.pointer(pointer))
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
            }
            CaptureSource::Regex(re, group) => re
                .captures(&String::from_utf8_lossy(&resp.body))
                .and_then(|c| c.get(*group))
                .map(|m| m.as_str().to_string()),
            CaptureSource::Header(h) => resp
                .headers
                .get(h.as_str())
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        };
        match value {
            Some(v) => vars.set(name, v),
            None => return Err(format!("capture {name}")),
        }
    }
    Ok(())
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Sleeps for a think time (nothing when `None`), waking early when the run stops.
pub async fn think(t: Option<&Think>, stop: &crate::stop::Stop) {
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
    stop: &crate::stop::Stop,
) -> bool {
    vars.iteration += 1;
    journey.feeders.fill(vars);
    if let Some(h) = &journey.delivery {
        vars.set("msg_id", h.next_msg_id());
        match h.random_device() {
            Some(u) => vars.set("random_device", u),
            None => vars.unset("random_device"),
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
            Err(_) => {
                record_error(journey, recorder, &req.name, "template", Instant::now());
                ok = false;
                break;
            }
        };
        let sent_ns = crate::swarm::shard::unix_ns();
        let result = transport.send(&req.name, prepared, journey.timeout).await;
        let done = Instant::now();
        let latency = done.saturating_duration_since(step_start);
        let outcome = match result {
            Ok(resp) => check(req, &resp, vars),
            Err(e) => {
                tracing::debug!(journey = journey.name(), step = %req.name, "request failed: {e}");
                Err(e.cause().to_string())
            }
        };
        {
            let mut rec = common::sync::lock(recorder);
            rec.record(&keys.duration, done, latency.as_micros() as u64);
            rec.add(&keys.reqs, done, 1);
            rec.count(&keys.failed, done, outcome.is_err());
            if let Err(cause) = &outcome {
                rec.add(&journey.error_key(&req.name, cause), done, 1);
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
        &journey.iteration_duration,
        done,
        done.saturating_duration_since(intended).as_micros() as u64,
    );
    rec.add(&journey.iterations, done, 1);
    ok
}

/// Registers a successful send's delivery expectation with the swarm.
fn track(
    journey: &str,
    t: &crate::scenario::device::Track,
    hooks: &crate::swarm::DeliveryHooks,
    vars: &Vars,
    sent_ns: u64,
) {
    use crate::swarm::control::Target;
    let id = match &t.id {
        Some(id) => id.render(vars).ok(),
        None => vars.var("msg_id").map(str::to_string),
    };
    let target = if let Some(u) = &t.unicast {
        u.render(vars).ok().map(|user| Target::Unicast { user })
    } else if let Some(topic) = &t.topic {
        topic.render(vars).ok().map(|topic| Target::Topic { topic })
    } else {
        Some(Target::Broadcast)
    };
    if let (Some(id), Some(target)) = (id, target) {
        hooks.track(journey, target, id, sent_ns, t.within());
    }
}

fn record_error(
    journey: &Journey,
    recorder: &std::sync::Mutex<Recorder>,
    step: &str,
    cause: &str,
    at: Instant,
) {
    common::sync::lock(recorder).add(&journey.error_key(step, cause), at, 1);
}
