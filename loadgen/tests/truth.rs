//! What loadgen reports when the target, the operator or the plan misbehave: a target that
//! never answers gives every request an outcome, plans beyond the machine are refused at
//! `check`, and the same run is never merged twice.

mod common;
use common::*;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// A server that accepts every connection, reads what it is sent and never answers; it holds
/// the connections until the test ends.
fn black_hole() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// Against a target that never answers, every request sent is in the record, failed, with its
/// cause: the ones the run's end cut as `unfinished` (the timeout is longer than the run), the
/// ones that ran out of time as `timeout`. Nothing reads as "no traffic".
#[test]
fn a_target_that_never_answers_gives_every_request_an_outcome() {
    let addr = black_hole();
    let d = Dir::new();
    // Open model: 20/s for 2 s, the default 30 s timeout: all 40 are cut at the end.
    let (out, run) = d.run(&format!(
        "version: 1
name: hung
target: {{ base_url: \"http://{addr}\" }}
duration: 2s
senders:
  - name: push
    rate: {{ per_second: 20 }}
    pool: {{ connections: 64 }}
    steps:
      - post: \"{{{{base_url}}}}/push\"
        json: {{ user: u1 }}
"
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = run.expect("run.json");
    assert_eq!(metric(&run, "http_reqs")["value"], 40, "{run}");
    let failed = metric(&run, "http_req_failed");
    assert_eq!(
        (failed["value"].as_u64(), failed["total"].as_u64()),
        (Some(40), Some(40))
    );
    assert_eq!(
        metric(
            &run,
            "http_errors{cause=unfinished,journey=push,step=POST /push}"
        )["value"],
        40
    );
    // Each cut request's elapsed time is in the latency histogram.
    assert_eq!(metric(&run, "http_req_duration")["count"], 40);

    // Closed model with a 300 ms timeout: requests time out one after the other; the ones in
    // flight at the end are cut.
    let (out, run) = d.run(&format!(
        "version: 1
name: hung
target: {{ base_url: \"http://{addr}\" }}
duration: 2s
users: 2
senders:
  - name: push
    timeout: 300ms
    steps:
      - post: \"{{{{base_url}}}}/push\"
        json: {{ user: u1 }}
"
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = run.expect("run.json");
    let reqs = metric(&run, "http_reqs")["value"].as_u64().unwrap();
    let timeouts = metric(
        &run,
        "http_errors{cause=timeout,journey=push,step=POST /push}",
    )["value"]
        .as_u64()
        .unwrap();
    let cut = run["metrics"]["http_errors{cause=unfinished,journey=push,step=POST /push}"]["value"]
        .as_u64()
        .unwrap_or(0);
    assert!(timeouts >= 4, "{run}");
    assert_eq!(
        timeouts + cut,
        reqs,
        "every request failed with its cause: {run}"
    );
    assert_eq!(
        metric(&run, "http_req_failed")["value"].as_u64(),
        Some(reqs)
    );
}

/// Plans far beyond this machine are refused at `check` with one line naming the field (exit
/// 2), and run with `--ignore-limits` only when asked.
#[test]
fn plans_beyond_the_machine_exit_2_at_check() {
    let d = Dir::new();
    for (field, line, expect) in [
        (
            "pool.connections",
            "    rate: { per_second: 10 }\n    pool: { connections: 100000000 }\n",
            "pool.connections",
        ),
        ("rate", "    rate: { per_second: 1e12 }\n", "rate"),
        ("users", "", "users"),
    ] {
        let users = if field == "users" {
            "users: 10000000\n"
        } else {
            ""
        };
        d.write(
            "s.yaml",
            &format!(
                "version: 1
name: huge
target: {{ base_url: \"http://127.0.0.1:9\" }}
duration: 10s
{users}senders:
  - name: push
{line}    steps:
      - get: \"{{{{base_url}}}}/stats\"
"
            ),
        );
        let started = Instant::now();
        let out = d.loadgen(&["check", "s.yaml"]);
        assert_eq!(out.status.code(), Some(2), "{field}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{field}: {err}");
        assert!(err.starts_with("error: s.yaml:"), "{field}: {err}");
        assert!(err.contains(expect), "{field}: {err}");
        assert!(err.contains("--ignore-limits"), "{field}: {err}");
        assert!(started.elapsed() < Duration::from_secs(10), "{field}");
        let out = d.loadgen(&["run", "s.yaml", "--out", "out", "--quiet"]);
        assert_eq!(out.status.code(), Some(2), "{field}: run refuses it too");
        assert!(d.run_record().is_none());
    }
    let out = d.loadgen(&["check", "s.yaml", "--ignore-limits"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `report merge A.json A.json` is refused: the counts would double.
#[test]
fn merging_the_same_run_twice_is_refused() {
    let d = Dir::new();
    let (out, _) = d.run(
        "version: 1
name: once
target: { embedded: gateway }
duration: 1s
senders:
  - name: stats
    rate: { per_second: 5 }
    steps:
      - get: \"{{base_url}}/stats\"
",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = d.run_record().unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    std::fs::copy(d.path().join("out/run.json"), d.path().join("a.json")).unwrap();
    let out = d.loadgen(&["report", "merge", "a.json", "a.json", "--output", "m.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: a.json: run `{id}` is already in the merge: merging it twice would count it twice")
    );
    assert!(!d.path().join("m.json").exists());
}
