//! The recording proxy behind `loadgen record`: a reverse proxy that forwards every request
//! to an upstream and writes the traffic as a GoReplay `.gor` file — each request (type 1) when it arrives, and the
//! upstream's response (type 2, with its latency) when it is back — so that `loadgen replay`,
//! GoReplay and `replay inspect` read it.
//!
//! Messages are written as HTTP/1.1 with `Content-Length` framing (bodies de-chunked), which
//! keeps a body that contains the `.gor` separator readable. Records are written by one
//! thread in arrival order; several in flight may interleave, which readers reorder.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use traffic::gor::{self, GorWriter, Kind};

use crate::engine::http::{origin_of, Conn, Origin, Tls};
use crate::journey::{Prepared, TransportError};
use crate::stop::Stop;

/// Why recording cannot start or finish.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Bad input: address, URL, output file (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// Writing the recording failed.
    #[error("{0}")]
    Io(String),
}

/// How to record.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Upstream base URL.
    pub upstream: String,
    /// Output `.gor` file.
    pub out: PathBuf,
    /// Per-request timeout towards the upstream.
    pub timeout: Duration,
    /// Accept invalid upstream certificates.
    pub insecure: bool,
}

/// What was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxySummary {
    /// Requests written (type 1).
    pub requests: u64,
    /// Responses written (type 2).
    pub responses: u64,
    /// Requests the upstream did not answer (502 to the client, no type 2 record).
    pub upstream_errors: u64,
}

/// One record for the writer thread.
struct Rec {
    kind: Kind,
    id: String,
    ts_ns: i64,
    latency_ns: i64,
    message: Vec<u8>,
}

struct Shared {
    origin: Origin,
    base: String,
    tls: Tls,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    writer: Mutex<Option<mpsc::Sender<Rec>>>,
    in_flight: AtomicU64,
    summary: Mutex<ProxySummary>,
}

/// A bound recording proxy; [`GorProxy::run`] serves it.
pub struct GorProxy {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    writer: std::thread::JoinHandle<std::io::Result<()>>,
}

