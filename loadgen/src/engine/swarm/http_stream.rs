//! Server-Sent Events and long-poll devices over HTTP/1.1, client side: the GET that opens
//! a stream or polls (with `Last-Event-ID`, or `If-Modified-Since` / `If-None-Match` from the
//! last answer, so a reconnecting device resumes where it was), and [`Reader`], which reads
//! the answers — head, chunked or sized body, and SSE events by the WHATWG rules (`data`
//! lines joined with `\n`, `id` kept until changed, `event`, comments and `retry` skipped).
//!
//! Like the WebSocket decoder, a reader keeps only what it has not handed over: an
//! incomplete head, chunk-size line or SSE line, and the event being assembled.

use std::borrow::Cow;

use super::connection::Cause;
use crate::scenario::device::HttpMode;

/// The longest head, SSE line or long-poll body accepted (1 MiB; a head 16 KiB).
const MAX_BODY: usize = 1 << 20;
const MAX_HEAD: usize = 16 * 1024;

/// The request that opens an SSE stream or makes one poll.
pub fn request(
    mode: HttpMode,
    host: &str,
    path: &str,
    resume: Option<&str>,
    headers: &[(String, String)],
) -> String {
    let accept = match mode {
        HttpMode::Sse => "text/event-stream",
        HttpMode::LongPoll => "*/*",
    };
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\nCache-Control: no-cache\r\n"
    );
    if let Some(r) = resume {
        match mode {
            HttpMode::Sse => {
                req.push_str("Last-Event-ID: ");
                req.push_str(r);
                req.push_str("\r\n");
            }
            HttpMode::LongPoll => {
                // `resume` holds the last answer's Last-Modified and Etag, tab-separated.
                let (modified, etag) = r.split_once('\t').unwrap_or((r, ""));
                if !modified.is_empty() {
                    req.push_str("If-Modified-Since: ");
                    req.push_str(modified);
                    req.push_str("\r\n");
                }
                if !etag.is_empty() {
                    req.push_str("If-None-Match: ");
                    req.push_str(etag);
                    req.push_str("\r\n");
                }
            }
        }
    }
    super::wire::end_head(&mut req, headers);
    req
}

/// What a reader hands over.
#[derive(Debug, PartialEq)]
pub enum Piece<'a> {
    /// An SSE event: its id (the last one set on the stream), type and data.
    Event {
        /// `id:` (kept from earlier events when this one sets none).
        id: Option<&'a str>,
        /// `event:` (none: `message`).
        name: Option<&'a str>,
        /// The `data:` lines joined with `\n`.
        data: &'a [u8],
    },
    /// A long-poll answer with a message: its body and its resume token (Last-Modified and
    /// Etag, tab-separated).
    Message {
        /// The body.
        body: &'a [u8],
        /// What the next poll sends back.
        resume: String,
    },
    /// A long-poll answer without a message (304, 408): poll again.
    Empty,
    /// The server ended the SSE stream's body.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Body {
    /// `Transfer-Encoding: chunked`: bytes left in the current chunk, or `None` while a
    /// chunk-size line is expected.
    Chunked(Option<usize>),
    /// Bytes left of a `Content-Length` body.
    Length(usize),
    /// Until the server closes.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Head,
    Body(Body),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk.
    Trailer,
}

/// Reads the answers on one connection.
#[derive(Debug)]
pub struct Reader {
    mode: HttpMode,
    stage: Stage,
    partial: Vec<u8>,
    /// SSE: an incomplete line; long-poll: the body so far.
    line: Vec<u8>,
    /// SSE: the event being assembled (`data` so far).
    data: Vec<u8>,
    /// SSE: whether any `data:` line came for the event being assembled.
    has_data: bool,
    /// SSE: the last line ended with CR (a LF next belongs to it).
    after_cr: bool,
    /// SSE: last event id; event type of the event being assembled.
    last_id: Option<Box<str>>,
    name: Option<Box<str>>,
    /// Long-poll: the current answer's status and resume token.
    status: u16,
    resume: String,
}

