//! MQTT 3.1.1 and 5 on the wire, shared by device journeys (the swarm) and sender steps that
//! publish (`post: mqtt://host:port/topic?qos=1`): the client packets this harness sends, a
//! [`Reader`] that splits a byte stream into the packets a client receives, and
//! [`Publishers`], the senders' kept connections.
//!
//! The packets are rumqttc's codec (`rumqttc::mqttbytes::v4` and `rumqttc::v5::mqttbytes::v5`,
//! maintained with the rumqtt broker and client, both protocol versions, public types): only its
//! codec is used, not its client, whose event loop, state and buffers cost 14–20 KB per
//! connection before any I/O (NOTES.md). The [`Reader`] keeps an incomplete packet only, so an
//! idle device holds no buffer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{v4, QoS as QoS4};
use rumqttc::v5::mqttbytes::{v5, QoS as QoS5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request::{Prepared, Response, TransportError};

/// The largest packet accepted from a broker (1 MiB); a larger one is malformed.
pub const MAX_PACKET: usize = 1 << 20;

/// The protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.
    V5,
}

/// What a CONNECT says.
#[derive(Debug, Clone, Default)]
pub struct ConnectFields {
    /// Client identifier.
    pub client_id: String,
    /// Clean session (3.1.1) / clean start (5).
    pub clean: bool,
    /// Keep-alive, seconds (0: off).
    pub keep_alive_s: u16,
    /// MQTT 5 session expiry interval, seconds.
    pub session_expiry_s: Option<u32>,
    /// User name and password.
    pub login: Option<(String, String)>,
}

/// A packet could not be encoded (a field out of the protocol's range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MQTT packet not encodable: {0}")]
pub struct Unencodable(pub String);

fn v4_qos(q: u8) -> QoS4 {
    match q {
        0 => QoS4::AtMostOnce,
        1 => QoS4::AtLeastOnce,
        _ => QoS4::ExactlyOnce,
    }
}

fn v5_qos(q: u8) -> QoS5 {
    match q {
        0 => QoS5::AtMostOnce,
        1 => QoS5::AtLeastOnce,
        _ => QoS5::ExactlyOnce,
    }
}

fn done<E: std::fmt::Display>(
    r: Result<usize, E>,
    buf: BytesMut,
    out: &mut Vec<u8>,
) -> Result<(), Unencodable> {
    r.map_err(|e| Unencodable(e.to_string()))?;
    out.extend_from_slice(&buf);
    Ok(())
}

/// Appends a CONNECT.
pub fn connect(v: Version, f: &ConnectFields, out: &mut Vec<u8>) -> Result<(), Unencodable> {
    let mut buf = BytesMut::new();
    match v {
        Version::V311 => {
            let mut c = v4::Connect::new(f.client_id.clone());
            c.keep_alive = f.keep_alive_s;
            c.clean_session = f.clean;
            if let Some((u, p)) = &f.login {
                c.set_login(u.clone(), p.clone());
            }
            done(c.write(&mut buf), buf, out)
        }
        Version::V5 => {
            let properties = f.session_expiry_s.map(|s| {
                let mut p = v5::ConnectProperties::new();
                p.session_expiry_interval = Some(s);
                p
            });
            let c = v5::Connect {
                keep_alive: f.keep_alive_s,
                client_id: f.client_id.clone(),
                clean_start: f.clean,
                properties,
            };
            let login = f
                .login
                .as_ref()
                .map(|(u, p)| v5::Login::new(u.clone(), p.clone()));
            done(c.write(&None, &login, &mut buf), buf, out)
        }
    }
}

