//! What travels on a device connection: the two framings (WebSocket text frames, 4-byte
//! big-endian length-prefixed frames on raw TCP), the client's JSON messages and the server's
//! answers, and [`PushFrame`], a push encoded once for every connection that receives it.
//!
//! The WebSocket side is a minimal RFC 6455 server: it keeps no buffer per connection beyond a
//! partial frame, so that 100k idle connections cost a few KB each (tokio-tungstenite keeps a
//! 128 KiB read buffer per connection by default). Handshake parsing is in `ws`.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The largest frame payload accepted from a client (64 KiB), on both transports.
pub const MAX_FRAME: usize = 64 * 1024;

/// Which framing a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket, one JSON object per text frame.
    Ws,
    /// Raw TCP, 4-byte big-endian length then that many bytes of JSON.
    Tcp,
}

/// Frames `payload` for `transport` (server to client: WebSocket frames are not masked).
pub fn encode(transport: Transport, payload: &[u8]) -> Bytes {
    match transport {
        Transport::Tcp => {
            let mut out = BytesMut::with_capacity(4 + payload.len());
            out.put_u32(payload.len() as u32);
            out.put_slice(payload);
            out.freeze()
        }
        Transport::Ws => ws_frame(OP_TEXT, payload),
    }
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One final, unmasked WebSocket frame.
pub fn ws_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(10 + len);
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.put_slice(payload);
    out.freeze()
}

/// A WebSocket close frame with a status code and no reason.
pub fn ws_close(code: u16) -> Bytes {
    ws_frame(OP_CLOSE, &code.to_be_bytes())
}

/// A frame read from a client.
#[derive(Debug, PartialEq)]
pub enum Inbound<'a> {
    /// A complete JSON message (a text frame, possibly reassembled, or a TCP frame).
    Message(Cow<'a, [u8]>),
    /// A WebSocket ping with its payload, to be answered with a pong.
    Ping(&'a [u8]),
    /// A WebSocket close frame.
    Close,
    /// A frame that needs no answer (a WebSocket pong).
    Ignored,
}

/// The client broke the framing; the connection is closed with `malformed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// Per-connection decoding state: only a fragmented WebSocket message in progress.
#[derive(Debug, Default)]
pub struct Decoder {
    fragment: Option<Vec<u8>>,
}

impl Decoder {
    /// Decodes the first frame of `buf`, returning it with the number of bytes it took, or
    /// `None` when `buf` does not hold a whole frame yet. WebSocket payloads are unmasked in
    /// place, so `buf` must not be decoded twice.
    pub fn decode<'a>(
        &mut self,
        transport: Transport,
        buf: &'a mut [u8],
    ) -> Result<Option<(Inbound<'a>, usize)>, Malformed> {
        match transport {
            Transport::Tcp => decode_tcp(buf),
            Transport::Ws => self.decode_ws(buf),
        }
    }

    fn decode_ws<'a>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<Option<(Inbound<'a>, usize)>, Malformed> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let fin = buf[0] & 0x80 != 0;
        if buf[0] & 0x70 != 0 {
            return Err(Malformed("WebSocket frame with reserved bits set".into()));
        }
        let opcode = buf[0] & 0x0F;
        if buf[1] & 0x80 == 0 {
            return Err(Malformed("unmasked WebSocket frame from a client".into()));
        }
        let (len, mut at) = match buf[1] & 0x7F {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        if len > MAX_FRAME as u64 {
            return Err(Malformed(format!(
                "frame of {len} bytes exceeds the limit of {MAX_FRAME}"
            )));
        }
        let len = len as usize;
        if buf.len() < at + 4 + len {
            return Ok(None);
        }
        let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        let total = at + len;
        let payload = &mut buf[at..total];
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
        let payload: &'a [u8] = payload;
        let is_control = opcode & 0x8 != 0;
        if is_control && (!fin || len > 125) {
            return Err(Malformed(
                "fragmented or oversized WebSocket control frame".into(),
            ));
        }
        let inbound = match opcode {
            OP_PING => Inbound::Ping(payload),
            OP_PONG => Inbound::Ignored,
            OP_CLOSE => Inbound::Close,
            OP_TEXT if self.fragment.is_some() => {
                return Err(Malformed(
                    "new text frame inside a fragmented message".into(),
                ))
            }
            OP_TEXT if fin => Inbound::Message(Cow::Borrowed(payload)),
            OP_TEXT => {
                self.fragment = Some(payload.to_vec());
                Inbound::Ignored
            }
            OP_CONTINUATION => {
                let Some(fragment) = self.fragment.as_mut() else {
                    return Err(Malformed("continuation frame without a message".into()));
                };
                if fragment.len() + len > MAX_FRAME {
                    return Err(Malformed(format!(
                        "message exceeds the limit of {MAX_FRAME} bytes"
                    )));
                }
                fragment.extend_from_slice(payload);
                if fin {
                    let whole = self.fragment.take().unwrap_or_default();
                    Inbound::Message(Cow::Owned(whole))
                } else {
                    Inbound::Ignored
                }
            }
            OP_BINARY => {
                return Err(Malformed(
                    "binary WebSocket frame; messages are JSON text frames".into(),
                ))
            }
            other => return Err(Malformed(format!("unknown WebSocket opcode {other:#x}"))),
        };
        Ok(Some((inbound, total)))
    }
}