fn fail(cause: &'static str) -> Cause {
    Cow::Borrowed(cause)
}

impl Reader {
    /// A reader for `mode`.
    pub fn new(mode: HttpMode) -> Reader {
        Reader {
            mode,
            stage: Stage::Head,
            partial: Vec::new(),
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            last_id: None,
            name: None,
            status: 0,
            resume: String::new(),
        }
    }

    /// The last SSE event id seen.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feeds bytes read from the connection; `on` sees every piece in order.
    pub fn feed(&mut self, data: &[u8], on: &mut dyn FnMut(Piece<'_>)) -> Result<(), Cause> {
        // Taken out for the call: `parse` borrows the rest of `self`.
        let mut partial = std::mem::take(&mut self.partial);
        let parsed = common::stream::feed(&mut partial, data, |b| self.parse(b, on));
        self.partial = partial;
        parsed?;
        if self.partial.len() > MAX_HEAD {
            return Err(fail("malformed"));
        }
        Ok(())
    }

    /// Whether an answer's head has been read (an SSE stream is open).
    pub fn head_seen(&self) -> bool {
        self.status != 0
    }

    fn parse(&mut self, buf: &[u8], on: &mut dyn FnMut(Piece<'_>)) -> Result<usize, Cause> {
        let mut at = 0;
        while at < buf.len() {
            let rest = &buf[at..];
            let used = match self.stage {
                Stage::Head => match self.head(rest)? {
                    Some(n) => {
                        if self.stage == Stage::Head {
                            // A sized-empty answer (e.g. 304 with no body).
                            self.answer_done(on);
                        }
                        n
                    }
                    None => return Ok(at),
                },
                Stage::Body(Body::Chunked(None)) => {
                    let Some(end) = memchr::memmem::find(rest, b"\r\n") else {
                        return Ok(at);
                    };
                    let text = std::str::from_utf8(&rest[..end]).map_err(|_| fail("malformed"))?;
                    let size = text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size, 16).map_err(|_| fail("malformed"))?;
                    self.stage = if size == 0 {
                        Stage::Trailer
                    } else {
                        Stage::Body(Body::Chunked(Some(size)))
                    };
                    end + 2
                }
                Stage::Body(Body::Chunked(Some(left))) => {
                    let n = left.min(rest.len());
                    self.body(&rest[..n], on)?;
                    self.stage = if n == left {
                        Stage::ChunkEnd
                    } else {
                        Stage::Body(Body::Chunked(Some(left - n)))
                    };
                    n
                }
                Stage::ChunkEnd => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(fail("malformed"));
                    }
                    self.stage = Stage::Body(Body::Chunked(None));
                    2
                }
                Stage::Trailer => {
                    let Some(end) = memchr::memmem::find(rest, b"\r\n") else {
                        return Ok(at);
                    };
                    if end == 0 {
                        self.stage = Stage::Head;
                        self.answer_done(on);
                    }
                    end + 2
                }
                Stage::Body(Body::Length(left)) => {
                    let n = left.min(rest.len());
                    self.body(&rest[..n], on)?;
                    if n == left {
                        self.stage = Stage::Head;
                        self.answer_done(on);
                    } else {
                        self.stage = Stage::Body(Body::Length(left - n));
                    }
                    n
                }
                Stage::Body(Body::UntilClose) => {
                    self.body(rest, on)?;
                    rest.len()
                }
            };
            at += used;
        }
        Ok(at)
    }

    /// Parses a head at the start of `buf`: its length, or `None` while incomplete.
    fn head(&mut self, buf: &[u8]) -> Result<Option<usize>, Cause> {
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut answer = httparse::Response::new(&mut headers);
        let end = match answer.parse(buf) {
            Ok(httparse::Status::Complete(end)) => end,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(fail("malformed")),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(fail("malformed")),
        };
        let status = answer.code.unwrap_or(0);
        let header = |name: &str| {
            answer
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
        self.status = status;
        match self.mode {
            HttpMode::Sse => {
                if status != 200 {
                    return Err(status_cause(status));
                }
                let event_stream = header("content-type").is_some_and(|v| {
                    v.split(';')
                        .next()
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
                });
                if !event_stream {
                    return Err(fail("not_event_stream"));
                }
            }
            HttpMode::LongPoll => {
                if !matches!(status, 200 | 304 | 408) {
                    return Err(status_cause(status));
                }
                let modified = header("last-modified").unwrap_or("");
                let etag = header("etag").unwrap_or("");
                self.resume = format!("{modified}\t{etag}");
                self.line.clear();
            }
        }
        self.stage = if chunked {
            Stage::Body(Body::Chunked(None))
        } else {
            match length {
                Some(0) => Stage::Head,
                Some(n) if n > MAX_BODY => return Err(fail("malformed")),
                Some(n) => Stage::Body(Body::Length(n)),
                // A 304 has no body whatever it says.
                None if status == 304 => Stage::Head,
                None => Stage::Body(Body::UntilClose),
            }
        };
        Ok(Some(end))
    }

    /// An answer is complete: a long-poll message or an empty poll; for SSE the stream's end.
    fn answer_done(&mut self, on: &mut dyn FnMut(Piece<'_>)) {
        match self.mode {
            HttpMode::Sse => on(Piece::End),
            HttpMode::LongPoll if self.status == 200 => {
                let body = std::mem::take(&mut self.line);
                on(Piece::Message {
                    body: &body,
                    resume: std::mem::take(&mut self.resume),
                });
            }
            HttpMode::LongPoll => on(Piece::Empty),
        }
    }

    /// Body bytes: SSE lines, or a long-poll body.
    fn body(&mut self, mut bytes: &[u8], on: &mut dyn FnMut(Piece<'_>)) -> Result<(), Cause> {
        if self.mode == HttpMode::LongPoll {
            if self.line.len() + bytes.len() > MAX_BODY {
                return Err(fail("malformed"));
            }
            self.line.extend_from_slice(bytes);
            return Ok(());
        }
        while !bytes.is_empty() {
            // CR LF is one line end, even split across reads or chunks.
            if std::mem::take(&mut self.after_cr) && bytes[0] == b'\n' {
                bytes = &bytes[1..];
                continue;
            }
            match memchr::memchr2(b'\n', b'\r', bytes) {
                Some(i) => {
                    self.after_cr = bytes[i] == b'\r';
                    if self.line.is_empty() {
                        self.sse_line(&bytes[..i], on);
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&bytes[..i]);
                        self.sse_line(&line, on);
                    }
                    bytes = &bytes[i + 1..];
                }
                None => {
                    if self.line.len() + bytes.len() > MAX_BODY {
                        return Err(fail("malformed"));
                    }
                    self.line.extend_from_slice(bytes);
                    break;
                }
            }
        }
        Ok(())
    }

    /// One SSE line (without its end).
    fn sse_line(&mut self, line: &[u8], on: &mut dyn FnMut(Piece<'_>)) {
        if line.is_empty() {
            if self.has_data {
                on(Piece::Event {
                    id: self.last_id.as_deref(),
                    name: self.name.as_deref(),
                    data: &self.data,
                });
            }
            self.data.clear();
            self.data.shrink_to(0);
            self.has_data = false;
            self.name = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"id" if !value.contains(&0) => {
                self.last_id = std::str::from_utf8(value).ok().map(Into::into);
            }
            b"event" => self.name = std::str::from_utf8(value).ok().map(Into::into),
            _ => {}
        }
    }
}

/// `status_404` and the like.
fn status_cause(status: u16) -> Cause {
    Cow::Owned(format!("status_{status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(r: &mut Reader, data: &[u8]) -> Result<Vec<String>, Cause> {
        let mut out = Vec::new();
        r.feed(data, &mut |p| out.push(format!("{p:?}")))?;
        Ok(out)
    }

    fn chunked(body: &str) -> String {
        // Split into chunks of 7 bytes.
        let mut out = String::new();
        for c in body.as_bytes().chunks(7) {
            out.push_str(&format!("{:x}\r\n", c.len()));
            out.push_str(std::str::from_utf8(c).unwrap());
            out.push_str("\r\n");
        }
        out
    }

    #[test]
    fn sse_events_split_anywhere_come_out_whole() {
        let body = ": hello\n\nid: 7:1\nevent: push\ndata: {\"id\":\"a\"}\n\ndata: x\r\ndata: y\r\n\r\nid: 9\nretry: 10\ndata:z\n\n";
        let all = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
            chunked(body)
        );
        let want = vec![
            r#"Event { id: Some("7:1"), name: Some("push"), data: [123, 34, 105, 100, 34, 58, 34, 97, 34, 125] }"#.to_string(),
            r#"Event { id: Some("7:1"), name: None, data: [120, 10, 121] }"#.to_string(),
            r#"Event { id: Some("9"), name: None, data: [122] }"#.to_string(),
            "End".to_string(),
        ];
        for split in 0..all.len() {
            let mut r = Reader::new(HttpMode::Sse);
            let mut got = pieces(&mut r, &all.as_bytes()[..split]).unwrap();
            got.extend(pieces(&mut r, &all.as_bytes()[split..]).unwrap());
            assert_eq!(got, want, "split at {split}");
            assert_eq!(r.last_id(), Some("9"));
        }
    }

    #[test]
    fn an_sse_answer_that_is_not_an_event_stream_is_refused_by_cause() {
        let mut r = Reader::new(HttpMode::Sse);
        let e = pieces(
            &mut r,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(e, "not_event_stream");
        let mut r = Reader::new(HttpMode::Sse);
        let e = pieces(
            &mut r,
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(e, "status_403");
        let mut r = Reader::new(HttpMode::Sse);
        let e = pieces(&mut r, b"SSH-2.0-OpenSSH_9\r\n\r\n").unwrap_err();
        assert_eq!(e, "malformed");
    }

    #[test]
    fn long_poll_answers_carry_their_resume_token() {
        let mut all = String::new();
        all.push_str("HTTP/1.1 200 OK\r\nLast-Modified: Sat, 05 Dec 2026 09:00:00 GMT\r\nEtag: 0\r\nContent-Length: 5\r\n\r\nhello");
        all.push_str("HTTP/1.1 304 Not Modified\r\n\r\n");
        all.push_str(&format!(
            "HTTP/1.1 200 OK\r\nEtag: 1\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
            chunked("{\"id\":\"m-2\"}")
        ));
        for split in 0..all.len() {
            let mut r = Reader::new(HttpMode::LongPoll);
            let mut got = pieces(&mut r, &all.as_bytes()[..split]).unwrap();
            got.extend(pieces(&mut r, &all.as_bytes()[split..]).unwrap());
            assert_eq!(got.len(), 3, "split at {split}: {got:?}");
            assert!(
                got[0].contains("resume: \"Sat, 05 Dec 2026 09:00:00 GMT\\t0\""),
                "{}",
                got[0]
            );
            assert_eq!(got[1], "Empty");
            assert!(got[2].contains("resume: \"\\t1\""), "{}", got[2]);
        }
        let req = request(HttpMode::LongPoll, "h:1", "/sub/a", Some("Sat\t1"), &[]);
        assert!(
            req.contains("If-Modified-Since: Sat\r\nIf-None-Match: 1\r\n"),
            "{req}"
        );
        let req = request(HttpMode::Sse, "h:1", "/sub/a", Some("5:0"), &[]);
        assert!(
            req.contains(
                "Accept: text/event-stream\r\nCache-Control: no-cache\r\nLast-Event-ID: 5:0\r\n"
            ),
            "{req}"
        );
        let mut r = Reader::new(HttpMode::LongPoll);
        let e = pieces(&mut r, b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n").unwrap_err();
        assert_eq!(e, "status_500");
    }
}
