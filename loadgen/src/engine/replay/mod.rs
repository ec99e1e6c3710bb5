//! Replaying recorded traffic on the open-rate driver: the engine that plays a
//! [`ReplayPlan`] (checked beforehand in `plan::replay`).
//!
//! A pacer thread walks the transformed stream and puts each request on the driver's queue at
//! its scheduled instant (a thread, not a Tokio timer: the timer wheel has 1 ms ticks and the
//! send-time goal is under 1 ms). The driver's workers send it; latency counts from the
//! scheduled instant, and `schedule_lag` records how late each request left (`pacer_lag`, how
//! late the pacer released it). A replayed
//! status is compared with the recorded response when the recording has one. WebSocket
//! device sessions (HAR) are handed at their instant to [`ws`], which plays them on Tokio.

pub mod ws;

use std::sync::Arc;
use std::time::Instant;

use reports::{MetricId, MetricKey, Recorder, Recorders};
use traffic::{Item, Paced};

use crate::engine::http::Tls;
use crate::engine::open::{self, Fire, Fired, OpenOutcome, PoolConfig};
use crate::engine::pacer;
use crate::journey::{names, Prepared};
use crate::plan::replay::{target_from, ReplayPlan};
use crate::stop::{Stop, StopReason};

/// The `journey` tag of replayed requests.
pub const JOURNEY: &str = "replay";

/// Metric names replay adds to the common ones.
pub mod metric {
    /// Replayed status ≠ recorded status, over requests with a recorded response.
    pub const STATUS_MISMATCH: &str = "replay_status_mismatch";
    pub use super::ws::metric::*;
}

/// The metric keys of one method.
struct MethodKeys {
    duration: MetricId,
    reqs: MetricId,
    failed: MetricId,
    errors: MetricKey,
}

struct Keys {
    methods: Vec<(&'static str, MethodKeys)>,
    lag: MetricId,
    pacer_lag: MetricId,
    mismatch: MetricId,
    dropped: MetricId,
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
                    duration: MetricId::of(&k(names::HTTP_REQ_DURATION)),
                    reqs: MetricId::of(&k(names::HTTP_REQS)),
                    failed: MetricId::of(&k(names::HTTP_REQ_FAILED)),
                    errors: k(names::HTTP_ERRORS),
                },
            )
        })
        .collect();
        Keys {
            methods,
            lag: MetricId::of(&tagged(names::SCHEDULE_LAG)),
            pacer_lag: MetricId::of(&tagged(names::PACER_LAG)),
            mismatch: MetricId::of(&tagged(metric::STATUS_MISMATCH)),
            dropped: MetricId::of(&tagged(names::DROPPED_ITERATIONS)),
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
                .or_else(|| target_from(&base_url).ok())
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
    let pool = PoolConfig::of(&plan.pool);
    let pacer = {
        let (plan, keys, recorders, stop) =
            (plan.clone(), keys.clone(), recorders.clone(), stop.clone());
        pacer::spawn("replay-pacer", move || {
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
            stop.stop(StopReason::Failed(format!(
                "cannot start the replay pacer: {e}"
            )));
            return OpenOutcome::default();
        }
    };
    let record_keys = keys.clone();
    let left = open::run_prebuilt(
        rx,
        pool,
        tls,
        plan.timeout,
        recorders.clone(),
        stop,
        move |fired, rec| record(&record_keys, fired, rec),
    )
    .await;
    let mut outcome = tokio::task::spawn_blocking(move || pacer.join().unwrap_or_default())
        .await
        .unwrap_or_default();
    // Requests that were due but still waited for a connection when the run ended were never
    // sent: they count as dropped, at their instant.
    let recorder = recorders.handle();
    {
        let mut rec = common::sync::lock(&recorder);
        for fire in left {
            outcome.dropped += 1;
            rec.count(keys.dropped, fire.intended, true);
        }
    }
    let _ = sessions.await;
    outcome
}

/// Starts each session handed over by the pacer; returns when the pacer is done and every
/// session has ended.
async fn play_sessions(
    player: Arc<ws::Player>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(traffic::DeviceSession, Instant)>,
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
        &tokio::sync::mpsc::UnboundedSender<(traffic::DeviceSession, Instant)>,
    ),
    recorders: &Recorders,
    stop: &Stop,
) -> OpenOutcome {
    let recorder = recorders.handle();
    let mut outcome = OpenOutcome::default();
    let paced = match Paced::new(&plan.recording, plan.transforms.clone()) {
        Ok(p) => p,
        Err(e) => {
            stop.stop(StopReason::Failed(format!("recording: {e}")));
            return outcome;
        }
    };
    let start = Instant::now();
    let base = base_url.trim_end_matches('/');
    for s in paced {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                stop.stop(StopReason::Failed(format!("recording: {e}")));
                break;
            }
        };
        let due = start + s.offset;
        if !pacer::sleep_until(due, stop) {
            break;
        }
        let late = Instant::now().saturating_duration_since(due);
        common::sync::lock(&recorder).record(keys.pacer_lag, due, late.as_micros() as u64);
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
                k.errors.clone().with_tag("cause", "bad_method"),
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
        common::sync::lock(&recorder).count(keys.dropped, due, dropped);
    }
    outcome
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
        Err(e) => (Some(e.cause().to_string()), None),
    };
    let mut r = common::sync::lock(rec);
    r.record(k.duration, f.done, latency.as_micros() as u64);
    r.add(k.reqs, f.done, 1);
    r.count(k.failed, f.done, cause.is_some());
    r.record(keys.lag, f.sent, lag.as_micros() as u64);
    if let Some(m) = mismatch {
        r.count(keys.mismatch, f.done, m);
    }
    if let Some(c) = cause {
        r.add(k.errors.clone().with_tag("cause", c), f.done, 1);
    }
}
