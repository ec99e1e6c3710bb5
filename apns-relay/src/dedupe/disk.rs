//! The embedded dedupe store: one redb file.
//!
//! Why redb: pure Rust (no C toolchain, no second process), ACID with crash-safe commits
//! (copy-on-write B-trees with checksummed commit slots, so a SIGKILL or power cut leaves the
//! last committed state), a stable 2.x file format, and maintained. sled's on-disk format is
//! still unstable and its last release is years old; RocksDB/LMDB bindings bring C builds.
//!
//! A claim must be durable before the push is written to APNs, or a restart could forget a
//! push that Apple already has. An fsync per push would cap throughput at the disk's sync
//! rate, so one writer thread commits in groups: it takes every operation waiting in its
//! queue, applies them in one write transaction, commits once (durably) and only then answers
//! each caller. Each value is `expires_at_ms (8 bytes BE) ‖ JSON record`; expired keys read as
//! absent and a sweep deletes them. On open, keys left in flight by a previous process become
//! `unknown`: that process may have written them to APNs before it died.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{
    decode_record, encode_record, now_ms, Claim, Key, Record, Store, StoreError, StoreFuture,
};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("pushes");
/// Most operations committed in one transaction.
const GROUP: usize = 4096;

enum Op {
    Claim(String, Vec<u8>, oneshot::Sender<Result<Claim, StoreError>>),
    Finish(String, Vec<u8>),
    Replace(
        String,
        Vec<u8>,
        Vec<u8>,
        oneshot::Sender<Result<bool, StoreError>>,
    ),
    Get(String, oneshot::Sender<Result<Option<Record>, StoreError>>),
    Release(String),
    Barrier(oneshot::Sender<Result<(), StoreError>>),
    GetRaw(String, oneshot::Sender<Result<Option<Vec<u8>>, StoreError>>),
    PutRaw(String, Vec<u8>),
}

/// The redb-backed store; see the module doc.
pub struct DiskStore {
    tx: mpsc::Sender<Queued>,
    ttl: Duration,
}

impl DiskStore {
    /// Opens (or creates) the file, sweeps expired keys and turns leftover in-flight keys into
    /// `unknown`, then starts the writer thread. With `fsync`, each group commit is flushed to
    /// the disk before callers are answered (survives a power cut); without, it is handed to
    /// the OS (survives a killed process, not a power cut).
    pub fn open(path: &Path, ttl: Duration, fsync: bool) -> Result<DiskStore, StoreError> {
        let p = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| StoreError::Disk {
            path: p.clone(),
            msg: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| err(&e))?;
        recover(&db).map_err(|e| err(&e))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("dedupe-writer".into())
            .spawn({
                let p = p.clone();
                move || writer(db, rx, p, fsync)
            })
            .map_err(|e| err(&e))?;
        Ok(DiskStore { tx, ttl })
    }

    fn value(&self, r: &Record) -> Vec<u8> {
        let expires = now_ms() + self.ttl.as_millis() as u64;
        let mut v = expires.to_be_bytes().to_vec();
        v.extend_from_slice(encode_record(r).as_bytes());
        v
    }

    fn send<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> StoreFuture<'_, T> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send((make(reply), None)).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(gone());
            }
            rx.await.map_err(|_| gone())?
        })
    }

    /// Queues a write without waiting for its commit.
    fn enqueue(&self, op: Op) -> StoreFuture<'_, ()> {
        let sent = self.tx.send((op, None)).is_ok();
        Box::pin(async move {
            if sent {
                Ok(())
            } else {
                Err(gone())
            }
        })
    }

    /// Sends a write whose only answer is "committed".
    fn write(&self, op: Op) -> StoreFuture<'_, ()> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send((op, Some(reply))).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(gone());
            }
            rx.await.map_err(|_| gone())?
        })
    }
}

fn gone() -> StoreError {
    StoreError::Disk {
        path: "dedupe".into(),
        msg: "writer thread stopped".into(),
    }
}

