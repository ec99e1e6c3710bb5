//! A device connection's byte stream: plain TCP read through a per-thread scratch buffer
//! (nothing kept per connection between reads), TLS with its own small buffer, or an HTTP/2
//! connection carrying SSE or long-poll requests (the sibling module `h2io`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connection::Cause;
use super::h2io::H2Io;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// The connection's byte stream.
pub(crate) enum Io {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsIo>),
    /// HTTP/2 (over TCP or TLS): writes are requests, reads are answers in HTTP/1.1 form.
    H2(Box<H2Io>),
}

/// A TLS stream and its read buffer.
pub(crate) struct TlsIo {
    /// The stream.
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
    /// Decrypted bytes are read into this.
    pub buf: Box<[u8]>,
}

/// The failure cause of an I/O error.
pub(crate) fn io_cause(e: &io::Error) -> Cause {
    Cow::Borrowed(match e.kind() {
        io::ErrorKind::UnexpectedEof => "closed",
        io::ErrorKind::TimedOut => "timeout",
        _ => "reset",
    })
}

impl Io {
    /// Waits for data and hands it to `on`; `Ok(false)` at the end of the stream.
    /// Cancel-safe: nothing is consumed unless it was handed over.
    pub async fn read_with(&mut self, on: &mut (dyn FnMut(&[u8]) + Send)) -> io::Result<bool> {
        match self {
            // `poll_read` into the shared scratch buffer, handing the data over within the
            // same poll: a read shorter than the buffer tells tokio the socket is drained,
            // so the next read waits for readiness instead of costing an extra `recv`
            // that finds nothing (which `try_read` would).
            Io::Plain(s) => {
                std::future::poll_fn(|cx| {
                    SCRATCH.with_borrow_mut(|buf| {
                        let mut rb = tokio::io::ReadBuf::new(buf);
                        match std::pin::Pin::new(&mut *s).poll_read(cx, &mut rb) {
                            std::task::Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                                std::task::Poll::Ready(Ok(false))
                            }
                            std::task::Poll::Ready(Ok(())) => {
                                on(rb.filled());
                                std::task::Poll::Ready(Ok(true))
                            }
                            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                            std::task::Poll::Pending => std::task::Poll::Pending,
                        }
                    })
                })
                .await
            }
            Io::Tls(t) => {
                let n = t.stream.read(&mut t.buf).await?;
                if n == 0 {
                    return Ok(false);
                }
                on(&t.buf[..n]);
                Ok(true)
            }
            Io::H2(h) => h.read_with(on).await,
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.write_all(data).await,
            Io::Tls(t) => {
                t.stream.write_all(data).await?;
                t.stream.flush().await
            }
            Io::H2(h) => h.request(data).await,
        }
    }

    /// Sends FIN (TLS: close_notify first).
    pub async fn shutdown(&mut self) {
        let _ = match self {
            Io::Plain(s) => s.shutdown().await,
            Io::Tls(t) => t.stream.shutdown().await,
            Io::H2(h) => {
                h.shutdown();
                Ok(())
            }
        };
    }
}
