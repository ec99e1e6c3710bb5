//! Replaying recorded traffic on the open-rate driver: the replay plan (a scenario's
//! `replay:` section or `loadgen replay`'s flags, checked by reading the whole recording
//! once), and the engine that plays it.
//!
//! A pacer thread walks the transformed stream and puts each request on the driver's queue at
//! its scheduled instant (a thread, not a Tokio timer: the timer wheel has 1 ms ticks and the
//! send-time goal is under 1 ms). The driver's workers send it; latency counts from the
//! scheduled instant, and `replay_send_lag` records how late each request left. A replayed
//! status is compared with the recorded response when the recording has one. WebSocket
//! device sessions (HAR) are handed at their instant to [`ws`], which plays them on Tokio.

pub mod cli;
pub mod inspect_html;
pub mod ws;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::replay::{Item, Paced, ReadOptions, ReadStats, Recording, Transforms};
use reports::{MetricKey, Recorder};

use crate::collect::Recorders;
use crate::engine::conn::Tls;
use crate::engine::open::{self, Fire, Fired, OpenOutcome, PoolConfig};
use crate::journey::{names, Prepared, TransportError};
use crate::scenario::replay::ReplaySpec;
use crate::scenario::Pool;
use crate::stop::Stop;

/// The `journey` tag of replayed requests.
pub const JOURNEY: &str = "replay";

/// Metric names replay adds to the common ones.
pub mod metric {
    /// How late each request left: |actual − scheduled| send time, µs.
    pub const SEND_LAG: &str = "replay_send_lag";
    /// Replayed status ≠ recorded status, over requests with a recorded response.
    pub const STATUS_MISMATCH: &str = "replay_status_mismatch";
    pub use super::ws::metric::*;
}

/// A replay that cannot be planned (bad input, exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ReplayPlanError {
    /// An option is invalid; the message names the field.
    #[error("{0}")]
    Option(String),
    /// The recording cannot be read.
    #[error(transparent)]
    Read(#[from] ::replay::ReadError),
}

/// A checked replay.
#[derive(Debug)]
pub struct ReplayPlan {
    /// The recording.
    pub recording: Recording,
    /// Its transforms.
    pub transforms: Transforms,
    /// The connection pool.
    pub pool: Pool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Compare replayed statuses with recorded ones.
    pub compare_status: bool,
    /// Requests that will be sent.
    pub planned_requests: u64,
    /// WebSocket device sessions in the stream.
    pub planned_sessions: u64,
    /// Client→server messages of those sessions.
    pub planned_ws_sends: u64,
    /// Server→client messages the recording holds for those sessions.
    pub recorded_ws_receives: u64,
    /// Where sessions connect (`ws://…`/`wss://…`); `None`: the HTTP target's ws twin.
    pub ws_target: Option<String>,
    /// Offset of the last request from the start.
    pub length: Duration,
    /// Reader counts of one pass.
    pub read_stats: ReadStats,
}

