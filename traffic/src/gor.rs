//! GoReplay `.gor` files: reading records and writing them.
//!
//! A file is a sequence of payloads, each followed by the separator `"\n🐵🙈🙉\n"`. A payload
//! is a header line `TYPE ID TIMESTAMP_NS LATENCY_NS` (older files: three fields, no latency)
//! and a raw HTTP/1.x message; type 1 is a request, 2 the original response, 3 a replayed
//! response. Bodies are written unescaped, so the separator text may occur inside one:
//! GoReplay itself splits at the first separator line. This reader frames each message by its
//! HTTP head (`Content-Length`, chunked transfer coding, or no body for a request without
//! either) and only falls back to the first separator when the framing does not end at a
//! separator (a truncated body, a HEAD response with a length, a message without framing).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Location, ReadError};

/// The payload separator GoReplay writes after every payload.
pub const SEPARATOR: &[u8] = "\n🐵🙈🙉\n".as_bytes();

/// Longest header line accepted.
const MAX_HEADER_LINE: usize = 4096;
/// Longest HTTP head accepted.
const MAX_HEAD: usize = 1 << 20;
/// Bytes read from the file at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Headers parsed per message.
const MAX_HEADERS: usize = 256;

/// GoReplay payload types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `1`: a request.
    Request,
    /// `2`: the original response.
    Response,
    /// `3`: a response to a replayed request.
    ReplayedResponse,
}

impl Kind {
    /// The digit written in the header.
    pub fn digit(self) -> char {
        match self {
            Kind::Request => '1',
            Kind::Response => '2',
            Kind::ReplayedResponse => '3',
        }
    }
}

/// How a message's end was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// By the HTTP head (`Content-Length`, chunked, or no body), followed by a separator.
    Http,
    /// By the first separator after the head (the HTTP framing did not end at one).
    Separator,
}

/// One record of a `.gor` file.
#[derive(Debug, Clone, PartialEq)]
pub struct GorRecord {
    /// Payload type.
    pub kind: Kind,
    /// Request id shared by a request and its responses.
    pub id: String,
    /// Timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// Latency in nanoseconds (`None` in three-field headers; `-1` means unknown).
    pub latency_ns: Option<i64>,
    /// The raw HTTP message as in the file.
    pub message: Bytes,
    /// Length of the HTTP head within `message`.
    pub head_len: usize,
    /// The body, de-chunked.
    pub body: Bytes,
    /// How the end was found.
    pub framing: Framing,
    /// 1-based record number.
    pub number: u64,
    /// Byte offset of the record in the (decompressed) file.
    pub offset: u64,
}

/// Reads [`GorRecord`]s from a byte stream. After a malformed record it resynchronises at the
/// next separator, so a caller that skips malformed records can go on reading.
pub struct GorReader<R> {
    inner: R,
    path: PathBuf,
    buf: Vec<u8>,
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    number: u64,
}

