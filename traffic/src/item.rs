//! The items of a recording's stream: HTTP requests with their recorded start time (and the
//! recorded response when the recording has it), and WebSocket device sessions from HAR files.

use std::sync::Arc;

use bytes::Bytes;

/// One timed item of a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An HTTP request.
    Request(Request),
    /// A WebSocket session (HAR `_webSocketMessages`), played by the device swarm.
    Session(DeviceSession),
}

impl Item {
    /// The recorded start, nanoseconds since the Unix epoch.
    pub fn ts_ns(&self) -> i64 {
        match self {
            Item::Request(r) => r.ts_ns,
            Item::Session(s) => s.ts_ns,
        }
    }

    /// The file the item came from.
    pub fn file(&self) -> &str {
        match self {
            Item::Request(r) => &r.file,
            Item::Session(s) => &s.file,
        }
    }
}

/// A recorded HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Recorded start, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// The method as recorded (`GET`, `POST`, …).
    pub method: String,
    /// The `Host` the request was sent to, when the recording has it.
    pub host: Option<String>,
    /// Path and query (origin form: `/devices/42?x=1`).
    pub path: String,
    /// Headers in recorded order, without `Host` (see [`Request::host`]).
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Bytes,
    /// The recording's id for the request (GoReplay's request id), if any.
    pub id: Option<String>,
    /// The recorded response, when the recording holds it.
    pub recorded: Option<Recorded>,
    /// The file it came from.
    pub file: Arc<str>,
    /// Its record, entry or line number in that file (1-based).
    pub number: u64,
}

impl Request {
    /// The value of a header (first match, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the recording says the original server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Status code.
    pub status: u16,
    /// The original latency in nanoseconds, when recorded.
    pub latency_ns: Option<i64>,
    /// Whether a replayed status should be compared with it: true for full recordings
    /// (GoReplay, HAR), false for access logs, whose requests lack bodies and headers.
    pub comparable: bool,
}

/// A recorded WebSocket session: where it connected, when, and its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSession {
    /// Recorded start, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// The WebSocket URL (`wss://…`).
    pub url: String,
    /// Handshake headers as recorded.
    pub headers: Vec<(String, String)>,
    /// Messages in order, with their offsets from the session start.
    pub messages: Vec<WsMessage>,
    /// The file it came from.
    pub file: Arc<str>,
    /// Its HAR entry number (1-based).
    pub number: u64,
}

/// Which way a WebSocket message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsDirection {
    /// Client to server.
    Send,
    /// Server to client.
    Receive,
}

/// One WebSocket message of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct WsMessage {
    /// Direction.
    pub direction: WsDirection,
    /// Offset from the session start, nanoseconds.
    pub offset_ns: i64,
    /// Opcode (1 text, 2 binary).
    pub opcode: u8,
    /// Payload (text as UTF-8; binary as Chrome records it, base64).
    pub data: String,
}
