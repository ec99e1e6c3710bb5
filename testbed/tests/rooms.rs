//! The reference gateway's long-connection side over real loopback sockets: the dispatcher,
//! WebSocket devices (tokio-tungstenite, an independent client) and raw TCP devices
//! (length-prefixed frames), hello/subscribe/ping, unicast and broadcast from the HTTP API,
//! acks and redelivery, idle close, malformed input, injected faults counted exactly, room
//! processes, 5k connections, and a device that never reads closed as a slow consumer.

mod http_client;
use http_client::http_client;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use testbed::{FaultConfig, GatewayConfig, GatewayHandle, RoomCommand, RoomsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for one expected frame.
const WAIT: Duration = Duration::from_secs(5);

async fn start_with(rooms: RoomsConfig, faults: FaultConfig) -> GatewayHandle {
    testbed::spawn(GatewayConfig {
        faults,
        rooms,
        ..GatewayConfig::default()
    })
    .await
    .expect("gateway starts")
}

async fn start() -> GatewayHandle {
    start_with(RoomsConfig::default(), FaultConfig::default()).await
}

async fn post(gateway: &GatewayHandle, path: &str, body: Value) -> (u16, Value) {
    let response = http_client()
        .post(format!("{}{path}", gateway.base_url()))
        .json(&body)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

async fn get(gateway: &GatewayHandle, path: &str) -> (u16, Value) {
    let response = http_client()
        .get(format!("{}{path}", gateway.base_url()))
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// A device on either transport.
enum Device {
    Ws(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
    Tcp(TcpStream),
}

/// What the server did next.
#[derive(Debug, PartialEq)]
enum Next {
    Json(Value),
    /// A WebSocket pong control frame.
    Pong(Vec<u8>),
    /// Clean close (close frame or EOF).
    Closed,
    /// Connection reset.
    Reset,
    /// Nothing within the wait.
    Silent,
}

impl Device {
    async fn ws(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("TCP connect");
        let (ws, response) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .expect("WebSocket handshake");
        assert_eq!(response.status().as_u16(), 101);
        Device::Ws(Box::new(ws))
    }

    async fn tcp(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("TCP connect");
        stream.set_nodelay(true).expect("nodelay");
        Device::Tcp(stream)
    }

    async fn send(&mut self, value: Value) {
        self.send_raw(value.to_string().into_bytes()).await;
    }

    async fn send_raw(&mut self, bytes: Vec<u8>) {
        match self {
            Device::Ws(ws) => ws
                .send(Message::text(String::from_utf8(bytes).expect("UTF-8")))
                .await
                .expect("sent"),
            Device::Tcp(stream) => {
                let mut frame = (bytes.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&bytes);
                stream.write_all(&frame).await.expect("sent");
            }
        }
    }

    async fn next_within(&mut self, wait: Duration) -> Next {
        match tokio::time::timeout(wait, self.next_inner()).await {
            Ok(next) => next,
            Err(_) => Next::Silent,
        }
    }

    async fn next_inner(&mut self) -> Next {
        match self {
            Device::Ws(ws) => match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    Next::Json(serde_json::from_str(&text).expect("JSON text frame"))
                }
                Some(Ok(Message::Pong(payload))) => Next::Pong(payload.to_vec()),
                Some(Ok(Message::Close(_))) | None => Next::Closed,
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                Some(Err(error)) => reset_or_closed(&error.to_string()),
            },
            Device::Tcp(stream) => {
                let mut len = [0u8; 4];
                match stream.read_exact(&mut len).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        return Next::Reset
                    }
                    Err(_) => return Next::Closed,
                }
                let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                stream.read_exact(&mut body).await.expect("whole frame");
                Next::Json(serde_json::from_slice(&body).expect("JSON frame"))
            }
        }
    }

    /// The next JSON message, failing the test on anything else.
    async fn recv(&mut self) -> Value {
        match self.next_within(WAIT).await {
            Next::Json(value) => value,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// Sends hello and returns the welcome.
    async fn hello(&mut self, user: &str, topics: &[&str]) -> Value {
        self.send(json!({"type": "hello", "user": user, "topics": topics}))
            .await;
        let welcome = self.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        welcome
    }

    /// Expects an error with `code`, then the close.
    async fn expect_error_and_close(&mut self, code: &str) {
        let error = self.recv().await;
        assert_eq!(
            (&error["type"], &error["code"]),
            (&json!("error"), &json!(code)),
            "{error}"
        );
        assert!(error["message"].is_string());
        assert_eq!(self.next_within(WAIT).await, Next::Closed);
    }
}

fn reset_or_closed(error: &str) -> Next {
    if error.contains("reset") || error.contains("Connection reset") {
        Next::Reset
    } else {
        Next::Closed
    }
}

/// Waits until `check` holds on the gateway's fresh stats.
async fn wait_for_stats(gateway: &GatewayHandle, check: impl Fn(&testbed::Stats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = gateway.fetch_stats().await;
        if check(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "stats never matched: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn dispatcher_hands_out_a_stable_room_and_refuses_without_user_or_rooms() {
    let gateway = start_with(
        RoomsConfig {
            count: 3,
            ..RoomsConfig::default()
        },
        FaultConfig::default(),
    )
    .await;
    let rooms = gateway.room_addrs();
    assert_eq!(rooms.len(), 3);
    let (status, first) = get(&gateway, "/dispatch?user=alice").await;
    assert_eq!(status, 200);
    let room = rooms
        .iter()
        .find(|r| r.name == first["room"])
        .expect("a known room");
    assert_eq!(
        first,
        json!({"user": "alice", "room": room.name, "ws": format!("ws://{}/ws", room.ws), "tcp": room.tcp.to_string()})
    );
    assert_eq!(get(&gateway, "/dispatch?user=alice").await.1, first);
    let names: std::collections::HashSet<String> = futures::future::join_all((0..30).map(|i| {
        let gateway = &gateway;
        async move { get(gateway, &format!("/dispatch?user=u{i}")).await }
    }))
    .await
    .into_iter()
    .map(|(_, v)| v["room"].as_str().expect("room").to_owned())
    .collect();
    assert!(names.len() > 1, "users spread over rooms: {names:?}");
    let (status, body) = get(&gateway, "/dispatch").await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "bad_request", "message": "query parameter `user` is required"})
        )
    );

    let none = start_with(
        RoomsConfig {
            count: 0,
            ..RoomsConfig::default()
        },
        FaultConfig::default(),
    )
    .await;
    let (status, body) = get(&none, "/dispatch?user=alice").await;
    assert_eq!((status, &body["error"]), (503, &json!("no_room")));
}

