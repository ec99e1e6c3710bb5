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
//! overwrites it. A key is stored as its 16-byte keyed SipHash-1-3-128 digest, not as its
//! ~120 bytes of text: a short key lives inside the memtable's skip-list node, so a lookup
//! compares keys without following a pointer per level (text keys cost a cache miss more per
//! level, and the memtable lookup of a new key is the store's biggest cost). The SipHash key
//! is random per store (`meta` key `hash-key`), so a sender cannot craft an apns-id whose
//! digest meets another push's; a chance collision needs ~2⁶⁴ keys. Each value is
//! `expires_at_ms (8 bytes BE) ‖ epoch (8 bytes BE) ‖ JSON record`. The epoch counts the
//! processes that opened the store (kept in the `meta` keyspace, raised and synced on open): a
//! key found in flight with an older epoch was left by a process that died after it may have
//! written the push to APNs, so it reads as `unknown` (never resent). That needs no scan of
//! the store on open, and a push costs one lookup and two writes (a second keyspace for
//! in-flight keys cost a lookup and a delete more). An expired value reads as absent and a
//! compaction filter drops it, so the TTL needs no sweep.
//! `meta` also holds the store's format version: a format-2 store (text keys) is rewritten to
//! digests once, when first opened; a store in any other format is refused with a clear error
//! rather than misread.

