//! The embedded dedupe store: one fjall database (a directory) on disk.
//!
//! Why fjall: a dedupe store is a write-heavy table of random keys (every push writes its
//! claim and then its outcome) that is read mostly for keys it does not hold. A log-structured
//! merge tree fits that shape: a write appends to a journal and a sorted in-memory table;
//! a miss is answered from the memtable and per-table bloom filters. The first version used
//! redb, a copy-on-write B-tree: each commit copied and wrote one 4 KiB leaf page per random
//! key and, on Linux, synced the file on every commit whatever the durability asked for, which
//! made the store 40 % of the relay's CPU at 20k pushes/s (see BENCHMARKS.md). fjall is pure
//! Rust (no C toolchain, no second process), has a stable on-disk format since 3.0, recovers
//! its journal after a crash (a torn tail is cut at the last complete batch) and is
//! maintained. RocksDB/LMDB bindings bring C builds; sled's format is unstable.
//!
//! A claim must be durable before the push is written to APNs, or a restart could forget a
//! push that Apple already has. Operations run inline on the caller's thread (a read of the
//! memtable and bloom filters, an append to fjall's journal buffer); one mutex per stripe of
//! keys makes a claim's read-then-write atomic. Durability is a group commit: a claim waits
//! until a persist that started after its write has finished; the first waiter to find no
//! persist running becomes the leader and persists everything written so far, once, for all
//! waiters: it writes fjall's journal buffer to the OS (survives a killed relay) and, with
//! `fsync`, then syncs the filesystem that holds the store on a blocking thread (survives a
//! power cut). The sync is `syncfs(2)` on the store's directory rather than fjall's own
//! `SyncData`, because fjall holds its journal lock while it syncs, which would stop every
//! other write (and the async workers doing them) for the length of a disk flush; `syncfs`
//! runs with the lock free. It flushes every dirty file of that filesystem, so with `fsync`
//! give the store a filesystem of its own (see the deploy README). An outcome (`finish`,
//! `release`) is not waited for: the next group commit or the background flush (every 50 ms)
//! carries it; if the relay dies first, the key is still in flight on disk and reads as
//! `unknown` after the restart (never resent).
//!
//! One keyspace, `pushes`, holds every key: a claim writes it in flight, an outcome
//! overwrites it. Each value is `expires_at_ms (8 bytes BE) ‖ epoch (8 bytes BE) ‖ JSON
//! record`. The epoch counts the processes that opened the store (kept in the `meta`
//! keyspace, raised and synced on open): a key found in flight with an older epoch was left by
//! a process that died after it may have written the push to APNs, so it reads as `unknown`
//! (never resent). That needs no scan of the store on open, and a push costs one lookup and
//! two writes (a second keyspace for in-flight keys cost a lookup and a delete more). An
//! expired value reads as absent and a compaction filter drops it, so the TTL needs no sweep.
//! `meta` also holds the store's format version: a store written in another format is refused
//! with a clear error rather than misread.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjall::compaction::filter::{
    CompactionFilter, CompactionFilterResult, Context, Factory, ItemAccessor, Verdict,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::Notify;

use super::{
    decode_record, encode_record, now_ms, Claim, Key, Record, Store, StoreError, StoreFuture,
};

const PUSHES: &str = "pushes";
const META: &str = "meta";
/// The layout described in the module doc; `meta` key `format`.
const FORMAT: &str = "2";
/// The cause stored in a key found in flight from an earlier process.
const ORPHANED: &str = "relay restarted while the push was in flight";
/// Key stripes: claims of different keys rarely wait for each other.
const STRIPES: usize = 256;
/// How often outcomes are flushed when no claim is.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// The fjall-backed store; see the module doc.
pub struct DiskStore {
    inner: Arc<Inner>,
    ttl: Duration,
}

struct Inner {
    db: Database,
    pushes: Keyspace,
    meta: Keyspace,
    /// This process's epoch (see the module doc).
    epoch: u64,
    path: String,
    /// The store's directory, for `syncfs`.
    dir: std::fs::File,
    fsync: bool,
    stripes: Vec<Mutex<()>>,
    group: Mutex<GroupState>,
    persisted: Notify,
    closed: AtomicBool,
}

