//! What travels on a device connection, client side: WebSocket frames (RFC 6455: client
//! frames masked, server frames unmasked, fragments reassembled, control frames answered),
//! 4-byte big-endian length-prefixed frames and newline-delimited text on raw TCP, the raw
//! byte stream a protocol with its own packets reads (MQTT), and the WebSocket opening
//! handshake.
//!
//! The [`Decoder`] keeps only a partial frame per connection (empty, unallocated, between
//! messages); reads go through a per-thread scratch buffer in the device task, so an idle
//! connection costs no buffer at all.

use base64::Engine as _;

/// The largest message accepted from a server (1 MiB); a larger frame is malformed.
pub const MAX_MESSAGE: usize = 1 << 20;

/// How messages are framed on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// WebSocket text frames.
    Ws,
    /// 4-byte big-endian length, then the payload.
    LengthU32,
    /// One message per line.
    Newline,
    /// No framing: every read is handed over as it came (a protocol with its own packets,
    /// such as MQTT over TCP, splits them itself).
    Raw,
}

/// One frame read from the server.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// A whole message (text or binary frame, reassembled; a TCP frame; a line).
    Message(&'a [u8]),
    /// A WebSocket ping with its payload.
    Ping(&'a [u8]),
    /// A WebSocket pong.
    Pong,
    /// A WebSocket close frame.
    Close,
}

/// A frame that breaks the framing: the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed frame: {0}")]
pub struct Malformed(pub &'static str);

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
/// WebSocket binary opcode.
pub const OP_BINARY: u8 = 0x2;
/// WebSocket close opcode.
pub const OP_CLOSE: u8 = 0x8;
/// WebSocket ping opcode.
pub const OP_PING: u8 = 0x9;
/// WebSocket pong opcode.
pub const OP_PONG: u8 = 0xA;

/// Splits a byte stream into frames, keeping only an incomplete frame between reads.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    partial: Vec<u8>,
    fragments: Option<Vec<u8>>,
}

impl Decoder {
    /// A decoder for `framing`.
    pub fn new(framing: Framing) -> Decoder {
        Decoder {
            framing,
            partial: Vec::new(),
            fragments: None,
        }
    }

    /// The framing.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Feeds bytes read from the connection; `on` sees every complete frame in order.
    pub fn feed(&mut self, data: &[u8], on: &mut dyn FnMut(Frame<'_>)) -> Result<(), Malformed> {
        // Taken out for the call: `parse` borrows the rest of `self`.
        let mut partial = std::mem::take(&mut self.partial);
        let parsed = common::stream::feed(&mut partial, data, |b| self.parse(b, on));
        self.partial = partial;
        parsed?;
        Ok(())
    }

    fn parse(&mut self, buf: &[u8], on: &mut dyn FnMut(Frame<'_>)) -> Result<usize, Malformed> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            let used = match self.framing {
                Framing::LengthU32 => {
                    if rest.len() < 4 {
                        return Ok(at);
                    }
                    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    if len > MAX_MESSAGE {
                        return Err(Malformed("length prefix above the 1 MiB limit"));
                    }
                    if rest.len() < 4 + len {
                        return Ok(at);
                    }
                    on(Frame::Message(&rest[4..4 + len]));
                    4 + len
                }
                Framing::Newline => match rest.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        let line = &rest[..i];
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        if !line.is_empty() {
                            on(Frame::Message(line));
                        }
                        i + 1
                    }
                    None if rest.len() > MAX_MESSAGE => {
                        return Err(Malformed("line above the 1 MiB limit"))
                    }
                    None => return Ok(at),
                },
                Framing::Raw => {
                    on(Frame::Message(rest));
                    rest.len()
                }
                Framing::Ws => match self.ws_frame(rest, on)? {
                    Some(n) => n,
                    None => return Ok(at),
                },
            };
            at += used;
            if at == buf.len() {
                return Ok(at);
            }
        }
    }

    /// Parses one WebSocket frame at the start of `rest`: its length, or `None` when
    /// incomplete.
    fn ws_frame(
        &mut self,
        rest: &[u8],
        on: &mut dyn FnMut(Frame<'_>),
    ) -> Result<Option<usize>, Malformed> {
        if rest.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (rest[0], rest[1]);
        if b0 & 0x70 != 0 {
            return Err(Malformed(
                "reserved bits set without a negotiated extension",
            ));
        }
        if b1 & 0x80 != 0 {
            return Err(Malformed("masked frame from the server"));
        }
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0f;
        let (len, head) = match b1 & 0x7f {
            126 => {
                if rest.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4)
            }
            127 => {
                if rest.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[2..10]);
                (
                    usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX),
                    10,
                )
            }
            n => (n as usize, 2),
        };
        if len > MAX_MESSAGE {
            return Err(Malformed("WebSocket frame above the 1 MiB limit"));
        }
        if op >= 0x8 && (!fin || len > 125) {
            return Err(Malformed("fragmented or oversized control frame"));
        }
        if rest.len() < head + len {
            return Ok(None);
        }
        let payload = &rest[head..head + len];
        match op {
            OP_TEXT | OP_BINARY => {
                if self.fragments.is_some() {
                    return Err(Malformed("new data frame inside a fragmented message"));
                }
                if fin {
                    on(Frame::Message(payload));
                } else {
                    self.fragments = Some(payload.to_vec());
                }
            }
            OP_CONT => {
                let Some(frag) = self.fragments.as_mut() else {
                    return Err(Malformed("continuation frame without a message"));
                };
                if frag.len() + len > MAX_MESSAGE {
                    return Err(Malformed("fragmented message above the 1 MiB limit"));
                }
                frag.extend_from_slice(payload);
                if fin {
                    let whole = self.fragments.take().unwrap_or_default();
                    on(Frame::Message(&whole));
                }
            }
            OP_PING => on(Frame::Ping(payload)),
            OP_PONG => on(Frame::Pong),
            OP_CLOSE => on(Frame::Close),
            _ => return Err(Malformed("unknown WebSocket opcode")),
        }
        Ok(Some(head + len))
    }
}