fn decode_tcp(buf: &mut [u8]) -> Result<Option<(Inbound<'_>, usize)>, Malformed> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(Malformed(format!(
            "frame length {len} exceeds the limit of {MAX_FRAME} bytes"
        )));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some((
        Inbound::Message(Cow::Borrowed(&buf[4..4 + len])),
        4 + len,
    )))
}

/// A message from a client, parsed from one JSON object.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `{"type":"hello","user":…,"topics":[…],"token":…}`; `user` may be missing or empty
    /// (refused with `bad_hello`).
    Hello {
        /// The user id.
        user: Option<String>,
        /// Topics to subscribe to.
        topics: Vec<String>,
    },
    /// `{"type":"subscribe","topics":[…]}`.
    Subscribe {
        /// Topics to add.
        topics: Vec<String>,
    },
    /// `{"type":"ping","seq":…}`; `seq` is echoed as is (`None` when absent).
    Ping {
        /// The value to echo.
        seq: Option<Value>,
    },
    /// `{"type":"ack","id":…}`.
    Ack {
        /// The acknowledged push id.
        id: String,
    },
}

/// The JSON shape of every client message; which fields matter depends on `type`.
#[derive(Deserialize)]
#[serde(expecting = "a JSON object")]
struct RawMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    seq: Option<Value>,
    #[serde(default)]
    id: Option<String>,
}

/// Keeps an explicit `null` as `Some(Null)`, so that it is echoed back as sent.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl ClientMessage {
    /// Parses one message; the error says what is wrong, for the `malformed` answer.
    pub fn parse(bytes: &[u8]) -> Result<Self, Malformed> {
        let raw: RawMessage = serde_json::from_slice(bytes)
            .map_err(|e| Malformed(format!("not a protocol JSON object: {e}")))?;
        Ok(match raw.kind.as_str() {
            "hello" => ClientMessage::Hello {
                user: raw.user,
                topics: raw.topics.unwrap_or_default(),
            },
            "subscribe" => ClientMessage::Subscribe {
                topics: raw.topics.unwrap_or_default(),
            },
            "ping" => ClientMessage::Ping { seq: raw.seq },
            "ack" => ClientMessage::Ack {
                id: raw
                    .id
                    .ok_or_else(|| Malformed("ack without a string `id`".into()))?,
            },
            other => return Err(Malformed(format!("unknown message type `{other}`"))),
        })
    }
}

/// A message from the server (other than pushes, see [`PushFrame`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// The answer to an accepted hello.
    Welcome {
        /// The connection id.
        conn: &'a str,
        /// The room's name.
        room: &'a str,
        /// Expected heartbeat period in seconds.
        heartbeat_s: serde_json::Number,
    },
    /// The answer to a subscribe: every topic of the connection now.
    Subscribed {
        /// All topics.
        topics: &'a [String],
    },
    /// The answer to a ping.
    Pong {
        /// The ping's `seq`, as sent.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<&'a Value>,
    },
    /// Sent before the server closes the connection.
    Error {
        /// `idle`, `malformed`, `refused`, `bad_hello` or `shutdown`.
        code: &'a str,
        /// A sentence for people.
        message: &'a str,
    },
}