/// Writes are numbered; `durable` is the highest number a finished persist covers.
#[derive(Default)]
struct GroupState {
    written: u64,
    durable: u64,
    leader: bool,
    failed: Option<String>,
}

/// Drops expired values during compaction (the TTL).
struct Expiry;

impl Factory for Expiry {
    fn name(&self) -> &str {
        "apns-relay-expiry"
    }

    fn make_filter(&self, _: &Context) -> Box<dyn CompactionFilter> {
        Box::new(ExpiryFilter(now_ms()))
    }
}

struct ExpiryFilter(u64);

impl CompactionFilter for ExpiryFilter {
    fn filter_item(&mut self, item: ItemAccessor<'_>, _: &Context) -> CompactionFilterResult {
        let value = item.value()?;
        Ok(if live(&value, self.0).is_some() {
            Verdict::Keep
        } else {
            Verdict::Remove
        })
    }
}

impl DiskStore {
    /// Opens (or creates) the database directory, starts a new epoch (so keys left in flight
    /// by a previous process read as `unknown`) and the background flush. With `fsync`, a
    /// claim is answered once its write is synced to the disk (survives a power cut);
    /// without, once it is written to the OS (survives a killed process, not a power cut).
    pub fn open(path: &Path, ttl: Duration, fsync: bool) -> Result<DiskStore, StoreError> {
        let p = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| StoreError::Disk {
            path: p.clone(),
            msg: e.to_string(),
        };
        let expiry: Arc<dyn Factory> = Arc::new(Expiry);
        let db = Database::builder(path)
            .worker_threads(1)
            .cache_size(64 << 20)
            .manual_journal_persist(true)
            .with_compaction_filter_factories(Arc::new(move |_| Some(expiry.clone())))
            .open()
            .map_err(|e| err(&e))?;
        let open = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().manual_journal_persist(true)
            })
            .map_err(|e| err(&e))
        };
        let pushes = open(PUSHES)?;
        let meta = open(META)?;
        let epoch = begin_epoch(&db, &pushes, &meta).map_err(|e| match e {
            Begin::Store(e) => err(&e),
            Begin::Format(found) => StoreError::Disk {
                path: p.clone(),
                msg: format!(
                    "written in dedupe store format {found}, this apns-relay reads format \
                     {FORMAT}: move the directory away (its keys are not read) or delete it"
                ),
            },
        })?;
        let inner = Arc::new(Inner {
            pushes,
            meta,
            epoch,
            db,
            dir: std::fs::File::open(path).map_err(|e| err(&e))?,
            path: p.clone(),
            fsync,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            group: Mutex::new(GroupState::default()),
            persisted: Notify::new(),
            closed: AtomicBool::new(false),
        });
        // Outcomes are not waited for; this carries them to the OS (or the disk) when no
        // claim does. It holds only a weak reference, so dropping the store closes it.
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("dedupe-flush".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::Acquire) {
                    return;
                }
                // Only when something was written since the last persist: with `fsync` an
                // idle relay does not sync the filesystem twenty times a second.
                let target = {
                    let g = inner.group();
                    (g.written > g.durable).then_some(g.written)
                };
                let Some(target) = target else { continue };
                match inner.persist() {
                    Ok(()) => {
                        let mut g = inner.group();
                        g.durable = g.durable.max(target);
                    }
                    Err(e) => tracing::error!(path = inner.path, error = %e, "dedupe flush failed"),
                }
            })
            .map_err(|e| err(&e))?;
        Ok(DiskStore { inner, ttl })
    }

    fn value(&self, r: &Record) -> Vec<u8> {
        let expires = now_ms() + self.ttl.as_millis() as u64;
        let record = encode_record(r);
        let mut v = Vec::with_capacity(16 + record.len());
        v.extend_from_slice(&expires.to_be_bytes());
        v.extend_from_slice(&self.inner.epoch.to_be_bytes());
        v.extend_from_slice(record.as_bytes());
        v
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Err(e) = self.inner.db.persist(PersistMode::SyncAll) {
            tracing::error!(path = self.inner.path, error = %e, "dedupe final sync failed");
        }
    }
}

impl Inner {
    /// Writes the journal to the OS and, with `fsync`, syncs it to the disk (blocking).
    fn persist(&self) -> Result<(), String> {
        self.db
            .persist(PersistMode::Buffer)
            .map_err(|e| e.to_string())?;
        if self.fsync {
            nix::unistd::syncfs(&self.dir).map_err(|e| format!("syncfs: {e}"))?;
        }
        Ok(())
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Disk {
            path: self.path.clone(),
            msg: e.to_string(),
        }
    }

