//! The disk dedupe store alone: what one push costs it (a claim, then its outcome), for keys
//! shaped like real ones (random apns-id, a topic, a random 32-byte device token), as the store
//! grows. Runs on one thread, as the pinned relay does; prints the CPU time per push (user +
//! system of this process) for each slice of pushes, so the cost of a growing memtable shows.
//! Usage: store_bench [--pushes 300000] [--slice 50000] [--fsync false]
//!        store_bench --rewrite 1000000   (times the first open of a format-2 store that
//!        holds that many keys: the one-time rewrite of its text keys to digests)
//!        store_bench --paced 5000 [--pushes 50000] [--fsync true]   (claims at a fixed rate,
//!        each from its own task as the relay's streams make them; prints the latency of the
//!        claim call: what the group commit adds to a push)
//!        store_bench --pushes 43200000 --slice 4320000 --keep DIR   (fills the store in DIR and
//!        keeps it: a day of keys for `relay_bench --store DIR`)
//!        store_bench --sync-probe 2000   (the disk alone: appends 200 bytes to a file in the
//!        store's place, then `fdatasync`s it, or `syncfs`s its filesystem as the store does;
//!        prints the latency of each kind)
use std::sync::Arc;
use std::time::Duration;

use apns_relay::dedupe::disk::DiskStore;
use apns_relay::dedupe::{Claim, Key, Record, Store};

mod common;
use common::{arg, cpu_us};

/// A key shaped like a real one: random apns-id, a topic, a random 32-byte device token.
fn random_key(rng: &mut fastrand::Rng) -> Key {
    let id = uuid::Uuid::from_u128(rng.u128(..)).hyphenated().to_string();
    let device: String = (0..32).map(|_| format!("{:02x}", rng.u8(..))).collect();
    Key::new("com.example.app", &device, &id)
}

/// Writes a format-2 store (text keys, as the previous relay did) with `keys` done pushes,
/// then times `DiskStore::open`, which rewrites it to format 3.
fn rewrite(keys: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let forever = |v: &[u8]| [&u64::MAX.to_be_bytes()[..], v].concat();
    {
        let db = fjall::Database::builder(dir.path()).open().expect("fjall");
        let ks = |name: &str| {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .expect("keyspace")
        };
        let (pushes, meta) = (ks("pushes"), ks("meta"));
        meta.insert("format", forever(b"2")).expect("format");
        meta.insert("epoch", forever(&1u64.to_be_bytes()))
            .expect("epoch");
        let done = serde_json::to_vec(&accepted()).expect("json");
        let value = forever(&[&1u64.to_be_bytes()[..], &done].concat());
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..keys {
            pushes
                .insert(random_key(&mut rng).encode(), &value)
                .expect("insert");
        }
        db.persist(fjall::PersistMode::SyncAll).expect("persist");
    }
    let t = std::time::Instant::now();
    let store = loop {
        // fjall releases the directory's lock shortly after the database is dropped.
        match DiskStore::open(dir.path(), Duration::from_secs(86_400), false) {
            Ok(s) => break s,
            Err(_) if t.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("open: {e}"),
        }
    };
    let took = t.elapsed().as_secs_f64();
    // The first key written is found again, under its digest, with its outcome.
    let first = random_key(&mut fastrand::Rng::with_seed(7));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let found = rt.block_on(store.get(&first)).expect("get");
    assert!(
        matches!(found, Some(Record::Done { status: 200, .. })),
        "{found:?}"
    );
    println!("keys,rewrite_s\n{keys},{took:.2}");
}

/// Runs `bench` on one thread (as the pinned relay runs) against a new store in a temporary
/// directory (or, with `--keep DIR`, the store in DIR, created if missing and kept: a relay
/// bench can then run on it), with a day's TTL.
fn with_store<F: std::future::Future<Output = ()>>(
    fsync: bool,
    bench: impl FnOnce(Arc<DiskStore>) -> F,
) {
    let temp = tempfile::tempdir().expect("tempdir");
    let keep = arg("--keep", "");
    let dir = if keep.is_empty() {
        temp.path().to_path_buf()
    } else {
        std::path::PathBuf::from(keep)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = DiskStore::open(&dir, Duration::from_secs(86_400), fsync).expect("open");
        bench(Arc::new(store)).await
    });
}

/// The outcome every bench push ends with.
fn accepted() -> Record {
    Record::Done {
        status: 200,
        body: String::new(),
        attempts: 1,
    }
}

