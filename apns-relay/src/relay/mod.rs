//! The terminating relay: APNs-compatible inbound HTTP/2 ([`inbound`]), the outbound pool
//! ([`pool`]) and, between them, [`Relay::push`], which makes sender retries idempotent.
//!
//! A push's key is (topic, device token, apns-id). The first request for a key claims it in
//! the dedupe store (durably) before anything is written to APNs; a request for a key that
//! this process has in flight waits for that attempt's outcome; a request for a finished key
//! gets the stored outcome; a key in flight at another instance is waited for until its lease
//! ends. Towards APNs the relay retries only where APNs cannot have the request (see
//! [`pool::SendError`]) or where APNs says to (429, 500, 503; not a 429
//! `TooManyProviderTokenUpdates`, which the same token cannot change), with backoff and a
//! budget; it refreshes its provider token once on `ExpiredProviderToken`. A request written and left
//! unanswered ends `unknown` and is resent only if the sender allows it
//! (`apns-relay-resend-unknown: 1`) or the push has an `apns-collapse-id` (a second copy then
//! replaces the first on the device).

pub mod auth;
pub mod inbound;
pub mod pool;
pub mod retry;
pub mod sniff;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use tokio::sync::watch;

use crate::dedupe::{now_ms, Claim, Key, Record, Store};
use crate::jwt::TokenCache;
use crate::metrics::{Leg, Metrics};
use pool::{Pool, SendError};
use retry::RetryPolicy;

/// What the sender learns about its push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// APNs accepted it (200).
    Accepted,
    /// APNs refused it, or the relay could not deliver it (then nothing reached APNs and a
    /// later retry is safe: status 503 or APNs's 429/500/503).
    Rejected,
    /// Written to APNs, no answer: it may or may not be delivered.
    Unknown,
}

impl Outcome {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Rejected => "rejected",
            Outcome::Unknown => "unknown",
        }
    }
}

/// The relay's answer to one sender request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status for the sender (APNs's, or the relay's own).
    pub status: u16,
    /// JSON body (`{"reason": …}`) or empty.
    pub body: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Attempts made towards APNs.
    pub attempts: u32,
    /// `Some(state)` when answered from the dedupe store or another request's attempt.
    pub dedupe: Option<&'static str>,
}

impl Reply {
    fn from_record(record: &Record, dedupe: Option<&'static str>) -> Option<Reply> {
        match record {
            Record::Done {
                status,
                body,
                attempts,
            } => Some(Reply {
                status: *status,
                body: body.clone(),
                outcome: if *status == 200 {
                    Outcome::Accepted
                } else {
                    Outcome::Rejected
                },
                attempts: *attempts,
                dedupe,
            }),
            Record::Unknown { cause, attempts } => Some(unknown_reply(cause, *attempts, dedupe)),
            Record::InFlight { .. } => None,
        }
    }

    /// The APNs reason of a rejection (empty for an answer without a body).
    pub fn reason(&self) -> String {
        if self.body.is_empty() {
            return String::new();
        }
        reason_of(self.body.as_bytes())
    }
}

/// The answer to a push whose outcome is unknown, and to one APNs could not take now: 503
/// `ServiceUnavailable`, which stock clients read as "try again later" and which none of them
/// answers by closing its connection (500 `InternalServerError` makes node-apn 8 destroy its
/// whole HTTP/2 session once its retries are spent, failing every other push in flight on it).
/// The evidence, client by client, is in the README ("What senders see").
const RETRY_LATER: (u16, &str) = (503, r#"{"reason":"ServiceUnavailable"}"#);

fn unknown_reply(cause: &str, attempts: u32, dedupe: Option<&'static str>) -> Reply {
    tracing::debug!(cause, "push outcome unknown");
    Reply {
        status: RETRY_LATER.0,
        body: RETRY_LATER.1.into(),
        outcome: Outcome::Unknown,
        attempts,
        dedupe,
    }
}

fn not_delivered(status: u16, body: String, attempts: u32) -> Reply {
    Reply {
        status,
        body,
        outcome: Outcome::Rejected,
        attempts,
        dedupe: None,
    }
}

/// The `reason` of an APNs error body.
pub fn reason_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
        .unwrap_or_default()
}

