//! An MQTT device's session state on one connection: the CONNECT → CONNACK and SUBSCRIBE →
//! SUBACK handshake, the acknowledgements each received PUBLISH calls for (QoS 1: PUBACK;
//! QoS 2: PUBREC, then PUBCOMP on the broker's PUBREL, delivering the message once even when
//! the broker sends it again before releasing it), keep-alive pings and an optional ack delay.
//!
//! Packets come from [`crate::journey::mqtt`] (rumqttc's codec). What this keeps per
//! connection between reads: the reader's incomplete packet (none when idle), the packet
//! ids of QoS 2 messages awaiting release and the acks held back by `ack_delay`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::connection::Cause;
use super::wire::{self, Framing};
use crate::journey::mqtt::{
    self as codec, Ack, ConnectFields, Incoming, Reader, Received, Version,
};

/// How far the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// CONNECT sent, CONNACK awaited.
    Connecting,
    /// SUBSCRIBE sent (its packet id), SUBACK awaited.
    Subscribing(u16),
    /// Subscribed (or nothing to subscribe): messages flow.
    Up,
}

/// What one read brought besides messages.
#[derive(Debug, Default, PartialEq)]
pub struct Fed {
    /// A PINGRESP came.
    pub pong: bool,
    /// The server sent DISCONNECT (MQTT 5: with this reason).
    pub disconnected: Option<String>,
}

/// One connection's MQTT state.
#[derive(Debug)]
pub struct Session {
    reader: Reader,
    framing: Framing,
    stage: Stage,
    /// QoS 2 messages received (PUBREC sent or held back), awaiting PUBREL.
    unreleased: Vec<u16>,
    /// Acks held back by `ack_delay`: when each is due.
    delayed: VecDeque<(Instant, Ack, u16)>,
    ack_delay: Option<Duration>,
}

/// Appends an MQTT packet, framed (a binary WebSocket frame, or as it is on TCP).
fn put(framing: Framing, packet: &[u8], out: &mut Vec<u8>) {
    wire::encode_binary(framing, packet, out);
}

impl Session {
    /// A session of `version`, its packets framed by `framing`.
    pub fn new(version: Version, framing: Framing, ack_delay: Option<Duration>) -> Session {
        Session {
            reader: Reader::new(version),
            framing,
            stage: Stage::Connecting,
            unreleased: Vec::new(),
            delayed: VecDeque::new(),
            ack_delay: ack_delay.filter(|d| !d.is_zero()),
        }
    }

    /// The handshake's stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Queues the CONNECT.
    pub fn connect(&mut self, fields: &ConnectFields, out: &mut Vec<u8>) -> Result<(), Cause> {
        let mut p = Vec::new();
        codec::connect(self.reader.version(), fields, &mut p)
            .map_err(|_| Cow::Borrowed("connect"))?;
        put(self.framing, &p, out);
        self.stage = Stage::Connecting;
        Ok(())
    }

    /// Queues one SUBSCRIBE of every filter (filter, QoS).
    pub fn subscribe(&mut self, filters: &[(String, u8)], out: &mut Vec<u8>) -> Result<(), Cause> {
        let mut p = Vec::new();
        let pkid = 1;
        codec::subscribe(self.reader.version(), pkid, filters, &mut p)
            .map_err(|_| Cow::Borrowed("subscribe"))?;
        put(self.framing, &p, out);
        self.stage = Stage::Subscribing(pkid);
        Ok(())
    }

    /// Queues a PINGREQ.
    pub fn ping(&self, out: &mut Vec<u8>) {
        let mut p = Vec::with_capacity(2);
        codec::pingreq(&mut p);
        put(self.framing, &p, out);
    }

    /// Queues a DISCONNECT.
    pub fn disconnect(&self, out: &mut Vec<u8>) {
        let mut p = Vec::with_capacity(3);
        codec::disconnect(self.reader.version(), &mut p);
        put(self.framing, &p, out);
    }