fn live(v: &[u8], now: u64) -> Option<&[u8]> {
    let (exp, rest) = v.split_at_checked(8)?;
    let exp = u64::from_be_bytes(exp.try_into().ok()?);
    (exp > now).then_some(rest)
}

fn recover(db: &Database) -> Result<(), Box<dyn std::error::Error>> {
    let now = now_ms();
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(TABLE)?;
        let mut expired = Vec::new();
        let mut orphaned = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            match live(v.value(), now) {
                None => expired.push(k.value().to_string()),
                Some(rec) => {
                    if let Ok(Record::InFlight { .. }) = decode_record(rec) {
                        let mut nv = v.value()[..8].to_vec();
                        let r = Record::Unknown {
                            cause: "relay restarted while the push was in flight".into(),
                            attempts: 1,
                        };
                        nv.extend_from_slice(encode_record(&r).as_bytes());
                        orphaned.push((k.value().to_string(), nv));
                    }
                }
            }
        }
        for k in expired {
            table.remove(k.as_str())?;
        }
        for (k, v) in orphaned {
            table.insert(k.as_str(), v.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// An operation and, for writes, who waits for its commit.
type Queued = (Op, Option<oneshot::Sender<Result<(), StoreError>>>);
/// Answers a caller once the batch's commit succeeded or failed.
type Answer = Box<dyn FnOnce(Option<&StoreError>)>;

fn writer(db: Database, rx: mpsc::Receiver<Queued>, path: String, fsync: bool) {
    let sweep_every = Duration::from_secs(60);
    let mut last_sweep = std::time::Instant::now();
    loop {
        let first = match rx.recv_timeout(sweep_every) {
            Ok(op) => Some(op),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch: Vec<Queued> = first.into_iter().collect();
        while batch.len() < GROUP {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let sweep = last_sweep.elapsed() >= sweep_every;
        if sweep {
            last_sweep = std::time::Instant::now();
        }
        if let Err(e) = apply(&db, batch, sweep, fsync) {
            tracing::error!(path, error = %e, "dedupe commit failed");
        }
    }
}

/// Applies a batch in one durable transaction, then answers. On failure every caller gets the
/// error (no answer is given before the commit).
fn apply(db: &Database, batch: Vec<Queued>, sweep: bool, fsync: bool) -> Result<(), String> {
    let now = now_ms();
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let mut txn = db.begin_write()?;
        txn.set_durability(if fsync {
            Durability::Immediate
        } else {
            Durability::Eventual
        });
        {
            let mut table = txn.open_table(TABLE)?;
            if sweep {
                table.retain(|_, v| live(v, now).is_some())?;
            }
            for (op, done) in batch {
                match op {
                    Op::Claim(k, v, reply) => {
                        let existing = table
                            .get(k.as_str())?
                            .and_then(|g| live(g.value(), now).map(<[u8]>::to_vec));
                        let ans = match existing {
                            Some(rec) => decode_record(&rec).map(Claim::Existing),
                            None => {
                                table.insert(k.as_str(), v.as_slice())?;
                                Ok(Claim::Claimed)
                            }
                        };
                        answers.push(reply_with(reply, ans));
                    }
                    Op::Finish(k, v) => {
                        table.insert(k.as_str(), v.as_slice())?;
                    }
                    Op::Replace(k, from, v, reply) => {
                        let current = table
                            .get(k.as_str())?
                            .and_then(|g| live(g.value(), now).map(<[u8]>::to_vec));
                        let matches = current.as_deref() == Some(&from[..]);
                        if matches {
                            table.insert(k.as_str(), v.as_slice())?;
                        }
                        answers.push(reply_with(reply, Ok(matches)));
                    }
                    Op::Get(k, reply) => {
                        let current = table
                            .get(k.as_str())?
                            .and_then(|g| live(g.value(), now).map(<[u8]>::to_vec));
                        answers.push(reply_with(
                            reply,
                            current.map(|c| decode_record(&c)).transpose(),
                        ));
                    }
                    Op::Release(k) => {
                        table.remove(k.as_str())?;
                    }
                    Op::Barrier(reply) => answers.push(reply_with(reply, Ok(()))),
                    Op::GetRaw(k, reply) => {
                        let current = table
                            .get(k.as_str())?
                            .and_then(|g| live(g.value(), now).map(<[u8]>::to_vec));
                        answers.push(reply_with(reply, Ok(current)));
                    }
                    Op::PutRaw(k, v) => {
                        table.insert(k.as_str(), v.as_slice())?;
                    }
                }
                if let Some(done) = done {
                    answers.push(reply_with(done, Ok(())));
                }
            }
        }
        txn.commit()?;
        Ok(())
    })();
    let err = result.as_ref().err().map(|e| StoreError::Disk {
        path: "dedupe".into(),
        msg: e.to_string(),
    });
    for answer in answers {
        answer(err.as_ref());
    }
    result.map_err(|e| e.to_string())
}

fn reply_with<T: Send + 'static>(
    reply: oneshot::Sender<Result<T, StoreError>>,
    ans: Result<T, StoreError>,
) -> Answer {
    Box::new(move |err| {
        let _ = reply.send(match err {
            Some(e) => Err(StoreError::Disk {
                path: "dedupe".into(),
                msg: e.to_string(),
            }),
            None => ans,
        });
    })
}

impl Store for DiskStore {
    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> StoreFuture<'a, Claim> {
        let v = self.value(&Record::InFlight {
            lease_until_ms: now_ms() + lease.as_millis() as u64,
        });
        self.send(|r| Op::Claim(key.encode(), v, r))
    }

    fn finish<'a>(&'a self, key: &'a Key, record: &'a Record) -> StoreFuture<'a, ()> {
        // Only the claim must be durable before a push is written; an outcome is queued and
        // answered at once. The writer applies operations in queue order, so any later
        // claim, get or replace of this key sees it; if the process dies before its commit,
        // the key is still in flight on disk and becomes `unknown` on restart (never resent).
        self.enqueue(Op::Finish(key.encode(), self.value(record)))
    }

    fn replace<'a>(
        &'a self,
        key: &'a Key,
        from: &'a Record,
        to: &'a Record,
    ) -> StoreFuture<'a, bool> {
        // `from` is compared on the record part only: callers do not know the expiry prefix.
        let from = encode_record(from).into_bytes();
        let to = self.value(to);
        self.send(|r| Op::Replace(key.encode(), from, to, r))
    }

    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>> {
        self.send(|r| Op::Get(key.encode(), r))
    }

    fn release<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, ()> {
        // As `finish`: ordered by the queue; lost only with the process, which leaves the key
        // `unknown` (safe, just less informative).
        self.enqueue(Op::Release(key.encode()))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.send(Op::Barrier)
    }

    fn get_meta<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        let fut = self.send(|r| Op::GetRaw(format!("meta|{name}"), r));
        Box::pin(async move { Ok(fut.await?.map(|v| String::from_utf8_lossy(&v).into_owned())) })
    }

    fn put_meta<'a>(&'a self, name: &'a str, value: &'a str, ttl: Duration) -> StoreFuture<'a, ()> {
        let mut v = (now_ms() + ttl.as_millis() as u64).to_be_bytes().to_vec();
        v.extend_from_slice(value.as_bytes());
        self.write(Op::PutRaw(format!("meta|{name}"), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            DiskStore::open(&dir.path().join("d.redb"), Duration::from_secs(60), true).unwrap();
        super::super::contract::check(&store).await;
    }

    #[tokio::test]
    async fn restart_keeps_outcomes_and_turns_in_flight_into_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.redb");
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
        // The writer thread exits when the store is dropped; wait until the file lock is free.
        let store = loop {
            match DiskStore::open(&path, Duration::from_secs(60), true) {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        assert_eq!(store.get(&done_key).await.unwrap(), Some(done));
        assert!(matches!(
            store.get(&flying).await.unwrap(),
            Some(Record::Unknown { .. })
        ));
    }

    #[tokio::test]
    async fn expired_keys_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            DiskStore::open(&dir.path().join("d.redb"), Duration::from_millis(1), true).unwrap();
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