#[tokio::test]
async fn hello_subscribe_ping_on_both_transports() {
    let gateway = start().await;
    let room = gateway.room_addrs().remove(0);
    let mut devices = [Device::ws(room.ws).await, Device::tcp(room.tcp).await];
    for device in &mut devices {
        let welcome = device.hello("u1", &["news"]).await;
        assert_eq!(welcome["room"], "room-0");
        assert_eq!(welcome["heartbeat_s"], 30);
        assert!(welcome["conn"]
            .as_str()
            .expect("conn id")
            .starts_with("room-0-"));
        device
            .send(json!({"type": "subscribe", "topics": ["sports", "news"]}))
            .await;
        assert_eq!(
            device.recv().await,
            json!({"type": "subscribed", "topics": ["news", "sports"]})
        );
        device.send(json!({"type": "ping", "seq": 7})).await;
        assert_eq!(device.recv().await, json!({"type": "pong", "seq": 7}));
        device.send(json!({"type": "ping", "seq": "x"})).await;
        assert_eq!(device.recv().await, json!({"type": "pong", "seq": "x"}));
        device.send(json!({"type": "ping"})).await;
        assert_eq!(device.recv().await, json!({"type": "pong"}));
        if let Device::Ws(ws) = device {
            ws.send(Message::Ping(b"hb".to_vec().into()))
                .await
                .expect("ping sent");
            assert_eq!(device.next_within(WAIT).await, Next::Pong(b"hb".to_vec()));
        }
    }
    wait_for_stats(&gateway, |s| s.connections == 2).await;
}