impl ServerMessage<'_> {
    /// The JSON text of the message.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .unwrap_or_else(|_| br#"{"type":"error","code":"internal"}"#.to_vec())
    }
}

/// What a push is: its id, where it came from and what it carries.
#[derive(Debug, Clone, Copy)]
pub struct PushSpec<'a> {
    /// The push id.
    pub id: &'a str,
    /// `"unicast"` or `"broadcast"`.
    pub kind: &'a str,
    /// The broadcast topic, if any.
    pub topic: Option<&'a str>,
    /// The sender's timestamp.
    pub sent_at_ns: Option<u64>,
    /// The body (JSON `null` when absent).
    pub body: Option<&'a Value>,
}

#[derive(Serialize)]
struct PushJson<'a> {
    #[serde(rename = "type")]
    kind_tag: &'static str,
    id: &'a str,
    kind: &'a str,
    topic: Option<&'a str>,
    sent_at_ns: Option<u64>,
    body: Option<&'a Value>,
    // Must stay last: the redelivered form is made by rewriting the tail.
    redelivery: bool,
}

const FIRST_TAIL: &[u8] = b"\"redelivery\":false}";
const AGAIN_TAIL: &[u8] = b"\"redelivery\":true}";

impl PushSpec<'_> {
    /// The push message's JSON text, serialised once for every connection.
    pub fn payload(&self) -> Bytes {
        let json = PushJson {
            kind_tag: "push",
            id: self.id,
            kind: self.kind,
            topic: self.topic,
            sent_at_ns: self.sent_at_ns,
            body: self.body,
            redelivery: false,
        };
        Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
    }
}

/// A push encoded once for both framings, shared by every connection that receives it.
#[derive(Debug)]
pub struct PushFrame {
    id: Box<str>,
    ws: Bytes,
    tcp: Bytes,
    payload: Bytes,
    /// The `"redelivery":true` frames, made the first time one is needed.
    again: OnceLock<(Bytes, Bytes)>,
}

impl PushFrame {
    /// Frames a payload made by [`PushSpec::payload`] (its JSON must end with
    /// `"redelivery":false}`).
    pub fn new(id: &str, payload: Bytes) -> Self {
        Self {
            id: id.into(),
            ws: encode(Transport::Ws, &payload),
            tcp: encode(Transport::Tcp, &payload),
            payload,
            again: OnceLock::new(),
        }
    }