impl ReplayPlan {
    /// Checks `spec` (files relative to `base_dir`) and reads the recording once through its
    /// transforms, so a malformed record is reported before anything is sent.
    pub fn new(spec: &ReplaySpec, base_dir: &Path) -> Result<ReplayPlan, ReplayPlanError> {
        let opt = |m: String| ReplayPlanError::Option(m);
        let format = match &spec.format {
            Some(f) => Some(f.parse().map_err(|e| opt(format!("replay.format: {e}")))?),
            None => None,
        };
        let defaults = ReadOptions::default();
        let read = ReadOptions {
            format,
            skip_malformed: spec.skip_malformed,
            reorder_window: spec.reorder_window.unwrap_or(defaults.reorder_window),
            untimed_rate: spec.untimed_rate.unwrap_or(defaults.untimed_rate),
        };
        if spec.files.is_empty() {
            return Err(opt("replay.files: name at least one recording file".into()));
        }
        let files: Vec<String> = spec
            .files
            .iter()
            .map(|f| {
                if Path::new(f).is_absolute() || base_dir == Path::new(".") {
                    f.clone()
                } else {
                    base_dir.join(f).display().to_string()
                }
            })
            .collect();
        let recording = Recording::open(&files, read)?;
        let regex = |field: &str, re: &str| {
            regex::Regex::new(re).map_err(|e| opt(format!("{field}: bad regex `{re}`: {e}")))
        };
        let filter = spec.filter.clone().unwrap_or_default();
        let rewrite = spec.rewrite.clone().unwrap_or_default();
        let window = spec.window.clone().unwrap_or_default();
        let transforms = Transforms {
            from: window.from.map(|d| d.get()),
            to: window.to.map(|d| d.get()),
            methods: filter
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            hosts: filter.hosts.clone(),
            path: filter
                .path
                .as_deref()
                .map(|r| regex("replay.filter.path", r))
                .transpose()?,
            exclude_path: filter
                .exclude_path
                .as_deref()
                .map(|r| regex("replay.filter.exclude_path", r))
                .transpose()?,
            rewrite_path: rewrite
                .path
                .iter()
                .map(|p| Ok((regex("replay.rewrite.path", &p.pattern)?, p.to.clone())))
                .collect::<Result<_, ReplayPlanError>>()?,
            host: rewrite.host.clone(),
            set_headers: rewrite.set_headers.clone().into_iter().collect(),
            remove_headers: rewrite.remove_headers.clone(),
            speed: spec.speed.map_or(1.0, |s| s.0),
            max_wait: spec.max_wait.map(|d| d.get()),
            loops: spec.loops.unwrap_or(1),
            rate_cap: spec.rate_cap,
        };
        transforms
            .validate()
            .map_err(|e| opt(format!("replay: {e}")))?;
        let pool = spec.pool.clone().unwrap_or_default();
        if pool.connections == 0 || pool.streams == 0 {
            return Err(opt(
                "replay.pool: `connections` and `streams` must be at least 1".into(),
            ));
        }
        // One pass: counts, length, and every read error before the run.
        let ws_target = spec
            .ws_target
            .as_deref()
            .map(|u| ws::target_from(u).map_err(|e| opt(format!("replay.ws_target: {e}"))))
            .transpose()?;
        let mut paced = Paced::new(&recording, transforms.clone())?;
        let (mut requests, mut sessions, mut length) = (0u64, 0u64, Duration::ZERO);
        let (mut ws_sends, mut ws_receives) = (0u64, 0u64);
        for s in paced.by_ref() {
            let s = s?;
            match &s.item {
                Item::Request(_) => {
                    requests += 1;
                    length = length.max(s.offset);
                }
                Item::Session(d) => {
                    sessions += 1;
                    let sends = d
                        .messages
                        .iter()
                        .filter(|m| m.direction == ::replay::WsDirection::Send)
                        .count() as u64;
                    ws_sends += sends;
                    ws_receives += d.messages.len() as u64 - sends;
                    length = length.max(s.offset + ws::span(d, transforms.speed) + ws::LINGER);
                }
            }
        }
        Ok(ReplayPlan {
            read_stats: paced.stats().clone(),
            recording,
            transforms,
            pool,
            timeout: spec.timeout.map_or(Duration::from_secs(30), |d| d.get()),
            compare_status: spec.compare_status,
            planned_requests: requests,
            planned_sessions: sessions,
            planned_ws_sends: ws_sends,
            recorded_ws_receives: ws_receives,
            ws_target,
            length,
        })
    }

    /// The replay's part of `loadgen check`.
    pub fn describe(&self) -> String {
        let t = &self.transforms;
        let files: Vec<String> = self
            .recording
            .files()
            .iter()
            .map(|(p, f)| format!("{} ({})", p.display(), f.name()))
            .collect();
        let mut out = format!(
            "\nreplay: {} requests over {} from {}\n  speed {}x{}{}{}, {} connections{}\n",
            self.planned_requests,
            common::duration::format(Duration::from_millis(self.length.as_millis() as u64)),
            files.join(", "),
            t.speed,
            t.max_wait.map_or(String::new(), |m| format!(
                ", max wait {}",
                common::duration::format(m)
            )),
            if t.loops > 1 {
                format!(", {} loops", t.loops)
            } else {
                String::new()
            },
            t.rate_cap
                .map_or(String::new(), |r| format!(", at most {r}/s")),
            self.pool.connections,
            if self.pool.http2 {
                " (HTTP/2)"
            } else {
                " (HTTP/1.1)"
            },
        );
        let s = &self.read_stats;
        if s.out_of_order > 0 || s.malformed > 0 {
            out += &format!(
                "  {} out-of-order records, {} malformed skipped\n",
                s.out_of_order, s.malformed
            );
        }
        if self.planned_sessions > 0 {
            out += &format!(
                "  {} WebSocket device sessions ({} messages to send, {} recorded from the server) to {}\n",
                self.planned_sessions,
                self.planned_ws_sends,
                self.recorded_ws_receives,
                self.ws_target.as_deref().unwrap_or("the target's ws:// twin"),
            );
        }
        out
    }