    fn group(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.group.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stripe(&self, key: &Key) -> std::sync::MutexGuard<'_, ()> {
        // The apns-id alone spreads keys as well as the whole key, in a third of the bytes.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.apns_id().hash(&mut h);
        self.stripes[h.finish() as usize % STRIPES]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, ks: &Keyspace, key: &str, now: u64) -> Result<Option<Vec<u8>>, StoreError> {
        read_live(ks, key, now).map_err(|e| self.error(e))
    }

    /// The live record of a key; one left in flight by an earlier process reads as unknown.
    fn record(&self, key: &str, now: u64) -> Result<Option<Record>, StoreError> {
        let Some(v) = self.read(&self.pushes, key, now)? else {
            return Ok(None);
        };
        let Some((epoch, json)) = v.split_at_checked(8) else {
            return Err(StoreError::Corrupt(format!("{}: short value", self.path)));
        };
        let epoch = u64::from_be_bytes(epoch.try_into().unwrap_or_default());
        Ok(Some(match decode_record(json)? {
            Record::InFlight { .. } if epoch < self.epoch => Record::Unknown {
                cause: ORPHANED.into(),
                attempts: 1,
            },
            r => r,
        }))
    }

    /// Writes a batch to the journal buffer and returns its number for [`Inner::durable`].
    fn commit(&self, batch: fjall::OwnedWriteBatch) -> Result<u64, StoreError> {
        // Numbered under the group lock after the write, so a persist that reads `written`
        // covers every write numbered up to it.
        batch.commit().map_err(|e| self.error(e))?;
        let mut g = self.group();
        g.written += 1;
        Ok(g.written)
    }

    /// Waits until write number `ticket` is persisted (the group commit in the module doc).
    async fn durable(self: &Arc<Self>, ticket: u64) -> Result<(), StoreError> {
        loop {
            let notified = self.persisted.notified();
            let lead = {
                let mut g = self.group();
                if let Some(e) = &g.failed {
                    return Err(self.error(e));
                }
                if g.durable >= ticket {
                    return Ok(());
                }
                !std::mem::replace(&mut g.leader, true)
            };
            if !lead {
                notified.await;
                continue;
            }
            let mut leader = Leader {
                inner: self,
                result: None,
            };
            // Let the claims that are ready to run now (the other streams one read from a
            // sender brought) write theirs first, so that one persist covers them all.
            tokio::task::yield_now().await;
            let target = self.group().written;
            let result = if self.fsync {
                let inner = self.clone();
                tokio::task::spawn_blocking(move || inner.persist())
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            } else {
                self.persist()
            };
            leader.result = Some(result.map(|()| target));
        }
    }
}

/// The group commit's leader: when it ends, however it ends (its persist done, or its caller
/// dropped mid-way), it records the result, steps down and wakes the waiters, one of whom
/// leads next if their writes are not yet durable.
struct Leader<'a> {
    inner: &'a Inner,
    /// The persist's result: the write number it covered, or its error.
    result: Option<Result<u64, String>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        {
            let mut g = self.inner.group();
            g.leader = false;
            match self.result.take() {
                Some(Ok(target)) => g.durable = g.durable.max(target),
                // A failed write-back or sync cannot be retried safely (the kernel may have
                // dropped the dirty pages): from now on every claim fails, so the relay
                // refuses pushes instead of sending ones it could not record.
                Some(Err(e)) => g.failed = Some(e),
                None => {}
            }
        }
        self.inner.persisted.notify_waiters();
    }
}

enum Begin {
    Store(fjall::Error),
    /// The store's format, when not this one.
    Format(String),
}

impl From<fjall::Error> for Begin {
    fn from(e: fjall::Error) -> Begin {
        Begin::Store(e)
    }
}