/// Appends a SUBSCRIBE of `filters` (filter, QoS) with packet id `pkid`.
pub fn subscribe(
    v: Version,
    pkid: u16,
    filters: &[(String, u8)],
    out: &mut Vec<u8>,
) -> Result<(), Unencodable> {
    let mut buf = BytesMut::new();
    match v {
        Version::V311 => {
            let mut s = v4::Subscribe::new_many(
                filters
                    .iter()
                    .map(|(f, q)| v4::SubscribeFilter::new(f.clone(), v4_qos(*q))),
            );
            s.pkid = pkid;
            done(s.write(&mut buf), buf, out)
        }
        Version::V5 => {
            let mut s = v5::Subscribe::new_many(
                filters
                    .iter()
                    .map(|(f, q)| v5::Filter::new(f.clone(), v5_qos(*q))),
                None,
            );
            s.pkid = pkid;
            done(s.write(&mut buf), buf, out)
        }
    }
}

/// The acknowledgements a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// QoS 1 received.
    PubAck,
    /// QoS 2 received (step 1).
    PubRec,
    /// QoS 2 release (a sender's step 2).
    PubRel,
    /// QoS 2 complete (a receiver's step 2).
    PubComp,
}

/// Appends an acknowledgement of packet `pkid`.
pub fn ack(v: Version, kind: Ack, pkid: u16, out: &mut Vec<u8>) {
    let mut buf = BytesMut::new();
    let r = match (v, kind) {
        (Version::V311, Ack::PubAck) => v4::PubAck::new(pkid)
            .write(&mut buf)
            .map_err(|e| e.to_string()),
        (Version::V311, Ack::PubRec) => v4::PubRec::new(pkid)
            .write(&mut buf)
            .map_err(|e| e.to_string()),
        (Version::V311, Ack::PubRel) => v4::PubRel::new(pkid)
            .write(&mut buf)
            .map_err(|e| e.to_string()),
        (Version::V311, Ack::PubComp) => v4::PubComp::new(pkid)
            .write(&mut buf)
            .map_err(|e| e.to_string()),
        (Version::V5, Ack::PubAck) => v5::PubAck::new(pkid, None)
            .write(&mut buf)
            .map_err(|e| e.to_string()),
        (Version::V5, Ack::PubRec) => v5::PubRec::new(pkid, None)
            .write(&mut buf)
            .map_err(|e| e.to_string()),
        (Version::V5, Ack::PubRel) => v5::PubRel::new(pkid, None)
            .write(&mut buf)
            .map_err(|e| e.to_string()),
        (Version::V5, Ack::PubComp) => v5::PubComp::new(pkid, None)
            .write(&mut buf)
            .map_err(|e| e.to_string()),
    };
    // Acks of a valid packet id always encode.
    if r.is_ok() {
        out.extend_from_slice(&buf);
    }
}

/// Appends a PINGREQ (the same two bytes in both versions).
pub fn pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xC0, 0x00]);
}

/// Appends a DISCONNECT (normal disconnection).
pub fn disconnect(v: Version, out: &mut Vec<u8>) {
    match v {
        Version::V311 => out.extend_from_slice(&[0xE0, 0x00]),
        Version::V5 => out.extend_from_slice(&[0xE0, 0x01, 0x00]),
    }
}

/// What a PUBLISH carries.
#[derive(Debug, Clone, Default)]
pub struct PublishFields {
    /// Topic name.
    pub topic: String,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// Packet id (QoS 1 and 2).
    pub pkid: u16,
    /// Payload.
    pub payload: Bytes,
    /// MQTT 5 user properties.
    pub properties: Vec<(String, String)>,
}

/// Appends a PUBLISH.
pub fn publish(v: Version, p: &PublishFields, out: &mut Vec<u8>) -> Result<(), Unencodable> {
    let mut buf = BytesMut::new();
    match v {
        Version::V311 => {
            let mut m = v4::Publish::from_bytes(p.topic.clone(), v4_qos(p.qos), p.payload.clone());
            m.retain = p.retain;
            m.pkid = p.pkid;
            done(m.write(&mut buf), buf, out)
        }
        Version::V5 => {
            let props = (!p.properties.is_empty()).then(|| v5::PublishProperties {
                user_properties: p.properties.clone(),
                ..Default::default()
            });
            let mut m = v5::Publish::new(p.topic.clone(), v5_qos(p.qos), p.payload.clone(), props);
            m.retain = p.retain;
            m.pkid = p.pkid;
            done(m.write(&mut buf), buf, out)
        }
    }
}

