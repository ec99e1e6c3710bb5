//! The device swarm against the real reference gateway (dispatcher + rooms over WebSocket and
//! raw TCP), started in the test process on loopback; loadgen runs as its real binary.

mod common;
use common::*;

use std::time::Duration;

use testbed::gateway::{self, FaultConfig, GatewayConfig, GatewayHandle};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn gateway_with(faults: FaultConfig) -> GatewayHandle {
    gateway::spawn(GatewayConfig {
        faults,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The device journey of the reference protocol (see protocol.md), `n` devices ramped over
/// `ramp`, held for `hold`.
fn phones(name: &str, n: u32, ramp: &str, hold: &str, transport: &str) -> String {
    let (address, url) = match transport {
        "tcp" => ("/tcp", "\n      url: \"tcp://{{address}}\""),
        _ => ("/ws", ""),
    };
    format!(
        r#"  - name: {name}
    count: {{ stages: [ {{ to: {n}, over: {ramp} }}, {{ hold: {hold} }} ] }}
    user: "{name}-{{{{device.index}}}}"
    topics: [news]
    connect:
      dispatch: {{ get: "{{{{base_url}}}}/dispatch?user={{{{user}}}}", address: {{ json: {address} }} }}{url}
    send_on_connect:
      - send: '{{"type":"hello","user":"{{{{user}}}}","topics":["news"]}}'
        expect: {{ json: /type, equals: welcome }}
    heartbeat: {{ every: 2s, jitter: 500ms, send: '{{"type":"ping","seq":1}}', expect: {{ json: /type, equals: pong }}, within: 5s }}
    push:
      match: {{ json: /type, equals: push }}
      id: {{ json: /id }}
      sent_at: {{ json: /sent_at_ns, unit: ns }}
      ack: '{{"type":"ack","id":"{{{{msg.id}}}}"}}'
      redelivery: {{ json: /redelivery, equals: true }}
    error: {{ match: {{ json: /type, equals: error }}, cause: {{ json: /code }} }}
"#
    )
}

/// Unicast to random connected devices at `rate`/s and a broadcast each second, both from
/// `start` on (after the devices are up), tracked.
fn senders(start: &str, rate: u32, rest: &str) -> String {
    format!(
        r#"senders:
  - name: unicast
    rate: {{ stages: [ {{ hold: {start} }}, {{ to: {rate}, over: 1s }}, {{ hold: {rest} }} ] }}
    pool: {{ connections: 8 }}
    steps:
      - post: "{{{{base_url}}}}/push"
        json: {{ user: "{{{{random_device}}}}", id: "{{{{msg_id}}}}", sent_at_ns: "{{{{now_ns}}}}", body: "hi" }}
        expect: {{ status: 202 }}
        track: {{ unicast: "{{{{random_device}}}}", within: 3s }}
  - name: broadcast
    rate: {{ stages: [ {{ hold: {start} }}, {{ to: 1, over: 1s }}, {{ hold: {rest} }} ] }}
    pool: {{ connections: 1 }}
    steps:
      - post: "{{{{base_url}}}}/broadcast"
        json: {{ id: "{{{{msg_id}}}}", sent_at_ns: "{{{{now_ns}}}}", body: "all" }}
        expect: {{ status: 202 }}
        track: {{ broadcast: true, within: 3s }}
"#
    )
}

fn count(run: &serde_json::Value, key: &str) -> u64 {
    run["metrics"][key]["value"].as_u64().unwrap_or(0)
}

/// Runs loadgen on `scenario` (with `BASE` replaced) in a blocking thread.
async fn run_loadgen(d: &Dir, gw: &GatewayHandle, scenario: &str) -> serde_json::Value {
    let text = scenario.replace("BASE", &gw.base_url());
    d.write("s.yaml", &text);
    passed_run(d, d.command(&["run", "s.yaml", "--out", "out", "--quiet"])).await
}

/// Runs `cmd` (a `loadgen run` writing `out/`) off the runtime; it must pass. Its record.
async fn passed_run(d: &Dir, mut cmd: std::process::Command) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        stdout(&out)
    );
    d.run_record().expect("run.json")
}

/// 5k devices, unicast + broadcast against a healthy gateway: nothing lost, nothing twice.
#[test]
fn healthy_gateway_5k_devices_lose_nothing() {
    runtime().block_on(async {
        let gw = gateway_with(FaultConfig::default()).await;
        let d = Dir::new();
        let scenario = format!(
            "version: 1\nname: healthy\ntarget: {{ base_url: \"BASE\" }}\ndevices:\n{}{}",
            phones("phones", 5000, "3s", "6s", "ws"),
            senders("4s", 300, "4s")
        );
        let run = run_loadgen(&d, &gw, &scenario).await;
        let expected = count(&run, "delivery_expected");
        assert!(expected > 5000 * 2, "{expected}");
        assert_eq!(count(&run, "delivery_received"), expected);
        assert_eq!(count(&run, "delivery_lost"), 0);
        assert_eq!(count(&run, "delivery_duplicates"), 0);
        assert_eq!(count(&run, "delivery_unexpected"), 0);
        assert_eq!(count(&run, "connections_opened"), 5000);
        assert_eq!(count(&run, "connections_failed"), 0);
        assert_eq!(metric(&run, "ws_connecting")["count"], 5000);
        assert!(
            metric(&run, "broadcast_completion")["count"]
                .as_u64()
                .unwrap()
                >= 3
        );
        assert_eq!(
            metric(&run, "delivery_latency")["count"].as_u64().unwrap(),
            expected
        );
        assert!(count(&run, "delivery_received{journey=unicast}") > 100);
        assert!(metric(&run, "heartbeat_rtt")["count"].as_u64().unwrap() > 5000);
        assert!(metric(&run, "connections_active")["max"].as_u64().unwrap() >= 5000);
        gw.shutdown().await;
    });
}

/// With 1% of deliveries dropped and 1% duplicated by the gateway, loadgen's counts equal the
/// gateway's injected counters exactly.
#[test]
fn injected_drops_and_duplicates_are_counted_exactly() {
    runtime().block_on(async {
        let gw = gateway_with(FaultConfig {
            push_drop_rate: 0.01,
            push_duplicate_rate: 0.01,
            ..Default::default()
        })
        .await;
        let d = Dir::new();
        let scenario = format!(
            "version: 1\nname: faults\ntarget: {{ base_url: \"BASE\" }}\ndevices:\n{}{}",
            phones("phones", 2000, "2s", "6s", "ws"),
            senders("3s", 300, "4s")
        );
        let run = run_loadgen(&d, &gw, &scenario).await;
        let stats = gw.fetch_stats().await;
        assert!(stats.injected_push_drops > 20, "{stats:?}");
        assert!(stats.injected_push_duplicates > 20, "{stats:?}");
        assert_eq!(count(&run, "delivery_lost"), stats.injected_push_drops);
        assert_eq!(
            count(&run, "delivery_duplicates"),
            stats.injected_push_duplicates
        );
        assert_eq!(count(&run, "delivery_unexpected"), 0);
        assert_eq!(
            count(&run, "delivery_received") + count(&run, "delivery_lost"),
            count(&run, "delivery_expected")
        );
        gw.shutdown().await;
    });
}

/// Pushes the gateway sends while a device is reconnecting are gone (the reference gateway
/// keeps nothing for devices that are away). Under an online-only promise they are not
/// verifiable, never lost; under a store-and-forward promise the same pushes are lost. Every
/// tracked pair has an outcome either way. (The gateway resets its connections on a once-a-
/// second tick; devices stay away at least 600 ms and broadcasts go out every 200 ms, so some
/// always fall in the gap whatever the phase.)
#[test]
fn pushes_missed_while_reconnecting_are_lost_or_unverifiable_by_the_promise() {
    runtime().block_on(async {
        let mut devices = phones("phones", 200, "1s", "5s", "ws");
        devices.push_str("    reconnect: { backoff: { initial: 600ms, max: 700ms } }\n");
        let broadcasts = r#"senders:
  - name: broadcast
    rate: { stages: [ { hold: 2s }, { to: 5, over: 100ms }, { hold: 3s } ] }
    pool: { connections: 2 }
    steps:
      - post: "{{base_url}}/broadcast"
        json: { id: "{{msg_id}}", sent_at_ns: "{{now_ns}}", body: "all" }
        expect: { status: 202 }
        track: { broadcast: true, within: 2s }
"#;
        let mut runs = Vec::new();
        for promise in ["online", "store_and_forward"] {
            let gw = gateway_with(FaultConfig {
                conn_reset_rate: 0.2,
                ..Default::default()
            })
            .await;
            let d = Dir::new();
            let scenario = format!(
                "version: 1\nname: promise\ntarget: {{ base_url: \"BASE\", delivery: {promise} }}\nduration: 6s\ndevices:\n{devices}{broadcasts}"
            );
            let run = run_loadgen(&d, &gw, &scenario).await;
            let (expected, received, lost, unverifiable) = (
                count(&run, "delivery_expected"),
                count(&run, "delivery_received"),
                count(&run, "delivery_lost"),
                count(&run, "delivery_unverifiable"),
            );
            assert_eq!(received + lost, expected, "{promise}");
            assert!(received > 500, "{promise}: {received}");
            assert!(gw.fetch_stats().await.injected_resets > 20, "{promise}");
            runs.push((promise, lost, unverifiable));
            gw.shutdown().await;
        }
        let (_, online_lost, online_unverifiable) = runs[0];
        let (_, saf_lost, _) = runs[1];
        assert_eq!(online_lost, 0, "online only: a device away is not owed the push: {runs:?}");
        assert!(online_unverifiable > 0, "{runs:?}");
        assert!(saf_lost > 0, "store and forward: a reconnected device is owed it: {runs:?}");
    });
}

/// A server that answers every connection with a length prefix above any limit.
async fn garbage_server() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff, b'x']).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    addr
}