impl GorProxy {
    /// Checks the upstream URL, creates the output file and binds the listener.
    pub async fn bind(config: ProxyConfig) -> Result<GorProxy, ProxyError> {
        let bad = ProxyError::BadInput;
        let uri: http::Uri = config
            .upstream
            .parse()
            .map_err(|e| bad(format!("--upstream {}: not a URL: {e}", config.upstream)))?;
        let origin = origin_of(&uri).map_err(|e| bad(format!("--upstream {e}")))?;
        let tls = Tls::new(config.insecure).map_err(|e| bad(format!("TLS setup: {e}")))?;
        // Listen first: an output file from an earlier recording is not truncated by a
        // proxy that then cannot listen.
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| bad(format!("--listen {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| bad(format!("--listen {}: {e}", config.listen)))?;
        let file = std::fs::File::create(&config.out)
            .map_err(|e| bad(format!("{}: cannot create: {e}", config.out.display())))?;
        let (tx, rx) = mpsc::channel::<Rec>();
        let writer = std::thread::Builder::new()
            .name("gor-writer".into())
            .spawn(move || write_records(rx, std::io::BufWriter::new(file)))
            .map_err(|e| ProxyError::Io(format!("cannot start the writer: {e}")))?;
        let base = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", |a| a.as_str())
        );
        Ok(GorProxy {
            listener,
            addr,
            shared: Arc::new(Shared {
                origin,
                base: base + uri.path().trim_end_matches('/'),
                tls,
                timeout: config.timeout,
                idle: Mutex::new(Vec::new()),
                writer: Mutex::new(Some(tx)),
                in_flight: AtomicU64::new(0),
                summary: Mutex::new(ProxySummary::default()),
            }),
            writer,
        })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` is pulled, lets in-flight requests finish (up to 5 s), and
    /// flushes the file.
    pub async fn run(self, stop: Stop) -> Result<ProxySummary, ProxyError> {
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.wait() => break,
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let (builder, shared) = (builder.clone(), self.shared.clone());
                    conns.spawn(async move {
                        let service = service_fn(move |req| handle(req, shared.clone()));
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(self.listener);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        conns.abort_all();
        while conns.join_next().await.is_some() {}
        let summary = *common::sync::lock(&self.shared.summary);
        common::sync::lock(&self.shared.writer).take();
        let writer = self.writer;
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| ProxyError::Io(e.to_string()))?
            .map_err(|_| ProxyError::Io("the writer thread panicked".into()))?
            .map_err(|e| ProxyError::Io(format!("writing the recording: {e}")))?;
        Ok(summary)
    }
}

fn write_records(
    rx: mpsc::Receiver<Rec>,
    out: std::io::BufWriter<std::fs::File>,
) -> std::io::Result<()> {
    let mut w = GorWriter::new(out);
    while let Ok(r) = rx.recv() {
        w.write(r.kind, &r.id, r.ts_ns, r.latency_ns, &r.message)?;
        while let Ok(r) = rx.try_recv() {
            w.write(r.kind, &r.id, r.ts_ns, r.latency_ns, &r.message)?;
        }
        w.flush()?;
    }
    w.flush()
}

/// Headers that describe one hop, not the request.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
];

fn end_to_end(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str()))
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn now_ns() -> i64 {
    i64::try_from(common::clock::unix_ns()).unwrap_or(i64::MAX)
}

async fn handle(
    req: http::Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let resp = forward(req, &shared).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(resp)
}

async fn forward(req: http::Request<Incoming>, shared: &Shared) -> http::Response<Full<Bytes>> {
    let ts_ns = now_ns();
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return plain(
                http::StatusCode::BAD_REQUEST,
                format!("reading the body: {e}"),
            )
        }
    };
    let id = format!("{:024x}", fastrand::u128(..) >> 32);
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut headers = end_to_end(&parts.headers);
    if !headers.iter().any(|(n, _)| n == "host") {
        if let Some(a) = parts.uri.authority() {
            headers.insert(0, ("host".into(), a.to_string()));
        }
    }
    shared.write(Rec {
        kind: Kind::Request,
        id: id.clone(),
        ts_ns,
        latency_ns: -1,
        message: gor::encode_request(parts.method.as_str(), &target, &headers, &body),
    });
    let prepared = Prepared {
        method: parts.method.clone(),
        url: format!("{}{target}", shared.base),
        headers: headers.into_iter().filter(|(n, _)| n != "host").collect(),
        body: (!body.is_empty()).then_some(body),
    };
    match shared.send(prepared).await {
        Ok(resp) => {
            let latency = start.elapsed().as_nanos() as i64;
            let headers = end_to_end(&resp.headers);
            let status =
                http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            shared.write(Rec {
                kind: Kind::Response,
                id,
                ts_ns: ts_ns + latency,
                latency_ns: latency,
                message: gor::encode_response(
                    resp.status,
                    status.canonical_reason().unwrap_or(""),
                    &headers,
                    &resp.body,
                ),
            });
            let mut out = http::Response::new(Full::new(resp.body));
            *out.status_mut() = status;
            for (n, v) in resp.headers.iter() {
                if !HOP_BY_HOP.contains(&n.as_str()) {
                    out.headers_mut().append(n.clone(), v.clone());
                }
            }
            out
        }
        Err(e) => {
            common::sync::lock(&shared.summary).upstream_errors += 1;
            plain(
                http::StatusCode::BAD_GATEWAY,
                format!("upstream {}: {e}", shared.base),
            )
        }
    }
}

fn plain(status: http::StatusCode, text: String) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

impl Shared {
    fn write(&self, rec: Rec) {
        {
            let mut s = common::sync::lock(&self.summary);
            match rec.kind {
                Kind::Request => s.requests += 1,
                _ => s.responses += 1,
            }
        }
        if let Some(tx) = common::sync::lock(&self.writer).as_ref() {
            let _ = tx.send(rec);
        }
    }

    async fn send(&self, req: Prepared) -> Result<crate::journey::Response, TransportError> {
        let uri: http::Uri = req
            .url
            .parse()
            .map_err(|e| TransportError::BadUrl(format!("{}: {e}", req.url)))?;
        let idle = common::sync::lock(&self.idle).pop();
        let mut conn = match idle.filter(Conn::is_usable) {
            Some(c) => c,
            None => Conn::connect(&self.origin, false, &self.tls, self.timeout).await?,
        };
        let result = tokio::time::timeout(self.timeout, conn.send(uri, req))
            .await
            .unwrap_or(Err(TransportError::Timeout));
        if result.is_ok() && conn.is_usable() {
            common::sync::lock(&self.idle).push(conn);
        }
        result
    }
}