/// A PUBLISH received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The DUP flag: the broker sent it before.
    pub dup: bool,
    /// Its QoS.
    pub qos: u8,
    /// Packet id (QoS 1 and 2).
    pub pkid: u16,
    /// Topic name.
    pub topic: Bytes,
    /// Payload.
    pub payload: Bytes,
    /// MQTT 5 user properties.
    pub properties: Vec<(String, String)>,
}

/// A packet a client receives, as far as this harness acts on it.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// CONNACK: `None` accepted, else the refusal's reason in snake case.
    ConnAck(Option<String>),
    /// SUBACK: its packet id, and the reason of the first refused filter.
    SubAck(u16, Option<String>),
    /// A message.
    Publish(Received),
    /// PUBACK of a message this client sent: its id, and the refusal's reason.
    PubAck(u16, Option<String>),
    /// PUBREC of a message this client sent: its id, and the refusal's reason.
    PubRec(u16, Option<String>),
    /// PUBREL of a QoS 2 message this client received.
    PubRel(u16),
    /// PUBCOMP of a QoS 2 message this client sent.
    PubComp(u16),
    /// PINGRESP.
    PingResp,
    /// DISCONNECT from the server (MQTT 5: its reason).
    Disconnect(Option<String>),
    /// Anything else a server should not send a client (CONNECT, SUBSCRIBE, …).
    Unexpected,
}

/// A byte stream that is not MQTT (or not within the limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed MQTT packet: {0}")]
pub struct Malformed(pub String);

/// `NotAuthorized` → `not_authorized`.
fn snake<T: std::fmt::Debug>(code: T) -> String {
    let text = format!("{code:?}");
    let mut out = String::with_capacity(text.len() + 4);
    for (i, c) in text.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            break;
        }
    }
    out
}

/// Splits a byte stream into packets, keeping only an incomplete packet between reads.
#[derive(Debug)]
pub struct Reader {
    version: Version,
    partial: Vec<u8>,
}

/// The length of the packet at the start of `buf` (fixed header included), `None` while
/// its fixed header is incomplete.
fn frame_length(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    let mut len: usize = 0;
    for i in 0..4 {
        let Some(b) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if len > MAX_PACKET {
                return Err(Malformed(format!(
                    "packet of {len} bytes above the 1 MiB limit"
                )));
            }
            return Ok(Some(1 + i + 1 + len));
        }
    }
    Err(Malformed("remaining length longer than 4 bytes".into()))
}

impl Reader {
    /// A reader for `version`.
    pub fn new(version: Version) -> Reader {
        Reader {
            version,
            partial: Vec::new(),
        }
    }

    /// Whether no incomplete packet is kept.
    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Feeds bytes; `on` sees every complete packet in order.
    pub fn feed(&mut self, data: &[u8], on: &mut dyn FnMut(Incoming)) -> Result<(), Malformed> {
        // Taken out for the call: `parse` borrows the rest of `self`.
        let mut partial = std::mem::take(&mut self.partial);
        let parsed = common::stream::feed(&mut partial, data, |b| self.parse(b, on));
        self.partial = partial;
        parsed?;
        Ok(())
    }

    fn parse(&self, buf: &[u8], on: &mut dyn FnMut(Incoming)) -> Result<usize, Malformed> {
        let mut at = 0;
        while at < buf.len() {
            let rest = &buf[at..];
            let Some(len) = frame_length(rest)? else {
                break;
            };
            if rest.len() < len {
                break;
            }
            on(decode(self.version, &rest[..len])?);
            at += len;
        }
        Ok(at)
    }
}

