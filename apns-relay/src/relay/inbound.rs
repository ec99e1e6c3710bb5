//! The relay's inbound side: an APNs-compatible HTTP/2 server (`POST /3/device/{token}` with
//! APNs headers) over TLS, or h2c on loopback. It authenticates the sender ([`auth`]: client
//! certificate, bearer token or the sender's own provider token), checks the request the way
//! APNs does and answers malformed ones with APNs-style errors (`{"reason": …}`) without
//! touching APNs, then hands the push to [`Relay::push`]. Each answer carries `apns-id` (the
//! sender's, byte for byte), `apns-relay-outcome` (accepted / rejected / unknown),
//! `apns-relay-attempts` and, when it came from the dedupe store or another request's attempt,
//! `apns-relay-dedupe`.
//!
//! As APNs does, the relay reads a request's whole body before it answers, also when it
//! refuses the request: a server that answers and ends the stream while the client is still
//! sending has to reset the stream, and stock clients (curl, node's http2) then report the
//! stream as failed instead of reading the answer. A body past `max_payload` is read and
//! dropped up to [`MAX_DRAIN`] bytes, then answered 413 with its JSON body; only a body past
//! that is answered before its end. Every error carries its JSON body in one DATA frame
//! (aioapns and Pushy read the reason from exactly that).
//!
//! [`auth`]: super::auth

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::auth::Senders;
use super::pool::LANE_RUN;
use super::{Outcome, Push, Relay, Reply};
use crate::config::Credentials;
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
use common::apns::PUSH_TYPES;
/// Sender header: an `unknown` outcome may be resent.
pub const RESEND_UNKNOWN: &str = "apns-relay-resend-unknown";
/// A body past `max_payload` is read and dropped up to this many bytes before the 413 (so the
/// sender reads the answer); past it, the 413 goes out before the body's end.
pub const MAX_DRAIN: usize = 16 << 20;

/// The inbound server's shared state.
pub struct Inbound {
    relay: Arc<Relay>,
    senders: Arc<Senders>,
    max_payload: usize,
}

/// A refusal: the status and the APNs reason.
pub(crate) struct Rejection(pub StatusCode, pub &'static str);

/// Streams a sender may open at once on one connection (APNs advertises about 1000).
const MAX_STREAMS: u32 = 1000;
/// A sender that has not finished its TLS handshake, or sent the HTTP/2 preface, by then is
/// dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server is in its life, as its connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serve,
    /// GOAWAY sent: finish the streams already open.
    Drain,
    /// The drain timed out: close the socket (pushes already started still finish).
    Close,
}

/// A checked request head: everything of the push but its payload.
struct Head {
    lane: usize,
    key: Key,
    headers: HeaderMap,
    passthrough: Option<HeaderValue>,
    resend_unknown: bool,
}

