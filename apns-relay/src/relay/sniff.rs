//! Watches the HTTP/2 frames a server sends for GOAWAY and remembers its last-stream-id.
//!
//! h2 reports streams cut by a GOAWAY as `is_go_away()` errors, but after a GOAWAY with an
//! error code it hands the same error to every stream, those the server processed included,
//! and it does not expose the last-stream-id. Retrying is only safe for streams above it, so
//! this reader parses frame headers as the bytes pass (9-byte header, 4 bytes of GOAWAY
//! payload) before h2 sees them.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const GOAWAY: u8 = 0x7;

/// The GOAWAY state of one connection, shared with the pool.
#[derive(Debug)]
pub struct GoAwayWatch {
    last_stream_id: AtomicU32,
}

impl Default for GoAwayWatch {
    fn default() -> Self {
        GoAwayWatch {
            last_stream_id: AtomicU32::new(u32::MAX),
        }
    }
}

impl GoAwayWatch {
    /// The lowest last-stream-id of the GOAWAYs seen, if any.
    pub fn last_stream_id(&self) -> Option<u32> {
        let v = self.last_stream_id.load(Ordering::Acquire);
        (v != u32::MAX).then_some(v)
    }

    /// Whether the server said it did not process stream `id`.
    pub fn refused(&self, id: u32) -> bool {
        self.last_stream_id().is_some_and(|last| id > last)
    }

    fn record(&self, last: u32) {
        self.last_stream_id.fetch_min(last, Ordering::AcqRel);
    }
}

/// An I/O stream whose read side is parsed for GOAWAY frames.
pub struct Sniff<S> {
    inner: S,
    parser: FrameParser,
}

/// The frame-header state machine.
struct FrameParser {
    watch: Arc<GoAwayWatch>,
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
    in_goaway: bool,
    goaway_id: [u8; 4],
    goaway_len: usize,
}

impl<S> Sniff<S> {
    /// Wraps `inner`; the stream must carry server-to-client HTTP/2 frames from its first byte.
    pub fn new(inner: S, watch: Arc<GoAwayWatch>) -> Sniff<S> {
        Sniff {
            inner,
            parser: FrameParser {
                watch,
                header: [0; 9],
                header_len: 0,
                payload_left: 0,
                in_goaway: false,
                goaway_id: [0; 4],
                goaway_len: 0,
            },
        }
    }
}

impl FrameParser {
    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left == 0 {
                let n = (9 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == 9 {
                    self.header_len = 0;
                    let h = self.header;
                    self.payload_left =
                        (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    self.in_goaway = h[3] == GOAWAY;
                    self.goaway_len = 0;
                }
            } else {
                let n = self.payload_left.min(bytes.len());
                if self.in_goaway && self.goaway_len < 4 {
                    let take = (4 - self.goaway_len).min(n);
                    self.goaway_id[self.goaway_len..self.goaway_len + take]
                        .copy_from_slice(&bytes[..take]);
                    self.goaway_len += take;
                    if self.goaway_len == 4 {
                        self.watch
                            .record(u32::from_be_bytes(self.goaway_id) & 0x7fff_ffff);
                    }
                }
                self.payload_left -= n;
                bytes = &bytes[n..];
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            this.parser.observe(&buf.filled()[before..]);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn finds_goaway_last_stream_id_across_split_reads() {
        let watch = Arc::new(GoAwayWatch::default());
        let mut s = Sniff::new(tokio::io::empty(), watch.clone());
        let mut bytes = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]); // SETTINGS
        bytes.extend(frame(0x1, 1, &[0x88])); // HEADERS
        bytes.extend(frame(0x0, 1, b"{\"reason\":\"x\"}")); // DATA
        let mut goaway = 41u32.to_be_bytes().to_vec();
        goaway.extend_from_slice(&2u32.to_be_bytes());
        goaway.extend_from_slice(b"{\"reason\":\"Shutdown\"}");
        bytes.extend(frame(GOAWAY, 0, &goaway));
        for chunk in bytes.chunks(5) {
            assert_eq!(watch.last_stream_id(), None);
            s.parser.observe(chunk);
            if watch.last_stream_id().is_some() {
                break;
            }
        }
        assert_eq!(watch.last_stream_id(), Some(41));
        assert!(watch.refused(43));
        assert!(!watch.refused(41));
    }

    #[test]
    fn data_that_looks_like_goaway_is_ignored() {
        let watch = Arc::new(GoAwayWatch::default());
        let mut s = Sniff::new(tokio::io::empty(), watch.clone());
        let inner = frame(GOAWAY, 0, &[0, 0, 0, 1, 0, 0, 0, 0]);
        s.parser.observe(&frame(0x0, 1, &inner));
        assert_eq!(watch.last_stream_id(), None);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..200 {
            let watch = Arc::new(GoAwayWatch::default());
            let mut s = Sniff::new(tokio::io::empty(), watch);
            for _ in 0..50 {
                let len = rng.usize(0..64);
                let chunk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                s.parser.observe(&chunk);
            }
        }
    }
}