#[tokio::test]
async fn refused_hellos_are_answered_then_closed_and_counted() {
    let gateway = start().await;
    let room = gateway.room_addrs().remove(0);
    let mut device = Device::ws(room.ws).await;
    device.send(json!({"type": "ping", "seq": 1})).await;
    device.expect_error_and_close("bad_hello").await;
    let mut device = Device::tcp(room.tcp).await;
    device.send(json!({"type": "hello", "user": " "})).await;
    device.expect_error_and_close("bad_hello").await;
    let mut device = Device::tcp(room.tcp).await;
    device.send(json!({"type": "hello"})).await;
    device.expect_error_and_close("bad_hello").await;

    gateway.set_faults(FaultConfig {
        refuse_rate: 1.0,
        ..FaultConfig::default()
    });
    for _ in 0..3 {
        let mut device = Device::ws(room.ws).await;
        device.send(json!({"type": "hello", "user": "u1"})).await;
        device.expect_error_and_close("refused").await;
    }
    assert_eq!(gateway.fetch_stats().await.injected_refusals, 3);
    // A plain HTTP request on the WebSocket port is refused at the handshake.
    let answer = http_client()
        .get(format!("http://{}/ws", room.ws))
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status().as_u16(), 426);
}

#[tokio::test]
async fn unicast_reaches_every_device_of_the_user_and_broadcast_fans_out() {
    let gateway = start_with(
        RoomsConfig {
            count: 2,
            ..RoomsConfig::default()
        },
        FaultConfig::default(),
    )
    .await;
    let rooms = gateway.room_addrs();
    // u1 has a WebSocket device in room 0 and a TCP device in room 1; u2 one in room 1.
    let mut a = Device::ws(rooms[0].ws).await;
    let mut b = Device::tcp(rooms[1].tcp).await;
    let mut c = Device::tcp(rooms[1].tcp).await;
    a.hello("u1", &["news"]).await;
    b.hello("u1", &[]).await;
    c.hello("u2", &["news", "sports"]).await;

    let (status, body) = post(
        &gateway,
        "/push",
        json!({"user": "u1", "id": "m1", "body": {"text": "hi"}, "sent_at_ns": 42}),
    )
    .await;
    assert_eq!(
        (status, body),
        (202, json!({"id": "m1", "user": "u1", "devices": 2}))
    );
    let expected = json!({"type": "push", "id": "m1", "kind": "unicast", "topic": null, "sent_at_ns": 42, "body": {"text": "hi"}, "redelivery": false});
    assert_eq!(a.recv().await, expected);
    assert_eq!(b.recv().await, expected);
    let (status, body) = post(&gateway, "/push", json!({"user": "nobody"})).await;
    assert_eq!((status, &body["error"]), (404, &json!("unknown_user")));

    let (status, body) = post(&gateway, "/broadcast", json!({"topic": "news", "id": "b1"})).await;
    assert_eq!((status, body), (202, json!({"id": "b1", "recipients": 2})));
    for device in [&mut a, &mut c] {
        let push = device.recv().await;
        assert_eq!(
            (&push["id"], &push["kind"], &push["topic"], &push["body"]),
            (
                &json!("b1"),
                &json!("broadcast"),
                &json!("news"),
                &Value::Null
            )
        );
    }
    let (status, body) = post(&gateway, "/broadcast", json!({"body": [1, 2]})).await;
    assert_eq!((status, &body["recipients"]), (202, &json!(3)));
    let id = body["id"].as_str().expect("generated id").to_owned();
    for device in [&mut a, &mut b, &mut c] {
        let push = device.recv().await;
        assert_eq!((&push["id"], &push["body"]), (&json!(id), &json!([1, 2])));
    }
    // b never got the topic broadcast: its next frame is the broadcast to all, checked above,
    // and nothing else is pending.
    assert_eq!(
        b.next_within(Duration::from_millis(100)).await,
        Next::Silent
    );
    let stats = gateway.fetch_stats().await;
    assert_eq!(
        (
            stats.connections,
            stats.joined,
            stats.pushes_delivered,
            stats.rooms
        ),
        (3, 3, 7, 2)
    );
}