    /// The push id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The JSON text as first sent.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The frame to write on a `transport` connection, first delivery or redelivery.
    pub fn frame(&self, transport: Transport, redelivery: bool) -> Bytes {
        let (ws, tcp) = if redelivery {
            let (ws, tcp) = self.again.get_or_init(|| {
                let body = self
                    .payload
                    .strip_suffix(FIRST_TAIL)
                    .unwrap_or(&self.payload);
                let mut again = Vec::with_capacity(body.len() + AGAIN_TAIL.len());
                again.extend_from_slice(body);
                again.extend_from_slice(AGAIN_TAIL);
                (
                    encode(Transport::Ws, &again),
                    encode(Transport::Tcp, &again),
                )
            });
            (ws, tcp)
        } else {
            (&self.ws, &self.tcp)
        };
        match transport {
            Transport::Ws => ws.clone(),
            Transport::Tcp => tcp.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    #[test]
    fn ws_frames_decode_partial_fragmented_and_control() {
        let mut decoder = Decoder::default();
        let mut frame = masked(OP_TEXT, true, br#"{"type":"ping"}"#);
        let len = frame.len();
        assert_eq!(
            decoder.decode(Transport::Ws, &mut frame[..len - 1].to_vec()),
            Ok(None)
        );
        let (inbound, used) = decoder
            .decode(Transport::Ws, &mut frame)
            .expect("valid")
            .expect("whole");
        assert_eq!(used, len);
        assert_eq!(
            inbound,
            Inbound::Message(Cow::Borrowed(br#"{"type":"ping"}"#))
        );

        let mut first = masked(OP_TEXT, false, b"{\"type\":");
        let mut ping = masked(OP_PING, true, b"hi");
        let mut last = masked(OP_CONTINUATION, true, b"\"ping\"}");
        let decode = |d: &mut Decoder, b: &mut Vec<u8>| {
            d.decode(Transport::Ws, b)
                .expect("valid")
                .map(|(i, _)| format!("{i:?}"))
        };
        assert_eq!(decode(&mut decoder, &mut first).as_deref(), Some("Ignored"));
        assert_eq!(
            decode(&mut decoder, &mut ping).as_deref(),
            Some("Ping([104, 105])")
        );
        let (whole, _) = decoder
            .decode(Transport::Ws, &mut last)
            .expect("valid")
            .expect("whole");
        assert_eq!(
            whole,
            Inbound::Message(Cow::Owned(br#"{"type":"ping"}"#.to_vec()))
        );

        let mut unmasked = vec![0x81, 0x01, b'x'];
        assert!(decoder.decode(Transport::Ws, &mut unmasked).is_err());
        let mut binary = masked(OP_BINARY, true, b"{}");
        assert!(decoder.decode(Transport::Ws, &mut binary).is_err());
    }

    #[test]
    fn tcp_frames_decode_and_reject_oversized_lengths() {
        let mut decoder = Decoder::default();
        let mut buf = vec![0, 0, 0, 2, b'{', b'}', 0];
        let (inbound, used) = decoder
            .decode(Transport::Tcp, &mut buf)
            .expect("valid")
            .expect("whole");
        assert_eq!((inbound, used), (Inbound::Message(Cow::Borrowed(b"{}")), 6));
        let mut huge = vec![0, 1, 0, 1];
        assert_eq!(
            decoder.decode(Transport::Tcp, &mut huge),
            Err(Malformed(
                "frame length 65537 exceeds the limit of 65536 bytes".into()
            ))
        );
    }

    #[test]
    fn messages_parse_and_seq_is_echoed_as_sent() {
        assert_eq!(
            ClientMessage::parse(br#"{"type":"hello","user":"u1","topics":["news"],"token":"t"}"#),
            Ok(ClientMessage::Hello {
                user: Some("u1".into()),
                topics: vec!["news".into()]
            })
        );
        assert_eq!(
            ClientMessage::parse(br#"{"type":"ping","seq":null}"#),
            Ok(ClientMessage::Ping {
                seq: Some(Value::Null)
            })
        );
        assert_eq!(
            ClientMessage::parse(br#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping { seq: None })
        );
        assert!(ClientMessage::parse(b"[1]").is_err());
        assert!(ClientMessage::parse(br#"{"type":"nope"}"#).is_err());
        let pong = ServerMessage::Pong {
            seq: Some(&json!({"a": 1})),
        };
        assert_eq!(pong.to_json(), br#"{"type":"pong","seq":{"a":1}}"#);
    }

    #[test]
    fn push_frames_share_one_serialisation_and_mark_redeliveries() {
        let body = json!({"n": 1});
        let spec = PushSpec {
            id: "m1",
            kind: "broadcast",
            topic: Some("news"),
            sent_at_ns: Some(5),
            body: Some(&body),
        };
        let frame = PushFrame::new(spec.id, spec.payload());
        let tcp = frame.frame(Transport::Tcp, false);
        let value: Value = serde_json::from_slice(&tcp[4..]).expect("JSON");
        assert_eq!(
            value,
            json!({"type":"push","id":"m1","kind":"broadcast","topic":"news","sent_at_ns":5,"body":{"n":1},"redelivery":false})
        );
        let again = frame.frame(Transport::Tcp, true);
        let value: Value = serde_json::from_slice(&again[4..]).expect("JSON");
        assert_eq!(value["redelivery"], json!(true));
        assert_eq!(
            u32::from_be_bytes([again[0], again[1], again[2], again[3]]) as usize,
            again.len() - 4
        );
        let ws = frame.frame(Transport::Ws, false);
        assert_eq!(ws[0], 0x81);
        assert_eq!(&ws[2..], &tcp[4..]);
    }
}
