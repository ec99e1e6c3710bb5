//! Playing a recording's WebSocket device sessions (HAR `_webSocketMessages`): each session
//! connects to the WebSocket target at its scheduled instant, sends its recorded
//! client→server messages at their recorded offsets (divided by the speed factor), and counts
//! what the server sends back against what the recording says it sent.
//!
//! The wire is the device swarm's own client ([`crate::engine::swarm::wire`]: RFC 6455 frames, the
//! opening handshake; [`crate::engine::swarm::net`]: connecting), with one small read buffer per
//! session.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::endpoint::Endpoint;
use reports::MetricKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use traffic::{DeviceSession, WsDirection};

use crate::engine::swarm::wire::{self, Decoder, Frame, Framing};
use crate::plan::replay::{span, LINGER};
use crate::stop::Stop;
use reports::RecorderHandle;

/// Bytes read at a time per session.
const READ_BUFFER: usize = 4 * 1024;

/// Handshake headers the client sets itself or cannot honour (no extension is negotiated, so
/// a recorded `permessage-deflate` offer is dropped).
const HANDSHAKE_OWN: [&str; 8] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "content-length",
];

/// Metric names of played sessions.
pub mod metric {
    /// Sessions whose WebSocket opened.
    pub const SESSIONS: &str = "replay_ws_sessions";
    /// Sessions that could not open, tagged `cause` (`connect`, `timeout`, `handshake`,
    /// `bad_url`).
    pub const CONNECT_FAILED: &str = "replay_ws_connect_failed";
    /// Time from the start of the TCP connect to the end of the upgrade, µs.
    pub const CONNECTING: &str = "ws_connecting";
    /// Client→server messages sent.
    pub const SENT: &str = "replay_ws_sent";
    /// Recorded client→server messages not sent (the connection ended first).
    pub const NOT_SENT: &str = "replay_ws_not_sent";
    /// Server→client messages received.
    pub const RECEIVED: &str = "replay_ws_received";
    /// Server→client messages in the recording of the sessions that opened.
    pub const RECORDED_RECEIVED: &str = "replay_ws_recorded_received";
    /// Opened sessions (total) whose received count differs from the recorded one (value).
    pub const RECEIVE_MISMATCH: &str = "replay_ws_receive_mismatch";
    /// Sessions the server closed (or reset) before the session's end.
    pub const CLOSED_EARLY: &str = "replay_ws_closed_early";
}

/// The metric keys, tagged `journey=replay`.
pub struct Keys {
    sessions: MetricKey,
    failed: MetricKey,
    connecting: MetricKey,
    sent: MetricKey,
    not_sent: MetricKey,
    received: MetricKey,
    recorded: MetricKey,
    mismatch: MetricKey,
    closed_early: MetricKey,
}

impl Keys {
    /// The keys.
    pub fn new() -> Keys {
        let k = |n: &str| MetricKey::new(n).with_tag("journey", super::JOURNEY);
        Keys {
            sessions: k(metric::SESSIONS),
            failed: k(metric::CONNECT_FAILED),
            connecting: k(metric::CONNECTING),
            sent: k(metric::SENT),
            not_sent: k(metric::NOT_SENT),
            received: k(metric::RECEIVED),
            recorded: k(metric::RECORDED_RECEIVED),
            mismatch: k(metric::RECEIVE_MISMATCH),
            closed_early: k(metric::CLOSED_EARLY),
        }
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new()
    }
}

/// What every session of a replay shares.
pub struct Player {
    /// The WebSocket target (`ws://host:port`, `wss://…`, maybe with a path prefix).
    pub target: String,
    /// TLS for `wss://`.
    pub tls: tokio_rustls::TlsConnector,
    /// The replay's speed factor.
    pub speed: f64,
    /// Bound on connect + upgrade.
    pub connect_timeout: Duration,
    /// Metric keys.
    pub keys: Keys,
    /// Where sessions record.
    pub recorder: RecorderHandle,
    /// The run's stop.
    pub stop: Stop,
}

