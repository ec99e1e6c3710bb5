//! The forward proxy: HTTP CONNECT to Apple's push hosts only, never an open proxy.
//!
//! Checks, in order: anything but CONNECT → 405; no valid credentials → 407 (credentials are
//! `Proxy-Authorization: Basic name:password` of a configured sender, or the client's source
//! address inside a sender's `proxy_source_cidrs`, for APNs clients whose proxy support cannot
//! send credentials); an IP literal, a host not in the allowlist or a port not allowed for
//! that host → 403. Then the proxy connects (DNS, or the config's `resolve` overrides), answers
//! 200 and copies bytes both ways until either side closes or the tunnel is idle for
//! `idle_timeout`. The listener can be TLS so that credentials do not cross the border in
//! clear. The proxy never sees the pushes: TLS to APNs runs end to end through the tunnel.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{ProxyConfig, SenderConfig};
use crate::metrics::Metrics;

/// The proxy's rules and state.
pub struct Proxy {
    allow: HashMap<String, Vec<u16>>,
    resolve: BTreeMap<String, SocketAddr>,
    passwords: HashMap<String, String>,
    cidrs: Vec<IpNet>,
    idle: Duration,
    connect_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not CONNECT: 405.
    Method,
    /// No valid credentials and a source address outside every sender's CIDRs: 407.
    Auth,
    /// An IP literal, a host not allowed, or a port not allowed for the host: 403.
    Forbidden,
    /// No authority or no port: 400.
    BadRequest,
}

impl Proxy {
    /// A proxy from its config and the senders allowed to use it.
    pub fn new(config: &ProxyConfig, senders: &[SenderConfig], metrics: Arc<Metrics>) -> Proxy {
        Proxy {
            allow: config
                .allow
                .iter()
                .map(|t| (normalise_host(&t.host), t.ports.clone()))
                .collect(),
            resolve: config
                .resolve
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), *v))
                .collect(),
            passwords: senders
                .iter()
                .filter_map(|s| {
                    s.proxy_password
                        .as_ref()
                        .map(|p| (s.name.clone(), p.clone()))
                })
                .collect(),
            cidrs: senders
                .iter()
                .flat_map(|s| s.proxy_source_cidrs.iter().copied())
                .collect(),
            idle: config.idle_timeout,
            connect_timeout: config.connect_timeout,
            metrics,
        }
    }

    /// Serves CONNECT requests from `listener` until `shutdown` turns true (open tunnels run
    /// on until they end or idle out).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let _ = tcp.set_nodelay(true);
            let (this, tls) = (self.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(Ok(s)) =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                                .await
                        {
                            this.serve_connection(s, peer).await;
                        }
                    }
                    None => this.serve_connection(tcp, peer).await,
                }
            });
        }
    }

    async fn serve_connection<S>(self: Arc<Self>, io: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let svc = service_fn(move |req| {
            let this = self.clone();
            async move { Ok::<_, Infallible>(this.handle(req, peer.ip()).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades()
            .await;
    }

    /// Decides one request from `peer`: the allowed destination (normalised host, port) or
    /// why it is refused. Pure; the proxy's fuzz target drives it.
    pub fn check<B>(&self, req: &Request<B>, peer: IpAddr) -> Result<(String, u16), Refusal> {
        if req.method() != Method::CONNECT {
            return Err(Refusal::Method);
        }
        if !self.authorised(req.headers().get(http::header::PROXY_AUTHORIZATION), peer) {
            return Err(Refusal::Auth);
        }
        let authority = req.uri().authority().ok_or(Refusal::BadRequest)?;
        let port = authority.port_u16().ok_or(Refusal::BadRequest)?;
        let host = authority.host();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return Err(Refusal::Forbidden);
        }
        let host = normalise_host(host);
        match self.allow.get(&host) {
            Some(ports) if ports.contains(&port) => Ok((host, port)),
            _ => Err(Refusal::Forbidden),
        }
    }

    fn authorised(&self, header: Option<&HeaderValue>, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        if self.cidrs.iter().any(|c| c.contains(&peer)) {
            return true;
        }
        let Some(v) = header.and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let Some(b64) = v
            .strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
        else {
            return false;
        };
        let Ok(decoded) = STANDARD.decode(b64.trim()) else {
            return false;
        };
        let Ok(pair) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, pass)) = pair.split_once(':') else {
            return false;
        };
        self.passwords
            .get(user)
            .is_some_and(|expected| constant_time_eq(expected.as_bytes(), pass.as_bytes()))
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: IpAddr,
    ) -> Response<Empty<Bytes>> {
        let (host, port) = match self.check(&req, peer) {
            Ok(dest) => dest,
            Err(refusal) => {
                let (status, label) = match refusal {
                    Refusal::Method => (StatusCode::METHOD_NOT_ALLOWED, "method"),
                    Refusal::Auth => (StatusCode::PROXY_AUTHENTICATION_REQUIRED, "auth"),
                    Refusal::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
                    Refusal::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
                };
                tracing::info!(%peer, method = %req.method(), uri = %req.uri(), status = status.as_u16(), "proxy refused");
                self.metrics.tunnel(label, None);
                let mut res = Response::new(Empty::new());
                *res.status_mut() = status;
                match refusal {
                    Refusal::Method => {
                        res.headers_mut()
                            .insert(http::header::ALLOW, HeaderValue::from_static("CONNECT"));
                    }
                    Refusal::Auth => {
                        res.headers_mut().insert(
                            http::header::PROXY_AUTHENTICATE,
                            HeaderValue::from_static("Basic realm=\"apns-relay\""),
                        );
                    }
                    _ => {}
                }
                return res;
            }
        };
        let upstream = match self.connect(&host, port).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(host, port, error = %e, "proxy could not reach the destination");
                self.metrics.tunnel("upstream", Some(&host));
                let mut res = Response::new(Empty::new());
                *res.status_mut() = StatusCode::BAD_GATEWAY;
                return res;
            }
        };
        self.metrics.tunnel("ok", Some(&host));
        tracing::debug!(%peer, host, port, "tunnel open");
        let this = self.clone();
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    this.metrics.tunnels_open.inc();
                    tunnel(TokioIo::new(upgraded), upstream, this.idle).await;
                    this.metrics.tunnels_open.dec();
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        Response::new(Empty::new())
    }

    async fn connect(&self, host: &str, port: u16) -> std::io::Result<TcpStream> {
        let fut = async {
            match self.resolve.get(&format!("{host}:{port}")) {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect((host, port)).await,
            }
        };
        let s = tokio::time::timeout(self.connect_timeout, fut)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

/// Compares secrets without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn normalise_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// Copies both ways until one side closes or nothing moves for `idle`.
async fn tunnel<A, B>(mut a: A, mut b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut ab = vec![0u8; 16 * 1024];
    let mut ba = vec![0u8; 16 * 1024];
    loop {
        let moved = tokio::select! {
            r = a.read(&mut ab) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => b.write_all(&ab[..n]).await.is_ok(),
            },
            r = b.read(&mut ba) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => a.write_all(&ba[..n]).await.is_ok(),
            },
            _ = tokio::time::sleep(idle) => {
                tracing::debug!("tunnel idle; closing");
                break;
            }
        };
        if !moved {
            break;
        }
    }
    let _ = a.shutdown().await;
    let _ = b.shutdown().await;
}
