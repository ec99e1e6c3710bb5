//! The scenario files shipped in scenarios/ are valid and runnable as-is.

mod common;
use common::*;

use std::path::PathBuf;

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn every_shipped_scenario_checks() {
    let d = Dir::new();
    let mut n = 0;
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            n += 1;
            let out = d.loadgen(&["check", path.to_str().unwrap()]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                path.display(),
                stderr(&out)
            );
            assert!(stdout(&out).contains("is valid"));
        }
    }
    assert!(n >= 4, "found {n} scenarios");
}

/// ci-gate.yaml's thresholds pass against the embedded gateway.
#[test]
fn ci_gate_passes_against_the_embedded_gateway() {
    let d = Dir::new();
    let file = scenarios_dir().join("ci-gate.yaml");
    let out = d.loadgen(&["run", file.to_str().unwrap(), "--out", "out", "--quiet"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stderr(&out),
        stdout(&out)
    );
    let run = d.run_record().unwrap();
    let verdicts = run["thresholds"].as_array().unwrap();
    assert!(verdicts.len() >= 8);
    assert!(verdicts.iter().all(|v| v["ok"] == true), "{verdicts:?}");
}

/// The open-rate driver over HTTP/2 (h2c prior knowledge) with several streams per connection.
#[test]
fn open_model_over_http2() {
    let d = Dir::new();
    let (out, run) = d.run(
        "version: 1
name: h2
target: { embedded: gateway, faults: { latency: 20ms } }
duration: 2s
senders:
  - name: h2
    rate: { per_second: 500 }
    pool: { connections: 2, http2: true, streams: 16 }
    steps:
      - post: \"{{base_url}}/broadcast\"
        json: { body: x }
        expect: { status: 202 }
",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = run.unwrap();
    // 1000 iterations with 20 ms each need ~10 concurrent: only HTTP/2 streams give that on 2
    // connections.
    assert_eq!(metric(&run, "http_reqs")["value"], 1000);
    assert_eq!(metric(&run, "http_req_failed")["value"], 0);
    assert_eq!(metric(&run, "dropped_iterations")["value"], 0);
    assert!(metric(&run, "http_req_duration")["p50"].as_u64().unwrap() < 40_000);
}