/// Checks the store's format and starts this process's epoch (synced before any claim).
fn begin_epoch(db: &Database, pushes: &Keyspace, meta: &Keyspace) -> Result<u64, Begin> {
    let get = |name: &str| read_live(meta, name, now_ms());
    // Kept forever: the compaction filter reads the same expiry prefix as everywhere.
    let put = |name: &str, value: &[u8]| meta.insert(name, with_expiry(u64::MAX, value));
    match get("format")? {
        Some(f) if f == FORMAT.as_bytes() => {}
        Some(f) => return Err(Begin::Format(String::from_utf8_lossy(&f).into_owned())),
        // Format 1 kept in-flight keys in a keyspace of their own and had no format key.
        None if db.keyspace_exists("inflight") || !pushes.is_empty()? => {
            return Err(Begin::Format("1".into()))
        }
        None => put("format", FORMAT.as_bytes())?,
    }
    let last = get("epoch")?
        .and_then(|v| v.try_into().ok())
        .map_or(0, u64::from_be_bytes);
    let epoch = last + 1;
    put("epoch", &epoch.to_be_bytes())?;
    db.persist(PersistMode::SyncAll)?;
    Ok(epoch)
}

/// The live value of `key` in `ks`, without its expiry prefix.
fn read_live(ks: &Keyspace, key: &str, now: u64) -> Result<Option<Vec<u8>>, fjall::Error> {
    Ok(ks.get(key)?.and_then(|v| live(&v, now).map(<[u8]>::to_vec)))
}

/// A value as stored: `expires_at_ms (8 bytes BE) ‖ value`.
fn with_expiry(expires_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&expires_ms.to_be_bytes());
    v.extend_from_slice(value);
    v
}

fn live(v: &[u8], now: u64) -> Option<&[u8]> {
    let (exp, rest) = v.split_at_checked(8)?;
    let exp = u64::from_be_bytes(exp.try_into().ok()?);
    (exp > now).then_some(rest)
}

