//! The outbound pool: N HTTP/2 connections over TLS to APNs, each with keep-alive PINGs, all
//! kept open ([`Pool::maintain`] opens them at start and reopens one that closes, so the
//! `pool_connections` gauge reads N while APNs is reachable). A push goes out on the
//! connection of its lane: each sender connection takes lanes in turn,
//! changing lane every [`LANE_RUN`] pushes, so the pushes one read from a sender brings mostly
//! share a connection (one write out, their answers in one read) and the load still spreads.
//! h2 holds back streams beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS, so the server's
//! limit is respected per connection; a connection that received a GOAWAY takes no new
//! streams and is replaced.
//!
//! [`Pool::send`] classifies every failure by whether APNs can have received the request:
//! [`SendError::NotSent`] (connect/TLS failure, REFUSED_STREAM, a stream above a GOAWAY's
//! last-stream-id, a stream never opened) is safe to retry; [`SendError::Unknown`] (written,
//! then reset, cut or timed out) is not.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, Request, StatusCode};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex, Notify};
use tokio_rustls::TlsConnector;

use super::sniff::{GoAwayWatch, Sniff};
use crate::metrics::{Leg, Metrics};

/// Pushes of one sender connection sent in a row on one outbound connection.
pub const LANE_RUN: usize = 64;

/// Why an attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// APNs cannot have received the request; `cause` is a short metric label.
    #[error("not sent ({cause}): {detail}")]
    NotSent {
        /// `connect`, `refused_stream`, `goaway`, `closed`.
        cause: &'static str,
        /// The underlying error.
        detail: String,
    },
    /// The request was written and no answer came.
    #[error("no answer after the request was written: {0}")]
    Unknown(String),
}

/// APNs's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body (the reason JSON, empty on 200).
    pub body: Bytes,
}

/// Where the pool connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name (SNI and certificate check).
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS client config (ALPN h2).
    pub tls: Arc<rustls::ClientConfig>,
}

impl Target {
    /// From an `https://host[:port]` URL.
    pub fn from_url(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri
            .host()
            .ok_or_else(|| format!("{url}: no host"))?
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        Ok(Target { host, port, tls })
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections.
    pub connections: usize,
    /// PING interval (and PING answer timeout).
    pub ping_interval: Duration,
    /// Connect + TLS handshake timeout.
    pub connect_timeout: Duration,
    /// Answer timeout per request.
    pub request_timeout: Duration,
}

struct Conn {
    send: SendRequest<Bytes>,
    watch: Arc<GoAwayWatch>,
    closed: Arc<AtomicBool>,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.watch.last_stream_id().is_none()
    }
}

/// The pool; see the module doc.
pub struct Pool {
    slots: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
    target: Target,
    options: PoolOptions,
    metrics: Arc<Metrics>,
    /// Told when a connection ends, so [`Pool::maintain`] reopens it.
    closed: mpsc::UnboundedSender<()>,
    closed_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<()>>>,
}

/// The longest pause between two rounds of reopening connections while APNs is unreachable.
const REOPEN_MAX: Duration = Duration::from_secs(30);

struct StreamGauge<'a>(&'a Metrics);
impl Drop for StreamGauge<'_> {
    fn drop(&mut self) {
        self.0.pool_streams.dec();
    }
}

