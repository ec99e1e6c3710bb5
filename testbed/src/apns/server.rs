//! Serving: TLS (rustls, ALPN `h2` only, optional client certificates) and HTTP/2 with the
//! `h2` crate directly, which gives the per-stream control the faults need (REFUSED_STREAM,
//! reset after reading, GOAWAY, the stream limit).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Request, Response};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::seen::Notification;
use super::{request, unix_ms, Auth, Environment, Fault, Mock, Reason};
use crate::pki::{root_store, IssuedCert};

/// How long shutdown lets in-flight streams finish before it drops their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Streams per connection advertised when no fault sets it (APNs advertises about 1000).
const DEFAULT_MAX_STREAMS: u32 = 1000;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bodies are read up to this many bytes; a longer one is 413 without reading the rest.
const MAX_READ: usize = 64 * 1024;

/// The TLS side of a mock: the acceptor and, for certificate auth, the verifier of client
/// certificates (run after the handshake, so a bad certificate gets APNs' 403 rather than a
/// TLS alert).
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

pub(crate) fn acceptor(cert: &IssuedCert, auth: &Auth) -> io::Result<Tls> {
    let invalid =
        |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?;
    let (builder, client_verifier) = match auth {
        Auth::Token(_) => (builder.with_no_client_auth(), None),
        Auth::Certificate(certificate) => {
            let roots = root_store(&certificate.client_ca_pem).map_err(|e| invalid(&e))?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| invalid(&e))?;
            let any = Arc::new(AnyClientCert {
                algorithms: provider.signature_verification_algorithms,
            });
            (builder.with_client_cert_verifier(any), Some(verifier))
        }
    };
    let mut config = builder
        .with_single_cert(vec![cert.cert_der()], cert.key_der())
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        client_verifier,
    })
}

/// Asks for a client certificate and takes any the client proves it holds the key of; the
/// chain is judged after the handshake.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What a stream knows of its connection.
#[derive(Debug, Clone, Copy)]
struct Connection {
    id: u64,
    peer: Peer,
}

/// Who is at the other end of a connection, as far as certificates go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// Token auth: certificates play no part.
    Anonymous,
    /// Certificate auth, no certificate presented.
    NoCertificate,
    /// Certificate auth, a certificate not issued by the configured CA.
    BadCertificate,
    /// Certificate auth, a valid certificate.
    Certified,
}

/// Accepts connections until told to stop, then drains them.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Tls,
    mock: Arc<Mock>,
    stop: watch::Receiver<bool>,
) {
    let tls = Arc::new(tls);
    let connection_stop = stop.clone();
    crate::accept::accept_until_stopped(listener, stop, SHUTDOWN_GRACE, |stream| {
        serve_connection(
            stream,
            Arc::clone(&tls),
            Arc::clone(&mock),
            connection_stop.clone(),
        )
    })
    .await;
}

/// The TLS handshake (bounded in time), with ALPN `h2` required, and the client certificate
/// judged; `None` when the client is not served.
async fn accept_tls(
    tcp: TcpStream,
    tls: &Tls,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Peer)> {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return None;
        }
    };
    let (_, session) = stream.get_ref();
    if session.alpn_protocol() != Some(b"h2".as_slice()) {
        // APNs speaks HTTP/2 only; a client that offered no ALPN gets nothing.
        tracing::debug!("client negotiated no h2, closing");
        return None;
    }
    let peer = match &tls.client_verifier {
        None => Peer::Anonymous,
        Some(verifier) => match session.peer_certificates() {
            Some([end_entity, intermediates @ ..]) => {
                match verifier.verify_client_cert(end_entity, intermediates, UnixTime::now()) {
                    Ok(_) => Peer::Certified,
                    Err(_) => Peer::BadCertificate,
                }
            }
            _ => Peer::NoCertificate,
        },
    };
    Some((stream, peer))
}

