//! What the mock saw: every accepted notification (what a device would be sent) and counters,
//! kept in memory and, when asked, written to a file as JSON lines as they arrive (one
//! [`Notification::to_json`] object per line), so a process outside the mock can count them.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

/// A notification the mock accepted: APNs would deliver it to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The `apns-id`: the request's, or the one the mock generated.
    pub apns_id: String,
    /// The device token from the path, as sent.
    pub device_token: String,
    /// `apns-topic`, when sent.
    pub topic: Option<String>,
    /// `apns-collapse-id`, when sent.
    pub collapse_id: Option<String>,
    /// `apns-push-type`, when sent.
    pub push_type: Option<String>,
    /// `apns-priority`, when sent.
    pub priority: Option<u8>,
    /// `apns-expiration`, when sent.
    pub expiration: Option<u64>,
    /// The JSON payload.
    pub payload: Bytes,
    /// When the request was read.
    pub received_at: SystemTime,
    /// The provider token's key id (`kid`), under token authentication.
    pub key_id: Option<String>,
    /// The provider token's `iat` (Unix seconds), under token authentication: shows when
    /// the client refreshed its token.
    pub token_issued_at: Option<u64>,
    /// Which connection carried it: connections are numbered from 1 in the order their TLS
    /// handshake completed, so a client's pool spread shows.
    pub connection: u64,
    /// True when the stream was reset instead of answered 200 (the "unknown outcome" fault):
    /// delivered, but the client never heard so.
    pub reset: bool,
}

impl Notification {
    /// The notification as one JSON object (what `--record` writes per line and the admin
    /// endpoint lists): `apns_id`, `device_token`, `topic`, `collapse_id`, `push_type`,
    /// `priority`, `expiration`, `payload` (the JSON payload itself, or its text when it is not
    /// JSON), `received_at_ms` (Unix ms), `key_id`, `token_issued_at`, `connection`, `reset`.
    pub fn to_json(&self) -> serde_json::Value {
        let payload = serde_json::from_slice(&self.payload).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&self.payload).into_owned())
        });
        serde_json::json!({
            "apns_id": self.apns_id,
            "device_token": self.device_token,
            "topic": self.topic,
            "collapse_id": self.collapse_id,
            "push_type": self.push_type,
            "priority": self.priority,
            "expiration": self.expiration,
            "payload": payload,
            "received_at_ms": super::unix_ms(self.received_at),
            "key_id": self.key_id,
            "token_issued_at": self.token_issued_at,
            "connection": self.connection,
            "reset": self.reset,
        })
    }
}

/// Counters of one mock APNs since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApnsStats {
    /// TLS connections that completed the handshake with ALPN `h2`.
    pub connections: u64,
    /// TLS handshakes that failed (or did not negotiate `h2`).
    pub handshake_failures: u64,
    /// HTTP/2 streams (requests) received.
    pub streams: u64,
    /// Notifications accepted and recorded (answered 200 or reset after reading).
    pub accepted: u64,
    /// Responses sent, by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Error responses sent, by reason.
    pub by_reason: BTreeMap<String, u64>,
    /// Streams reset with REFUSED_STREAM.
    pub refused_streams: u64,
    /// Streams reset after the request was read and recorded.
    pub resets_after_read: u64,
    /// GOAWAY frames started by `goaway_after` or [`Fault::GoAway`](super::Fault::GoAway).
    pub goaways: u64,
    /// Connections closed (with GOAWAY) for being idle.
    pub idle_timeouts: u64,
    /// The most streams seen open at once on one connection.
    pub max_concurrent_streams_seen: u64,
}

/// The notifications and counters, behind one lock (held only to copy in or out).
#[derive(Debug, Default)]
pub(crate) struct Seen {
    inner: Mutex<Inner>,
    /// `--record`: each accepted notification as a JSON line, written when it is accepted.
    log: Option<Mutex<std::fs::File>>,
}

#[derive(Debug, Default)]
struct Inner {
    notifications: Vec<Notification>,
    stats: ApnsStats,
}

impl Seen {
    /// Keeps what the mock sees and also writes each notification to `log` as a JSON line.
    pub(crate) fn with_log(log: std::fs::File) -> Seen {
        Seen {
            log: Some(Mutex::new(log)),
            ..Seen::default()
        }
    }

    pub(crate) fn record(&self, notification: Notification) {
        if let Some(log) = &self.log {
            let mut line = notification.to_json().to_string();
            line.push('\n');
            // One write per line, unbuffered: a reader of the file sees each as it comes.
            if let Err(error) = common::sync::lock(log).write_all(line.as_bytes()) {
                tracing::warn!(%error, "could not write the record file");
            }
        }
        let mut inner = self.lock();
        inner.stats.accepted += 1;
        inner.notifications.push(notification);
    }

    /// Counts a response sent with `status` (and `reason` for errors).
    pub(crate) fn responded(&self, status: u16, reason: Option<&str>) {
        let mut inner = self.lock();
        *inner.stats.by_status.entry(status).or_default() += 1;
        if let Some(reason) = reason {
            *inner.stats.by_reason.entry(reason.to_owned()).or_default() += 1;
        }
    }

    pub(crate) fn count(&self, update: impl FnOnce(&mut ApnsStats)) {
        update(&mut self.lock().stats);
    }

    pub(crate) fn notifications(&self) -> Vec<Notification> {
        self.lock().notifications.clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().notifications.len()
    }

    pub(crate) fn stats(&self) -> ApnsStats {
        self.lock().stats.clone()
    }

    /// `apns-id`s accepted more than once, with how often, sorted by id.
    pub(crate) fn duplicates(&self) -> Vec<(String, usize)> {
        let inner = self.lock();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for n in &inner.notifications {
            *counts.entry(n.apns_id.as_str()).or_default() += 1;
        }
        let mut dups: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, c)| *c > 1)
            .map(|(id, c)| (id.to_owned(), c))
            .collect();
        dups.sort();
        dups
    }

    pub(crate) fn clear(&self) {
        self.lock().notifications.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        common::sync::lock(&self.inner)
    }
}

/// What a device would show from `notifications` addressed to it, in arrival order: a
/// notification with the collapse id of an earlier one replaces it.
pub fn displayed(notifications: &[Notification], device_token: &str) -> Vec<Notification> {
    let mut shown: Vec<Notification> = Vec::new();
    for n in notifications
        .iter()
        .filter(|n| n.device_token.eq_ignore_ascii_case(device_token))
    {
        if let Some(id) = &n.collapse_id {
            shown.retain(|s| s.collapse_id.as_ref() != Some(id));
        }
        shown.push(n.clone());
    }
    shown
}