#[tokio::test]
async fn ack_stops_redelivery_and_unacked_pushes_are_redelivered_up_to_the_limit() {
    let gateway = start_with(
        RoomsConfig {
            ack_timeout: Duration::from_millis(200),
            max_redeliveries: 2,
            ..RoomsConfig::default()
        },
        FaultConfig::default(),
    )
    .await;
    let room = gateway.room_addrs().remove(0);
    let mut acking = Device::ws(room.ws).await;
    let mut silent = Device::tcp(room.tcp).await;
    acking.hello("u1", &[]).await;
    silent.hello("u2", &[]).await;
    post(&gateway, "/broadcast", json!({"id": "m1"})).await;

    let push = acking.recv().await;
    assert_eq!(push["id"], "m1");
    acking.send(json!({"type": "ack", "id": "m1"})).await;
    assert_eq!(
        acking.next_within(Duration::from_millis(700)).await,
        Next::Silent,
        "an acked push is not redelivered"
    );

    let first = silent.recv().await;
    assert_eq!(
        (&first["id"], &first["redelivery"]),
        (&json!("m1"), &json!(false))
    );
    for _ in 0..2 {
        let again = silent.recv().await;
        assert_eq!(
            (&again["id"], &again["redelivery"]),
            (&json!("m1"), &json!(true))
        );
    }
    assert_eq!(
        silent.next_within(Duration::from_millis(600)).await,
        Next::Silent,
        "no more than max_redeliveries"
    );
    let stats = gateway.fetch_stats().await;
    assert_eq!(
        (stats.acks, stats.redelivered, stats.pushes_delivered),
        (1, 2, 4)
    );
}

