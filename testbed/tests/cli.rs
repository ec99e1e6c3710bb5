//! The `testbed` binary, run for real: it binds, prints its address, answers, and exits on
//! SIGTERM; bad arguments exit 2 with one clear sentence.

mod http_client;
mod running;
use http_client::http_client;
use running::start;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(args)
        .output()
        .expect("testbed runs")
}

#[tokio::test]
async fn gateway_answers_and_stops_on_sigterm() {
    let mut gateway = start(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--latency",
            "2ms",
            "--latency-jitter",
            "1ms",
        ],
        1,
    );
    let base_url = gateway.url();
    assert!(base_url.starts_with("http://127.0.0.1:"), "{}", base_url);
    let client = http_client();
    let started = Instant::now();
    let health = client
        .get(format!("{}/healthz", base_url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let faults: serde_json::Value = client
        .get(format!("{}/admin/faults", base_url))
        .send()
        .await
        .expect("faults")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        faults,
        serde_json::json!({ "latency_ms": 2.0, "jitter_ms": 1.0, "error_rate": 0.0, "error_status": 503, "stall_ms": 0, "push_drop_rate": 0.0, "push_duplicate_rate": 0.0, "push_delay_rate": 0.0, "push_delay_ms": 0.0, "conn_reset_rate": 0.0, "refuse_rate": 0.0 })
    );
    let stats = client
        .get(format!("{}/stats", base_url))
        .send()
        .await
        .expect("stats");
    assert_eq!(stats.status().as_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(2));

    let status = gateway.process.stop(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[test]
fn invalid_faults_exit_2_with_the_reason() {
    let output = run(&["gateway", "--listen", "127.0.0.1:0", "--error-rate", "2"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "testbed: error_rate must be between 0 and 1, got 2\n"
    );
    assert!(output.stdout.is_empty());

    let output = run(&[
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--error-status",
        "302",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "testbed: error_status must be an HTTP error status between 400 and 599, got 302\n"
    );
}

#[test]
fn bad_duration_exits_2_naming_it() {
    let output = run(&["gateway", "--listen", "127.0.0.1:0", "--latency", "5"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "invalid value '5' for '--latency <DURATION>': expected a duration such as `500us`, `250ms` or `1m30s` (a number and a unit: ns, us, ms, s, m, h), got `5`"
        ),
        "{stderr}"
    );
}

#[test]
fn busy_port_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let output = run(&["gateway", "--listen", &addr]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("testbed: could not listen on {addr}: ")),
        "{stderr}"
    );
}

#[tokio::test]
async fn room_processes_from_the_command_line_dispatch_and_stop_on_sigterm() {
    let mut gateway = start(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--rooms",
            "2",
            "--room-processes",
            "--push-drop-rate",
            "0.5",
        ],
        1,
    );
    let base_url = gateway.url();
    let client = http_client();
    let dispatched: serde_json::Value = client
        .get(format!("{}/dispatch?user=alice", base_url))
        .send()
        .await
        .expect("dispatch")
        .json()
        .await
        .expect("JSON");
    assert!(
        dispatched["ws"]
            .as_str()
            .is_some_and(|ws| ws.starts_with("ws://127.0.0.1:") && ws.ends_with("/ws")),
        "{dispatched}"
    );
    let faults: serde_json::Value = client
        .get(format!("{}/admin/faults", base_url))
        .send()
        .await
        .expect("faults")
        .json()
        .await
        .expect("JSON");
    assert_eq!(faults["push_drop_rate"], 0.5);
    let stats: serde_json::Value = client
        .get(format!("{}/stats", base_url))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        (&stats["rooms"], &stats["connections"]),
        (&2.into(), &0.into())
    );

    let pid = gateway.process.pid();
    let children = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .expect("pgrep runs");
    let rooms: Vec<String> = String::from_utf8_lossy(&children.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(rooms.len(), 2, "two room processes: {rooms:?}");
    gateway.process.stop(Duration::from_secs(10));
    // The room processes end with the gateway.
    for room in rooms {
        testkit::wait::until(
            Duration::from_secs(10),
            &format!("room process {room} to end with the gateway"),
            || {
                std::fs::read_to_string(format!("/proc/{room}/status"))
                    .map_or(true, |s| s.contains("State:\tZ"))
            },
        );
    }
}

#[test]
fn bad_room_flags_and_room_arguments_exit_2() {
    let output = run(&[
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--push-duplicate-rate",
        "1.5",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "testbed: push_duplicate_rate must be between 0 and 1, got 1.5\n"
    );
    let output = run(&["room", "--index", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "room: --control ADDR is required\n"
    );
}
