//! The dedupe store: what the relay knows about each push, keyed by (topic, device token,
//! apns-id), so that a sender's retry never becomes a second notification.
//!
//! A key moves `new → in-flight → done(status, reason) | unknown`. [`Store`] is the backend
//! trait: [`disk::DiskStore`] (an embedded fjall database, the default: one relay instance, survives
//! a restart) and [`redis::RedisStore`] (several relay instances share one Redis). Both keep a
//! TTL per key. Waiting for an in-flight key is the relay's job (it knows which keys it owns);
//! the store only answers atomically.

pub mod disk;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{DedupeBackend, DedupeConfig};

/// A dedupe store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded store failed.
    #[error("dedupe store {path}: {msg}")]
    Disk {
        /// The file.
        path: String,
        /// What failed.
        msg: String,
    },
    /// Redis failed.
    #[error("dedupe redis: {0}")]
    Redis(String),
    /// A stored record could not be read.
    #[error("dedupe record: {0}")]
    Corrupt(String),
}

/// The identity of a push: (topic, device token, apns-id), kept in its stored form
/// `apns-id|topic|device` so that cloning it is a reference count and storing it copies
/// nothing. The apns-id leads because it is random: store lookups compare keys, and keys that
/// share the topic and a device token's first bytes would otherwise compare byte by byte far
/// into each key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Arc<str>);

impl Key {
    /// A key, normalised (tokens and ids compare case-insensitively). The device token is
    /// hex and the apns-id a UUID (the inbound side checked both), so neither contains `|`.
    pub fn new(topic: &str, device: &str, apns_id: &str) -> Key {
        let mut s = String::with_capacity(apns_id.len() + topic.len() + device.len() + 2);
        s.extend(apns_id.chars().map(|c| c.to_ascii_lowercase()));
        s.push('|');
        s.push_str(topic);
        s.push('|');
        s.extend(device.chars().map(|c| c.to_ascii_lowercase()));
        Key(s.into())
    }

    /// The stored form.
    pub fn encode(&self) -> &str {
        &self.0
    }

    /// The `apns-id`.
    pub fn apns_id(&self) -> &str {
        self.0.split('|').next().unwrap_or_default()
    }

    /// The `apns-topic` (empty when the sender sent none).
    pub fn topic(&self) -> &str {
        let rest = &self.0[self.apns_id().len() + 1..];
        rest.rsplit_once('|').map_or("", |(topic, _)| topic)
    }

    /// The device token (lowercase hex).
    pub fn device(&self) -> &str {
        self.0.rsplit('|').next().unwrap_or_default()
    }
}

#[cfg(test)]
#[test]
fn key_parts_survive_a_topic_with_the_separator() {
    let k = Key::new("com.example|odd", "AB12", "5B9C-ID");
    assert_eq!(k.encode(), "5b9c-id|com.example|odd|ab12");
    assert_eq!(
        (k.apns_id(), k.topic(), k.device()),
        ("5b9c-id", "com.example|odd", "ab12")
    );
}

/// What is known about a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Record {
    /// An attempt is under way; the claim is honoured until `lease_until_ms` (Unix ms).
    InFlight {
        /// End of the claim's lease.
        lease_until_ms: u64,
    },
    /// APNs answered.
    Done {
        /// APNs status.
        status: u16,
        /// APNs response body (the `{"reason": …}` JSON, empty on 200).
        body: String,
        /// Attempts it took.
        attempts: u32,
    },
    /// The request was written and no answer came: APNs may or may not have it.
    Unknown {
        /// Why.
        cause: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was new and is now in flight for the caller.
    Claimed,
    /// The key was known.
    Existing(Record),
}

/// A boxed store future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A dedupe backend. Every operation is atomic per key.
pub trait Store: Send + Sync {
    /// Makes a new key in-flight (durably, before the push is sent), or returns its record.
    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> StoreFuture<'a, Claim>;
    /// Stores the final record of a key.
    fn finish<'a>(&'a self, key: &'a Key, record: &'a Record) -> StoreFuture<'a, ()>;
    /// Replaces `from` by `to` if the key still holds `from` (a resend of an unknown key, or
    /// taking over an expired in-flight claim). Returns whether it did.
    fn replace<'a>(
        &'a self,
        key: &'a Key,
        from: &'a Record,
        to: &'a Record,
    ) -> StoreFuture<'a, bool>;
    /// Reads a key.
    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>>;
    /// Forgets a key (the push never reached APNs, so a later retry may send it).
    fn release<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, ()>;
    /// Checks the store answers (for `/healthz`).
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// Reads a small shared value kept beside the pushes (the current provider token, so a
    /// restarted or second relay reuses it instead of minting one: Apple refuses a team's
    /// tokens that change too often).
    fn get_meta<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>>;
    /// Stores a small shared value for `ttl`.
    fn put_meta<'a>(&'a self, name: &'a str, value: &'a str, ttl: Duration) -> StoreFuture<'a, ()>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Opens the configured backend.
pub async fn open(config: &DedupeConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config.backend {
        DedupeBackend::Disk => Ok(Arc::new(disk::DiskStore::open_with_cache(
            &config.path,
            config.ttl,
            config.fsync,
            config.cache_mib << 20,
        )?)),
        DedupeBackend::Redis => {
            let url = config.url.as_deref().unwrap_or_default();
            Ok(Arc::new(
                redis::RedisStore::connect(url, &config.prefix, config.ttl).await?,
            ))
        }
    }
}

pub(crate) fn encode_record(r: &Record) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

/// [`encode_record`], appended to `out`.
pub(crate) fn encode_record_into(r: &Record, out: &mut Vec<u8>) {
    // Serialising these plain enums into a Vec cannot fail.
    let _ = serde_json::to_writer(out, r);
}

pub(crate) fn decode_record(s: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every backend must show; each backend's tests run it.
    use super::*;

    pub async fn check(store: &dyn Store) {
        let k = Key::new("com.example", "AA11", &uuid::Uuid::new_v4().to_string());
        let lease = Duration::from_secs(30);
        assert_eq!(store.claim(&k, lease).await.unwrap(), Claim::Claimed);
        let again = store.claim(&k, lease).await.unwrap();
        assert!(
            matches!(again, Claim::Existing(Record::InFlight { .. })),
            "{again:?}"
        );
        let unknown = Record::Unknown {
            cause: "reset".into(),
            attempts: 1,
        };
        store.finish(&k, &unknown).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap(), Some(unknown.clone()));
        let inflight = Record::InFlight {
            lease_until_ms: now_ms() + 1000,
        };
        let done = Record::Done {
            status: 200,
            body: String::new(),
            attempts: 2,
        };
        assert!(
            !store.replace(&k, &done, &inflight).await.unwrap(),
            "replace must compare"
        );
        assert!(store.replace(&k, &unknown, &inflight).await.unwrap());
        store.finish(&k, &done).await.unwrap();
        assert_eq!(store.claim(&k, lease).await.unwrap(), Claim::Existing(done));
        store.release(&k).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap(), None);
        assert_eq!(store.claim(&k, lease).await.unwrap(), Claim::Claimed);
        store.ping().await.unwrap();
        assert_eq!(store.get_meta("m").await.unwrap(), None);
        store
            .put_meta("m", "v1", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.get_meta("m").await.unwrap().as_deref(), Some("v1"));
    }
}