impl Pool {
    /// A pool; connections open lazily.
    pub fn new(target: Target, options: PoolOptions, metrics: Arc<Metrics>) -> Pool {
        let slots = (0..options.connections.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        let (closed, closed_rx) = mpsc::unbounded_channel();
        Pool {
            slots,
            next: AtomicUsize::new(0),
            target,
            options,
            metrics,
            closed,
            closed_rx: std::sync::Mutex::new(Some(closed_rx)),
        }
    }

    /// The number of connections the pool keeps.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// Keeps every connection open from now on: opens them all, and after one ends (GOAWAY,
    /// a missed PING, APNs gone) opens it again, pausing longer after each round that failed
    /// (up to 30 s). Runs until the pool is dropped; a second call does nothing.
    pub fn maintain(self: &Arc<Self>) {
        let Some(mut closed) = common::sync::lock(&self.closed_rx).take() else {
            return;
        };
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                let Some(p) = pool.upgrade() else { return };
                let mut failed = false;
                for lane in 0..p.slots.len() {
                    if let Err(e) = p.connection(lane).await {
                        tracing::warn!(error = %e, "could not open an APNs connection");
                        failed = true;
                    }
                }
                drop(p);
                let wait = if failed {
                    pause = (pause * 2).min(REOPEN_MAX);
                    pause
                } else {
                    pause = Duration::from_millis(100);
                    REOPEN_MAX
                };
                // A connection that ends wakes this at once; the timeout catches the rest.
                if let Ok(None) = tokio::time::timeout(wait, closed.recv()).await {
                    return;
                }
                while closed.try_recv().is_ok() {}
            }
        });
    }

    async fn connection(
        &self,
        lane: usize,
    ) -> Result<(SendRequest<Bytes>, Arc<GoAwayWatch>), SendError> {
        let i = lane % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.usable()) {
            return Ok((c.send.clone(), c.watch.clone()));
        }
        let conn = self.connect().await.map_err(|detail| SendError::NotSent {
            cause: "connect",
            detail,
        })?;
        let out = (conn.send.clone(), conn.watch.clone());
        *slot = Some(conn);
        Ok(out)
    }

    async fn connect(&self) -> Result<Conn, String> {
        let t = &self.target;
        let opts = &self.options;
        let tls = tokio::time::timeout(opts.connect_timeout, async {
            let tcp = TcpStream::connect((t.host.as_str(), t.port))
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(t.host.clone()).map_err(|e| e.to_string())?;
            let tls = TlsConnector::from(t.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err("server did not negotiate HTTP/2 (ALPN h2)".to_string());
            }
            Ok(tls)
        })
        .await
        .map_err(|_| format!("connect to {}:{} timed out", t.host, t.port))??;
        let watch = Arc::new(GoAwayWatch::default());
        let (send, mut connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 22)
            .handshake::<_, Bytes>(Sniff::new(tls, watch.clone()))
            .await
            .map_err(|e| format!("HTTP/2 handshake with {}:{}: {e}", t.host, t.port))?;
        let closed = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(Notify::new());
        let pings = connection.ping_pong();
        let metrics = self.metrics.clone();
        metrics.pool_connections.inc();
        let done = closed.clone();
        let kill_conn = kill.clone();
        let tell = self.closed.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = &mut connection => if let Err(e) = r { tracing::info!(error = %e, "APNs connection ended") },
                _ = kill_conn.notified() => {}
            }
            done.store(true, Ordering::Release);
            metrics.pool_connections.dec();
            let _ = tell.send(());
        });
        if let Some(mut pings) = pings {
            // The server sends its SETTINGS first, so once our first PING is answered its
            // stream limit is known: no burst of streams it would refuse on a new connection.
            let first =
                tokio::time::timeout(opts.connect_timeout, pings.ping(h2::Ping::opaque())).await;
            if !matches!(first, Ok(Ok(_))) {
                kill.notify_one();
                return Err(format!(
                    "{}:{} did not answer the first HTTP/2 PING",
                    t.host, t.port
                ));
            }
            let (interval, kill) = (opts.ping_interval, kill.clone());
            let closed = closed.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    if closed.load(Ordering::Acquire) {
                        return;
                    }
                    let pong = tokio::time::timeout(interval, pings.ping(h2::Ping::opaque())).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        tracing::warn!("APNs connection missed a PING answer; closing it");
                        kill.notify_one();
                        return;
                    }
                }
            });
        }
        tracing::debug!(host = %t.host, port = t.port, "APNs connection open");
        Ok(Conn {
            send,
            watch,
            closed,
        })
    }

    /// Sends one request with its body on connection `lane` (modulo the pool's size) and
    /// waits for the answer; see the module doc. [`Pool::lane`] hands out lanes in turn.
    pub async fn send(
        &self,
        request: Request<()>,
        body: Bytes,
        lane: usize,
    ) -> Result<Answer, SendError> {
        let started = Instant::now();
        let result = self.send_inner(request, body, lane).await;
        self.metrics.latency(Leg::Apns, started.elapsed());
        result
    }

    /// The next lane, round-robin: for a new sender connection.
    pub fn lane(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    async fn send_inner(
        &self,
        request: Request<()>,
        body: Bytes,
        lane: usize,
    ) -> Result<Answer, SendError> {
        let (send, watch) = self.connection(lane).await?;
        let closed = |e: h2::Error| SendError::NotSent {
            cause: "closed",
            detail: e.to_string(),
        };
        // Waiting for a free stream is bounded too: a connection that never frees one is
        // stuck, and nothing was written yet.
        let mut send = match tokio::time::timeout(self.options.request_timeout, send.ready()).await
        {
            Ok(r) => r.map_err(closed)?,
            Err(_) => {
                return Err(SendError::NotSent {
                    cause: "no_stream",
                    detail: "no stream free in time".into(),
                })
            }
        };
        let (response, mut stream) = send
            .send_request(request, body.is_empty())
            .map_err(closed)?;
        self.metrics.pool_streams.inc();
        let _gauge = StreamGauge(&self.metrics);
        let id: u32 = response.stream_id().into();
        if !body.is_empty() {
            if let Err(e) = stream.send_data(body, true) {
                return Err(classify(e, id, &watch));
            }
        }
        let response = match tokio::time::timeout(self.options.request_timeout, response).await {
            Err(_) => {
                return Err(SendError::Unknown(format!(
                    "no answer within {:?}",
                    self.options.request_timeout
                )))
            }
            Ok(Err(e)) => return Err(classify(e, id, &watch)),
            Ok(Ok(r)) => r,
        };
        let (parts, mut recv) = response.into_parts();
        let mut buf = BytesMut::new();
        // The status is APNs's answer; a body cut short only loses the reason text.
        while let Some(Ok(chunk)) = recv.data().await {
            let _ = recv.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: buf.freeze(),
        })
    }
}

fn classify(e: h2::Error, stream_id: u32, watch: &GoAwayWatch) -> SendError {
    if e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM) {
        return SendError::NotSent {
            cause: "refused_stream",
            detail: e.to_string(),
        };
    }
    if watch.refused(stream_id) {
        return SendError::NotSent {
            cause: "goaway",
            detail: e.to_string(),
        };
    }
    SendError::Unknown(e.to_string())
}