/// The URL a recorded session connects to: the target with the recorded path and query.
pub fn session_url(target: &str, recorded: &str) -> String {
    let at = recorded.find("://").map_or(0, |i| i + 3);
    let path = recorded[at..]
        .find(['/', '?'])
        .map_or("/", |p| &recorded[at + p..]);
    let sep = if path.starts_with('/') { "" } else { "/" };
    format!("{target}{sep}{path}")
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Plays `session`, due at `due` (its recorded start), until its last message plus
/// [`LINGER`], everything recorded has arrived, the server closes, or the run stops.
pub async fn play(player: Arc<Player>, session: DeviceSession, due: Instant) {
    let url = session_url(&player.target, &session.url);
    let headers: Vec<(String, String)> = session
        .headers
        .iter()
        .filter(|(n, _)| !HANDSHAKE_OWN.iter().any(|h| h.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    let t0 = Instant::now();
    let opened = tokio::select! {
        r = tokio::time::timeout(player.connect_timeout, open(&player, &url, &headers)) => r,
        () = player.stop.wait() => return,
    };
    let (mut io, leftover) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(cause)) => return failed(&player, cause),
        Err(_) => return failed(&player, "timeout"),
    };
    let now = Instant::now();
    {
        let mut r = common::sync::lock(&player.recorder);
        r.record(
            &player.keys.connecting,
            now,
            now.duration_since(t0).as_micros() as u64,
        );
        r.add(&player.keys.sessions, now, 1);
    }
    let sends = scheduled_sends(&session, due, player.speed);
    let recorded = session
        .messages
        .iter()
        .filter(|m| m.direction == WsDirection::Receive)
        .count() as u64;
    let end = due + span(&session, player.speed) + LINGER;
    let mut dec = Decoder::new(Framing::Ws);
    let (mut sent, mut received, mut closed) = (0usize, 0u64, false);
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut feed = |data: &[u8], out: &mut Vec<u8>, received: &mut u64, closed: &mut bool| {
        dec.feed(data, &mut |f| match f {
            Frame::Message(_) => *received += 1,
            Frame::Ping(p) => wire::encode_ws(wire::OP_PONG, p, out),
            Frame::Pong => {}
            Frame::Close => *closed = true,
        })
        .is_ok()
    };
    if !leftover.is_empty() && !feed(&leftover, &mut out, &mut received, &mut closed) {
        closed = true;
    }
    while !closed && (sent < sends.len() || received < recorded) {
        if !out.is_empty() {
            if io.write_all(&out).await.is_err() {
                closed = true;
                break;
            }
            out.clear();
        }
        let next = sends.get(sent).map(|(at, _, _)| *at);
        tokio::select! {
            () = sleep_until(next.unwrap_or(end)), if next.is_some() => {
                let (_, payload, op) = &sends[sent];
                wire::encode_ws(*op, payload, &mut out);
                sent += 1;
            }
            r = io.read(&mut buf) => match r {
                Ok(0) | Err(_) => closed = true,
                Ok(n) => {
                    if !feed(&buf[..n], &mut out, &mut received, &mut closed) {
                        closed = true;
                    }
                }
            },
            () = sleep_until(end) => break,
            () = player.stop.wait() => break,
        }
    }
    if !closed {
        wire::encode_ws(wire::OP_CLOSE, &1000u16.to_be_bytes(), &mut out);
    }
    if !out.is_empty() {
        let _ = io.write_all(&out).await;
    }
    let _ = io.shutdown().await;
    record_session(&player, sent, sends.len(), received, recorded, closed);
}

/// A session's client→server messages, each with the instant it is due: `(due, payload,
/// opcode)`; Chrome records binary payloads base64-encoded.
fn scheduled_sends(
    session: &DeviceSession,
    due: Instant,
    speed: f64,
) -> Vec<(Instant, Vec<u8>, u8)> {
    session
        .messages
        .iter()
        .filter(|m| m.direction == WsDirection::Send)
        .map(|m| {
            let at = due + Duration::from_secs_f64(m.offset_ns.max(0) as f64 / 1e9 / speed);
            match m.opcode {
                2 => (
                    at,
                    base64::engine::general_purpose::STANDARD
                        .decode(m.data.as_bytes())
                        .unwrap_or_else(|_| m.data.as_bytes().to_vec()),
                    2,
                ),
                _ => (at, m.data.as_bytes().to_vec(), 1),
            }
        })
        .collect()
}

/// What one session did, against what its recording says.
fn record_session(
    player: &Player,
    sent: usize,
    planned: usize,
    received: u64,
    recorded: u64,
    closed: bool,
) {
    let now = Instant::now();
    let k = &player.keys;
    let mut r = common::sync::lock(&player.recorder);
    r.add(&k.sent, now, sent as u64);
    r.add(&k.not_sent, now, (planned - sent) as u64);
    r.add(&k.received, now, received);
    r.add(&k.recorded, now, recorded);
    r.count(&k.mismatch, now, received != recorded);
    r.add(&k.closed_early, now, u64::from(closed && sent < planned));
}

fn failed(player: &Player, cause: &str) {
    let key = player.keys.failed.clone().with_tag("cause", cause);
    common::sync::lock(&player.recorder).add(&key, Instant::now(), 1);
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

/// Connect, TLS, upgrade: the stream and any bytes that came after the upgrade's head.
async fn open(
    player: &Player,
    url: &str,
    headers: &[(String, String)],
) -> Result<(Box<dyn Stream>, Vec<u8>), &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "bad_url")?;
    let endpoint = Endpoint::of(&uri, &["ws", "wss"]).map_err(|_| "bad_url")?;
    let addr = crate::engine::swarm::net::resolve(&endpoint)
        .await
        .map_err(|_| "connect")?;
    let tcp = crate::engine::swarm::net::connect(addr, None)
        .await
        .map_err(|_| "connect")?;
    let mut io: Box<dyn Stream> = if endpoint.tls {
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
            .map_err(|_| "handshake")?;
        Box::new(
            player
                .tls
                .connect(name, tcp)
                .await
                .map_err(|_| "handshake")?,
        )
    } else {
        Box::new(tcp)
    };
    let authority = uri
        .authority()
        .map_or_else(|| endpoint.authority(), |a| a.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let key = wire::new_key();
    let req = wire::upgrade_request(&authority, path, &key, headers);
    io.write_all(req.as_bytes())
        .await
        .map_err(|_| "handshake")?;
    io.flush().await.map_err(|_| "handshake")?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let end = loop {
        let n = io
            .read(&mut buf)
            .await
            .map_err(|_: io::Error| "handshake")?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err("handshake");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = wire::upgrade_answer(&head, &key).map_err(|_| "handshake")? {
            break end;
        }
    };
    Ok((io, head.split_off(end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_urls_keep_the_recorded_path() {
        assert_eq!(
            session_url("ws://127.0.0.1:9", "wss://prod.example/ws?user=a"),
            "ws://127.0.0.1:9/ws?user=a"
        );
        assert_eq!(
            session_url("ws://127.0.0.1:9/base", "ws://prod.example"),
            "ws://127.0.0.1:9/base/"
        );
    }
}