/// Claims `pushes` fresh keys at `rate` per second (open model), then finishes each.
fn paced(rate: f64, pushes: usize, fsync: bool) {
    with_store(fsync, |store| async move {
        let mut rng = fastrand::Rng::with_seed(7);
        let keys: Vec<Key> = (0..pushes).map(|_| random_key(&mut rng)).collect();
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(pushes);
        for (i, key) in keys.into_iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due).await;
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let t = std::time::Instant::now();
                let claim = store.claim(&key, Duration::from_secs(30)).await;
                let took = t.elapsed();
                assert!(matches!(claim, Ok(Claim::Claimed)), "{claim:?}");
                store.finish(&key, &accepted()).await.expect("finish");
                took
            }));
        }
        let mut us = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        for t in tasks {
            us.record(t.await.expect("task").as_micros() as u64)
                .expect("record");
        }
        println!("rate,pushes,fsync,claim_p50_us,claim_p90_us,claim_p99_us,claim_max_us");
        println!(
            "{rate},{pushes},{fsync},{},{},{},{}",
            us.value_at_quantile(0.5),
            us.value_at_quantile(0.9),
            us.value_at_quantile(0.99),
            us.max()
        );
    });
}

/// What one sync costs on the disk under the store's directory, without the store.
fn sync_probe(n: usize) {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::File::create(dir.path().join("probe")).expect("probe file");
    let fs = std::fs::File::open(dir.path()).expect("dir");
    println!("sync,n,p50_us,p90_us,p99_us,max_us");
    for kind in ["fdatasync", "syncfs", "fdatasync", "syncfs"] {
        let mut us = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        for _ in 0..n {
            file.write_all(&[b'x'; 200]).expect("write");
            let t = std::time::Instant::now();
            if kind == "syncfs" {
                nix::unistd::syncfs(&fs).expect("syncfs");
            } else {
                file.sync_data().expect("fdatasync");
            }
            us.record(t.elapsed().as_micros() as u64).expect("record");
        }
        println!(
            "{kind},{n},{},{},{},{}",
            us.value_at_quantile(0.5),
            us.value_at_quantile(0.9),
            us.value_at_quantile(0.99),
            us.max()
        );
    }
}

fn main() {
    let probes: usize = arg("--sync-probe", "0").parse().expect("--sync-probe");
    if probes > 0 {
        return sync_probe(probes);
    }
    let keys: usize = arg("--rewrite", "0").parse().expect("--rewrite");
    if keys > 0 {
        return rewrite(keys);
    }
    let rate: f64 = arg("--paced", "0").parse().expect("--paced");
    if rate > 0.0 {
        let pushes = arg("--pushes", "50000").parse().expect("--pushes");
        let fsync = arg("--fsync", "true").parse().expect("--fsync");
        return paced(rate, pushes, fsync);
    }
    let pushes: usize = arg("--pushes", "300000").parse().expect("--pushes");
    let slice: usize = arg("--slice", "50000").parse().expect("--slice");
    let fsync: bool = arg("--fsync", "false").parse().expect("--fsync");
    sequential(pushes, slice, fsync);
}

/// Claims and finishes `pushes` fresh keys one after another; the CPU time per push for each
/// `slice` of them.
fn sequential(pushes: usize, slice: usize, fsync: bool) {
    let done = accepted();
    with_store(fsync, |store| async move {
        let mut rng = fastrand::Rng::with_seed(7);
        println!("pushes,cpu_us_per_push,wall_us_per_push");
        let mut n = 0;
        while n < pushes {
            // Made before the clock starts: only the store is timed.
            let keys: Vec<Key> = (0..slice).map(|_| random_key(&mut rng)).collect();
            let (me, wall0) = (std::process::id(), std::time::Instant::now());
            let cpu0 = cpu_us(me);
            for key in &keys {
                match store.claim(key, Duration::from_secs(30)).await {
                    Ok(Claim::Claimed) => {}
                    other => panic!("a fresh key was not claimed: {other:?}"),
                }
                store.finish(key, &done).await.expect("finish");
            }
            n += slice;
            let cpu = (cpu_us(me) - cpu0) as f64 / slice as f64;
            let wall = wall0.elapsed().as_secs_f64() * 1e6 / slice as f64;
            println!("{n},{cpu:.2},{wall:.2}");
        }
    });
}