/// Refused hellos, resets, malformed frames (ours and the server's) and an unreachable room
/// are each counted under their cause, and the run goes on.
#[test]
fn failures_are_counted_per_cause_and_the_run_goes_on() {
    runtime().block_on(async {
        let gw = gateway_with(FaultConfig {
            refuse_rate: 0.2,
            conn_reset_rate: 0.05,
            ..Default::default()
        })
        .await;
        let garbage = garbage_server().await;
        let d = Dir::new();
        let mut devices = phones("phones", 300, "1s", "6s", "ws");
        devices.push_str("    reconnect: { backoff: { initial: 50ms, max: 500ms } }\n");
        devices.push_str(&format!(
            r#"  - name: sloppy
    count: 5
    connect: {{ url: "ws://{host}/ws" }}
    send_on_connect:
      - send: 'hello?'
        expect: {{ json: /type, equals: welcome }}
    error: {{ match: {{ json: /type, equals: error }}, cause: {{ json: /code }} }}
  - name: nowhere
    count: 5
    connect: {{ url: "ws://127.0.0.1:1/ws", timeout: 2s }}
  - name: broken
    count: 5
    connect: {{ url: "tcp://{garbage}" }}
    send_on_connect:
      - send: '{{"type":"hello","user":"b"}}'
        expect: {{ json: /type, equals: welcome }}
"#,
            host = gw.room_addrs()[0].ws,
        ));
        let scenario = format!(
            "version: 1\nname: causes\ntarget: {{ base_url: \"BASE\" }}\nduration: 7s\ndevices:\n{devices}{}",
            senders("2s", 50, "4s")
        );
        let run = run_loadgen(&d, &gw, &scenario).await;
        let stats = gw.fetch_stats().await;
        let failed = |cause: &str| count(&run, &format!("connections_failed{{cause={cause},journey=phones}}"));
        assert!(stats.injected_refusals > 0 && stats.injected_resets > 0, "{stats:?}");
        assert_eq!(failed("refused"), stats.injected_refusals);
        assert_eq!(failed("reset"), stats.injected_resets);
        assert_eq!(count(&run, "connections_failed{cause=malformed,journey=sloppy}"), 5);
        assert_eq!(count(&run, "connections_failed{cause=connect,journey=nowhere}"), 5);
        assert_eq!(count(&run, "connections_failed{cause=malformed,journey=broken}"), 5);
        // The run went on: pushes still reached the devices that were up.
        assert!(count(&run, "delivery_received") > 100);
        gw.shutdown().await;
    });
}