    /// When the next held-back ack is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.front().map(|d| d.0)
    }

    /// Queues the held-back acks due by `now`.
    pub fn release_due(&mut self, now: Instant, out: &mut Vec<u8>) {
        while self.delayed.front().is_some_and(|d| d.0 <= now) {
            if let Some((_, kind, pkid)) = self.delayed.pop_front() {
                self.send_ack(kind, pkid, out);
            }
        }
    }

    fn send_ack(&self, kind: Ack, pkid: u16, out: &mut Vec<u8>) {
        let mut p = Vec::with_capacity(8);
        codec::ack(self.reader.version(), kind, pkid, &mut p);
        put(self.framing, &p, out);
    }

    /// Acknowledges a received message as its QoS calls for, now or after `ack_delay`.
    fn ack_received(&mut self, kind: Ack, pkid: u16, out: &mut Vec<u8>) {
        match self.ack_delay {
            Some(d) => self.delayed.push_back((Instant::now() + d, kind, pkid)),
            None => self.send_ack(kind, pkid, out),
        }
    }

    /// Feeds bytes from the connection: acks go to `out`, every message to be delivered to
    /// `deliver` (with `out`, for anything it queues). A refusal or a broken stream is the
    /// failure's cause.
    pub fn feed(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        deliver: &mut dyn FnMut(&Received, &mut Vec<u8>),
    ) -> Result<Fed, Cause> {
        // A broker's first packet is its CONNACK: anything else (an HTTP answer, a banner)
        // is not MQTT, whatever length its first bytes would announce.
        if self.stage == Stage::Connecting
            && self.reader.is_empty()
            && data.first().is_some_and(|b| b >> 4 != 2)
        {
            return Err(Cow::Borrowed("malformed"));
        }
        let mut packets = Vec::new();
        self.reader
            .feed(data, &mut |p| packets.push(p))
            .map_err(|_| Cow::Borrowed("malformed"))?;
        let mut fed = Fed::default();
        for p in packets {
            match p {
                Incoming::ConnAck(None) if self.stage == Stage::Connecting => {
                    self.stage = Stage::Up
                }
                Incoming::ConnAck(Some(reason)) => {
                    return Err(Cow::Owned(format!("connack_{reason}")))
                }
                Incoming::SubAck(id, None) if self.stage == Stage::Subscribing(id) => {
                    self.stage = Stage::Up
                }
                Incoming::SubAck(_, Some(reason)) => {
                    return Err(Cow::Owned(format!("suback_{reason}")))
                }
                Incoming::Publish(m) => {
                    match m.qos {
                        0 => deliver(&m, out),
                        1 => {
                            deliver(&m, out);
                            self.ack_received(Ack::PubAck, m.pkid, out);
                        }
                        _ => {
                            // Exactly once: a message sent again before its release is
                            // acknowledged again, not delivered again.
                            if !self.unreleased.contains(&m.pkid) {
                                self.unreleased.push(m.pkid);
                                deliver(&m, out);
                            }
                            self.ack_received(Ack::PubRec, m.pkid, out);
                        }
                    }
                }
                Incoming::PubRel(pkid) => {
                    self.unreleased.retain(|p| *p != pkid);
                    if self.unreleased.is_empty() {
                        self.unreleased.shrink_to(0);
                    }
                    self.send_ack(Ack::PubComp, pkid, out);
                }
                Incoming::PingResp => fed.pong = true,
                Incoming::Disconnect(reason) => {
                    fed.disconnected = Some(reason.unwrap_or_else(|| "disconnect".into()))
                }
                // Acks of publishes a device never sends, a CONNACK or SUBACK out of turn,
                // packets only clients send: a broker that sends them breaks the protocol.
                Incoming::ConnAck(None)
                | Incoming::SubAck(..)
                | Incoming::PubAck(..)
                | Incoming::PubRec(..)
                | Incoming::PubComp(_)
                | Incoming::Unexpected => return Err(Cow::Borrowed("malformed")),
            }
        }
        if self.delayed.is_empty() && self.delayed.capacity() > 0 {
            self.delayed = VecDeque::new();
        }
        Ok(fed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::mqtt::PublishFields;
    use bytes::Bytes;

    fn publish(qos: u8, pkid: u16, dup: bool) -> Vec<u8> {
        let mut out = Vec::new();
        codec::publish(
            Version::V311,
            &PublishFields {
                topic: "t".into(),
                qos,
                pkid,
                payload: Bytes::from_static(b"{}"),
                ..Default::default()
            },
            &mut out,
        )
        .unwrap();
        if dup {
            out[0] |= 0x08;
        }
        out
    }

    #[test]
    fn acks_follow_the_qos_and_qos2_is_delivered_once() {
        let mut s = Session::new(Version::V311, Framing::Raw, None);
        let mut out = Vec::new();
        s.feed(&[0x20, 0x02, 0x00, 0x00], &mut out, &mut |_, _| {})
            .unwrap();
        assert_eq!(s.stage(), Stage::Up);
        let mut delivered = Vec::new();
        let mut all = publish(0, 0, false);
        all.extend(publish(1, 5, false));
        all.extend(publish(2, 6, false));
        all.extend(publish(2, 6, true));
        s.feed(&all, &mut out, &mut |m, _| {
            delivered.push((m.qos, m.pkid, m.dup))
        })
        .unwrap();
        assert_eq!(delivered, vec![(0, 0, false), (1, 5, false), (2, 6, false)]);
        // PUBACK 5, PUBREC 6, PUBREC 6 again.
        assert_eq!(out, [0x40, 2, 0, 5, 0x50, 2, 0, 6, 0x50, 2, 0, 6]);
        out.clear();
        s.feed(&[0x62, 0x02, 0x00, 0x06], &mut out, &mut |_, _| {})
            .unwrap();
        assert_eq!(out, [0x70, 2, 0, 6], "PUBCOMP after PUBREL");
        out.clear();
        s.feed(&publish(2, 6, false), &mut out, &mut |m, _| {
            delivered.push((m.qos, m.pkid, m.dup))
        })
        .unwrap();
        assert_eq!(delivered.len(), 4, "a released id is a new message");
    }

    #[test]
    fn refusals_are_causes_and_held_acks_wait() {
        let mut s = Session::new(Version::V311, Framing::Raw, None);
        let mut out = Vec::new();
        let e = s
            .feed(&[0x20, 0x02, 0x00, 0x05], &mut out, &mut |_, _| {})
            .unwrap_err();
        assert_eq!(e, "connack_not_authorized");
        let mut s = Session::new(Version::V311, Framing::Raw, None);
        let e = s
            .feed(
                b"HTTP/1.1 400 Bad Request\r\n\r\n",
                &mut out,
                &mut |_, _| {},
            )
            .unwrap_err();
        assert_eq!(e, "malformed", "not MQTT");
        let mut s = Session::new(Version::V311, Framing::Raw, Some(Duration::from_secs(60)));
        s.feed(&[0x20, 0x02, 0x00, 0x00], &mut out, &mut |_, _| {})
            .unwrap();
        s.subscribe(&[("a/#".into(), 1)], &mut out).unwrap();
        out.clear();
        let e = s
            .feed(&[0x90, 0x03, 0x00, 0x01, 0x80], &mut out, &mut |_, _| {})
            .unwrap_err();
        assert_eq!(e, "suback_failure");
        s.feed(&publish(1, 9, false), &mut out, &mut |_, _| {})
            .unwrap();
        assert!(out.is_empty(), "held back");
        let due = s.next_due().unwrap();
        s.release_due(due, &mut out);
        assert_eq!(out, [0x40, 2, 0, 9]);
        assert_eq!(s.next_due(), None);
        let e = s
            .feed(&[0x40, 0x02, 0x00, 0x01], &mut out, &mut |_, _| {})
            .unwrap_err();
        assert_eq!(e, "malformed", "a PUBACK for nothing this device sent");
    }
}
