//! A minimal hand-written MQTT client, the baseline of the MQTT device benchmark (emqtt-bench,
//! the usual peer, is offered by none of the registries this project may use): N connections
//! (CONNECT clean session, keep-alive 300 s, SUBSCRIBE `dev/idle-G` at QoS 1), a PUBACK for
//! every message, and at the end one line: messages received, the first and last receipt (Unix
//! ns) and the receipt − `sent_at_ns` percentiles, µs. No templates, no tracking, no metrics:
//! what loadgen's MQTT devices cost is measured against it. Packets go through the same codec
//! (`loadgen::journey::mqtt`, rumqttc's), read through a 2 KiB buffer on the task's stack.
//!
//! `cargo run --release -p loadgen --example mqtt_hold -- HOST:PORT COUNT OFFSET SECONDS [WAIT]`
//!
//! WAIT seconds pass before the first connect (default 0), so the process's RSS can be read
//! before it holds anything; SECONDS count from then.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loadgen::journey::mqtt::{self, Ack, ConnectFields, Incoming, Reader, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Receipt − send, µs, of every message.
type Seen = Arc<Mutex<Vec<u64>>>;

async fn device(addr: std::net::SocketAddr, user: String, seen: Seen) -> Option<()> {
    let mut s = loadgen::engine::swarm::net::connect(addr, None)
        .await
        .ok()?;
    let mut out = Vec::new();
    let fields = ConnectFields {
        client_id: user.clone(),
        clean: true,
        keep_alive_s: 300,
        ..Default::default()
    };
    mqtt::connect(Version::V311, &fields, &mut out).ok()?;
    mqtt::subscribe(Version::V311, 1, &[(format!("dev/{user}"), 1)], &mut out).ok()?;
    s.write_all(&out).await.ok()?;
    drop(out);
    let mut reader = Reader::new(Version::V311);
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return Some(());
        }
        let mut acks = Vec::new();
        reader
            .feed(&chunk[..n], &mut |p| {
                if let Incoming::Publish(m) = p {
                    // A number, or a string of digits (as a template may render it).
                    let sent = serde_json::from_slice::<serde_json::Value>(&m.payload)
                        .ok()
                        .and_then(|v| match &v["sent_at_ns"] {
                            serde_json::Value::String(s) => s.parse::<u64>().ok(),
                            n => n.as_u64(),
                        })
                        .unwrap_or(0);
                    let now = common::clock::unix_ns();
                    seen.lock().unwrap().push(now.saturating_sub(sent) / 1000);
                    if m.qos == 1 {
                        mqtt::ack(Version::V311, Ack::PubAck, m.pkid, &mut acks);
                    }
                }
            })
            .ok()?;
        if !acks.is_empty() {
            s.write_all(&acks).await.ok()?;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: mqtt_hold HOST:PORT COUNT OFFSET SECONDS [WAIT]");
        std::process::exit(2);
    }
    let addr: std::net::SocketAddr = args[1].parse().expect("HOST:PORT");
    let count: u32 = args[2].parse().unwrap();
    let offset: u32 = args[3].parse().unwrap();
    let secs: u64 = args[4].parse().unwrap();
    let wait: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(0);
    loadgen::engine::swarm::net::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let first_last = Arc::new(Mutex::new((u64::MAX, 0u64)));
    rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let start = Instant::now();
        for i in 0..count {
            let g = offset + i;
            tokio::spawn(device(addr, format!("idle-{g}"), seen.clone()));
        }
        eprintln!("spawned {count} devices in {:?}", start.elapsed());
        // Note the first and last receipt as they happen (a count that changed since the last
        // look means receipts came in that second).
        let mut last_len = 0;
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let len = seen.lock().unwrap().len();
            if len != last_len {
                let now = common::clock::unix_ns();
                let mut fl = first_last.lock().unwrap();
                if last_len == 0 {
                    fl.0 = now;
                }
                fl.1 = now;
                last_len = len;
            }
        }
    });
    let mut lat = seen.lock().unwrap().clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let (first, last) = *first_last.lock().unwrap();
    println!(
        "received {} first_ns {first} last_ns {last} p50_us {} p99_us {} max_us {}",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0)
    );
}