/// Two shard processes, WebSocket and raw TCP devices: metrics of both merge into the run.
#[test]
fn two_shard_processes_merge_into_one_run() {
    runtime().block_on(async {
        let gw = gateway_with(FaultConfig::default()).await;
        let d = Dir::new();
        let scenario = format!(
            "version: 1\nname: shards\ntarget: {{ base_url: \"BASE\" }}\nswarm: {{ shards: 2 }}\ndevices:\n{}{}{}",
            phones("ws", 300, "1s", "5s", "ws"),
            phones("tcp", 300, "1s", "5s", "tcp"),
            senders("2s", 100, "3s")
        );
        let run = run_loadgen(&d, &gw, &scenario).await;
        assert_eq!(count(&run, "connections_opened"), 600);
        assert_eq!(metric(&run, "tcp_connecting")["count"], 300);
        assert_eq!(metric(&run, "ws_connecting")["count"], 300);
        assert!(count(&run, "delivery_expected") > 600);
        assert_eq!(count(&run, "delivery_lost"), 0);
        assert_eq!(count(&run, "delivery_duplicates"), 0);
        assert_eq!(count(&run, "swarm_shards_lost"), 0);
        for shard in ["0", "1"] {
            let key = format!("connections_active{{shard={shard}}}");
            assert!(metric(&run, &key)["max"].as_u64().unwrap() >= 290, "{key}");
        }
        assert!(metric(&run, "connections_active")["max"].as_u64().unwrap() >= 590);
        gw.shutdown().await;
    });
}

