//! HTTP connections for the open-rate driver, replay, dispatch calls and the recording proxy:
//! hyper's connection-level client over TCP or TLS (rustls), HTTP/1.1 or HTTP/2, one origin
//! each. The driver owns the pooling: hyper's
//! pooled client keeps one HTTP/2 connection per host and opens HTTP/1.1 connections without
//! bound, and an open-model driver needs a fixed pool.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::journey::{Prepared, Response, TransportError};

/// TLS settings shared by every connection of a run.
#[derive(Clone)]
pub struct Tls {
    config_h1: Arc<rustls::ClientConfig>,
    config_h2: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// System roots; `insecure` accepts any certificate (self-signed staging hosts).
    pub fn new(insecure: bool) -> Result<Tls, rustls::Error> {
        let make = |alpn: &[u8]| -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?;
            let mut config = if insecure {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                    .with_no_client_auth()
            } else {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            };
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Tls {
            config_h1: make(b"http/1.1")?,
            config_h2: make(b"h2")?,
        })
    }
}

impl Tls {
    /// The HTTP/1.1 client configuration (also used for `wss://` device connections).
    pub fn http1_config(&self) -> Arc<rustls::ClientConfig> {
        self.config_h1.clone()
    }

    /// The HTTP/2 client configuration (ALPN `h2`; SSE and long-poll devices over HTTP/2).
    pub fn http2_config(&self) -> Arc<rustls::ClientConfig> {
        self.config_h2.clone()
    }
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The origin of a URL: what a connection is for.
pub use common::endpoint::Endpoint as Origin;

/// The origin of an `http://` or `https://` URI.
pub fn origin_of(uri: &http::Uri) -> Result<Origin, TransportError> {
    Origin::of(uri, &["http", "https"]).map_err(|e| TransportError::BadUrl(e.to_string()))
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One connection to one origin.
pub struct Conn {
    origin: Origin,
    sender: Sender,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({:?})", self.origin)
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

impl Conn {
    /// Connects to `origin`, speaking HTTP/2 when `http2` (prior knowledge on cleartext).
    pub async fn connect(
        origin: &Origin,
        http2: bool,
        tls: &Tls,
        timeout: Duration,
    ) -> Result<Conn, TransportError> {
        let fut = async {
            let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
                .await
                .map_err(|e| {
                    TransportError::Connect(format!("{}:{}: {e}", origin.host, origin.port))
                })?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = if origin.tls {
                let config = if http2 {
                    tls.config_h2.clone()
                } else {
                    tls.config_h1.clone()
                };
                let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                    .map_err(|e| TransportError::Connect(format!("{}: {e}", origin.host)))?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        TransportError::Connect(format!("TLS with {}: {e}", origin.host))
                    })?;
                Box::new(stream)
            } else {
                Box::new(tcp)
            };
            let io = TokioIo::new(io);
            let sender = if http2 {
                let (s, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| {
                        TransportError::Connect(format!(
                            "HTTP/2 handshake with {}: {e}",
                            origin.host
                        ))
                    })?;
                tokio::spawn(conn);
                Sender::H2(s)
            } else {
                let (s, conn) = http1::handshake(io).await.map_err(|e| {
                    TransportError::Connect(format!("HTTP/1.1 handshake with {}: {e}", origin.host))
                })?;
                tokio::spawn(conn);
                Sender::H1(s)
            };
            Ok(Conn {
                origin: origin.clone(),
                sender,
            })
        };
        tokio::time::timeout(timeout, fut).await.map_err(|_| {
            TransportError::Connect(format!(
                "{}:{}: connect timed out",
                origin.host, origin.port
            ))
        })?
    }

    /// The origin this connection serves.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// True when the connection can take another request.
    pub fn is_usable(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        }
    }

    /// A second handle on an HTTP/2 connection (streams share it); None for HTTP/1.1.
    pub fn share(&self) -> Option<Conn> {
        match &self.sender {
            Sender::H2(s) => Some(Conn {
                origin: self.origin.clone(),
                sender: Sender::H2(s.clone()),
            }),
            Sender::H1(_) => None,
        }
    }

    /// Sends a request and reads the whole response.
    pub async fn send(
        &mut self,
        uri: http::Uri,
        req: Prepared,
    ) -> Result<Response, TransportError> {
        let h2 = matches!(self.sender, Sender::H2(_));
        let mut builder = http::Request::builder().method(req.method);
        builder = if h2 {
            builder.uri(uri)
        } else {
            let host = match uri.port_u16() {
                Some(p) => format!("{}:{p}", self.origin.host),
                None => self.origin.host.clone(),
            };
            let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
            // A request that names its own Host (replay's `--host`) keeps it.
            if req
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("host"))
            {
                builder.uri(path)
            } else {
                builder.uri(path).header(http::header::HOST, host)
            }
        };
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(req.body.unwrap_or_default()))
            .map_err(|e| TransportError::BadUrl(e.to_string()))?;
        let response = match &mut self.sender {
            Sender::H1(s) => {
                s.ready()
                    .await
                    .map_err(|e| TransportError::Io(e.to_string()))?;
                s.send_request(request).await
            }
            Sender::H2(s) => {
                s.ready()
                    .await
                    .map_err(|e| TransportError::Io(e.to_string()))?;
                s.send_request(request).await
            }
        }
        .map_err(|e| TransportError::Io(e.to_string()))?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?
            .to_bytes();
        Ok(Response {
            status,
            headers: parts.headers,
            body,
        })
    }
}