use std::hash::Hasher;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjall::compaction::filter::{
    CompactionFilter, CompactionFilterResult, Context, Factory, ItemAccessor, Verdict,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use siphasher::sip128::{Hasher128, SipHasher13};
use tokio::sync::Notify;

use super::{
    decode_record, encode_record_into, now_ms, Claim, Key, Record, Store, StoreError, StoreFuture,
};

const PUSHES: &str = "pushes";
const META: &str = "meta";
/// The layout described in the module doc; `meta` key `format`.
const FORMAT: &str = "3";
/// The format before keys were stored as digests; rewritten on open.
const FORMAT_TEXT_KEYS: &str = "2";
/// The cause stored in a key found in flight from an earlier process.
const ORPHANED: &str = "relay restarted while the push was in flight";
/// Key stripes: claims of different keys rarely wait for each other.
const STRIPES: usize = 256;
/// The block cache when none is configured (`dedupe.cache_mib`).
pub const DEFAULT_CACHE: u64 = crate::config::DEFAULT_DEDUPE_CACHE;
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
    /// The store's SipHash key (see the module doc).
    hash_key: [u8; 16],
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
        Self::open_with_cache(path, ttl, fsync, DEFAULT_CACHE)
    }

    /// [`open`](Self::open) with a block cache of `cache_bytes`. A claim looks up a key the
    /// store does not hold: the bloom filter and index blocks of every table it checks must be
    /// in memory, or each lookup reads them back from the files (two system calls a block).
    /// They take about 2 bytes per stored key (a day of 500 pushes/s: ~90 MB).
    pub fn open_with_cache(
        path: &Path,
        ttl: Duration,
        fsync: bool,
        cache_bytes: u64,
    ) -> Result<DiskStore, StoreError> {
        let p = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| StoreError::Disk {
            path: p.clone(),
            msg: e.to_string(),
        };
        let expiry: Arc<dyn Factory> = Arc::new(Expiry);
        let db = Database::builder(path)
            .worker_threads(1)
            .cache_size(cache_bytes)
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
        let (epoch, hash_key) = begin_epoch(&db, &pushes, &meta).map_err(|e| match e {
            Begin::Store(e) => err(&e),
            Begin::Corrupt(what) => StoreError::Corrupt(format!("{p}: {what}")),
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
            hash_key,
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
        // One buffer: the JSON is written after the prefix, not built apart and copied in.
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&expires.to_be_bytes());
        v.extend_from_slice(&self.inner.epoch.to_be_bytes());
        encode_record_into(r, &mut v);
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
        common::sync::lock(&self.group)
    }

    /// The key as stored.
    fn stored(&self, key: &Key) -> Digest {
        digest(&self.hash_key, key.encode().as_bytes())
    }

    /// The key as stored, and the lock of its stripe (for a read-then-write).
    fn locate(&self, key: &Key) -> (Digest, std::sync::MutexGuard<'_, ()>) {
        let d = self.stored(key);
        let stripe = u64::from_le_bytes(d[..8].try_into().unwrap_or_default()) as usize % STRIPES;
        (d, common::sync::lock(&self.stripes[stripe]))
    }

    fn read(&self, ks: &Keyspace, key: &[u8], now: u64) -> Result<Option<Vec<u8>>, StoreError> {
        read_live(ks, key, now).map_err(|e| self.error(e))
    }

    /// The live record of a key; one left in flight by an earlier process reads as unknown.
    fn record(&self, key: &Digest, now: u64) -> Result<Option<Record>, StoreError> {
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
    Corrupt(&'static str),
    /// The store's format, when not this one.
    Format(String),
}

impl From<fjall::Error> for Begin {
    fn from(e: fjall::Error) -> Begin {
        Begin::Store(e)
    }
}

/// Checks the store's format (rewriting a format-2 store's keys), starts this process's epoch
/// (synced before any claim) and returns it with the store's SipHash key.
fn begin_epoch(
    db: &Database,
    pushes: &Keyspace,
    meta: &Keyspace,
) -> Result<(u64, [u8; 16]), Begin> {
    let get = |name: &str| read_live(meta, name, now_ms());
    // Kept forever: the compaction filter reads the same expiry prefix as everywhere.
    let put = |name: &str, value: &[u8]| meta.insert(name, with_expiry(u64::MAX, value));
    let hash_key = |create: bool| -> Result<[u8; 16], Begin> {
        if let Some(k) = get("hash-key")? {
            return <[u8; 16]>::try_from(k.as_slice()).map_err(|_| Begin::Corrupt("bad hash-key"));
        }
        if !create {
            return Err(Begin::Corrupt("format 3 without its hash-key"));
        }
        let mut k = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
            .map_err(|_| Begin::Corrupt("no random bytes for the hash-key"))?;
        // fjall has one journal for all keyspaces: a key stored under this hash key is written
        // after it, so no recovered store holds such a key without its hash key. The sync at
        // the end of the epoch's start covers both.
        put("hash-key", &k)?;
        Ok(k)
    };
    let key = match get("format")? {
        Some(f) if f == FORMAT.as_bytes() => hash_key(false)?,
        Some(f) if f == FORMAT_TEXT_KEYS.as_bytes() => {
            let key = hash_key(true)?;
            rewrite_text_keys(db, pushes, &key)?;
            put("format", FORMAT.as_bytes())?;
            key
        }
        Some(f) => return Err(Begin::Format(String::from_utf8_lossy(&f).into_owned())),
        // Format 1 kept in-flight keys in a keyspace of their own and had no format key.
        None if db.keyspace_exists("inflight") || !pushes.is_empty()? => {
            return Err(Begin::Format("1".into()))
        }
        None => {
            let key = hash_key(true)?;
            put("format", FORMAT.as_bytes())?;
            key
        }
    };
    let last = get("epoch")?
        .and_then(|v| v.try_into().ok())
        .map_or(0, u64::from_be_bytes);
    let epoch = last + 1;
    put("epoch", &epoch.to_be_bytes())?;
    db.persist(PersistMode::SyncAll)?;
    Ok((epoch, key))
}

/// A key as stored: see the module doc.
type Digest = [u8; 16];

fn digest(hash_key: &[u8; 16], text: &[u8]) -> Digest {
    let mut h = SipHasher13::new_with_key(hash_key);
    h.write(text);
    h.finish128().as_bytes()
}

/// Format 2 to 3: stores each key (its text) again as its digest, value unchanged, from a
/// snapshot, in batches. The format key changes only after this, so a rewrite cut short is
/// finished by the next open (a text key is never 16 bytes long: its apns-id alone is 36).
fn rewrite_text_keys(
    db: &Database,
    pushes: &Keyspace,
    hash_key: &[u8; 16],
) -> Result<(), fjall::Error> {
    let mut batch = db.batch();
    let mut pending = 0;
    for item in pushes.iter() {
        let (k, v) = item.into_inner()?;
        if k.len() == 16 {
            continue;
        }
        batch.insert(pushes, digest(hash_key, &k), v);
        batch.remove(pushes, k);
        pending += 1;
        if pending == 10_000 {
            batch.commit()?;
            batch = db.batch();
            pending = 0;
        }
    }
    batch.commit()
}

/// The live value of `key` in `ks`, without its expiry prefix.
fn read_live(
    ks: &Keyspace,
    key: impl AsRef<[u8]>,
    now: u64,
) -> Result<Option<Vec<u8>>, fjall::Error> {
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
            let ticket = {
                let (k, _stripe) = t.locate(key);
                if let Some(rec) = t.record(&k, now_ms())? {
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
            let (k, _stripe) = t.locate(key);
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
            let ticket = {
                let (k, _stripe) = t.locate(key);
                if t.record(&k, now_ms())?.as_ref() != Some(from) {
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
        Box::pin(async move { self.inner.record(&self.inner.stored(key), now_ms()) })
    }

    fn release<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, ()> {
        // As `finish`: not waited for; lost only with the process, which leaves the key
        // `unknown` (safe, just less informative).
        Box::pin(async move {
            let t = &self.inner;
            let (k, _stripe) = t.locate(key);
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
            let v = self
                .inner
                .read(&self.inner.meta, name.as_bytes(), now_ms())?;
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
            msg.contains("format 1") && msg.contains("format 3"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_format_2_store_is_rewritten_to_digest_keys_and_keeps_its_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        let done = Record::Done {
            status: 410,
            body: r#"{"reason":"Unregistered"}"#.into(),
            attempts: 1,
        };
        let done_key = Key::new("t", "aa", "1");
        let flying = Key::new("t", "aa", "2");
        {
            // Format 2 as the previous relay wrote it: text keys, epoch 1.
            let db = Database::builder(&path).open().unwrap();
            let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).unwrap();
            let (pushes, meta) = (ks(PUSHES), ks(META));
            meta.insert("format", with_expiry(u64::MAX, b"2")).unwrap();
            meta.insert("epoch", with_expiry(u64::MAX, &1u64.to_be_bytes()))
                .unwrap();
            let value = |r: &Record| {
                let mut v = 1u64.to_be_bytes().to_vec();
                encode_record_into(r, &mut v);
                with_expiry(now_ms() + 60_000, &v)
            };
            pushes.insert(done_key.encode(), value(&done)).unwrap();
            let lease = Record::InFlight {
                lease_until_ms: now_ms() + 30_000,
            };
            pushes.insert(flying.encode(), value(&lease)).unwrap();
            db.persist(PersistMode::SyncAll).unwrap();
        }
        for _ in 0..2 {
            // Rewritten on the first open; the second finds format 3.
            let store = open_again(&path);
            assert_eq!(store.get(&done_key).await.unwrap(), Some(done.clone()));
            assert!(matches!(
                store.get(&flying).await.unwrap(),
                Some(Record::Unknown { .. })
            ));
            let stored: Vec<_> = store
                .inner
                .pushes
                .iter()
                .map(|i| i.key().unwrap().len())
                .collect();
            assert_eq!(stored, [16, 16], "only digests are left");
            assert_eq!(
                store.get_meta("format").await.unwrap().as_deref(),
                Some(FORMAT)
            );
        }
    }

    #[tokio::test]
    async fn each_store_has_its_own_hash_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = DiskStore::open(&dir.path().join("a"), Duration::from_secs(60), false).unwrap();
        let b = DiskStore::open(&dir.path().join("b"), Duration::from_secs(60), false).unwrap();
        let k = Key::new("t", "aa", "1");
        assert_ne!(a.inner.stored(&k), b.inner.stored(&k));
        // ...and keeps it across a restart: its keys are still found.
        a.claim(&k, Duration::from_secs(30)).await.unwrap();
        let path = dir.path().join("a");
        drop(a);
        let a = open_again(&path);
        assert!(matches!(
            a.claim(&k, Duration::from_secs(30)).await.unwrap(),
            Claim::Existing(Record::Unknown { .. })
        ));
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