/// Appends `payload` framed for `framing` (WebSocket: one masked text frame).
pub fn encode(framing: Framing, payload: &[u8], out: &mut Vec<u8>) {
    match framing {
        Framing::Ws => encode_ws(OP_TEXT, payload, out),
        Framing::LengthU32 => {
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(payload);
        }
        Framing::Newline => {
            out.extend_from_slice(payload);
            out.push(b'\n');
        }
        Framing::Raw => out.extend_from_slice(payload),
    }
}

/// Appends binary `payload` framed for `framing` (WebSocket: one masked binary frame; a raw
/// stream: as it is).
pub fn encode_binary(framing: Framing, payload: &[u8], out: &mut Vec<u8>) {
    match framing {
        Framing::Ws => encode_ws(OP_BINARY, payload, out),
        _ => encode(framing, payload, out),
    }
}

/// Appends one final, masked WebSocket frame (clients must mask, RFC 6455 §5.3).
pub fn encode_ws(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len();
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = fastrand::u32(..).to_be_bytes();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key() -> String {
    let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The upgrade request for `path` on `host` (with port when not the default).
pub fn upgrade_request(host: &str, path: &str, key: &str, headers: &[(String, String)]) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    end_head(&mut req, headers);
    req
}

/// Appends the scenario's `headers` to a request head and ends it (the blank line).
pub fn end_head(req: &mut String, headers: &[(String, String)]) {
    for (n, v) in headers {
        req.push_str(n);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
}

/// Why an upgrade answer is not a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The head is not HTTP.
    #[error("not an HTTP response")]
    NotHttp,
    /// Not `101 Switching Protocols`.
    #[error("status {0} instead of 101")]
    Status(u16),
    /// Missing or wrong `Sec-WebSocket-Accept`.
    #[error("wrong Sec-WebSocket-Accept")]
    Accept,
}

/// Reads the server's answer to the upgrade request for `key` from the bytes received so
/// far: `Ok(None)` while its head is incomplete, `Ok(Some(end))` once it is a complete and
/// valid `101 Switching Protocols` with the right `Sec-WebSocket-Accept` (frames may follow
/// from `end`).
pub fn upgrade_answer(buf: &[u8], key: &str) -> Result<Option<usize>, UpgradeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    let end = match answer.parse(buf) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(UpgradeError::NotHttp),
    };
    match answer.code {
        Some(101) => {}
        Some(status) => return Err(UpgradeError::Status(status)),
        None => return Err(UpgradeError::NotHttp),
    }
    let want = common::websocket::accept_key(key);
    let accepted = answer.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-accept")
            && std::str::from_utf8(h.value).is_ok_and(|v| v.trim() == want)
    });
    if accepted {
        Ok(Some(end))
    } else {
        Err(UpgradeError::Accept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(d: &mut Decoder, data: &[u8]) -> Result<Vec<String>, Malformed> {
        let mut out = Vec::new();
        d.feed(data, &mut |f| {
            out.push(match f {
                Frame::Message(m) => String::from_utf8_lossy(m).into_owned(),
                Frame::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                Frame::Pong => "pong".into(),
                Frame::Close => "close".into(),
            })
        })?;
        Ok(out)
    }

    fn server_frame(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | op];
        if payload.len() < 126 {
            v.push(payload.len() as u8);
        } else {
            v.push(126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn the_rfc_accept_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            common::websocket::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn ws_frames_split_anywhere_reassemble() {
        let mut all = server_frame(OP_TEXT, true, b"hello");
        all.extend(server_frame(OP_PING, true, b"p"));
        all.extend(server_frame(OP_TEXT, false, b"ab"));
        all.extend(server_frame(OP_CONT, true, b"cd"));
        let long = vec![b'x'; 300];
        all.extend(server_frame(OP_TEXT, true, &long));
        for split in 0..all.len() {
            let mut d = Decoder::new(Framing::Ws);
            let mut got = frames(&mut d, &all[..split]).unwrap();
            got.extend(frames(&mut d, &all[split..]).unwrap());
            assert_eq!(got.len(), 4, "split at {split}");
            assert_eq!(got[0], "hello");
            assert_eq!(got[1], "ping:p");
            assert_eq!(got[2], "abcd");
            assert_eq!(got[3].len(), 300);
            assert!(d.partial.capacity() == 0 || d.partial.is_empty());
        }
    }

    #[test]
    fn masked_or_reserved_server_frames_are_malformed() {
        let mut d = Decoder::new(Framing::Ws);
        assert!(frames(&mut d, &[0x81, 0x81, 0, 0, 0, 0, b'a']).is_err());
        let mut d = Decoder::new(Framing::Ws);
        assert!(frames(&mut d, &[0xC1, 0x01, b'a']).is_err());
        let mut d = Decoder::new(Framing::Ws);
        assert!(frames(&mut d, &server_frame(OP_CONT, true, b"x")).is_err());
    }

    #[test]
    fn length_prefixed_and_newline() {
        let mut d = Decoder::new(Framing::LengthU32);
        let mut buf = Vec::new();
        encode(Framing::LengthU32, b"{\"a\":1}", &mut buf);
        encode(Framing::LengthU32, b"", &mut buf);
        assert_eq!(frames(&mut d, &buf[..3]).unwrap(), Vec::<String>::new());
        assert_eq!(frames(&mut d, &buf[3..]).unwrap(), vec!["{\"a\":1}", ""]);
        assert!(frames(&mut d, &[0xff, 0xff, 0xff, 0xff]).is_err());
        let mut d = Decoder::new(Framing::Newline);
        assert_eq!(
            frames(&mut d, b"PONG 1\r\nPUSH id=7\nPA").unwrap(),
            vec!["PONG 1", "PUSH id=7"]
        );
        assert_eq!(frames(&mut d, b"RT\n").unwrap(), vec!["PART"]);
    }

    #[test]
    fn client_frames_are_masked_and_unmask_back() {
        let mut out = Vec::new();
        encode(Framing::Ws, b"hi there", &mut out);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x80 | 8);
        let mask = &out[2..6];
        let plain: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        assert_eq!(plain, b"hi there");
    }

    #[test]
    fn upgrade_answers_are_checked() {
        let key = new_key();
        let good = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {}\r\n\r\n\x01\x02hi",
            common::websocket::accept_key(&key)
        );
        let end = good.len() - 4;
        assert_eq!(upgrade_answer(good.as_bytes(), &key), Ok(Some(end)));
        assert_eq!(upgrade_answer(&good.as_bytes()[..end - 1], &key), Ok(None));
        assert_eq!(
            upgrade_answer(b"HTTP/1.1 404 Not Found\r\n\r\n", &key),
            Err(UpgradeError::Status(404))
        );
        let wrong = "HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert_eq!(
            upgrade_answer(wrong.as_bytes(), &key),
            Err(UpgradeError::Accept)
        );
        assert_eq!(
            upgrade_answer(b"SSH-2.0-OpenSSH\r\n\r\n", &key),
            Err(UpgradeError::NotHttp)
        );
    }
}