/// Decodes one whole packet.
fn decode(v: Version, frame: &[u8]) -> Result<Incoming, Malformed> {
    let mut b = BytesMut::from(frame);
    let bad = |e: &dyn std::fmt::Display| Malformed(e.to_string());
    Ok(match v {
        Version::V311 => match v4::Packet::read(&mut b, MAX_PACKET).map_err(|e| bad(&e))? {
            v4::Packet::ConnAck(a) => {
                Incoming::ConnAck((a.code != v4::ConnectReturnCode::Success).then(|| snake(a.code)))
            }
            v4::Packet::SubAck(a) => Incoming::SubAck(
                a.pkid,
                a.return_codes
                    .iter()
                    .any(|c| matches!(c, v4::SubscribeReasonCode::Failure))
                    .then(|| "failure".to_string()),
            ),
            v4::Packet::Publish(p) => Incoming::Publish(Received {
                dup: p.dup,
                qos: p.qos as u8,
                pkid: p.pkid,
                topic: Bytes::from(p.topic.into_bytes()),
                payload: p.payload,
                properties: Vec::new(),
            }),
            v4::Packet::PubAck(a) => Incoming::PubAck(a.pkid, None),
            v4::Packet::PubRec(a) => Incoming::PubRec(a.pkid, None),
            v4::Packet::PubRel(a) => Incoming::PubRel(a.pkid),
            v4::Packet::PubComp(a) => Incoming::PubComp(a.pkid),
            v4::Packet::PingResp => Incoming::PingResp,
            v4::Packet::Disconnect => Incoming::Disconnect(None),
            _ => Incoming::Unexpected,
        },
        Version::V5 => {
            match v5::Packet::read(&mut b, Some(MAX_PACKET as u32)).map_err(|e| bad(&e))? {
                v5::Packet::ConnAck(a) => Incoming::ConnAck(
                    (a.code != v5::ConnectReturnCode::Success).then(|| snake(a.code)),
                ),
                v5::Packet::SubAck(a) => Incoming::SubAck(
                    a.pkid,
                    a.return_codes
                        .iter()
                        .find(|c| !matches!(c, v5::SubscribeReasonCode::Success(_)))
                        .map(snake),
                ),
                v5::Packet::Publish(p) => Incoming::Publish(Received {
                    dup: p.dup,
                    qos: p.qos as u8,
                    pkid: p.pkid,
                    topic: p.topic,
                    payload: p.payload,
                    properties: p.properties.map(|p| p.user_properties).unwrap_or_default(),
                }),
                v5::Packet::PubAck(a) => Incoming::PubAck(
                    a.pkid,
                    (!matches!(
                        a.reason,
                        v5::PubAckReason::Success | v5::PubAckReason::NoMatchingSubscribers
                    ))
                    .then(|| snake(a.reason)),
                ),
                v5::Packet::PubRec(a) => Incoming::PubRec(
                    a.pkid,
                    (!matches!(
                        a.reason,
                        v5::PubRecReason::Success | v5::PubRecReason::NoMatchingSubscribers
                    ))
                    .then(|| snake(a.reason)),
                ),
                v5::Packet::PubRel(a) => Incoming::PubRel(a.pkid),
                v5::Packet::PubComp(a) => Incoming::PubComp(a.pkid),
                v5::Packet::PingResp(_) => Incoming::PingResp,
                v5::Packet::Disconnect(d) => Incoming::Disconnect(Some(snake(d.reason_code))),
                _ => Incoming::Unexpected,
            }
        }
    })
}

/// Whether a sender step's URL publishes over MQTT.
pub fn is_mqtt(url: &str) -> bool {
    url.starts_with("mqtt://")
}

