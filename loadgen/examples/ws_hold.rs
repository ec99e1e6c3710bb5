//! A minimal hand-written WebSocket client for the reference gateway, the baseline of the
//! device swarm benchmarks: N connections (dispatch, upgrade, hello), acks every push, and at
//! the end prints one line per broadcast id: receipts and last receipt − `sent_at_ns`.
//! No templates, no tracking, no metrics: what loadgen's swarm costs is measured against it.
//!
//! `cargo run --release -p loadgen --example ws_hold -- BASE_URL COUNT OFFSET SECONDS [SOURCES]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loadgen::engine::swarm::wire::{self, Decoder, Frame, Framing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Seen = Arc<Mutex<HashMap<String, (u64, u64, u64)>>>; // id -> (count, sent_ns, last_ns)

async fn device(
    http: reqwest::Client,
    base: String,
    user: String,
    source: Option<std::net::Ipv4Addr>,
    seen: Seen,
    dispatch: Arc<tokio::sync::Semaphore>,
) -> Option<()> {
    // Bounded like loadgen's dispatch calls: the gateway's HTTP process has a file limit.
    let permit = dispatch.acquire_owned().await.ok()?;
    let disp: serde_json::Value = http
        .get(format!("{base}/dispatch?user={user}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    drop(permit);
    let url: http::Uri = disp["ws"].as_str()?.parse().ok()?;
    let addr: std::net::SocketAddr = format!("{}:{}", url.host()?, url.port_u16()?)
        .parse()
        .ok()?;
    let mut s = loadgen::engine::swarm::net::connect(addr, source)
        .await
        .ok()?;
    let key = wire::new_key();
    s.write_all(wire::upgrade_request(&addr.to_string(), "/ws", &key, &[]).as_bytes())
        .await
        .ok()?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
        if wire::upgrade_answer(&head, &key).ok()?.is_some() {
            break;
        }
    }
    drop(buf);
    let mut out = Vec::new();
    wire::encode(
        Framing::Ws,
        format!(r#"{{"type":"hello","user":"{user}"}}"#).as_bytes(),
        &mut out,
    );
    s.write_all(&out).await.ok()?;
    let mut dec = Decoder::new(Framing::Ws);
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return Some(());
        }
        let mut acks = Vec::new();
        dec.feed(&chunk[..n], &mut |f| {
            if let Frame::Message(m) = f {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(m) else {
                    return;
                };
                if v["type"] == "push" {
                    let id = v["id"].as_str().unwrap_or("").to_string();
                    let sent = v["sent_at_ns"].as_u64().unwrap_or(0);
                    let mut seen = seen.lock().unwrap();
                    let e = seen.entry(id.clone()).or_insert((0, sent, 0));
                    e.0 += 1;
                    e.2 = e.2.max(common::clock::unix_ns());
                    wire::encode(
                        Framing::Ws,
                        format!(r#"{{"type":"ack","id":"{id}"}}"#).as_bytes(),
                        &mut acks,
                    );
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
        eprintln!("usage: ws_hold BASE_URL COUNT OFFSET SECONDS [SOURCES]");
        std::process::exit(2);
    }
    let base = args[1].clone();
    let count: u32 = args[2].parse().unwrap();
    let offset: u32 = args[3].parse().unwrap();
    let secs: u64 = args[4].parse().unwrap();
    let sources: u32 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1);
    loadgen::engine::swarm::net::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    rt.block_on(async {
        let start = Instant::now();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let dispatch = Arc::new(tokio::sync::Semaphore::new(64));
        for i in 0..count {
            let g = offset + i;
            let src =
                (sources > 1).then(|| loadgen::engine::swarm::net::source_address(g % sources));
            tokio::spawn(device(
                http.clone(),
                base.clone(),
                format!("idle-{g}"),
                src,
                seen.clone(),
                dispatch.clone(),
            ));
        }
        eprintln!("spawned {count} devices in {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_secs(secs)).await;
    });
    for (id, (n, sent, last)) in seen.lock().unwrap().iter() {
        println!("{id} {n} {}", last.saturating_sub(*sent) / 1000);
    }
}