async fn serve_connection(
    tcp: TcpStream,
    tls: Arc<Tls>,
    mock: Arc<Mock>,
    mut stop: watch::Receiver<bool>,
) {
    let Some((stream, peer)) = accept_tls(tcp, &tls).await else {
        mock.seen.count(|s| s.handshake_failures += 1);
        return;
    };
    mock.seen.count(|s| s.connections += 1);
    let origin = Connection {
        id: mock.next_connection.fetch_add(1, Ordering::SeqCst),
        peer,
    };
    let max_streams = mock
        .faults
        .current()
        .max_concurrent_streams
        .unwrap_or(DEFAULT_MAX_STREAMS);
    let mut connection = match h2::server::Builder::new()
        .max_concurrent_streams(max_streams)
        .handshake::<_, Bytes>(stream)
        .await
    {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(%error, "HTTP/2 handshake failed");
            return;
        }
    };
    // The connection's streams run in this task, not spawned, so that their answers can be
    // batched into one write (see the select below).
    let mut streams: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    let mut received: u32 = 0;
    let mut going_away = false;
    let mut stopping = false;
    let mut idle_since = tokio::time::Instant::now();
    loop {
        let idle_timeout = mock
            .faults
            .current()
            .idle_timeout_ms
            .map(Duration::from_millis);
        let idle_deadline = idle_since + idle_timeout.unwrap_or(Duration::ZERO);
        let watch_idle = idle_timeout.is_some() && !going_away;
        let next = tokio::select! {
            // Take every stream h2 has decoded before running any: their answers are then
            // queued together and leave in one write when h2 next flushes.
            biased;
            next = connection.accept() => next,
            Some(()) = streams.next(), if !streams.is_empty() => {
                // Run every stream that can finish now before h2 flushes again.
                while let Some(Some(())) = streams.next().now_or_never() {}
                continue;
            }
            _ = tokio::time::sleep_until(idle_deadline), if watch_idle => {
                if streams.is_empty() {
                    connection.graceful_shutdown();
                    going_away = true;
                    mock.seen.count(|s| s.idle_timeouts += 1);
                } else {
                    idle_since = tokio::time::Instant::now();
                }
                continue;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                if !going_away {
                    connection.graceful_shutdown();
                    going_away = true;
                }
                continue;
            }
        };
        let (request, respond) = match next {
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                tracing::debug!(%error, "connection ended with an error");
                break;
            }
            None => break,
        };
        received += 1;
        idle_since = tokio::time::Instant::now();
        let fault = match start_stream(&mock, origin, request, respond) {
            Started::Refused => Fault::RefusedStream,
            Started::Serving(fault, stream) => {
                streams.push(stream);
                let open = streams.len() as u64;
                mock.seen.count(|s| {
                    s.max_concurrent_streams_seen = s.max_concurrent_streams_seen.max(open);
                });
                fault
            }
        };
        let goaway_after = mock.faults.current().goaway_after;
        if !going_away && (fault == Fault::GoAway || goaway_after == Some(received)) {
            // GOAWAY(MAX) then, after a PING round trip, GOAWAY(last stream received): every
            // stream up to it is served, none above it is.
            connection.graceful_shutdown();
            going_away = true;
            mock.seen.count(|s| s.goaways += 1);
        }
    }
    // The connection is gone: streams still running (waiting out their latency) finish as
    // APNs would, recording what they accepted, though no answer can reach the client.
    drop(connection);
    while streams.next().await.is_some() {}
}