#[tokio::test]
async fn silent_connections_are_closed_after_missed_heartbeats() {
    let gateway = start_with(
        RoomsConfig {
            heartbeat: Duration::from_millis(200),
            missed_heartbeats: 2,
            hello_timeout: Duration::from_millis(300),
            ..RoomsConfig::default()
        },
        FaultConfig::default(),
    )
    .await;
    let room = gateway.room_addrs().remove(0);
    let mut quiet = Device::ws(room.ws).await;
    let welcome = quiet.hello("u1", &[]).await;
    assert_eq!(welcome["heartbeat_s"], 0.2);
    let mut alive = Device::tcp(room.tcp).await;
    alive.hello("u2", &[]).await;
    let mut mute = Device::tcp(room.tcp).await;

    // Pinging every 100 ms keeps a connection open well past the 400 ms idle window.
    for seq in 0..8 {
        alive.send(json!({"type": "ping", "seq": seq})).await;
        assert_eq!(alive.recv().await, json!({"type": "pong", "seq": seq}));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Meanwhile the silent ones were told why and closed.
    quiet.expect_error_and_close("idle").await;
    mute.expect_error_and_close("idle").await;
    wait_for_stats(&gateway, |s| s.connections == 1).await;
}

#[tokio::test]
async fn malformed_frames_close_that_connection_only() {
    let gateway = start().await;
    let room = gateway.room_addrs().remove(0);
    let mut other = Device::tcp(room.tcp).await;
    other.hello("bystander", &[]).await;

    let mut huge = Device::tcp(room.tcp).await;
    huge.hello("u1", &[]).await;
    if let Device::Tcp(stream) = &mut huge {
        stream
            .write_all(&(70_000u32).to_be_bytes())
            .await
            .expect("sent");
    }
    huge.expect_error_and_close("malformed").await;

    let mut garbage = Device::tcp(room.tcp).await;
    garbage.send_raw(b"not json".to_vec()).await;
    garbage.expect_error_and_close("malformed").await;

    let mut ws = Device::ws(room.ws).await;
    ws.hello("u2", &[]).await;
    ws.send_raw(b"{\"type\": ".to_vec()).await;
    ws.expect_error_and_close("malformed").await;

    let mut binary = Device::ws(room.ws).await;
    if let Device::Ws(stream) = &mut binary {
        stream
            .send(Message::binary(b"{}".to_vec()))
            .await
            .expect("sent");
    }
    binary.expect_error_and_close("malformed").await;

    // The room still serves the connection that behaved, and new ones.
    other.send(json!({"type": "ping", "seq": 1})).await;
    assert_eq!(other.recv().await, json!({"type": "pong", "seq": 1}));
    let mut late = Device::ws(room.ws).await;
    late.hello("u3", &[]).await;
    wait_for_stats(&gateway, |s| s.connections == 2).await;
}

#[tokio::test]
async fn injected_drops_and_duplicates_are_counted_exactly() {
    let gateway = start_with(
        RoomsConfig {
            count: 2,
            ack_timeout: Duration::from_secs(60),
            ..RoomsConfig::default()
        },
        FaultConfig {
            push_drop_rate: 0.2,
            push_duplicate_rate: 0.2,
            push_delay_rate: 0.3,
            push_delay_ms: 20.0,
            ..FaultConfig::default()
        },
    )
    .await;
    let rooms = gateway.room_addrs();
    const DEVICES: usize = 40;
    const PUSHES: usize = 25;
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let room = &rooms[i % 2];
        let mut device = if i % 3 == 0 {
            Device::ws(room.ws).await
        } else {
            Device::tcp(room.tcp).await
        };
        device.hello(&format!("u{i}"), &[]).await;
        devices.push(device);
    }
    for n in 0..PUSHES {
        let (status, _) = post(&gateway, "/broadcast", json!({"id": format!("m{n}")})).await;
        assert_eq!(status, 202);
    }
    // Every device reads until it has been silent for 300 ms, all at once.
    let counts = futures::future::join_all(devices.iter_mut().map(|device| async move {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        loop {
            match device.next_within(Duration::from_millis(300)).await {
                Next::Json(push) => {
                    assert_eq!(push["redelivery"], false);
                    *seen
                        .entry(push["id"].as_str().expect("id").to_owned())
                        .or_default() += 1;
                }
                Next::Silent => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(seen.values().all(|n| *n <= 2));
        (
            PUSHES - seen.len(),
            seen.values().map(|n| n - 1).sum::<usize>(),
        )
    }))
    .await;
    let lost: usize = counts.iter().map(|(lost, _)| lost).sum();
    let duplicates: usize = counts.iter().map(|(_, dups)| dups).sum();
    let stats = gateway.fetch_stats().await;
    assert_eq!(
        (stats.injected_push_drops, stats.injected_push_duplicates),
        (lost as u64, duplicates as u64)
    );
    let total = (DEVICES * PUSHES) as u64;
    assert!(lost > 0 && duplicates > 0, "faults fired: {stats:?}");
    assert_eq!(
        stats.pushes_delivered,
        total - lost as u64 + duplicates as u64
    );
}

#[tokio::test]
async fn connection_reset_fault_sends_rst_and_is_counted() {
    let gateway = start_with(
        RoomsConfig::default(),
        FaultConfig {
            conn_reset_rate: 1.0,
            ..FaultConfig::default()
        },
    )
    .await;
    let room = gateway.room_addrs().remove(0);
    let mut tcp = Device::tcp(room.tcp).await;
    tcp.hello("u1", &[]).await;
    let mut ws = Device::ws(room.ws).await;
    ws.hello("u2", &[]).await;
    assert_eq!(tcp.next_within(Duration::from_secs(3)).await, Next::Reset);
    assert_eq!(ws.next_within(Duration::from_secs(3)).await, Next::Reset);
    wait_for_stats(&gateway, |s| s.injected_resets == 2 && s.connections == 0).await;
}

#[tokio::test]
async fn room_processes_hold_connections_and_route_pushes() {
    let gateway = start_with(
        RoomsConfig {
            count: 2,
            processes: Some(RoomCommand::testbed(env!("CARGO_BIN_EXE_testbed"))),
            ..RoomsConfig::default()
        },
        FaultConfig::default(),
    )
    .await;
    let rooms = gateway.room_addrs();
    assert_eq!(rooms.len(), 2);
    assert_ne!(rooms[0].ws, rooms[1].ws);
    let mut a = Device::ws(rooms[0].ws).await;
    let mut b = Device::tcp(rooms[1].tcp).await;
    let mut c = Device::ws(rooms[1].ws).await;
    assert_eq!(a.hello("u1", &["news"]).await["room"], "room-0");
    assert_eq!(b.hello("u1", &[]).await["room"], "room-1");
    c.hello("u2", &["news"]).await;

    let (status, body) = post(&gateway, "/push", json!({"user": "u1", "id": "p1"})).await;
    assert_eq!((status, &body["devices"]), (202, &json!(2)));
    assert_eq!(a.recv().await["id"], "p1");
    assert_eq!(b.recv().await["id"], "p1");
    let (_, body) = post(&gateway, "/broadcast", json!({"topic": "news", "id": "n1"})).await;
    assert_eq!(body["recipients"], 2);
    assert_eq!(a.recv().await["id"], "n1");
    assert_eq!(c.recv().await["id"], "n1");
    a.send(json!({"type": "ack", "id": "p1"})).await;
    a.send(json!({"type": "ping", "seq": 1})).await;
    assert_eq!(a.recv().await["type"], "pong");

    gateway.set_faults(FaultConfig {
        refuse_rate: 1.0,
        ..FaultConfig::default()
    });
    let mut refused = Device::tcp(rooms[0].tcp).await;
    // Fault changes travel over the control link: retry until the room has them.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        refused.send(json!({"type": "hello", "user": "u9"})).await;
        let answer = refused.recv().await;
        if answer["type"] == "error" {
            assert_eq!(answer["code"], "refused");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fault never reached the room"
        );
        refused = Device::tcp(rooms[0].tcp).await;
    }
    let stats = gateway.fetch_stats().await;
    assert_eq!(
        (
            stats.pushes_delivered,
            stats.acks,
            stats.injected_refusals,
            stats.rooms
        ),
        (4, 1, 1, 2)
    );
    assert!(stats.connections >= 3);
    let (status, stats_json) = get(&gateway, "/stats").await;
    assert_eq!((status, &stats_json["pushes_delivered"]), (200, &json!(4)));
    gateway.shutdown().await;
    assert_eq!(
        a.next_within(WAIT).await,
        Next::Json(
            json!({"type": "error", "code": "shutdown", "message": "the gateway is shutting down"})
        )
    );
}

#[tokio::test]
async fn five_thousand_devices_get_one_broadcast_each_with_no_loss() {
    let gateway = start_with(
        RoomsConfig {
            count: 2,
            ..RoomsConfig::default()
        },
        FaultConfig::default(),
    )
    .await;
    let rooms = gateway.room_addrs();
    const DEVICES: usize = 5_000;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(DEVICES);
    let (go_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    // Bounded connect concurrency keeps the listen backlogs from overflowing.
    let connecting = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..DEVICES {
        let addr = rooms[i % 2].tcp;
        let ready = ready_tx.clone();
        let mut go = go_tx.subscribe();
        let connecting = std::sync::Arc::clone(&connecting);
        tasks.spawn(async move {
            let permit = connecting.acquire_owned().await.expect("semaphore");
            let mut device = Device::tcp(addr).await;
            device.hello(&format!("d{i}"), &["all"]).await;
            drop(permit);
            ready.send(()).await.expect("ready");
            go.recv().await.expect("go");
            let push = device.recv().await;
            device.send(json!({"type": "ack", "id": push["id"]})).await;
            assert_eq!(
                device.next_within(Duration::from_millis(50)).await,
                Next::Silent
            );
            push["id"].as_str().map(str::to_owned)
        });
    }
    for _ in 0..DEVICES {
        ready_rx.recv().await.expect("device ready");
    }
    go_tx.send(()).expect("devices listening");
    let (status, body) = post(&gateway, "/broadcast", json!({"topic": "all", "id": "big"})).await;
    assert_eq!((status, &body["recipients"]), (202, &json!(DEVICES)));
    let mut received = 0;
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.expect("device task").as_deref(), Some("big"));
        received += 1;
    }
    assert_eq!(received, DEVICES);
    wait_for_stats(&gateway, |s| s.acks == DEVICES as u64).await;
    let stats = gateway.fetch_stats().await;
    assert_eq!(
        (
            stats.pushes_delivered,
            stats.redelivered,
            stats.injected_push_drops
        ),
        (DEVICES as u64, 0, 0)
    );
}