/// One push as the relay forwards it.
#[derive(Debug, Clone)]
pub struct Push {
    /// Its identity.
    pub key: Key,
    /// The `apns-*` headers to forward (apns-id included).
    pub headers: HeaderMap,
    /// The sender's own provider token (`authorization`), when its credentials pass through.
    pub passthrough: Option<HeaderValue>,
    /// The payload.
    pub body: Bytes,
    /// Whether an `unknown` outcome may be resent (sender header or collapse id).
    pub resend_unknown: bool,
    /// Which outbound connection to prefer ([`Pool::send`]): pushes that arrive together on
    /// one sender connection share one, so they leave in one write and their answers come
    /// back in one read.
    pub lane: usize,
}

/// The relay core; see the module doc.
pub struct Relay {
    pool: Arc<Pool>,
    store: Arc<dyn Store>,
    tokens: Option<TokenCache>,
    retry: RetryPolicy,
    lease: Duration,
    endpoint: String,
    local: Mutex<HashMap<Key, watch::Receiver<Option<Reply>>>>,
    in_flight: AtomicUsize,
    shared_generation: AtomicU64,
    metrics: Arc<Metrics>,
}

/// The owner of a key in this process: counts the push in flight and, when the owner ends
/// however it ends (answered, or dropped with its connection's task), removes the key from
/// the local in-flight map so waiters stop waiting for it.
struct Owner<'a> {
    relay: &'a Relay,
    key: Key,
}

impl<'a> Owner<'a> {
    fn new(relay: &'a Relay, key: Key) -> Owner<'a> {
        relay.in_flight.fetch_add(1, Ordering::AcqRel);
        relay.metrics.pushes_in_flight.inc();
        Owner { relay, key }
    }
}

impl Drop for Owner<'_> {
    fn drop(&mut self) {
        common::sync::lock(&self.relay.local).remove(&self.key);
        self.relay.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.relay.metrics.pushes_in_flight.dec();
    }
}

impl Relay {
    /// A relay over a pool and a store; `tokens` signs for senders using the relay's key.
    pub fn new(
        pool: Arc<Pool>,
        store: Arc<dyn Store>,
        tokens: Option<TokenCache>,
        retry: RetryPolicy,
        lease: Duration,
        endpoint: &str,
        metrics: Arc<Metrics>,
    ) -> Relay {
        Relay {
            pool,
            store,
            tokens,
            retry,
            lease,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            local: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            shared_generation: AtomicU64::new(0),
            metrics,
        }
    }

    /// Takes over the provider token an earlier process (or another instance) stored, so a
    /// restart does not mint a new one (Apple refuses a team's tokens that change more often
    /// than every 20 minutes).
    pub async fn adopt_shared_token(&self) {
        let Some(tokens) = &self.tokens else { return };
        if let Ok(Some(shared)) = self.store.get_meta(&tokens.share_name()).await {
            if tokens.adopt(&shared) {
                self.shared_generation.store(1, Ordering::Release);
                tracing::info!("reusing the stored provider token");
            }
        }
    }

    /// Stores the current token when it is newer than the one last stored.
    fn share_token(self: &Arc<Self>, generation: u64) {
        if self
            .shared_generation
            .fetch_max(generation, Ordering::AcqRel)
            >= generation
        {
            return;
        }
        let relay = self.clone();
        tokio::spawn(async move {
            let Some(tokens) = &relay.tokens else { return };
            if let Some((_, shared)) = tokens.snapshot() {
                let ttl = Duration::from_secs(3600);
                if let Err(e) = relay
                    .store
                    .put_meta(&tokens.share_name(), &shared, ttl)
                    .await
                {
                    tracing::warn!(error = %e, "could not store the provider token");
                }
            }
        });
    }

