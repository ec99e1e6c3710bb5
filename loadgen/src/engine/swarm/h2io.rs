//! HTTP/2 under SSE and long-poll devices: one h2 connection per device (ALPN `h2` over TLS,
//! prior knowledge over plain TCP), spoken with the `h2` crate (hyper's HTTP/2).
//!
//! It carries the same requests and answers as HTTP/1.1, so one reader keeps one set of rules
//! for both versions: a request written as HTTP/1.1 bytes (`http_stream::request`) goes out as
//! a stream of its own (method, path and headers; `Host` as `:authority`; connection-specific
//! headers dropped, RFC 9113 §8.2.2), and an answer is handed to `http_stream::Reader` as an
//! HTTP/1.1 head followed by its DATA frames as chunks (the end of the stream as the last
//! chunk). A new poll replaces the answer being read.

use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

/// Headers that are the connection's in HTTP/1.1 and not sent over HTTP/2.
const HOP_BY_HOP: [&str; 6] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// One device's HTTP/2 connection.
pub(crate) struct H2Io {
    /// Opens streams; `None` once shut down.
    send: Option<h2::client::SendRequest<Bytes>>,
    /// `http` or `https`, for `:scheme`.
    scheme: http::uri::Scheme,
    /// The answer to the last request, until its head comes.
    pending: Option<h2::client::ResponseFuture>,
    /// The body of the answer being read.
    body: Option<h2::RecvStream>,
    /// The task that drives the connection (frames, flow control, pings); it ends with it.
    conn: tokio::task::JoinHandle<()>,
    /// The task has ended (a finished task is not polled again).
    ended: bool,
}

impl Drop for H2Io {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// An h2 error as an I/O error (a reset stream or GOAWAY reads as `reset`).
fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        if let Some(e) = e.into_io() {
            return e;
        }
        return io::Error::from(io::ErrorKind::ConnectionReset);
    }
    io::Error::new(io::ErrorKind::ConnectionReset, e)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

impl H2Io {
    /// The HTTP/2 preface and SETTINGS exchange on `io`; `tls` picks `:scheme`.
    pub async fn handshake<T>(io: T, tls: bool) -> Result<H2Io, h2::Error>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = h2::client::handshake(io).await?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(H2Io {
            send: Some(send),
            scheme: if tls {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            },
            pending: None,
            body: None,
            conn,
            ended: false,
        })
    }

    /// Sends the HTTP/1.1 request in `data` as a new stream (no body).
    pub async fn request(&mut self, data: &[u8]) -> io::Result<()> {
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(data), Ok(httparse::Status::Complete(_))) {
            return Err(invalid("not one HTTP/1.1 request"));
        }
        let authority = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| h.value)
            .ok_or_else(|| invalid("a request without Host"))?;
        let uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(req.path.unwrap_or("/"))
            .build()
            .map_err(|e| invalid(&e.to_string()))?;
        let mut builder = http::Request::builder()
            .method(req.method.unwrap_or("GET"))
            .uri(uri);
        for h in req.headers.iter() {
            if !HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
                builder = builder.header(h.name, h.value);
            }
        }
        let request = builder.body(()).map_err(|e| invalid(&e.to_string()))?;
        let send = self
            .send
            .take()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let mut send = send.ready().await.map_err(h2_io)?;
        let (answer, _) = send.send_request(request, true).map_err(h2_io)?;
        self.send = Some(send);
        self.body = None;
        self.pending = Some(answer);
        Ok(())
    }

    /// Waits for the next piece (an answer's head, a DATA frame, a stream's end) and hands it
    /// over in HTTP/1.1 form; `Ok(false)` when the connection ended with nothing asked.
    /// Cancel-safe: what is not handed over stays in the connection.
    pub async fn read_with(&mut self, on: &mut (dyn FnMut(&[u8]) + Send)) -> io::Result<bool> {
        std::future::poll_fn(|cx| self.poll_piece(cx, on)).await
    }

    fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
        on: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Poll<io::Result<bool>> {
        if let Some(body) = &mut self.body {
            loop {
                return match body.poll_data(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(data))) if data.is_empty() => continue,
                    Poll::Ready(Some(Ok(data))) => {
                        let _ = body.flow_control().release_capacity(data.len());
                        let mut chunk = Vec::with_capacity(data.len() + 12);
                        let _ = write!(chunk, "{:x}\r\n", data.len());
                        chunk.extend_from_slice(&data);
                        chunk.extend_from_slice(b"\r\n");
                        on(&chunk);
                        Poll::Ready(Ok(true))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.body = None;
                        Poll::Ready(Err(h2_io(e)))
                    }
                    Poll::Ready(None) => {
                        self.body = None;
                        on(b"0\r\n\r\n");
                        Poll::Ready(Ok(true))
                    }
                };
            }
        }
        if let Some(pending) = &mut self.pending {
            return match Pin::new(pending).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => {
                    self.pending = None;
                    Poll::Ready(Err(h2_io(e)))
                }
                Poll::Ready(Ok(answer)) => {
                    self.pending = None;
                    let (parts, body) = answer.into_parts();
                    let status = parts.status;
                    let mut head = format!(
                        "HTTP/1.1 {} {}\r\n",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("-")
                    )
                    .into_bytes();
                    for (name, value) in &parts.headers {
                        if name != http::header::CONTENT_LENGTH
                            && name != http::header::TRANSFER_ENCODING
                        {
                            head.extend_from_slice(name.as_str().as_bytes());
                            head.extend_from_slice(b": ");
                            head.extend_from_slice(value.as_bytes());
                            head.extend_from_slice(b"\r\n");
                        }
                    }
                    head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                    self.body = Some(body);
                    on(&head);
                    Poll::Ready(Ok(true))
                }
            };
        }
        // Nothing asked: the connection's end is the end of the stream.
        if self.ended {
            return Poll::Ready(Ok(false));
        }
        match Pin::new(&mut self.conn).poll(cx) {
            Poll::Ready(_) => {
                self.ended = true;
                Poll::Ready(Ok(false))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Closes: the streams and the request handle go, so the connection sends GOAWAY and ends.
    pub fn shutdown(&mut self) {
        self.body = None;
        self.pending = None;
        self.send = None;
    }
}