/// What became of a new stream.
enum Started {
    /// Reset with REFUSED_STREAM.
    Refused,
    /// To be served with this fault by this future.
    Serving(Fault, BoxFuture<'static, ()>),
}

/// Draws the fault of a new stream and refuses it or returns the future that serves it.
fn start_stream(
    mock: &Arc<Mock>,
    origin: Connection,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Started {
    mock.seen.count(|s| s.streams += 1);
    let fault = mock.faults.next_stream();
    if fault == Fault::RefusedStream {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        mock.seen.count(|s| s.refused_streams += 1);
        return Started::Refused;
    }
    let serve = handle_stream(Arc::clone(mock), origin, request, respond, fault);
    Started::Serving(fault, Box::pin(serve))
}

/// Serves one stream: read, validate, apply its fault, answer (or reset).
async fn handle_stream(
    mock: Arc<Mock>,
    connection: Connection,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    fault: Fault,
) {
    let (parts, mut body) = request.into_parts();
    let mut payload = BytesMut::new();
    let mut truncated = false;
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            // The client reset the stream: nothing to answer.
            return;
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        if payload.len() + chunk.len() > MAX_READ {
            truncated = true;
            break;
        }
        payload.extend_from_slice(&chunk);
    }
    let received_at = SystemTime::now();
    let payload = payload.freeze();
    let apns_id = parts
        .headers
        .get("apns-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let verdict = validate(&mock, connection, &parts, &payload, truncated, received_at);

    let latency = mock.faults.current().latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let notification = match verdict {
        Ok(notification) => notification,
        Err((reason, timestamp)) => {
            if fault == Fault::ResetAfterRead {
                respond.send_reset(h2::Reason::INTERNAL_ERROR);
                mock.seen.count(|s| s.resets_after_read += 1);
            } else {
                let id = apns_id.unwrap_or_else(new_apns_id);
                send_error(&mock, &mut respond, &id, reason, timestamp);
            }
            return;
        }
    };
    match fault {
        Fault::Reject(reason) => {
            let timestamp = (reason == Reason::Unregistered).then(|| unix_ms(received_at));
            send_error(
                &mock,
                &mut respond,
                &notification.apns_id,
                reason,
                timestamp,
            );
        }
        Fault::ResetAfterRead => {
            mock.seen.record(Notification {
                reset: true,
                ..notification
            });
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            mock.seen.count(|s| s.resets_after_read += 1);
        }
        Fault::Pass | Fault::GoAway | Fault::RefusedStream => {
            let mut response = Response::builder()
                .status(200)
                .header("apns-id", notification.apns_id.as_str());
            if mock.environment == Environment::Sandbox {
                response = response.header("apns-unique-id", new_apns_id().to_lowercase());
            }
            mock.seen.record(notification);
            let response = response.body(()).unwrap_or_default();
            if let Err(error) = respond.send_response(response, true) {
                tracing::debug!(%error, "could not answer");
            }
            mock.seen.responded(200, None);
        }
    }
}

/// The notification a valid request carries, or the reason (and, for 410, the timestamp) it
/// is refused.
fn validate(
    mock: &Mock,
    connection: Connection,
    parts: &http::request::Parts,
    payload: &Bytes,
    truncated: bool,
    received_at: SystemTime,
) -> Result<Notification, (Reason, Option<u64>)> {
    let plain = |reason| (reason, None);
    let device_token = request::route(&parts.method, parts.uri.path()).map_err(plain)?;
    let authorization = parts.headers.get("authorization").map(|v| v.as_bytes());
    let peer = connection.peer;
    let claims = match (&mock.tokens, peer) {
        (_, Peer::Certified) => None,
        (_, Peer::BadCertificate) => return Err(plain(Reason::BadCertificate)),
        (Some(tokens), _) => Some(
            tokens
                .check(authorization, unix_ms(received_at) / 1000)
                .map_err(plain)?,
        ),
        // A certificate server without a certificate: APNs falls back to tokens, and this
        // mock has no keys.
        (None, _) => {
            return Err(plain(if authorization.is_some() {
                Reason::InvalidProviderToken
            } else {
                Reason::MissingProviderToken
            }))
        }
    };
    let single_topic = peer == Peer::Certified && mock.topics.len() == 1;
    let headers = request::headers(&parts.headers, !single_topic).map_err(plain)?;
    let topic = headers
        .topic
        .clone()
        .or_else(|| single_topic.then(|| mock.topics[0].clone()));
    if let Some(topic) = &topic {
        if !request::topic_allowed(topic, &mock.topics) {
            return Err(plain(Reason::TopicDisallowed));
        }
        if let Some(app) = mock.device_topic(&device_token) {
            if !request::topic_allowed(topic, std::slice::from_ref(&app)) {
                return Err(plain(Reason::DeviceTokenNotForTopic));
            }
        }
    }
    if truncated {
        return Err(plain(Reason::PayloadTooLarge));
    }
    request::payload(payload, headers.push_type.as_deref()).map_err(plain)?;
    if let Some(since) = mock.unregistered_since(&device_token) {
        return Err((Reason::Unregistered, Some(since)));
    }
    Ok(Notification {
        apns_id: headers.apns_id.unwrap_or_else(new_apns_id),
        device_token,
        topic,
        collapse_id: headers.collapse_id,
        push_type: headers.push_type,
        priority: headers.priority,
        expiration: headers.expiration,
        payload: payload.clone(),
        received_at,
        key_id: claims.as_ref().map(|c| c.kid.clone()),
        token_issued_at: claims.map(|c| c.iat),
        connection: connection.id,
        reset: false,
    })
}

/// An error response: the reason's status, `apns-id`, and `{"reason": …}` (with `timestamp`
/// for 410).
fn send_error(
    mock: &Mock,
    respond: &mut SendResponse<Bytes>,
    apns_id: &str,
    reason: Reason,
    timestamp: Option<u64>,
) {
    let body = match timestamp {
        Some(timestamp) => serde_json::json!({ "reason": reason.as_str(), "timestamp": timestamp }),
        None => serde_json::json!({ "reason": reason.as_str() }),
    }
    .to_string();
    let response = Response::builder()
        .status(reason.status())
        .header("apns-id", apns_id)
        .header("content-type", "application/json; charset=utf-8")
        .header("content-length", body.len())
        .body(())
        .unwrap_or_default();
    mock.seen
        .responded(reason.status().as_u16(), Some(reason.as_str()));
    match respond.send_response(response, false) {
        Ok(mut stream) => {
            if let Err(error) = stream.send_data(Bytes::from(body), true) {
                tracing::debug!(%error, "could not send the error body");
            }
        }
        Err(error) => tracing::debug!(%error, "could not answer"),
    }
}

/// An `apns-id` as APNs generates them: an upper-case version-4 UUID. Drawn from fastrand, not
/// the OS: one `getrandom` call per request was a quarter of the mock's system time.
fn new_apns_id() -> String {
    let bytes = fastrand::u128(..).to_le_bytes();
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    id.hyphenated()
        .encode_upper(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}
