//! The relay's inbound side: an APNs-compatible HTTP/2 server (`POST /3/device/{token}` with
//! APNs headers) over TLS, or h2c on loopback. It authenticates the sender (client
//! certificate or bearer token), checks the request the way APNs does and answers malformed
//! ones with APNs-style errors (`{"reason": …}`) without touching APNs, then hands the push to
//! [`Relay::push`]. Each answer carries `apns-id`, `apns-relay-outcome`
//! (accepted / rejected / unknown), `apns-relay-attempts` and, when it came from the dedupe
//! store or another request's attempt, `apns-relay-dedupe`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::{Outcome, Push, Relay, Reply};
use crate::config::{parse_fingerprint, Credentials, SenderConfig};
use crate::dedupe::Key;

/// Headers forwarded to APNs.
const FORWARDED: [&str; 6] = [
    "apns-push-type",
    "apns-id",
    "apns-expiration",
    "apns-priority",
    "apns-topic",
    "apns-collapse-id",
];
const PUSH_TYPES: [&str; 10] = [
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
];
/// Sender header: an `unknown` outcome may be resent.
pub const RESEND_UNKNOWN: &str = "apns-relay-resend-unknown";
/// Sender header: the relay bearer token when `authorization` carries the sender's own
/// provider token (credential pass-through).
pub const RELAY_AUTHORIZATION: &str = "apns-relay-authorization";

/// The senders, indexed by their credentials.
#[derive(Debug, Default)]
pub struct Senders {
    list: Vec<SenderConfig>,
    by_token: HashMap<String, usize>,
    by_cert: HashMap<[u8; 32], usize>,
}

impl Senders {
    /// Indexes the configured senders.
    pub fn new(list: &[SenderConfig]) -> Senders {
        let mut s = Senders {
            list: list.to_vec(),
            ..Senders::default()
        };
        for (i, sender) in list.iter().enumerate() {
            if let Some(t) = &sender.bearer_token {
                s.by_token.insert(t.clone(), i);
            }
            if let Some(fp) = sender
                .client_cert_sha256
                .as_deref()
                .and_then(parse_fingerprint)
            {
                s.by_cert.insert(fp, i);
            }
        }
        s
    }

    fn by_bearer(&self, value: Option<&HeaderValue>) -> Option<&SenderConfig> {
        let v = value?.to_str().ok()?;
        let token = v
            .strip_prefix("bearer ")
            .or_else(|| v.strip_prefix("Bearer "))?
            .trim();
        self.by_token.get(token).map(|&i| &self.list[i])
    }
}

/// The inbound server's shared state.
pub struct Inbound {
    relay: Arc<Relay>,
    senders: Arc<Senders>,
    max_payload: usize,
}

