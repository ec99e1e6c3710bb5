//! Load helper for `bench/rooms.sh`: holds many idle WebSocket devices against a gateway room,
//! or serves a peer WebSocket server to compare memory per connection against.
//!
//! ```text
//! rooms_load devices WS_ADDR COUNT [USER_PREFIX]   connect COUNT devices, say hello, print
//!                                                 "ready COUNT", then for each push print
//!                                                 "push ID received=N last_ms=T" where T is
//!                                                 the last arrival minus the push's sent_at_ns
//! rooms_load peer-server ADDR [default|small]     a tokio-tungstenite server holding idle
//!                                                 connections (default config: 128 KiB read
//!                                                 buffer; small: 4 KiB, no write buffer)
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    match args.first().map(String::as_str) {
        Some("devices") => runtime.block_on(devices(
            args[1].parse().expect("WS_ADDR"),
            args[2].parse().expect("COUNT"),
            args.get(3).cloned().unwrap_or_else(|| "d".into()),
        )),
        Some("peer-server") => runtime.block_on(peer_server(
            args[1].parse().expect("ADDR"),
            args.get(2).map(String::as_str) == Some("small"),
        )),
        _ => {
            eprintln!("usage: rooms_load devices WS_ADDR COUNT [PREFIX] | peer-server ADDR [default|small]");
            std::process::exit(2);
        }
    }
}

fn small_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Per push id: devices that got it and the latest arrival.
type Arrivals = Arc<Mutex<HashMap<String, (usize, u64, u64)>>>;

async fn devices(addr: SocketAddr, count: usize, prefix: String) {
    let arrivals: Arrivals = Arc::default();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let limit = Arc::new(tokio::sync::Semaphore::new(200));
    for i in 0..count {
        let arrivals = Arc::clone(&arrivals);
        let ready = ready_tx.clone();
        let limit = Arc::clone(&limit);
        let user = format!("{prefix}{i}");
        tokio::spawn(async move {
            let permit = limit.acquire_owned().await.expect("semaphore");
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut ws, _) = tokio_tungstenite::client_async_with_config(
                format!("ws://{addr}/ws"),
                stream,
                Some(small_config()),
            )
            .await
            .expect("handshake");
            let hello = format!(r#"{{"type":"hello","user":"{user}","topics":["all"]}}"#);
            ws.send(Message::text(hello)).await.expect("hello");
            let _welcome = ws.next().await;
            drop(permit);
            let _ = ready.send(());
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(push) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if push["type"] != "push" {
                    continue;
                }
                let id = push["id"].as_str().unwrap_or("").to_owned();
                let sent = push["sent_at_ns"].as_u64().unwrap_or(0);
                let ack = format!(r#"{{"type":"ack","id":"{id}"}}"#);
                let _ = ws.send(Message::text(ack)).await;
                let now = common::clock::unix_ns();
                let mut arrivals = arrivals.lock().expect("lock");
                let entry = arrivals.entry(id).or_insert((0, sent, 0));
                entry.0 += 1;
                entry.2 = entry.2.max(now);
            }
        });
    }
    for _ in 0..count {
        ready_rx.recv().await.expect("device ready");
    }
    println!("ready {count}");
    let mut reported = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let arrivals = arrivals.lock().expect("lock").clone();
        for (id, (received, sent, last)) in arrivals {
            if received == count && reported.insert(id.clone(), ()).is_none() {
                let last_ms = last.saturating_sub(sent) as f64 / 1e6;
                println!("push {id} received={received} last_ms={last_ms:.1}");
            }
        }
    }
}

async fn peer_server(addr: SocketAddr, small: bool) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    println!("listening {}", listener.local_addr().expect("addr"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(async move {
            let config = small.then(small_config);
            let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, config).await
            else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    if text.contains("\"hello\"") {
                        let _ = ws
                            .send(Message::text(r#"{"type":"welcome","conn":"peer","room":"peer","heartbeat_s":30}"#))
                            .await;
                    }
                }
            }
        });
    }
}