/// Where and how a sender step publishes: `mqtt://[user[:password]@]host[:port]/topic`
/// (mosquitto_pub's `-L` form) with `?qos=0|1|2`, `retain=true` and `version=5` (default
/// 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` (port 1883 by default).
    pub authority: String,
    /// The topic (percent-decoded).
    pub topic: String,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// Protocol version.
    pub version: Version,
    /// User name and password.
    pub login: Option<(String, String)>,
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

impl Target {
    /// Parses a publish URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("mqtt://")
            .ok_or_else(|| format!("`{url}`: expected mqtt://HOST[:PORT]/TOPIC"))?;
        let (head, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (auth, path) = head
            .split_once('/')
            .ok_or_else(|| format!("`{url}`: no topic after the host (mqtt://HOST:PORT/TOPIC)"))?;
        let (login, hostport) = match auth.rsplit_once('@') {
            Some((cred, hp)) => {
                let (u, p) = cred.split_once(':').unwrap_or((cred, ""));
                (Some((percent_decode(u)?, percent_decode(p)?)), hp)
            }
            None => (None, auth),
        };
        if hostport.is_empty() {
            return Err(format!("`{url}`: no host"));
        }
        let authority = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !hostport.ends_with(']')
        {
            hostport.to_string()
        } else {
            format!("{hostport}:1883")
        };
        let topic = percent_decode(path)?;
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(format!(
                "`{url}`: a publish needs a topic name without wildcards (+, #)"
            ));
        }
        let mut t = Target {
            authority,
            topic,
            qos: 0,
            retain: false,
            version: Version::V311,
            login,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("qos", q @ ("0" | "1" | "2")) => t.qos = q.parse().unwrap_or(0),
                ("retain", r @ ("true" | "false")) => t.retain = r == "true",
                ("version", "5") => t.version = Version::V5,
                ("version", "3.1.1") => t.version = Version::V311,
                _ => {
                    return Err(format!(
                        "`{url}`: unknown query `{pair}` (qos=0|1|2, retain=true|false, version=3.1.1|5)"
                    ))
                }
            }
        }
        Ok(t)
    }
}

/// One kept publisher connection.
#[derive(Debug)]
struct PubConn {
    stream: TcpStream,
    reader: Reader,
    next_pkid: u16,
}

/// The connections sender steps publish over, kept per (broker, version, login) and
/// reused; a connection is taken by one publish at a time.
#[derive(Debug, Default)]
pub struct Publishers {
    idle: Mutex<HashMap<String, Vec<PubConn>>>,
}

fn io_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Io(e.to_string())
}