/// The shards plan from the scenario's text with its `${NAME}` variables filled in by the
/// parent (`-e` and its environment), not from the file.
#[test]
fn variables_reach_the_shards() {
    runtime().block_on(async {
        let gw = gateway_with(FaultConfig::default()).await;
        let d = Dir::new();
        let scenario = format!(
            "version: 1\nname: vars\ntarget: {{ base_url: \"${{GATEWAY}}\" }}\nswarm: {{ shards: 2 }}\ndevices:\n{}{}",
            phones("ws", 200, "1s", "${HOLD:-3s}", "ws").replace("to: 200", "to: ${N}"),
            senders("2s", 50, "1s")
        );
        d.write("s.yaml", &scenario);
        let gateway = format!("GATEWAY={}", gw.base_url());
        let mut cmd = d.command(&[
            "run", "s.yaml", "-e", &gateway, "--out", "out", "--quiet",
        ]);
        cmd.env("N", "120");
        let run = passed_run(&d, cmd).await;
        assert_eq!(count(&run, "connections_opened"), 120);
        assert_eq!(count(&run, "delivery_lost"), 0);
        assert_eq!(count(&run, "swarm_shards_lost"), 0);
        gw.shutdown().await;
    });
}

/// A shard process that dies mid-run is reported; the run goes on and its record is written.
#[test]
fn a_crashed_shard_is_reported_and_the_run_goes_on() {
    runtime().block_on(async {
        let gw = gateway_with(FaultConfig::default()).await;
        let d = Dir::new();
        let scenario = format!(
            "version: 1\nname: crash\ntarget: {{ base_url: \"{}\" }}\nswarm: {{ shards: 2 }}\ndevices:\n{}",
            gw.base_url(),
            phones("phones", 200, "1s", "7s", "ws"),
        );
        d.write("s.yaml", &scenario);
        let child = d
            .command(&["run", "s.yaml", "--out", "out", "--quiet"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Wait for both shard processes and their devices, then kill one shard by its pid.
        let mut shards = Vec::new();
        for _ in 0..200 {
            shards = testkit::process::children_of(pid);
            if shards.len() == 2 && gw.fetch_stats().await.connections >= 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(shards.len(), 2, "shard processes: {shards:?}");
        testkit::process::signal_pid(shards[1], testkit::process::Signal::SIGKILL);
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert_exit_says(&out, 0, "ended before finishing");
        let run = d.run_record().unwrap();
        assert_eq!(count(&run, "swarm_shards_lost"), 1);
        // The surviving shard's devices are all in the record.
        assert!(count(&run, "connections_opened{journey=phones}") >= 100);
        gw.shutdown().await;
    });
}

/// Ctrl-C in the middle of a device ramp: no new connection starts after it, the run ends
/// within a second or so with the interrupt's exit code, and the record holds what happened.
#[test]
fn sigint_during_a_device_ramp_stops_connecting_at_once() {
    runtime().block_on(async {
        let gw = gateway_with(FaultConfig::default()).await;
        let d = Dir::new();
        // 3000 devices over 30 s: 100 new connections a second.
        let scenario = format!(
            "version: 1\nname: ramp\ntarget: {{ base_url: \"BASE\" }}\ndevices:\n{}",
            phones("phones", 3000, "30s", "5s", "ws")
        )
        .replace("BASE", &gw.base_url());
        d.write("s.yaml", &scenario);
        let mut cmd = d.command(&["run", "s.yaml", "--out", "out", "--quiet"]);
        cmd.stdout(std::process::Stdio::null());
        let mut child = testkit::Spawned::start_stderr(cmd);
        for _ in 0..400 {
            if gw.fetch_stats().await.connections >= 150 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(gw.fetch_stats().await.connections >= 150);
        // Read just before the signal: after it the devices close, and the count falls.
        let at_signal = gw.fetch_stats().await.connections;
        let started = std::time::Instant::now();
        child.signal(testkit::process::Signal::SIGINT);
        let code = tokio::task::spawn_blocking(move || child.wait(Duration::from_secs(15)).code())
            .await
            .unwrap();
        // The goal is 1 s; the bound leaves room for a debug build on a busy machine.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(code, Some(105));
        let run = d.run_record().expect("the record is written");
        let opened = count(&run, "connections_opened");
        // At most the connects already in flight when the signal came finished after it.
        assert!(
            opened <= at_signal + 20,
            "{opened} opened, {at_signal} at the signal"
        );
        assert!(opened < 1000, "{opened}");
        assert_eq!(
            run["meta"]["stopped_early"],
            "interrupted (SIGINT or SIGTERM)"
        );
        gw.shutdown().await;
    });
}

/// A TLS terminator on loopback in front of a room's WebSocket port, presenting a certificate
/// for `localhost` issued by a fresh test CA (which no client trusts unless told to).
async fn tls_front(room: std::net::SocketAddr) -> std::net::SocketAddr {
    let ca = testbed::pki::CertificateAuthority::new("wss test CA").unwrap();
    let cert = ca.issue_server(&["localhost"]).unwrap();
    let config = testbed::pki::tls_server_config(&cert, None, &[]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(room).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// `wss://` end to end: devices connect over TLS, say hello, receive tracked broadcasts and
/// ack them; without trusting the server's CA every connect is a `handshake` failure.
#[test]
fn wss_devices_receive_and_ack_and_an_untrusted_certificate_fails_the_handshake() {
    runtime().block_on(async {
        let gw = gateway_with(FaultConfig::default()).await;
        let front = tls_front(gw.room_addrs()[0].ws).await;
        let scenario = |insecure: bool| {
            format!(
                r#"version: 1
name: wss
target: {{ base_url: "BASE", insecure: {insecure} }}
duration: 4s
devices:
  - name: secure
    count: 5
    user: "secure-{{{{device.index}}}}"
    connect: {{ url: "wss://localhost:{port}/ws", timeout: 3s }}
    send_on_connect:
      - send: '{{"type":"hello","user":"{{{{user}}}}"}}'
        expect: {{ json: /type, equals: welcome }}
    push:
      match: {{ json: /type, equals: push }}
      id: {{ json: /id }}
      ack: '{{"type":"ack","id":"{{{{msg.id}}}}"}}'
senders:
  - name: broadcast
    rate: {{ stages: [ {{ hold: 1s }}, {{ to: 2, over: 1s }}, {{ hold: 2s }} ] }}
    pool: {{ connections: 1 }}
    steps:
      - post: "{{{{base_url}}}}/broadcast"
        json: {{ id: "{{{{msg_id}}}}", sent_at_ns: "{{{{now_ns}}}}", body: "tls" }}
        expect: {{ status: 202 }}
        track: {{ broadcast: true, within: 2s }}
"#,
                port = front.port()
            )
        };
        let d = Dir::new();
        let run = run_loadgen(&d, &gw, &scenario(true)).await;
        let stats = gw.fetch_stats().await;
        assert_eq!(count(&run, "connections_opened{journey=secure}"), 5);
        assert_eq!(count(&run, "delivery_lost"), 0);
        assert!(count(&run, "delivery_received") >= 5, "{}", run["metrics"]);
        assert_eq!(
            count(&run, "delivery_received"),
            count(&run, "delivery_expected")
        );
        assert!(stats.acks >= count(&run, "delivery_received"), "{stats:?}");

        let d = Dir::new();
        let run = run_loadgen(&d, &gw, &scenario(false)).await;
        assert_eq!(
            count(&run, "connections_failed{cause=handshake,journey=secure}"),
            5,
            "{}",
            run["metrics"]
        );
        assert_eq!(count(&run, "delivery_received"), 0);
        gw.shutdown().await;
    });
}