    /// A lane for a new sender connection (see [`Push::lane`]).
    pub fn lane(&self) -> usize {
        self.pool.lane()
    }

    /// The metrics it counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The outbound pool (for health checks).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The dedupe store (for health checks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Pushes being handled now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Handles one sender request for a push. It runs in the caller's task (the sender
    /// connection's), which finishes it even when the sender has gone away, so a key is not
    /// left half-done while the process lives.
    pub async fn push(self: &Arc<Self>, push: Push) -> Reply {
        let started = Instant::now();
        loop {
            let waiter = {
                let mut local = common::sync::lock(&self.local);
                match local.get(&push.key) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        local.insert(push.key.clone(), rx);
                        Ok(tx)
                    }
                }
            };
            match waiter {
                Ok(tx) => {
                    let _owner = Owner::new(self, push.key.clone());
                    let reply = self.own(push).await;
                    let _ = tx.send(Some(reply.clone()));
                    return self.answered(reply, started);
                }
                Err(mut rx) => {
                    self.metrics.dedupe_hit("in_flight_local");
                    let got = rx
                        .wait_for(|r| r.is_some())
                        .await
                        .ok()
                        .and_then(|r| r.clone());
                    if let Some(mut reply) = got {
                        reply.dedupe = Some("in_flight");
                        return self.answered(reply, started);
                    }
                    // The owner ended without an answer: try again as a new request.
                }
            }
        }
    }

    fn answered(&self, reply: Reply, started: Instant) -> Reply {
        // A push is counted once, by the request that decided its outcome; a replay of it is
        // a dedupe hit (counted where it is found).
        if reply.dedupe.is_none() {
            self.metrics.push(reply.outcome.as_str(), &reply.reason());
        }
        self.metrics.latency(Leg::Inbound, started.elapsed());
        reply
    }

    /// The owner's path: claim, then deliver or answer from the store.
    async fn own(self: &Arc<Self>, push: Push) -> Reply {
        for _ in 0..1000 {
            let t = Instant::now();
            let claim = self.store.claim(&push.key, self.lease).await;
            self.metrics.latency(Leg::Store, t.elapsed());
            let record = match claim {
                Err(e) => {
                    tracing::error!(error = %e, "dedupe store unavailable; refusing the push");
                    return not_delivered(RETRY_LATER.0, RETRY_LATER.1.into(), 0);
                }
                Ok(Claim::Claimed) => return self.deliver(&push).await,
                Ok(Claim::Existing(record)) => record,
            };
            match &record {
                Record::Unknown { .. } if push.resend_unknown => {
                    let claim = Record::InFlight {
                        lease_until_ms: now_ms() + self.lease.as_millis() as u64,
                    };
                    if matches!(
                        self.store.replace(&push.key, &record, &claim).await,
                        Ok(true)
                    ) {
                        self.metrics.retry("unknown_resend");
                        return self.deliver(&push).await;
                    }
                }
                Record::InFlight { lease_until_ms } => {
                    // Another instance (or a relay process since gone) holds the key.
                    self.metrics.dedupe_hit("in_flight_remote");
                    if now_ms() >= *lease_until_ms {
                        let unknown = Record::Unknown {
                            cause: "in-flight lease expired".into(),
                            attempts: 1,
                        };
                        let _ = self.store.replace(&push.key, &record, &unknown).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                done => {
                    let state = if matches!(done, Record::Done { .. }) {
                        "done"
                    } else {
                        "unknown"
                    };
                    self.metrics.dedupe_hit(state);
                    if let Some(reply) = Reply::from_record(done, Some(state)) {
                        return reply;
                    }
                }
            }
        }
        unknown_reply("the key never settled", 0, Some("in_flight"))
    }

    fn request(&self, push: &Push) -> (Request<()>, Option<u64>) {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/3/device/{}", self.endpoint, push.key.device()))
            .body(())
            .unwrap_or_default();
        *req.headers_mut() = push.headers.clone();
        let mut generation = None;
        let auth = match (&push.passthrough, &self.tokens) {
            (Some(theirs), _) => Some(theirs.clone()),
            (None, Some(tokens)) => {
                let t = tokens.get();
                generation = Some(t.generation);
                Some(t.header)
            }
            (None, None) => None, // certificate auth
        };
        if let Some(auth) = auth {
            req.headers_mut().insert(http::header::AUTHORIZATION, auth);
        }
        (req, generation)
    }

    async fn deliver(self: &Arc<Self>, push: &Push) -> Reply {
        self.retry.on_first_attempt();
        let max = self.retry.max_attempts();
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let (req, generation) = self.request(push);
            if let Some(g) = generation {
                self.share_token(g);
            }
            // A retry goes out on the next connection: the last one may be the trouble.
            let lane = push.lane.wrapping_add(attempt as usize - 1);
            let retry_cause = match self.pool.send(req, push.body.clone(), lane).await {
                Ok(answer) => {
                    let status = answer.status.as_u16();
                    let body = String::from_utf8_lossy(&answer.body).into_owned();
                    if status == 403
                        && !refreshed
                        && reason_of(&answer.body) == "ExpiredProviderToken"
                    {
                        if let (Some(tokens), Some(g)) = (&self.tokens, generation) {
                            refreshed = true;
                            if tokens.expired(g) {
                                self.metrics.retry("expired_provider_token");
                                continue;
                            }
                        }
                    }
                    if matches!(status, 429 | 500 | 503) {
                        // A team's token changed within 20 minutes of the last change: the same
                        // token is refused again for the rest of that window, so a retry only
                        // spends the budget (another provider signs for this team).
                        let futile = status == 429
                            && reason_of(&answer.body) == "TooManyProviderTokenUpdates";
                        if !futile && attempt < max && self.retry.try_retry() {
                            self.pause(attempt, status_label(status)).await;
                            continue;
                        }
                        // APNs did not take it: forget the key so a later retry may send it.
                        self.release(&push.key).await;
                        if status == 500 {
                            // Never a 500 to a sender (see RETRY_LATER).
                            return not_delivered(RETRY_LATER.0, RETRY_LATER.1.into(), attempt);
                        }
                        return not_delivered(status, body, attempt);
                    }
                    let record = Record::Done {
                        status,
                        body,
                        attempts: attempt,
                    };
                    self.finish(&push.key, &record).await;
                    return Reply::from_record(&record, None)
                        .unwrap_or_else(|| unknown_reply("", attempt, None));
                }
                Err(SendError::NotSent { cause, detail }) => {
                    tracing::debug!(cause, detail, attempt, "APNs did not receive the push");
                    cause
                }
                Err(SendError::Unknown(detail)) => {
                    if push.resend_unknown && attempt < max && self.retry.try_retry() {
                        self.pause(attempt, "unknown_resend").await;
                        continue;
                    }
                    tracing::info!(detail, attempt, "push outcome unknown");
                    let record = Record::Unknown {
                        cause: detail,
                        attempts: attempt,
                    };
                    self.finish(&push.key, &record).await;
                    return Reply::from_record(&record, None)
                        .unwrap_or_else(|| unknown_reply("", attempt, None));
                }
            };
            if attempt < max && self.retry.try_retry() {
                self.pause(attempt, retry_cause).await;
                continue;
            }
            self.release(&push.key).await;
            return not_delivered(RETRY_LATER.0, RETRY_LATER.1.into(), attempt);
        }
    }

    async fn pause(&self, attempt: u32, cause: &'static str) {
        self.metrics.retry(cause);
        tokio::time::sleep(self.retry.backoff(attempt)).await;
    }

    async fn finish(&self, key: &Key, record: &Record) {
        if let Err(e) = self.store.finish(key, record).await {
            tracing::error!(error = %e, "could not store a push outcome");
        }
    }

    async fn release(&self, key: &Key) {
        if let Err(e) = self.store.release(key).await {
            tracing::error!(error = %e, "could not release a push key");
        }
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        429 => "status_429",
        500 => "status_500",
        _ => "status_503",
    }
}