struct Rejection(StatusCode, &'static str);

impl Inbound {
    /// Inbound handling for `relay`.
    pub fn new(relay: Arc<Relay>, senders: Arc<Senders>, max_payload: usize) -> Inbound {
        Inbound {
            relay,
            senders,
            max_payload,
        }
    }

    /// Serves connections from `listener` until `shutdown` turns true, then stops accepting,
    /// sends GOAWAY on every connection and waits up to `drain` for requests in flight.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        mut shutdown: watch::Receiver<bool>,
        drain: Duration,
    ) {
        let graceful = GracefulShutdown::new();
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue }
                },
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let _ = tcp.set_nodelay(true);
            let this = self.clone();
            let tls = tls.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let builder = {
                    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    b.max_concurrent_streams(1000);
                    b
                };
                match tls {
                    Some(acceptor) => {
                        let stream = match tokio::time::timeout(
                            Duration::from_secs(10),
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(s)) => s,
                            _ => {
                                tracing::debug!(%peer, "TLS handshake failed");
                                return;
                            }
                        };
                        let cert_sender = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(crate::tls::fingerprint)
                            .and_then(|fp| this.senders.by_cert.get(&fp).copied());
                        let svc = service_fn(move |req| {
                            let this = this.clone();
                            async move { Ok::<_, Infallible>(this.handle(req, cert_sender).await) }
                        });
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        let _ = watcher.watch(conn).await;
                    }
                    None => {
                        let svc = service_fn(move |req| {
                            let this = this.clone();
                            async move { Ok::<_, Infallible>(this.handle(req, None).await) }
                        });
                        let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                        let _ = watcher.watch(conn).await;
                    }
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout: closing connections with requests still open");
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        cert_sender: Option<usize>,
    ) -> Response<Full<Bytes>> {
        let apns_id = apns_id_of(req.headers());
        match Self::parse(&self.senders, self.max_payload, req, cert_sender, &apns_id).await {
            Ok(push) => {
                let reply = self.relay.push(push).await;
                respond(&reply, &apns_id)
            }
            Err(Rejection(status, reason)) => {
                let reply = Reply {
                    status: status.as_u16(),
                    body: format!(r#"{{"reason":"{reason}"}}"#),
                    outcome: Outcome::Rejected,
                    attempts: 0,
                    dedupe: None,
                };
                respond(&reply, &apns_id)
            }
        }
    }

    async fn parse<B>(
        senders: &Senders,
        max_payload: usize,
        req: Request<B>,
        cert_sender: Option<usize>,
        apns_id: &str,
    ) -> Result<Push, Rejection>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        use StatusCode as S;
        if req.method() != Method::POST {
            return Err(Rejection(S::METHOD_NOT_ALLOWED, "MethodNotAllowed"));
        }
        let path = req.uri().path();
        let Some(token) = path.strip_prefix("/3/device/") else {
            return Err(Rejection(S::NOT_FOUND, "BadPath"));
        };
        if token.is_empty() || token.len() > 200 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection(S::BAD_REQUEST, "BadDeviceToken"));
        }
        let token = token.to_string();
        let h = req.headers();
        let sender = cert_sender
            .map(|i| &senders.list[i])
            .or_else(|| senders.by_bearer(h.get(RELAY_AUTHORIZATION)))
            .or_else(|| senders.by_bearer(h.get(http::header::AUTHORIZATION)));
        let Some(sender) = sender else {
            let any =
                h.contains_key(http::header::AUTHORIZATION) || h.contains_key(RELAY_AUTHORIZATION);
            return Err(Rejection(
                S::FORBIDDEN,
                if any {
                    "InvalidProviderToken"
                } else {
                    "MissingProviderToken"
                },
            ));
        };
        let passthrough = match sender.credentials {
            Credentials::Relay => None,
            Credentials::Passthrough => {
                let own = h.get(http::header::AUTHORIZATION).filter(|_| {
                    // The sender's relay token is never forwarded as its provider token.
                    senders
                        .by_bearer(h.get(http::header::AUTHORIZATION))
                        .is_none()
                });
                Some(
                    own.cloned()
                        .ok_or(Rejection(S::FORBIDDEN, "MissingProviderToken"))?,
                )
            }
        };
        let text = |name: &str| h.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
        if h.get("apns-id").is_some_and(|v| {
            v.to_str()
                .ok()
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .is_none()
        }) {
            return Err(Rejection(S::BAD_REQUEST, "BadMessageId"));
        }
        if text("apns-priority").is_some_and(|p| !matches!(p, "1" | "5" | "10")) {
            return Err(Rejection(S::BAD_REQUEST, "BadPriority"));
        }
        if text("apns-expiration").is_some_and(|e| e.parse::<u64>().is_err()) {
            return Err(Rejection(S::BAD_REQUEST, "BadExpirationDate"));
        }
        if text("apns-push-type").is_some_and(|t| !PUSH_TYPES.contains(&t)) {
            return Err(Rejection(S::BAD_REQUEST, "InvalidPushType"));
        }
        let collapse = text("apns-collapse-id");
        if collapse.is_some_and(|c| c.len() > 64 || c.contains('\u{0}')) {
            return Err(Rejection(S::BAD_REQUEST, "BadCollapseId"));
        }
        let topic = match text("apns-topic") {
            Some(t) if t.is_empty() || t.contains('\u{0}') => {
                return Err(Rejection(S::BAD_REQUEST, "BadTopic"))
            }
            Some(t) => t.to_string(),
            None if passthrough.is_some() || sender.credentials == Credentials::Relay => {
                return Err(Rejection(S::BAD_REQUEST, "MissingTopic"))
            }
            None => String::new(),
        };
        let resend_unknown =
            collapse.is_some() || text(RESEND_UNKNOWN).is_some_and(|v| v == "1" || v == "true");
        let mut headers = HeaderMap::new();
        for name in FORWARDED {
            if let Some(v) = h.get(name) {
                headers.insert(HeaderName::from_static(name), v.clone());
            }
        }
        headers.insert(
            HeaderName::from_static("apns-id"),
            HeaderValue::from_str(apns_id)
                .map_err(|_| Rejection(S::BAD_REQUEST, "BadMessageId"))?,
        );
        let body = Limited::new(req.into_body(), max_payload)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    Rejection(S::PAYLOAD_TOO_LARGE, "PayloadTooLarge")
                } else {
                    Rejection(S::BAD_REQUEST, "BadPayload")
                }
            })?
            .to_bytes();
        if body.is_empty() {
            return Err(Rejection(S::BAD_REQUEST, "PayloadEmpty"));
        }
        Ok(Push {
            key: Key::new(&topic, &token, apns_id),
            headers,
            passthrough,
            body,
            resend_unknown,
        })
    }
}

/// Checks one inbound request exactly as the relay does before anything reaches APNs (method,
/// path, device token, sender credentials, APNs headers, payload size): `Ok` is the push the
/// relay would hand to [`Relay::push`], `Err` the status and APNs reason it would answer.
/// Reads the body, touches nothing else; the relay's fuzz target drives it.
pub async fn check_request<B>(
    senders: &Senders,
    max_payload: usize,
    req: Request<B>,
) -> Result<Push, (StatusCode, &'static str)>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let apns_id = apns_id_of(req.headers());
    Inbound::parse(senders, max_payload, req, None, &apns_id)
        .await
        .map_err(|Rejection(status, reason)| (status, reason))
}

/// The request's `apns-id` if it is a UUID, else a new one (APNs generates one when absent).
fn apns_id_of(headers: &HeaderMap) -> String {
    headers
        .get("apns-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .hyphenated()
        .to_string()
}

fn respond(reply: &Reply, apns_id: &str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(reply.body.clone())));
    *res.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(apns_id) {
        h.insert("apns-id", v);
    }
    if !reply.body.is_empty() {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    h.insert(
        "apns-relay-outcome",
        HeaderValue::from_static(reply.outcome.as_str()),
    );
    h.insert("apns-relay-attempts", HeaderValue::from(reply.attempts));
    if let Some(state) = reply.dedupe {
        h.insert("apns-relay-dedupe", HeaderValue::from_static(state));
    }
    res
}