impl<R: Read> GorReader<R> {
    /// A reader of `inner`; `path` names the file in errors.
    pub fn new(inner: R, path: &Path) -> GorReader<R> {
        GorReader {
            inner,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            base: 0,
            eof: false,
            number: 0,
        }
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads one more chunk; false at end of file.
    fn fill_more(&mut self) -> Result<bool, ReadError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > READ_CHUNK && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        loop {
            match self.inner.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.buf.truncate(old + n);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(ReadError::Io {
                        path: self.path.clone(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Makes at least `n` bytes available from `pos` unless the file ends first.
    fn fill_to(&mut self, n: usize) -> Result<(), ReadError> {
        while self.avail().len() < n && self.fill_more()? {}
        Ok(())
    }

    /// The next record, `None` at the end of the file.
    pub fn next_record(&mut self) -> Option<Result<GorRecord, ReadError>> {
        match self.skip_blank() {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        self.number += 1;
        let offset = self.base + self.pos as u64;
        match self.parse_record(offset) {
            Ok(mut r) => {
                r.number = self.number;
                Some(Ok(r))
            }
            Err(Bad::Io(e)) => {
                self.pos = self.buf.len();
                self.eof = true;
                Some(Err(e))
            }
            Err(Bad::Malformed(message)) => {
                self.resync();
                Some(Err(ReadError::Malformed {
                    path: self.path.clone(),
                    at: Location::Record {
                        number: self.number,
                        offset,
                    },
                    message,
                }))
            }
        }
    }

    /// Skips blank lines and stray separators between records; false at end of file.
    fn skip_blank(&mut self) -> Result<bool, ReadError> {
        let bare = &SEPARATOR[1..];
        loop {
            self.fill_to(bare.len())?;
            let a = self.avail();
            if a.is_empty() {
                return Ok(false);
            }
            if a.starts_with(bare) {
                self.pos += bare.len();
            } else if a[0] == b'\n' || a[0] == b'\r' {
                self.pos += 1;
            } else {
                return Ok(true);
            }
        }
    }

    /// After a malformed record (which starts at `pos`: a failed parse does not move it,
    /// though a refill may have moved the buffer): continue after the next separator.
    fn resync(&mut self) {
        let mut from = 1;
        loop {
            let a = self.avail();
            if from < a.len() {
                if let Some(i) = memchr::memmem::find(&a[from..], SEPARATOR) {
                    self.pos += from + i + SEPARATOR.len();
                    return;
                }
            }
            from = a.len().saturating_sub(SEPARATOR.len() - 1).max(1);
            match self.fill_more() {
                Ok(true) => {}
                _ => {
                    self.pos = self.buf.len();
                    return;
                }
            }
        }
    }

    fn parse_record(&mut self, offset: u64) -> Result<GorRecord, Bad> {
        // Header line.
        let mut scanned = 0;
        let header_end = loop {
            if let Some(i) = memchr::memchr(b'\n', &self.avail()[scanned..]) {
                break scanned + i;
            }
            scanned = self.avail().len();
            if scanned > MAX_HEADER_LINE {
                return Err(Bad::Malformed(format!(
                    "no header line within {MAX_HEADER_LINE} bytes; is this a GoReplay file?"
                )));
            }
            if !self.fill_more()? {
                return Err(Bad::Malformed(
                    "truncated record: the file ends inside the header line".into(),
                ));
            }
        };
        let header = parse_header(&self.avail()[..header_end])?;
        let ms = header_end + 1;

        // HTTP head.
        let (head_len, body_framing) = loop {
            let a = &self.avail()[ms..];
            match parse_head(header.kind, a) {
                Ok(Some(v)) => break v,
                Ok(None) => {}
                Err(e) => {
                    // A head cut short by the separator reads as a bad header line.
                    let cut = memchr::memmem::find(a, SEPARATOR)
                        .is_some_and(|i| matches!(parse_head(header.kind, &a[..i]), Ok(None)));
                    return Err(Bad::Malformed(if cut {
                        "the HTTP head is not complete before the record separator".into()
                    } else {
                        e
                    }));
                }
            }
            if let Some(i) = memchr::memmem::find(a, SEPARATOR) {
                return Err(Bad::Malformed(format!(
                    "the HTTP head is not complete before the record separator ({i} bytes in)"
                )));
            }
            if a.len() > MAX_HEAD {
                return Err(Bad::Malformed(format!(
                    "HTTP head longer than {MAX_HEAD} bytes"
                )));
            }
            if !self.fill_more()? {
                return Err(Bad::Malformed(
                    "truncated record: the file ends inside the HTTP head".into(),
                ));
            }
        };
        let bs = ms + head_len;

        // Body by HTTP framing, then a separator (or the end of the file) must follow.
        let framed = self.frame_body(bs, body_framing)?;
        if let Some((body_end, body)) = framed {
            self.fill_to(body_end + SEPARATOR.len())?;
            let rest = &self.avail()[body_end..];
            let at_end = self.eof && SEPARATOR.starts_with(rest);
            if rest.starts_with(SEPARATOR) || at_end {
                let message = Bytes::copy_from_slice(&self.avail()[ms..body_end]);
                self.pos += (body_end + SEPARATOR.len()).min(self.avail().len());
                return Ok(header.into_record(message, head_len, body, Framing::Http, offset));
            }
        }

        // Fallback: the first separator after the head ends the message.
        let mut from = bs;
        let sep_at = loop {
            if let Some(i) = memchr::memmem::find(&self.avail()[from..], SEPARATOR) {
                break Some(from + i);
            }
            from = self
                .avail()
                .len()
                .saturating_sub(SEPARATOR.len() - 1)
                .max(bs);
            if !self.fill_more()? {
                break None;
            }
        };
        let end = match sep_at {
            Some(e) => e,
            None => {
                let body_len = self.avail().len() - bs;
                return Err(Bad::Malformed(match body_framing {
                    BodyFraming::Length(n) if n > body_len => format!(
                        "truncated record: Content-Length is {n} but the file ends after {body_len} body bytes"
                    ),
                    BodyFraming::Chunked => {
                        "truncated record: the file ends inside a chunked body".into()
                    }
                    _ => "no record separator after the HTTP message".into(),
                }));
            }
        };
        let a = self.avail();
        let message = Bytes::copy_from_slice(&a[ms..end]);
        let body = match body_framing {
            BodyFraming::Chunked => match dechunk(&a[bs..end]) {
                Ok(Some((_, b))) => Bytes::from(b),
                _ => Bytes::copy_from_slice(&a[bs..end]),
            },
            _ => Bytes::copy_from_slice(&a[bs..end]),
        };
        self.pos += end + SEPARATOR.len();
        Ok(header.into_record(message, head_len, body, Framing::Separator, offset))
    }

    /// The end of the body by HTTP framing (relative to `pos`) and the de-chunked body; `None`
    /// when the framing cannot say (no length, bad chunks, file ends first).
    fn frame_body(
        &mut self,
        bs: usize,
        framing: BodyFraming,
    ) -> Result<Option<(usize, Bytes)>, Bad> {
        match framing {
            BodyFraming::Length(n) => {
                let Some(end) = bs.checked_add(n) else {
                    return Ok(None);
                };
                self.fill_to(end)?;
                if self.avail().len() < end {
                    return Ok(None);
                }
                Ok(Some((end, Bytes::copy_from_slice(&self.avail()[bs..end]))))
            }
            BodyFraming::Chunked => loop {
                match dechunk(&self.avail()[bs..]) {
                    Ok(Some((len, body))) => return Ok(Some((bs + len, Bytes::from(body)))),
                    Ok(None) => {
                        if !self.fill_more()? {
                            return Ok(None);
                        }
                    }
                    Err(_) => return Ok(None),
                }
            },
            BodyFraming::UntilSeparator => Ok(None),
        }
    }
}

impl<R: Read> Iterator for GorReader<R> {
    type Item = Result<GorRecord, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

enum Bad {
    Io(ReadError),
    Malformed(String),
}

impl From<ReadError> for Bad {
    fn from(e: ReadError) -> Bad {
        Bad::Io(e)
    }
}

struct Header {
    kind: Kind,
    id: String,
    ts_ns: i64,
    latency_ns: Option<i64>,
}

impl Header {
    fn into_record(
        self,
        message: Bytes,
        head_len: usize,
        body: Bytes,
        framing: Framing,
        offset: u64,
    ) -> GorRecord {
        GorRecord {
            kind: self.kind,
            id: self.id,
            ts_ns: self.ts_ns,
            latency_ns: self.latency_ns,
            message,
            head_len,
            body,
            framing,
            number: 0,
            offset,
        }
    }
}

fn parse_header(line: &[u8]) -> Result<Header, Bad> {
    let text = std::str::from_utf8(line).unwrap_or("");
    let text = text.strip_suffix('\r').unwrap_or(text);
    // Built only on the error path: this runs once per record.
    let bad = |why: &str| {
        let shown: String = String::from_utf8_lossy(line).chars().take(80).collect();
        Bad::Malformed(format!(
            "bad header `{shown}`: {why} (expected `TYPE ID TIMESTAMP_NS [LATENCY_NS]`)"
        ))
    };
    let mut fields = [""; 4];
    let mut n = 0;
    for f in text.split(' ') {
        if n < 4 {
            fields[n] = f;
        }
        n += 1;
    }
    if n != 3 && n != 4 {
        return Err(bad(&format!("{n} fields")));
    }
    let fields = &fields[..n];
    let kind = match fields[0] {
        "1" => Kind::Request,
        "2" => Kind::Response,
        "3" => Kind::ReplayedResponse,
        _ => return Err(bad("type is not 1, 2 or 3")),
    };
    if fields[1].is_empty() {
        return Err(bad("empty id"));
    }
    let ts_ns = fields[2]
        .parse::<i64>()
        .map_err(|_| bad("timestamp is not an integer"))?;
    let latency_ns = match fields.get(3) {
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| bad("latency is not an integer"))?,
        ),
        None => None,
    };
    Ok(Header {
        kind,
        id: fields[1].to_string(),
        ts_ns,
        latency_ns,
    })
}

#[derive(Debug, Clone, Copy)]
enum BodyFraming {
    Length(usize),
    Chunked,
    UntilSeparator,
}

/// Parses an HTTP head: `Ok(None)` when incomplete.
fn parse_head(kind: Kind, data: &[u8]) -> Result<Option<(usize, BodyFraming)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, headers, bodyless) = match kind {
        Kind::Request => {
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(data) {
                Ok(httparse::Status::Complete(n)) => (n, req.headers, false),
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(format!("not an HTTP/1.x request: {e}")),
            }
        }
        Kind::Response | Kind::ReplayedResponse => {
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(data) {
                Ok(httparse::Status::Complete(n)) => {
                    let code = resp.code.unwrap_or(0);
                    (n, resp.headers, code < 200 || code == 204 || code == 304)
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(format!("not an HTTP/1.x response: {e}")),
            }
        }
    };
    let mut framing = if kind == Kind::Request || bodyless {
        BodyFraming::Length(0)
    } else {
        BodyFraming::UntilSeparator
    };
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.contains("chunked") {
                framing = BodyFraming::Chunked;
                break;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).unwrap_or("").trim();
            match v.parse::<usize>() {
                Ok(n) => framing = BodyFraming::Length(n),
                Err(_) => return Err(format!("bad Content-Length `{}`", v)),
            }
        }
    }
    if bodyless {
        framing = BodyFraming::Length(0);
    }
    Ok(Some((len, framing)))
}

/// Decodes a chunked body at the start of `data`: `Ok(Some((consumed, body)))`, `Ok(None)`
/// when incomplete.
pub fn dechunk(data: &[u8]) -> Result<Option<(usize, Vec<u8>)>, String> {
    let mut body = Vec::new();
    let mut i = 0;
    loop {
        let Some(nl) = memchr::memchr(b'\n', &data[i..]) else {
            return Ok(None);
        };
        let line = trim_cr(&data[i..i + nl]);
        let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size_text = std::str::from_utf8(size_text).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.trim(), 16)
            .map_err(|_| format!("bad chunk size `{}`", size_text.trim()))?;
        i += nl + 1;
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let Some(nl) = memchr::memchr(b'\n', &data[i..]) else {
                    return Ok(None);
                };
                let line = trim_cr(&data[i..i + nl]);
                i += nl + 1;
                if line.is_empty() {
                    return Ok(Some((i, body)));
                }
            }
        }
        let end = i.checked_add(size).ok_or("chunk size overflows")?;
        if data.len() < end + 1 {
            return Ok(None);
        }
        body.extend_from_slice(&data[i..end]);
        i = end;
        if data[i..].starts_with(b"\r\n") {
            i += 2;
        } else if data[i] == b'\n' {
            i += 1;
        } else if data.len() < i + 2 {
            return Ok(None);
        } else {
            return Err("chunk data not followed by CRLF".into());
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A request parsed from a type-1 record's message.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// Method.
    pub method: String,
    /// Request target as written (origin form, or absolute form through a proxy).
    pub target: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
}

/// Parses the head of a request message.
pub fn parse_request_head(message: &[u8]) -> Result<ParsedRequest, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(message) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete HTTP request head".into()),
        Err(e) => return Err(format!("not an HTTP/1.x request: {e}")),
    }
    Ok(ParsedRequest {
        method: req.method.unwrap_or("GET").to_string(),
        target: req.path.unwrap_or("/").to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    })
}