    /// What the run record's `meta.replay` holds.
    pub fn meta(&self) -> serde_json::Value {
        let s = &self.read_stats;
        serde_json::json!({
            "files": self.recording.files().iter().map(|(p, f)| serde_json::json!({"path": p.display().to_string(), "format": f.name()})).collect::<Vec<_>>(),
            "planned_requests": self.planned_requests,
            "planned_length_s": self.length.as_secs_f64(),
            "planned_rate": if self.length.is_zero() { 0.0 } else { self.planned_requests as f64 / self.length.as_secs_f64() },
            "speed": self.transforms.speed,
            "loops": self.transforms.loops,
            "ws_sessions": self.planned_sessions,
            "ws_planned_sends": self.planned_ws_sends,
            "ws_recorded_receives": self.recorded_ws_receives,
            "ws_target": self.ws_target,
            "out_of_order": s.out_of_order,
            "late": s.late,
            "malformed_skipped": s.malformed,
            "recorded_responses": s.responses_matched,
        })
    }
}

/// The metric keys of one method.
struct MethodKeys {
    duration: MetricKey,
    reqs: MetricKey,
    failed: MetricKey,
    errors: MetricKey,
}

struct Keys {
    methods: Vec<(&'static str, MethodKeys)>,
    lag: MetricKey,
    mismatch: MetricKey,
    dropped: MetricKey,
}

impl Keys {
    fn new() -> Keys {
        let tagged = |n: &str| MetricKey::new(n).with_tag("journey", JOURNEY);
        let methods = [
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER",
        ]
        .into_iter()
        .map(|m| {
            let k = |n: &str| tagged(n).with_tag("step", m);
            (
                m,
                MethodKeys {
                    duration: k(names::HTTP_REQ_DURATION),
                    reqs: k(names::HTTP_REQS),
                    failed: k(names::HTTP_REQ_FAILED),
                    errors: k(names::HTTP_ERRORS),
                },
            )
        })
        .collect();
        Keys {
            methods,
            lag: tagged(metric::SEND_LAG),
            mismatch: tagged(metric::STATUS_MISMATCH),
            dropped: tagged(names::DROPPED_ITERATIONS),
        }
    }