#[tokio::test]
async fn delayed_pushes_are_held_then_delivered_once() {
    let gateway = start_with(
        RoomsConfig::default(),
        FaultConfig {
            push_delay_rate: 1.0,
            push_delay_ms: 300.0,
            ..FaultConfig::default()
        },
    )
    .await;
    let room = gateway.room_addrs().remove(0);
    let mut device = Device::tcp(room.tcp).await;
    device.hello("u1", &[]).await;
    let sent = Instant::now();
    post(&gateway, "/push", json!({"user": "u1", "id": "late"})).await;
    let push = device.recv().await;
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "held for the delay"
    );
    assert_eq!(
        (&push["id"], &push["redelivery"]),
        (&json!("late"), &json!(false))
    );
    device.send(json!({"type": "ack", "id": "late"})).await;
    assert_eq!(
        device.next_within(Duration::from_millis(200)).await,
        Next::Silent
    );
}

#[tokio::test]
async fn a_device_that_never_reads_is_closed_as_a_slow_consumer_and_others_get_everything() {
    const CAP: usize = 16;
    const MAX_BROADCASTS: usize = 4_000;
    let gateway = start_with(
        RoomsConfig {
            max_queued_frames: CAP,
            // No redeliveries while the test runs: every frame the reader gets is a first send.
            ack_timeout: Duration::from_secs(60),
            ..RoomsConfig::default()
        },
        FaultConfig::default(),
    )
    .await;
    let room = gateway.room_addrs().remove(0);

    // The stuck device: a small receive buffer, a hello, then it never reads again.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stuck = socket.connect(room.tcp).await.expect("TCP connect");
    let hello = json!({"type": "hello", "user": "stuck", "topics": []}).to_string();
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(hello.as_bytes());
    stuck.write_all(&frame).await.expect("hello sent");

    // The healthy device reads every frame as it comes, on its own task.
    let mut reader = Device::ws(room.ws).await;
    reader.hello("reader", &[]).await;
    wait_for_stats(&gateway, |s| s.joined == 2).await;
    let (count_tx, count_rx) = tokio::sync::oneshot::channel::<usize>();
    let reading = tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut expected = None;
        let mut count_rx = count_rx;
        loop {
            if expected.is_some_and(|n| ids.len() >= n) {
                break;
            }
            tokio::select! {
                n = &mut count_rx, if expected.is_none() => expected = Some(n.expect("count")),
                push = reader.recv() => {
                    assert_eq!(push["type"], "push", "{push}");
                    assert_eq!(push["redelivery"], false, "{push}");
                    ids.push(push["id"].as_str().expect("id").to_owned());
                }
            }
        }
        let after = reader.next_within(Duration::from_millis(100)).await;
        (ids, after, reader)
    });

    // Broadcast until the stuck device is closed (its kernel buffers fill, then its queue),
    // then a few more that only the reader gets.
    let client = http_client();
    let body = "x".repeat(1_000);
    let mut sent = 0;
    let mut closed_at = None;
    while sent < MAX_BROADCASTS && closed_at.is_none_or(|at| sent < at + 20) {
        let response = client
            .post(format!("{}/broadcast", gateway.base_url()))
            .json(&json!({"id": format!("b{sent}"), "body": body}))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 202);
        sent += 1;
        if closed_at.is_none() && gateway.stats().slow_consumer_closed > 0 {
            closed_at = Some(sent);
        }
    }
    assert!(
        closed_at.is_some(),
        "{sent} broadcasts never overflowed the stuck device: {:?}",
        gateway.stats()
    );
    count_tx.send(sent).expect("reader waits");
    let (ids, after, _reader) = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the reader got every broadcast in time")
        .expect("reader task");
    let expected: Vec<String> = (0..sent).map(|i| format!("b{i}")).collect();
    assert_eq!(ids, expected, "every broadcast, once, in order");
    assert_eq!(after, Next::Silent);

    // The stuck device's socket ends (reset) once drained; only the reader is still joined.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stuck.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stuck device's connection was closed");
    wait_for_stats(&gateway, |s| s.connections == 1 && s.joined == 1).await;
    let (status, stats) = get(&gateway, "/stats").await;
    assert_eq!(status, 200);
    assert_eq!(
        (&stats["slow_consumer_closed"], &stats["joined"]),
        (&json!(1), &json!(1)),
        "{stats}"
    );
    // Delivery counters stay consistent: the reader's frames, plus the ones queued for the
    // stuck device before it was closed (more than the cap, no more than were posted by then).
    let stuck_delivered = stats["pushes_delivered"].as_u64().expect("counter") - sent as u64;
    let closed_at = closed_at.expect("closed") as u64;
    assert!(
        (CAP as u64) < stuck_delivered && stuck_delivered <= closed_at,
        "{stuck_delivered} pushes counted for the stuck device (closed after {closed_at}): {stats}"
    );
}