impl Store for DiskStore {
    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> StoreFuture<'a, Claim> {
        let v = self.value(&Record::InFlight {
            lease_until_ms: now_ms() + lease.as_millis() as u64,
        });
        Box::pin(async move {
            let t = &self.inner;
            let k = key.encode();
            let ticket = {
                let _stripe = t.stripe(key);
                if let Some(rec) = t.record(k, now_ms())? {
                    return Ok(Claim::Existing(rec));
                }
                let mut batch = t.db.batch();
                batch.insert(&t.pushes, k, v);
                t.commit(batch)?
            };
            t.durable(ticket).await?;
            Ok(Claim::Claimed)
        })
    }

    fn finish<'a>(&'a self, key: &'a Key, record: &'a Record) -> StoreFuture<'a, ()> {
        // Not waited for: see the module doc.
        let v = self.value(record);
        Box::pin(async move {
            let t = &self.inner;
            let k = key.encode();
            let _stripe = t.stripe(key);
            let mut batch = t.db.batch();
            batch.insert(&t.pushes, k, v);
            t.commit(batch).map(|_| ())
        })
    }

    fn replace<'a>(
        &'a self,
        key: &'a Key,
        from: &'a Record,
        to: &'a Record,
    ) -> StoreFuture<'a, bool> {
        let v = self.value(to);
        Box::pin(async move {
            let t = &self.inner;
            let k = key.encode();
            let ticket = {
                let _stripe = t.stripe(key);
                if t.record(k, now_ms())?.as_ref() != Some(from) {
                    return Ok(false);
                }
                let mut batch = t.db.batch();
                batch.insert(&t.pushes, k, v);
                t.commit(batch)?
            };
            t.durable(ticket).await?;
            Ok(true)
        })
    }

    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move { self.inner.record(key.encode(), now_ms()) })
    }

    fn release<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, ()> {
        // As `finish`: not waited for; lost only with the process, which leaves the key
        // `unknown` (safe, just less informative).
        Box::pin(async move {
            let t = &self.inner;
            let k = key.encode();
            let _stripe = t.stripe(key);
            let mut batch = t.db.batch();
            batch.remove(&t.pushes, k);
            t.commit(batch).map(|_| ())
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let t = &self.inner;
            let ticket = t.group().written;
            if ticket == 0 {
                // Nothing written yet: a persist of nothing still proves the store answers.
                return t.db.persist(PersistMode::Buffer).map_err(|e| t.error(e));
            }
            t.durable(ticket).await
        })
    }

    fn get_meta<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let v = self.inner.read(&self.inner.meta, name, now_ms())?;
            Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()))
        })
    }

    fn put_meta<'a>(&'a self, name: &'a str, value: &'a str, ttl: Duration) -> StoreFuture<'a, ()> {
        let v = with_expiry(now_ms() + ttl.as_millis() as u64, value.as_bytes());
        Box::pin(async move {
            let t = &self.inner;
            let mut batch = t.db.batch();
            batch.insert(&t.meta, name, v);
            let ticket = t.commit(batch)?;
            t.durable(ticket).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_again(path: &Path) -> DiskStore {
        // The writer thread releases the database when the store is dropped.
        for _ in 0..500 {
            if let Ok(s) = DiskStore::open(path, Duration::from_secs(60), true) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the store did not reopen");
    }

    #[tokio::test]
    async fn contract_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(&dir.path().join("d"), Duration::from_secs(60), true).unwrap();
        super::super::contract::check(&store).await;
    }

    #[tokio::test]
    async fn contract_holds_without_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(&dir.path().join("d"), Duration::from_secs(60), false).unwrap();
        super::super::contract::check(&store).await;
    }

    #[tokio::test]
    async fn restart_keeps_outcomes_and_turns_in_flight_into_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        let done_key = Key::new("t", "aa", "1");
        let flying = Key::new("t", "aa", "2");
        let done = Record::Done {
            status: 410,
            body: r#"{"reason":"Unregistered"}"#.into(),
            attempts: 1,
        };
        {
            let store = DiskStore::open(&path, Duration::from_secs(60), true).unwrap();
            store
                .claim(&done_key, Duration::from_secs(30))
                .await
                .unwrap();
            store.finish(&done_key, &done).await.unwrap();
            store.claim(&flying, Duration::from_secs(30)).await.unwrap();
        }
        let store = open_again(&path);
        assert_eq!(store.get(&done_key).await.unwrap(), Some(done));
        assert!(matches!(
            store.get(&flying).await.unwrap(),
            Some(Record::Unknown { .. })
        ));
        // A later claim of the orphan gets `unknown` too, and so it stays after more restarts.
        assert!(matches!(
            store.claim(&flying, Duration::from_secs(30)).await.unwrap(),
            Claim::Existing(Record::Unknown { .. })
        ));
        drop(store);
        let store = open_again(&path);
        assert!(matches!(
            store.get(&flying).await.unwrap(),
            Some(Record::Unknown { .. })
        ));
        // A key claimed by this process is in flight, not unknown.
        let fresh = Key::new("t", "aa", "4");
        store.claim(&fresh, Duration::from_secs(30)).await.unwrap();
        assert!(matches!(
            store.get(&fresh).await.unwrap(),
            Some(Record::InFlight { .. })
        ));
    }

    #[test]
    fn a_store_in_another_format_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        {
            // Format 1: in-flight keys in a keyspace of their own, no format key.
            let db = Database::builder(&path).open().unwrap();
            let old = db
                .keyspace("inflight", KeyspaceCreateOptions::default)
                .unwrap();
            old.insert("t|aa|1", [0u8; 8]).unwrap();
            db.persist(PersistMode::SyncAll).unwrap();
        }
        let mut error = None;
        for _ in 0..500 {
            match DiskStore::open(&path, Duration::from_secs(60), false) {
                Err(StoreError::Disk { msg, .. }) if msg.contains("format") => {
                    error = Some(msg);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)), // still locked
                Ok(_) => panic!("a format-1 store was opened"),
            }
        }
        let msg = error.expect("refused");
        assert!(
            msg.contains("format 1") && msg.contains("format 2"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn concurrent_claims_of_one_key_claim_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(&dir.path().join("d"), Duration::from_secs(60), true).unwrap();
        let k = Key::new("t", "aa", "3");
        let lease = Duration::from_secs(30);
        let (a, b) = tokio::join!(store.claim(&k, lease), store.claim(&k, lease));
        let claimed = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|c| **c == Claim::Claimed)
            .count();
        assert_eq!(claimed, 1);
    }

    #[tokio::test]
    async fn expired_keys_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(&dir.path().join("d"), Duration::from_millis(1), true).unwrap();
        let k = Key::new("t", "aa", "1");
        store.claim(&k, Duration::from_secs(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.get(&k).await.unwrap(), None);
        assert_eq!(
            store.claim(&k, Duration::from_secs(1)).await.unwrap(),
            Claim::Claimed
        );
    }
}