impl Head {
    fn with_body(self, body: Bytes) -> Result<Push, Rejection> {
        if body.is_empty() {
            return Err(Rejection(StatusCode::BAD_REQUEST, "PayloadEmpty"));
        }
        Ok(Push {
            key: self.key,
            headers: self.headers,
            passthrough: self.passthrough,
            body,
            resend_unknown: self.resend_unknown,
            lane: self.lane,
        })
    }
}

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
    /// sends GOAWAY on every connection and waits up to `drain` for requests in flight; after
    /// that it closes the connections still open. A push the relay has started is finished
    /// either way (its outcome is stored for the sender's retry).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        mut shutdown: watch::Receiver<bool>,
        drain: Duration,
    ) {
        let (phase, phase_rx) = watch::channel(Phase::Serve);
        let mut connections = JoinSet::new();
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue }
                },
                _ = shutdown.wait_for(|s| *s) => break,
            };
            while connections.try_join_next().is_some() {}
            let _ = tcp.set_nodelay(true);
            let this = self.clone();
            let tls = tls.clone();
            let phase = phase_rx.clone();
            connections.spawn(async move {
                let Some(acceptor) = tls else {
                    return this.connection(tcp, None, phase).await;
                };
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
                    .and_then(|fp| this.senders.by_certificate(&fp));
                this.connection(stream, cert_sender, phase).await
            });
        }
        drop(listener);
        let _ = phase.send(Phase::Drain);
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(drain, drained).await.is_err() {
            tracing::warn!("drain timeout: closing connections with requests still open");
            let _ = phase.send(Phase::Close);
            // Each connection's task finishes the pushes it started on its own.
            connections.detach_all();
        }
    }

    /// One sender connection. Its streams run in this task rather than each in its own: the
    /// answers that become ready together (one read from APNs answers many pushes) are then
    /// queued together and leave in one write when h2 next flushes, and the requests that
    /// arrive together reach APNs in one write as well.
    async fn connection<T>(
        self: Arc<Self>,
        io: T,
        cert_sender: Option<usize>,
        mut phase: watch::Receiver<Phase>,
    ) where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        // hyper's server defaults (the relay served with hyper before): h2's own defaults let
        // a sender's header list reach 16 MiB, and its 64 KiB windows make the sender wait
        // for a WINDOW_UPDATE every few dozen pushes.
        let handshake = h2::server::Builder::new()
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(16 << 10)
            .max_frame_size(16 << 10)
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 20)
            .max_send_buffer_size(400 << 10)
            .max_local_error_reset_streams(Some(1024))
            .handshake::<_, Bytes>(io);
        let mut conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("no HTTP/2 preface in time");
                return;
            }
        };
        let mut streams = FuturesUnordered::new();
        let (first_lane, mut received) = (self.relay.lane(), 0usize);
        let mut going_away = false;
        let mut watching = true;
        loop {
            let next = tokio::select! {
                // Take every stream h2 has decoded before running any, so that their claims
                // share one journal write and their requests one write towards APNs.
                biased;
                next = conn.accept() => next,
                Some(()) = streams.next(), if !streams.is_empty() => {
                    // Run every stream that can finish now before h2 flushes again.
                    while let Some(Some(())) = streams.next().now_or_never() {}
                    // And let the other tasks ready now (other connections, the pool's) run
                    // first: answers they complete join this flush instead of the next.
                    tokio::task::yield_now().await;
                    continue;
                }
                changed = phase.changed(), if watching => {
                    let now = match changed {
                        Ok(()) => *phase.borrow_and_update(),
                        Err(_) => Phase::Close,
                    };
                    watching = now != Phase::Close;
                    match now {
                        Phase::Serve => {}
                        Phase::Drain if going_away => {}
                        Phase::Drain => {
                            conn.graceful_shutdown();
                            going_away = true;
                        }
                        Phase::Close => break,
                    }
                    continue;
                }
            };
            match next {
                Some(Ok((request, respond))) => {
                    let lane = first_lane.wrapping_add(received / LANE_RUN);
                    received += 1;
                    streams.push(self.stream(request, respond, cert_sender, lane));
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "sender connection ended with an error");
                    break;
                }
                None => break,
            }
        }
        drop(conn);
        // The connection is gone; the pushes already started still finish, so each key gets
        // its outcome for the sender's retry.
        while streams.next().await.is_some() {}
    }

    /// One sender request, from its head to the answer. The body is read whole before the
    /// answer, whatever the head holds (see the module doc).
    async fn stream(
        &self,
        request: Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
        cert_sender: Option<usize>,
        lane: usize,
    ) {
        let (parts, body) = request.into_parts();
        let apns_id = apns_id_of(&parts.headers);
        let head = Self::check(&self.senders, &parts, cert_sender, &apns_id);
        let body = match read_body(body, self.max_payload).await {
            Some(body) => body,
            None => return, // the sender reset the stream: nobody to answer
        };
        let reply = match head.and_then(|head| Head { lane, ..head }.with_body(body?)) {
            Ok(push) => self.relay.push(push).await,
            Err(rejection) => {
                self.relay
                    .metrics()
                    .inbound_rejection(rejection.0.as_u16(), rejection.1);
                rejected(rejection)
            }
        };
        let (head, body) = respond_parts(&reply, &apns_id.header);
        match respond.send_response(head, body.is_empty()) {
            Ok(mut stream) if !body.is_empty() => {
                let _ = stream.send_data(body, true);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "the sender's stream is gone"),
        }
    }

    /// Checks a request head: method, path, device token, sender credentials, APNs headers.
    fn check(
        senders: &Senders,
        req: &http::request::Parts,
        cert_sender: Option<usize>,
        apns_id: &ApnsId,
    ) -> Result<Head, Rejection> {
        use StatusCode as S;
        if req.method != Method::POST {
            return Err(Rejection(S::METHOD_NOT_ALLOWED, "MethodNotAllowed"));
        }
        let path = req.uri.path();
        let Some(token) = path.strip_prefix("/3/device/") else {
            return Err(Rejection(S::NOT_FOUND, "BadPath"));
        };
        if token.is_empty() || token.len() > 200 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection(S::BAD_REQUEST, "BadDeviceToken"));
        }
        let h = &req.headers;
        let identity = senders.identify(h, cert_sender, unix_now_secs())?;
        let sender = identity.sender;
        let passthrough = match sender.credentials {
            Credentials::Relay => None,
            Credentials::Passthrough => Some(
                identity
                    .provider_token
                    .cloned()
                    .ok_or(Rejection(S::FORBIDDEN, "MissingProviderToken"))?,
            ),
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
            Some(t) => t,
            None if passthrough.is_some() || sender.credentials == Credentials::Relay => {
                return Err(Rejection(S::BAD_REQUEST, "MissingTopic"))
            }
            None => "",
        };
        let resend_unknown =
            collapse.is_some() || text(RESEND_UNKNOWN).is_some_and(|v| v == "1" || v == "true");
        let mut headers = HeaderMap::with_capacity(FORWARDED.len());
        for name in FORWARDED {
            if let Some(v) = h.get(name) {
                headers.insert(HeaderName::from_static(name), v.clone());
            }
        }
        headers.insert(HeaderName::from_static("apns-id"), apns_id.header.clone());
        Ok(Head {
            lane: 0,
            key: Key::new(topic, token, &apns_id.text),
            headers,
            passthrough,
            resend_unknown,
        })
    }
}

