//! The disk dedupe store alone: what one push costs it (a claim, then its outcome), for keys
//! shaped like real ones (random apns-id, a topic, a random 32-byte device token), as the store
//! grows. Runs on one thread, as the pinned relay does; prints the CPU time per push (user +
//! system of this process) for each slice of pushes, so the cost of a growing memtable shows.
//! Usage: store_bench [--pushes 300000] [--slice 50000] [--fsync false]
use std::time::Duration;

use apns_relay::dedupe::disk::DiskStore;
use apns_relay::dedupe::{Claim, Key, Record, Store};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map_or(default.to_string(), |w| w[1].clone())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pushes: usize = arg(&args, "--pushes", "300000").parse().expect("--pushes");
    let slice: usize = arg(&args, "--slice", "50000").parse().expect("--slice");
    let fsync: bool = arg(&args, "--fsync", "false").parse().expect("--fsync");
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
            let keys: Vec<Key> = (0..slice)
                .map(|_| {
                    let id = uuid::Uuid::from_u128(rng.u128(..)).hyphenated().to_string();
                    let device: String = (0..32).map(|_| format!("{:02x}", rng.u8(..))).collect();
                    Key::new("com.example.app", &device, &id)
                })
                .collect();
            let (cpu0, wall0) = (cpu_seconds(), std::time::Instant::now());
            for key in &keys {
                match store.claim(key, Duration::from_secs(30)).await {
                    Ok(Claim::Claimed) => {}
                    other => panic!("a fresh key was not claimed: {other:?}"),
                }
                store.finish(key, &done).await.expect("finish");
            }
            n += slice;
            let cpu = (cpu_seconds() - cpu0) * 1e6 / slice as f64;
            let wall = wall0.elapsed().as_secs_f64() * 1e6 / slice as f64;
            println!("{n},{cpu:.2},{wall:.2}");
        }
    });
}
