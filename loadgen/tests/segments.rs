//! Static segments (`loadgen run --segment i/N`): N processes, each a deterministic share of
//! every rate, user count and device count, merge to the run one process would make.

mod common;
use common::*;

use testbed::gateway::{self, GatewayConfig};

/// An open-rate sender, closed-model users, and devices ramping up.
const SCENARIO: &str = r#"version: 1
name: seg
target: { base_url: "${TARGET}" }
duration: 3s
users: { stages: [ { to: 5, over: 1s }, { hold: 2s } ] }
devices:
  - name: phones
    count: { stages: [ { to: 11, over: 1s }, { hold: 2s } ] }
    connect:
      dispatch: { get: "{{base_url}}/dispatch?user={{user}}", address: { json: /ws } }
    send_on_connect:
      - send: '{"type":"hello","user":"{{user}}"}'
        expect: { json: /type, equals: welcome }
senders:
  - name: rated
    rate: { stages: [ { to: 40, over: 1s }, { hold: 2s } ] }
    pool: { connections: 4 }
    steps:
      - get: "{{base_url}}/healthz"
  - name: looped
    think: 200ms
    steps:
      - get: "{{base_url}}/healthz"
"#;

fn value(run: &serde_json::Value, key: &str) -> u64 {
    metric(run, key)["value"].as_u64().unwrap()
}

#[test]
fn segments_run_as_processes_merge_to_the_unsplit_plan() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gw = rt
        .block_on(gateway::spawn(GatewayConfig::default()))
        .unwrap();
    let target = gw.base_url();
    let dir = Dir::new();
    dir.write("s.yaml", SCENARIO);
    let check = |segment: Option<&str>| -> String {
        let mut args = vec!["check", "s.yaml"];
        if let Some(s) = segment {
            args.extend(["--segment", s]);
        }
        let out = dir.command(&args).env("TARGET", &target).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    // The plan: 100 iterations of `rated` (a 0→40/s ramp over 1 s, then 40/s for 2 s).
    let whole = check(None);
    assert!(
        whole.contains("expected: 100 iterations, 100 requests"),
        "{whole}"
    );
    let parts = check(Some("1/3"));
    assert!(
        parts.contains("segment:  1/3 (arrivals, users and devices #1, #4, #7, …"),
        "{parts}"
    );
    assert!(
        parts.contains("ramp 0 → 4 connections"),
        "devices 1, 4, 7, 10 of 11: {parts}"
    );
    assert!(
        parts.contains("ramp 0 → 2 users"),
        "users 1 and 4 of 5: {parts}"
    );

    let mut procs: Vec<_> = (0..3)
        .map(|i| {
            dir.command(&[
                "run",
                "s.yaml",
                "--segment",
                &format!("{i}/3"),
                "--quiet",
                "--out",
                &format!("s{i}"),
            ])
            .env("TARGET", &target)
            .spawn()
            .unwrap()
        })
        .collect();
    for p in &mut procs {
        assert!(p.wait().unwrap().success());
    }
    let out = dir.loadgen(&[
        "report",
        "merge",
        "s0/run.json",
        "s1/run.json",
        "s2/run.json",
        "-o",
        "all.json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("all.json")).unwrap())
            .unwrap();
    // Every planned arrival ran once, in exactly one segment; every device connected once.
    assert_eq!(value(&all, "iterations{journey=rated}"), 100);
    assert_eq!(value(&all, "connections_opened"), 11);
    let per_segment: Vec<(u64, u64)> = (0..3)
        .map(|i| {
            let run: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.path().join(format!("s{i}/run.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(run["meta"]["segment"], format!("{i}/3"));
            (
                value(&run, "iterations{journey=rated}"),
                value(&run, "connections_opened"),
            )
        })
        .collect();
    assert_eq!(per_segment, vec![(34, 4), (33, 4), (33, 3)]);
    // Closed-model users: at most 2 + 2 + 1 at once, all of them looping.
    assert!(value(&all, "iterations{journey=looped}") > 0);
    drop(gw);
}

#[test]
fn bad_segments_and_unsplittable_plans_are_one_line() {
    let dir = Dir::new();
    dir.write(
        "s.yaml",
        &SCENARIO.replace("${TARGET}", "http://127.0.0.1:1"),
    );
    for bad in ["3/3", "x", "1/0"] {
        let out = dir.loadgen(&["check", "s.yaml", "--segment", bad]);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            stderr(&out).trim(),
            format!("error: --segment `{bad}`: expected i/N with 0 ≤ i < N, such as 0/4")
        );
    }
    dir.write(
        "r.gor",
        "1 a 1700000000000000000 0\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    dir.write(
        "r.yaml",
        "version: 1\nname: r\ntarget: { base_url: \"http://127.0.0.1:1\" }\nreplay: { files: [r.gor] }\n",
    );
    let out = dir.loadgen(&["run", "r.yaml", "--segment", "0/2", "--quiet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: r.yaml: --segment cannot split a scenario with a `replay:` section"
    );
}