/// Reads a request body to its end, handing flow-control credit back as it goes: `Ok` with
/// the body when it holds at most `max` bytes, `Err` 413 when longer (the rest is read and
/// dropped up to [`MAX_DRAIN`]), `None` when the sender reset the stream.
async fn read_body(mut body: RecvStream, max: usize) -> Option<Result<Bytes, Rejection>> {
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        seen += chunk.len();
        if seen > MAX_DRAIN {
            break;
        }
        if seen > max {
            buf = BytesMut::new();
            continue;
        }
        if buf.is_empty() && body.is_end_stream() {
            return Some(Ok(chunk)); // the usual case: the whole payload in one DATA frame
        }
        buf.extend_from_slice(&chunk);
    }
    if seen > max {
        return Some(Err(Rejection(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
        )));
    }
    Some(Ok(buf.freeze()))
}

fn rejected(Rejection(status, reason): Rejection) -> Reply {
    Reply {
        status: status.as_u16(),
        body: format!(r#"{{"reason":"{reason}"}}"#),
        outcome: Outcome::Rejected,
        attempts: 0,
        dedupe: None,
    }
}

fn unix_now_secs() -> u64 {
    common::clock::unix_ns() / 1_000_000_000
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
    let (parts, body) = req.into_parts();
    let apns_id = apns_id_of(&parts.headers);
    let checked = match Inbound::check(senders, &parts, None, &apns_id) {
        Ok(head) => match Limited::new(body, max_payload).collect().await {
            Ok(body) => head.with_body(body.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(Rejection(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"))
            }
            Err(_) => Err(Rejection(StatusCode::BAD_REQUEST, "BadPayload")),
        },
        Err(r) => Err(r),
    };
    checked.map_err(|Rejection(status, reason)| (status, reason))
}

/// A push's `apns-id`: its text (in the dedupe key) and its header value (sent to APNs and
/// in the answer), made once.
struct ApnsId {
    text: String,
    header: HeaderValue,
}

/// The request's `apns-id` if it is a UUID, else a new one (APNs generates one when absent).
/// The key holds it lower-case (ids compare ignoring case); the header goes out as the sender
/// wrote it, since clients match answers to requests by it (aioapns compares the strings).
/// The header value is marked sensitive so HPACK sends it as a never-indexed literal: every
/// push has its own id, so entering it in the dynamic table would only evict the values that
/// do repeat (topic, push type, outcome) and make our encoder and the peer's decoder keep a
/// table that never hits.
fn apns_id_of(headers: &HeaderMap) -> ApnsId {
    let sent = headers.get("apns-id").and_then(|v| {
        let id = uuid::Uuid::parse_str(v.to_str().ok()?).ok()?;
        Some((id, v))
    });
    let (text, mut header) = match sent {
        Some((id, v)) => (id.hyphenated().to_string(), v.clone()),
        None => {
            let text = uuid::Uuid::new_v4().hyphenated().to_string();
            let header =
                HeaderValue::from_str(&text).expect("a hyphenated UUID is a valid header value");
            (text, header)
        }
    };
    header.set_sensitive(true);
    ApnsId { text, header }
}

fn respond_parts(reply: &Reply, apns_id: &HeaderValue) -> (Response<()>, Bytes) {
    let mut res = Response::new(());
    *res.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = res.headers_mut();
    h.reserve(5);
    h.insert("apns-id", apns_id.clone());
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
    (res, Bytes::from(reply.body.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apns_id_is_never_indexed_by_hpack() {
        let reply = rejected(Rejection(StatusCode::BAD_REQUEST, "BadTopic"));
        let id = "0a2b3c4d-0000-4000-8000-000000000001";
        let mut request = HeaderMap::new();
        request.insert("apns-id", HeaderValue::from_static(id));
        let (head, _) = respond_parts(&reply, &apns_id_of(&request).header);
        let v = &head.headers()["apns-id"];
        assert_eq!(v, id);
        assert!(v.is_sensitive(), "sent as a never-indexed literal");
        assert!(!head.headers()["apns-relay-outcome"].is_sensitive());
    }
}