    fn method_index(&self, method: &str) -> usize {
        self.methods
            .iter()
            .position(|(m, _)| *m == method)
            .unwrap_or(self.methods.len() - 1)
    }
}

/// What a fired request carries back.
struct Ctx {
    method: usize,
    expect: Option<u16>,
}

/// Headers the driver sets itself (or that describe the recorded connection, not the request).
const HOP_BY_HOP: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

/// Plays `plan` against `base_url` until the stream ends or `stop` is pulled.
pub async fn run(
    plan: Arc<ReplayPlan>,
    base_url: String,
    tls: Tls,
    recorders: Arc<Recorders>,
    stop: Stop,
) -> OpenOutcome {
    let keys = Arc::new(Keys::new());
    let (tx, rx) = flume::bounded::<Fire<Ctx>>(plan.pool.queue.max(1));
    let (session_tx, session_rx) = tokio::sync::mpsc::unbounded_channel();
    let sessions = tokio::spawn(play_sessions(
        Arc::new(ws::Player {
            target: plan
                .ws_target
                .clone()
                .or_else(|| ws::target_from(&base_url).ok())
                .unwrap_or_default(),
            tls: tokio_rustls::TlsConnector::from(tls.http1_config()),
            speed: plan.transforms.speed,
            connect_timeout: plan.timeout,
            keys: ws::Keys::new(),
            recorder: recorders.handle(),
            stop: stop.clone(),
        }),
        session_rx,
    ));
    let pool = PoolConfig {
        connections: plan.pool.connections,
        http2: plan.pool.http2,
        streams: plan.pool.streams,
        queue: plan.pool.queue,
    };
    let pacer = {
        let (plan, keys, recorders, stop) =
            (plan.clone(), keys.clone(), recorders.clone(), stop.clone());
        std::thread::Builder::new()
            .name("replay-pacer".into())
            .spawn(move || {
                pace(
                    &plan,
                    &base_url,
                    &keys,
                    (&tx, &session_tx),
                    &recorders,
                    &stop,
                )
            })
    };
    let pacer = match pacer {
        Ok(p) => p,
        Err(e) => {
            stop.stop(&format!("cannot start the replay pacer: {e}"));
            return OpenOutcome::default();
        }
    };
    let record_keys = keys.clone();
    open::run_prebuilt(
        rx,
        pool,
        tls,
        plan.timeout,
        recorders,
        stop,
        move |fired, rec| record(&record_keys, fired, rec),
    )
    .await;
    let outcome = tokio::task::spawn_blocking(move || pacer.join().unwrap_or_default())
        .await
        .unwrap_or_default();
    let _ = sessions.await;
    outcome
}

/// Starts each session handed over by the pacer; returns when the pacer is done and every
/// session has ended.
async fn play_sessions(
    player: Arc<ws::Player>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(::replay::DeviceSession, Instant)>,
) {
    let mut running = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            s = rx.recv() => match s {
                Some((session, due)) => {
                    running.spawn(ws::play(player.clone(), session, due));
                }
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

/// The pacer: each request onto the queue at its instant; a full queue drops it.
fn pace(
    plan: &ReplayPlan,
    base_url: &str,
    keys: &Keys,
    (tx, session_tx): (
        &flume::Sender<Fire<Ctx>>,
        &tokio::sync::mpsc::UnboundedSender<(::replay::DeviceSession, Instant)>,
    ),
    recorders: &Recorders,
    stop: &Stop,
) -> OpenOutcome {
    let recorder = recorders.handle();
    let mut outcome = OpenOutcome::default();
    let paced = match Paced::new(&plan.recording, plan.transforms.clone()) {
        Ok(p) => p,
        Err(e) => {
            stop.stop(&format!("recording: {e}"));
            return outcome;
        }
    };
    let start = Instant::now();
    let base = base_url.trim_end_matches('/');
    for s in paced {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                stop.stop(&format!("recording: {e}"));
                break;
            }
        };
        let due = start + s.offset;
        if !sleep_until(due, stop) {
            break;
        }
        let r = match s.item {
            Item::Request(r) => r,
            Item::Session(session) => {
                // The session task outlives a closed channel only if the run is over.
                let _ = session_tx.send((session, due));
                continue;
            }
        };
        let method = keys.method_index(&r.method);
        let expect = r
            .recorded
            .filter(|rec| rec.comparable && plan.compare_status)
            .map(|rec| rec.status);
        let Ok(http_method) = http::Method::from_bytes(r.method.as_bytes()) else {
            let k = &keys.methods[method].1;
            common::sync::lock(&recorder).add(
                &k.errors.clone().with_tag("cause", "bad_method"),
                due,
                1,
            );
            continue;
        };
        // In place: no new vector per request.
        let mut headers = r.headers;
        headers.retain(|(n, _)| !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(n)));
        if let Some(h) = &plan.transforms.host {
            headers.push(("host".into(), h.clone()));
        }
        let mut url = String::with_capacity(base.len() + 1 + r.path.len());
        url.push_str(base);
        if !r.path.starts_with('/') {
            url.push('/');
        }
        url.push_str(&r.path);
        let fire = Fire {
            intended: due,
            request: Prepared {
                method: http_method,
                url,
                headers,
                body: (!r.body.is_empty()).then_some(r.body),
            },
            context: Ctx { method, expect },
        };
        outcome.scheduled += 1;
        let dropped = match tx.try_send(fire) {
            Ok(()) => false,
            Err(flume::TrySendError::Full(_)) => true,
            Err(flume::TrySendError::Disconnected(_)) => break,
        };
        outcome.dropped += u64::from(dropped);
        common::sync::lock(&recorder).count(&keys.dropped, due, dropped);
    }
    outcome
}

/// Sleeps until `due` in short steps so a stop is seen; false when stopped.
fn sleep_until(due: Instant, stop: &Stop) -> bool {
    loop {
        if stop.is_stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(50)));
    }
}

fn record(keys: &Keys, f: Fired<Ctx>, rec: &std::sync::Mutex<Recorder>) {
    let k = &keys.methods[f.context.method].1;
    let latency = f.done.saturating_duration_since(f.intended);
    let lag = f.sent.saturating_duration_since(f.intended);
    let (cause, mismatch): (Option<String>, Option<bool>) = match &f.result {
        Ok(resp) => match f.context.expect {
            Some(s) => (
                (resp.status != s).then(|| format!("status {}", resp.status)),
                Some(resp.status != s),
            ),
            None => (
                (!(200..400).contains(&resp.status)).then(|| format!("status {}", resp.status)),
                None,
            ),
        },
        Err(e) => (Some(transport_cause(e).to_string()), None),
    };
    let mut r = common::sync::lock(rec);
    r.record(&k.duration, f.done, latency.as_micros() as u64);
    r.add(&k.reqs, f.done, 1);
    r.count(&k.failed, f.done, cause.is_some());
    r.record(&keys.lag, f.sent, lag.as_micros() as u64);
    if let Some(m) = mismatch {
        r.count(&keys.mismatch, f.done, m);
    }
    if let Some(c) = cause {
        r.add(&k.errors.clone().with_tag("cause", c), f.done, 1);
    }
}

fn transport_cause(e: &TransportError) -> &'static str {
    match e {
        TransportError::Connect(_) => "connect",
        TransportError::Timeout => "timeout",
        TransportError::Io(_) => "io",
        TransportError::BadUrl(_) => "bad_url",
    }
}
