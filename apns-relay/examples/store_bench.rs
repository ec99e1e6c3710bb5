//! The disk dedupe store alone: what one push costs it (a claim, then its outcome), for keys
//! shaped like real ones (random apns-id, a topic, a random 32-byte device token), as the store
//! grows. Runs on one thread, as the pinned relay does; prints the CPU time per push (user +
//! system of this process) for each slice of pushes, so the cost of a growing memtable shows.
//! Usage: store_bench [--pushes 300000] [--slice 50000] [--fsync false]
//!        store_bench --rewrite 1000000   (times the first open of a format-2 store that
//!        holds that many keys: the one-time rewrite of its text keys to digests)
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
        let done = serde_json::to_vec(&Record::Done {
            status: 200,
            body: String::new(),
            attempts: 1,
        })
        .expect("json");
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

fn main() {
    let keys: usize = arg("--rewrite", "0").parse().expect("--rewrite");
    if keys > 0 {
        return rewrite(keys);
    }
    let pushes: usize = arg("--pushes", "300000").parse().expect("--pushes");
    let slice: usize = arg("--slice", "50000").parse().expect("--slice");
    let fsync: bool = arg("--fsync", "false").parse().expect("--fsync");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = DiskStore::open(dir.path(), Duration::from_secs(86_400), fsync).expect("open");
        let done = Record::Done {
            status: 200,
            body: String::new(),
            attempts: 1,
        };
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
