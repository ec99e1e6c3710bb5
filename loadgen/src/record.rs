//! `loadgen record`: a reverse proxy that forwards every request to an upstream and writes
//! the traffic as a GoReplay `.gor` file — each request (type 1) when it arrives, and the
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
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use replay::gor::{self, GorWriter, Kind};

use crate::cli::exit;
use crate::engine::conn::{Conn, Origin, Tls};
use crate::journey::{Prepared, TransportError};
use crate::stop::Stop;

/// `loadgen record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Address to listen on, e.g. `127.0.0.1:8081`.
    #[arg(long)]
    pub listen: String,
    /// Where to forward, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub upstream: String,
    /// The `.gor` file to write (replaced if it exists).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Stop after this long (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Per-request timeout towards the upstream.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,
    /// Accept invalid TLS certificates from the upstream.
    #[arg(long)]
    pub insecure: bool,
}

/// Why recording cannot start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Bad input: address, URL, output file (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// Writing the recording failed.
    #[error("{0}")]
    Io(String),
}

/// How to record.
#[derive(Debug, Clone)]
pub struct RecordConfig {
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
pub struct RecordSummary {
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
    summary: Mutex<RecordSummary>,
}

/// A bound recording proxy; [`RecordProxy::run`] serves it.
pub struct RecordProxy {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    writer: std::thread::JoinHandle<std::io::Result<()>>,
}

impl RecordProxy {
    /// Checks the upstream URL, creates the output file and binds the listener.
    pub async fn bind(config: RecordConfig) -> Result<RecordProxy, RecordError> {
        let bad = RecordError::BadInput;
        let uri: http::Uri = config
            .upstream
            .parse()
            .map_err(|e| bad(format!("--upstream {}: not a URL: {e}", config.upstream)))?;
        let origin = Origin::of(&uri).map_err(|e| bad(format!("--upstream {e}")))?;
        let tls = Tls::new(config.insecure).map_err(|e| bad(format!("TLS setup: {e}")))?;
        let file = std::fs::File::create(&config.out)
            .map_err(|e| bad(format!("{}: cannot create: {e}", config.out.display())))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| bad(format!("--listen {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| bad(format!("--listen {}: {e}", config.listen)))?;
        let (tx, rx) = mpsc::channel::<Rec>();
        let writer = std::thread::Builder::new()
            .name("gor-writer".into())
            .spawn(move || write_records(rx, std::io::BufWriter::new(file)))
            .map_err(|e| RecordError::Io(format!("cannot start the writer: {e}")))?;
        let base = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", |a| a.as_str())
        );
        Ok(RecordProxy {
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
                summary: Mutex::new(RecordSummary::default()),
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
    pub async fn run(self, stop: Stop) -> Result<RecordSummary, RecordError> {
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
            .map_err(|e| RecordError::Io(e.to_string()))?
            .map_err(|_| RecordError::Io("the writer thread panicked".into()))?
            .map_err(|e| RecordError::Io(format!("writing the recording: {e}")))?;
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
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
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

/// Runs `loadgen record`; returns the exit code.
pub fn main(args: RecordArgs) -> i32 {
    let fail = |code: i32, m: &str| {
        eprintln!("error: {m}");
        code
    };
    let listen: SocketAddr = match args.listen.parse() {
        Ok(a) => a,
        Err(e) => {
            return fail(
                exit::BAD_INPUT,
                &format!("--listen {}: expected IP:PORT: {e}", args.listen),
            )
        }
    };
    let duration = match args
        .duration
        .as_deref()
        .map(common::duration::parse)
        .transpose()
    {
        Ok(d) => d,
        Err(e) => return fail(exit::BAD_INPUT, &format!("--duration: {e}")),
    };
    let timeout = match common::duration::parse(&args.timeout) {
        Ok(d) => d,
        Err(e) => return fail(exit::BAD_INPUT, &format!("--timeout: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail(
                exit::HARNESS,
                &format!("cannot start the async runtime: {e}"),
            )
        }
    };
    let stop = Stop::new();
    crate::cli::install_signal_handler(stop.clone());
    runtime.block_on(async {
        if let Err(e) = crate::target::reachable(&args.upstream).await {
            return fail(exit::BAD_INPUT, &e.replace("target", "--upstream"));
        }
        let config = RecordConfig {
            listen,
            upstream: args.upstream.clone(),
            out: args.out.clone(),
            timeout,
            insecure: args.insecure,
        };
        let proxy = match RecordProxy::bind(config).await {
            Ok(p) => p,
            Err(e) => return fail(exit::BAD_INPUT, &e.to_string()),
        };
        eprintln!(
            "recording http://{} → {} into {} (Ctrl-C to stop)",
            proxy.addr(),
            args.upstream,
            args.out.display()
        );
        if let Some(d) = duration {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                stop.stop("duration reached");
            });
        }
        match proxy.run(stop).await {
            Ok(s) => {
                eprintln!(
                    "recorded {} requests and {} responses into {}{}",
                    s.requests,
                    s.responses,
                    args.out.display(),
                    if s.upstream_errors > 0 {
                        format!(" ({} upstream errors, answered 502)", s.upstream_errors)
                    } else {
                        String::new()
                    }
                );
                exit::OK
            }
            Err(RecordError::BadInput(m)) => fail(exit::BAD_INPUT, &m),
            Err(RecordError::Io(m)) => fail(exit::HARNESS, &m),
        }
    })
}