/// The status of a response message.
pub fn parse_response_status(message: &[u8]) -> Result<u16, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(message) {
        Ok(httparse::Status::Complete(_)) => Ok(resp.code.unwrap_or(0)),
        Ok(httparse::Status::Partial) => Err("incomplete HTTP response head".into()),
        Err(e) => Err(format!("not an HTTP/1.x response: {e}")),
    }
}

/// Writes `.gor` records that GoReplay reads.
pub struct GorWriter<W: Write> {
    out: W,
}

impl<W: Write> GorWriter<W> {
    /// A writer to `out`.
    pub fn new(out: W) -> GorWriter<W> {
        GorWriter { out }
    }

    /// Writes one record: header line, the raw HTTP message, the separator.
    pub fn write(
        &mut self,
        kind: Kind,
        id: &str,
        ts_ns: i64,
        latency_ns: i64,
        message: &[u8],
    ) -> std::io::Result<()> {
        writeln!(self.out, "{} {id} {ts_ns} {latency_ns}", kind.digit())?;
        self.out.write_all(message)?;
        self.out.write_all(SEPARATOR)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// An HTTP/1.1 request message with `Content-Length` framing (any `Transfer-Encoding` or
/// `Content-Length` in `headers` is replaced), as `.gor` files hold it.
pub fn encode_request(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("{method} {target} HTTP/1.1\r\n").as_bytes());
    encode_headers_and_body(&mut out, headers, body, true);
    out
}

/// An HTTP/1.1 response message with `Content-Length` framing.
pub fn encode_response(
    status: u16,
    reason: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    let bodyless = status < 200 || status == 204 || status == 304;
    encode_headers_and_body(&mut out, headers, body, !bodyless);
    out
}

fn encode_headers_and_body(
    out: &mut Vec<u8>,
    headers: &[(String, String)],
    body: &[u8],
    length: bool,
) {
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding") {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if length
        && (!body.is_empty()
            || headers.iter().any(|(n, _)| {
                n.eq_ignore_ascii_case("content-length")
                    || n.eq_ignore_ascii_case("transfer-encoding")
            }))
    {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}