impl Publishers {
    /// Publishes `req`'s body to the topic of its `mqtt://` URL (its headers become MQTT 5
    /// user properties) and waits for the acknowledgement its QoS calls for: PUBACK (1),
    /// PUBREC then PUBCOMP (2); QoS 0 is done once written. The answer is a `200` with no
    /// body; a broker's refusal (an MQTT 5 reason code) is an error naming the reason.
    pub async fn publish(
        &self,
        req: Prepared,
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        let target = Target::parse(&req.url).map_err(TransportError::BadUrl)?;
        let key = format!(
            "{}|{:?}|{:?}",
            target.authority, target.version, target.login
        );
        let taken = common::sync::lock(&self.idle)
            .get_mut(&key)
            .and_then(Vec::pop);
        let fields = PublishFields {
            topic: target.topic.clone(),
            qos: target.qos,
            retain: target.retain,
            pkid: 0,
            payload: req.body.unwrap_or_default(),
            properties: req.headers,
        };
        let work = async {
            let mut conn = match taken {
                Some(c) => c,
                None => Self::open(&target).await?,
            };
            Self::send(&mut conn, fields).await?;
            Ok::<_, TransportError>(conn)
        };
        let conn = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| TransportError::Timeout)??;
        common::sync::lock(&self.idle)
            .entry(key)
            .or_default()
            .push(conn);
        Ok(Response {
            status: 200,
            ..Response::default()
        })
    }

    async fn open(t: &Target) -> Result<PubConn, TransportError> {
        let stream = TcpStream::connect(&t.authority)
            .await
            .map_err(|e| TransportError::Connect(format!("{}: {e}", t.authority)))?;
        let _ = stream.set_nodelay(true);
        let mut conn = PubConn {
            stream,
            reader: Reader::new(t.version),
            next_pkid: 1,
        };
        let mut out = Vec::new();
        let fields = ConnectFields {
            client_id: format!("loadgen-pub-{:08x}", fastrand::u32(..)),
            clean: true,
            keep_alive_s: 0,
            session_expiry_s: None,
            login: t.login.clone(),
        };
        connect(t.version, &fields, &mut out).map_err(io_err)?;
        conn.stream.write_all(&out).await.map_err(io_err)?;
        match Self::next(&mut conn).await? {
            Incoming::ConnAck(None) => Ok(conn),
            Incoming::ConnAck(Some(reason)) => Err(TransportError::Connect(format!(
                "{}: CONNACK {reason}",
                t.authority
            ))),
            other => Err(io_err(format!("expected CONNACK, got {other:?}"))),
        }
    }

    /// Reads until the next packet. A publisher subscribes to nothing and has one packet
    /// in flight: every packet answers its last one, so nothing else can be queued.
    async fn next(conn: &mut PubConn) -> Result<Incoming, TransportError> {
        let mut chunk = [0u8; 1024];
        loop {
            let n = conn.stream.read(&mut chunk).await.map_err(io_err)?;
            if n == 0 {
                return Err(io_err("the broker closed the connection"));
            }
            let mut got = None;
            conn.reader
                .feed(&chunk[..n], &mut |p| {
                    got.get_or_insert(p);
                })
                .map_err(io_err)?;
            if let Some(p) = got {
                return Ok(p);
            }
        }
    }

    async fn send(conn: &mut PubConn, mut fields: PublishFields) -> Result<(), TransportError> {
        let v = conn.reader.version();
        if fields.qos > 0 {
            fields.pkid = conn.next_pkid;
            conn.next_pkid = conn.next_pkid.checked_add(1).unwrap_or(1);
        }
        let mut out = Vec::new();
        publish(v, &fields, &mut out).map_err(io_err)?;
        conn.stream.write_all(&out).await.map_err(io_err)?;
        let refused = |what: &str, reason: String| io_err(format!("{what} {reason}"));
        match fields.qos {
            0 => Ok(()),
            1 => match Self::next(conn).await? {
                Incoming::PubAck(id, None) if id == fields.pkid => Ok(()),
                Incoming::PubAck(_, Some(r)) => Err(refused("PUBACK", r)),
                other => Err(io_err(format!("expected PUBACK, got {other:?}"))),
            },
            _ => {
                match Self::next(conn).await? {
                    Incoming::PubRec(id, None) if id == fields.pkid => {}
                    Incoming::PubRec(_, Some(r)) => return Err(refused("PUBREC", r)),
                    other => return Err(io_err(format!("expected PUBREC, got {other:?}"))),
                }
                let mut out = Vec::new();
                ack(v, Ack::PubRel, fields.pkid, &mut out);
                conn.stream.write_all(&out).await.map_err(io_err)?;
                match Self::next(conn).await? {
                    Incoming::PubComp(id) if id == fields.pkid => Ok(()),
                    other => Err(io_err(format!("expected PUBCOMP, got {other:?}"))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(r: &mut Reader, data: &[u8]) -> Result<Vec<String>, Malformed> {
        let mut out = Vec::new();
        r.feed(data, &mut |p| out.push(format!("{p:?}")))?;
        Ok(out)
    }

    #[test]
    fn publish_urls_follow_mosquitto_pubs_form() {
        let t =
            Target::parse("mqtt://u:p%40ss@127.0.0.1:1884/dev/a%20b?qos=2&retain=true&version=5")
                .unwrap();
        assert_eq!(t.authority, "127.0.0.1:1884");
        assert_eq!(t.topic, "dev/a b");
        assert_eq!((t.qos, t.retain, t.version), (2, true, Version::V5));
        assert_eq!(t.login, Some(("u".into(), "p@ss".into())));
        assert_eq!(Target::parse("mqtt://h/t").unwrap().authority, "h:1883");
        for (bad, why) in [
            ("mqtt://h:1", "no topic"),
            ("mqtt://h:1/a/#", "without wildcards"),
            ("mqtt://h:1/a?qos=3", "unknown query `qos=3`"),
            ("mqtt:///a", "no host"),
            ("mqtt://h:1/a%zz", "bad percent escape"),
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn packets_split_anywhere_decode_the_same_in_both_versions() {
        for v in [Version::V311, Version::V5] {
            // A broker's answers, encoded by the same codec's server side.
            let mut all = Vec::new();
            let mut buf = BytesMut::new();
            match v {
                Version::V311 => {
                    v4::ConnAck::new(v4::ConnectReturnCode::Success, true)
                        .write(&mut buf)
                        .unwrap();
                    v4::SubAck::new(
                        7,
                        vec![
                            v4::SubscribeReasonCode::Success(QoS4::AtLeastOnce),
                            v4::SubscribeReasonCode::Failure,
                        ],
                    )
                    .write(&mut buf)
                    .unwrap();
                }
                Version::V5 => {
                    v5::ConnAck {
                        session_present: true,
                        code: v5::ConnectReturnCode::Success,
                        properties: None,
                    }
                    .write(&mut buf)
                    .unwrap();
                    v5::SubAck {
                        pkid: 7,
                        return_codes: vec![
                            v5::SubscribeReasonCode::Success(QoS5::AtLeastOnce),
                            v5::SubscribeReasonCode::NotAuthorized,
                        ],
                        properties: None,
                    }
                    .write(&mut buf)
                    .unwrap();
                }
            }
            all.extend_from_slice(&buf);
            let big = PublishFields {
                topic: "dev/1".into(),
                qos: 1,
                retain: false,
                pkid: 9,
                payload: Bytes::from(vec![b'x'; 300]),
                properties: if v == Version::V5 {
                    vec![("id".into(), "m-1".into())]
                } else {
                    Vec::new()
                },
            };
            publish(v, &big, &mut all).unwrap();
            all.extend_from_slice(&[0xD0, 0x00]); // PINGRESP
            for split in 0..all.len() {
                let mut r = Reader::new(v);
                let mut got = packets(&mut r, &all[..split]).unwrap();
                got.extend(packets(&mut r, &all[split..]).unwrap());
                assert_eq!(got.len(), 4, "{v:?} split at {split}: {got:?}");
                assert!(got[0].starts_with("ConnAck(None)"), "{}", got[0]);
                assert!(got[1].starts_with("SubAck(7, Some("), "{}", got[1]);
                assert!(got[2].contains("qos: 1, pkid: 9"), "{}", got[2]);
                assert_eq!(got[3], "PingResp");
                assert!(r.partial.is_empty());
            }
        }
    }

    #[test]
    fn refusals_carry_their_reason_and_garbage_is_malformed() {
        let mut buf = BytesMut::new();
        v4::ConnAck::new(v4::ConnectReturnCode::NotAuthorized, false)
            .write(&mut buf)
            .unwrap();
        let mut r = Reader::new(Version::V311);
        assert_eq!(
            packets(&mut r, &buf).unwrap(),
            vec!["ConnAck(Some(\"not_authorized\"))"]
        );
        let mut r = Reader::new(Version::V311);
        assert!(packets(&mut r, &[0x20, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut r = Reader::new(Version::V311);
        assert!(
            packets(&mut r, &[0x20, 0x01, 0x00]).is_err(),
            "a CONNACK is 2 bytes"
        );
    }
}
