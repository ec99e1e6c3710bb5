//! `loadgen worker` under real Locust masters from PyPI (2.47.0 and 2.20.0, installed by
//! scripts/test.sh), with deploy/locust/locustfile.py as the master's locustfile, two workers
//! on loopback, HTTP journeys and a device swarm against the reference gateway.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testbed::gateway::{self, GatewayConfig, GatewayHandle};
use testkit::process::Signal;
use testkit::Spawned;

fn locust(version: &str) -> PathBuf {
    let dir = std::env::var("PUSHBENCH_LOCUST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/pushbench")
        });
    let bin = dir.join(format!("locust-{version}/bin/locust"));
    assert!(
        bin.exists(),
        "{} is missing: scripts/test.sh installs it",
        bin.display()
    );
    bin
}

fn plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/locust/locustfile.py")
}

struct Gateway {
    _rt: tokio::runtime::Runtime,
    gw: GatewayHandle,
}

fn gateway() -> Gateway {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gw = rt
        .block_on(gateway::spawn(GatewayConfig::default()))
        .unwrap();
    Gateway { _rt: rt, gw }
}

/// Devices that say hello and ack pushes, a tracked unicast sender and a health sender.
const SCENARIO: &str = r#"version: 1
name: dist
target: { base_url: "${TARGET}" }
duration: 10m
users: 1
devices:
  - name: phones
    count: 20
    user: "phones-{{device.index}}"
    connect:
      dispatch: { get: "{{base_url}}/dispatch?user={{user}}", address: { json: /ws } }
    send_on_connect:
      - send: '{"type":"hello","user":"{{user}}","topics":["news"]}'
        expect: { json: /type, equals: welcome }
    push:
      match: { json: /type, equals: push }
      id: { json: /id }
      sent_at: { json: /sent_at_ns, unit: ns }
      ack: '{"type":"ack","id":"{{msg.id}}"}'
senders:
  - name: unicast
    think: 100ms
    steps:
      - name: push
        post: "{{base_url}}/push"
        json: { user: "{{random_device}}", id: "{{msg_id}}", sent_at_ns: "{{now_ns}}", body: "hi" }
        expect: { status: 202 }
        track: { unicast: "{{random_device}}", within: 2s }
  - name: health
    weight: 2
    think: 50ms
    steps:
      - name: healthz
        get: "{{base_url}}/healthz"
thresholds:
  http_req_failed: [ "rate < 1%" ]
"#;

/// A master and its workers in one temp folder.
struct Cluster {
    dir: Dir,
    target: String,
    master_addr: String,
}

impl Cluster {
    fn new(gw: &Gateway) -> Cluster {
        let dir = Dir::new();
        dir.write("s.yaml", SCENARIO);
        Cluster {
            dir,
            target: gw.gw.base_url(),
            master_addr: testkit::net::private_addr().to_string(),
        }
    }

    /// A headless master: `extra` flags after the common ones; `locustfiles` after the plugin.
    fn master(&self, version: &str, locustfiles: &[&str], extra: &[&str]) -> Spawned {
        let (ip, port) = self.master_addr.rsplit_once(':').unwrap();
        let mut files = plugin().display().to_string();
        for f in locustfiles {
            files.push(',');
            files.push_str(&self.dir.path().join(f).display().to_string());
        }
        let mut c = Command::new(locust(version));
        c.current_dir(self.dir.path())
            .args(["-f", &files, "--master", "--headless"])
            .args(["--master-bind-host", ip, "--master-bind-port", port])
            .args(extra)
            .env("TARGET", &self.target)
            .env("PUSHBENCH_SCENARIO", "s.yaml")
            .env("PUSHBENCH_LOADGEN", env!("CARGO_BIN_EXE_loadgen"))
            .env("PUSHBENCH_OUT", "out")
            .env("PUSHBENCH_WAIT", "30");
        Spawned::start_stderr(c)
    }

    /// A headless master of `version` for `workers` workers running `users` users (spawned
    /// at 100/s) for `run_time`; `extra` flags after those.
    fn headless(
        &self,
        version: &str,
        workers: &str,
        users: &str,
        run_time: &str,
        extra: &[&str],
    ) -> Spawned {
        let flags = [
            "--expect-workers",
            workers,
            "--users",
            users,
            "--spawn-rate",
            "100",
        ];
        let flags = [&flags[..], &["--run-time", run_time], extra].concat();
        self.master(version, &[], &flags)
    }

    fn worker(&self, name: &str, scenario: &str, extra: &[&str]) -> Spawned {
        let mut c = self
            .dir
            .command(&["worker", "--master", &self.master_addr, scenario]);
        c.args(["--out", name])
            .args(extra)
            .env("TARGET", &self.target);
        Spawned::start_stderr(c)
    }

    /// `loadgen ARGS` in the folder, with the scenario's TARGET set.
    fn loadgen(&self, args: &[&str]) -> std::process::Output {
        self.dir
            .command(args)
            .env("TARGET", &self.target)
            .output()
            .unwrap()
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.path().join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }
}

/// Waits for a worker to end and checks its exit code, showing what it printed otherwise.
fn assert_exit(w: &mut Spawned, code: i32) {
    ends_with(w, code);
}

/// Waits for a worker to end with `code`; what it printed.
fn ends_with(w: &mut Spawned, code: i32) -> String {
    let status = w.wait(Duration::from_secs(60));
    let out = w.lines().join("\n") + &w.rest().join("\n");
    assert_eq!(status.code(), Some(code), "worker: {out}");
    out
}

/// The worker's client id from its "connected … as worker N (ID)" line.
fn client_id(w: &mut Spawned) -> String {
    w.wait_for(Duration::from_secs(60), |l| {
        l.strip_prefix("connected to the Locust master")
            .and_then(|r| r.rsplit_once('('))
            .map(|(_, id)| id.trim_end_matches(')').to_string())
    })
}

/// Every metric of `a` equals `b`'s: counters and gauges by value, histograms bucket by bucket
/// (decoded: two encodings of one histogram may differ in their bytes).
fn assert_same_numbers(a: &reports::Run, b: &reports::Run) {
    assert_eq!(
        a.metrics.keys().collect::<Vec<_>>(),
        b.metrics.keys().collect::<Vec<_>>()
    );
    for key in a.metrics.keys() {
        match (a.histogram(key).unwrap(), b.histogram(key).unwrap()) {
            (Some(x), Some(y)) => {
                let buckets = |h: &hdrhistogram::Histogram<u64>| -> Vec<(u64, u64)> {
                    h.iter_recorded()
                        .map(|v| (v.value_iterated_to(), v.count_at_value()))
                        .collect()
                };
                assert_eq!(buckets(&x), buckets(&y), "{key}");
            }
            _ => assert_eq!(a.metrics[key], b.metrics[key], "{key}"),
        }
    }
}

fn load(path: &Path) -> reports::Run {
    reports::Run::from_json_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn two_workers_follow_the_masters_counts_up_and_down_and_merge_exactly() {
    let gw = gateway();
    let c = Cluster::new(&gw);
    // 30 users (20 devices, the fixed count, and 10 senders), then 12 (devices only).
    c.dir.write(
        "shape.py",
        "from locust import LoadTestShape\n\nclass Steps(LoadTestShape):\n    def tick(self):\n        t = self.get_run_time()\n        if t < 5:\n            return (30, 100)\n        if t < 9:\n            return (12, 100)\n        return None\n",
    );
    let mut master = c.master(
        "2.47.0",
        &["shape.py"],
        &["--expect-workers", "2", "--csv", "locust"],
    );
    let mut w1 = c.worker("w1", "s.yaml", &[]);
    let mut w2 = c.worker("w2", "s.yaml", &[]);
    let status = master.wait(Duration::from_secs(90));
    let log = master.lines().join("\n") + &master.rest().join("\n");
    assert_eq!(status.code(), Some(0), "master: {log}");
    assert_exit(&mut w1, 0);
    assert_exit(&mut w2, 0);
    // The master saw the counts go up and down, as the workers reported them.
    assert!(log.contains(r#""phones": 20"#), "{log}");
    assert!(log.contains(r#""phones": 12"#), "{log}");

    // The merged record is the merge of the workers' own records, bucket for bucket.
    let merged = load(&c.dir.path().join("out/run/run.json"));
    let out = c.dir.loadgen(&[
        "report",
        "merge",
        "w1/run.json",
        "w2/run.json",
        "-o",
        "own.json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_numbers(&merged, &load(&c.dir.path().join("own.json")));
    let meta = merged.meta.as_ref().unwrap();
    assert_eq!(meta["distributed"]["workers"].as_array().unwrap().len(), 2);
    // The plugin gave each worker its share: half the devices each, so each planned 10.
    let mut shares: Vec<String> = ["w1/run.json", "w2/run.json"]
        .iter()
        .map(|f| {
            c.json(f)["meta"]["worker_share"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    shares.sort();
    assert_eq!(shares, ["0/2", "1/2"]);
    assert!(meta["distributed"]["missing"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(
        merged.thresholds.iter().all(|v| v.ok),
        "{:?}",
        merged.thresholds
    );

    // Devices: 20 connected, then 8 of them closed when the count went down to 12.
    let run = c.json("out/run/run.json");
    assert_eq!(metric(&run, "connections_opened")["value"], 20);
    let active: Vec<u64> = run["series"]["connections_active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["gauge"].as_u64().unwrap())
        .collect();
    let top = active.iter().position(|&g| g == 20).expect("20 devices up");
    assert!(active[top..].contains(&12), "{active:?}");
    assert!(metric(&run, "delivery_received")["value"].as_u64().unwrap() > 0);
    assert_eq!(metric(&run, "delivery_lost")["value"], 0);

    // Locust's own CSV shows the HTTP steps, the device connects and deliveries.
    let csv = std::fs::read_to_string(c.dir.path().join("locust_stats.csv")).unwrap();
    let row = |kind: &str, name: &str| -> u64 {
        let line = csv
            .lines()
            .find(|l| l.starts_with(&format!("{kind},{name},")))
            .unwrap_or_else(|| panic!("no {kind} {name} row in {csv}"));
        line.split(',').nth(2).unwrap().parse().unwrap()
    };
    assert_eq!(row("WS", "phones: connect"), 20);
    let pushes = row("POST", "unicast: push");
    assert_eq!(pushes, metric(&run, "http_reqs{journey=unicast}")["value"]);
    assert_eq!(
        row("DELIVERY", "unicast"),
        metric(&run, "delivery_received")["value"].as_u64().unwrap()
    );
    assert!(row("GET", "health: healthz") > 0);
}

/// `POST path` with a JSON body to the gateway; the response's status code.
fn post(gw: &Gateway, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.gw.addr()).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn three_workers_run_the_device_indices_one_loadgen_would() {
    let gw = gateway();
    let c = Cluster::new(&gw);
    // 10 devices over 3 workers: Locust gives them 4, 3 and 3; the plugin's first place is
    // the worker its dispatcher gives the fourth, so the stripes 0,3,6,9 / 1,4,7 / 2,5,8 are
    // devices 0…9, as one loadgen would run them.
    // Devices only: no HTTP requests for `http_req_failed` to gate on.
    let text = SCENARIO
        .replace("count: 20", "count: 10")
        .replace("thresholds:\n  http_req_failed: [ \"rate < 1%\" ]\n", "");
    c.dir.write("s.yaml", &text);
    let mut master = c.headless("2.47.0", "3", "10", "8s", &[]);
    let mut workers: Vec<Spawned> = (1..=3)
        .map(|i| c.worker(&format!("w{i}"), "s.yaml", &[]))
        .collect();
    testkit::wait::until(Duration::from_secs(40), "10 devices joined", || {
        gw.gw.stats().joined == 10
    });
    let pushed = |user: &str| post(&gw, "/push", &format!(r#"{{"user":"{user}","body":"x"}}"#));
    for i in 0..10 {
        assert_eq!(
            pushed(&format!("phones-{i}")),
            202,
            "phones-{i} is connected"
        );
    }
    assert_eq!(pushed("phones-10"), 404, "no device past the plan");
    let status = master.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0));
    let mut shares: Vec<String> = Vec::new();
    for (i, w) in workers.iter_mut().enumerate() {
        assert_exit(w, 0);
        let run = c.json(&format!("w{}/run.json", i + 1));
        shares.push(run["meta"]["worker_share"].as_str().unwrap().to_string());
    }
    shares.sort();
    assert_eq!(shares, ["0/3", "1/3", "2/3"]);
}

#[test]
fn a_broadcast_is_judged_on_every_workers_devices() {
    let gw = gateway();
    let c = Cluster::new(&gw);
    // One broadcast user (on one worker), one health user, and the devices on both.
    let broadcast = "  - name: unicast\n    think: 1s\n    steps:\n      - name: push\n        post: \"{{base_url}}/broadcast\"\n        json: { id: \"{{msg_id}}\", sent_at_ns: \"{{now_ns}}\", body: \"all\" }\n        expect: { status: 202 }\n        track: { broadcast: true, within: 2s }\n";
    let start = SCENARIO.find("  - name: unicast").unwrap();
    let end = SCENARIO.find("  - name: health").unwrap();
    let text = format!("{}{broadcast}{}", &SCENARIO[..start], &SCENARIO[end..])
        .replace(
            "    weight: 2\n    think: 50ms",
            "    weight: 1\n    think: 1s",
        )
        // A worker without HTTP users has no `http_req_failed` to gate its own record on.
        .replace("thresholds:\n  http_req_failed: [ \"rate < 1%\" ]\n", "");
    c.dir.write("s.yaml", &text);
    let mut master = c.headless("2.47.0", "2", "22", "8s", &[]);
    let mut w1 = c.worker("w1", "s.yaml", &[]);
    let mut w2 = c.worker("w2", "s.yaml", &[]);
    let status = master.wait(Duration::from_secs(90));
    let log = master.lines().join("\n") + &master.rest().join("\n");
    assert_eq!(status.code(), Some(0), "master: {log}");
    assert_exit(&mut w1, 0);
    assert_exit(&mut w2, 0);
    // Both workers judged their devices on the broadcasts, though one of them sent them all.
    for w in ["w1", "w2"] {
        let own = c.json(&format!("{w}/run.json"));
        let expected = metric(&own, "delivery_expected{journey=unicast}")["value"]
            .as_u64()
            .unwrap();
        assert!(expected >= 10, "{w}: {expected}");
        assert_eq!(metric(&own, "delivery_unexpected")["value"], 0, "{w}");
    }
    let run = c.json("out/run/run.json");
    let sent = metric(&run, "http_reqs{journey=unicast}")["value"]
        .as_u64()
        .unwrap();
    assert!(sent >= 3, "{sent} broadcasts");
    let received = metric(&run, "delivery_received")["value"].as_u64().unwrap();
    assert_eq!(metric(&run, "delivery_lost")["value"], 0);
    assert_eq!(
        received,
        metric(&run, "delivery_expected")["value"].as_u64().unwrap()
    );
    // Every device of both workers was judged on every settled broadcast: received it, or
    // was not connected yet when it was sent (the workers reach the master's count over a
    // second), which is not verifiable, never lost.
    let unverifiable = metric(&run, "delivery_unverifiable")["value"]
        .as_u64()
        .unwrap();
    assert_eq!(
        (received + unverifiable) % 20,
        0,
        "{received} + {unverifiable}"
    );
    // Only the broadcasts of the ramp's first second or so found devices not yet connected.
    assert!(
        unverifiable <= 2 * 20 && unverifiable < received,
        "{unverifiable}"
    );
}

#[test]
fn a_worker_killed_mid_run_is_noticed_and_its_missing_share_named() {
    let gw = gateway();
    let c = Cluster::new(&gw);
    // With rebalancing the master gives the lost worker's users to the other one, which
    // planned its own share of the devices only.
    let mut master = c.headless("2.47.0", "2", "30", "12s", &["--enable-rebalancing"]);
    let mut w1 = c.worker("w1", "s.yaml", &[]);
    let mut w2 = c.worker("w2", "s.yaml", &[]);
    let killed = client_id(&mut w2);
    // Killed once the master holds some of its samples.
    let log = c.dir.path().join(format!("out/run/workers/{killed}.jsonl"));
    testkit::wait::until(Duration::from_secs(30), "the worker's first delta", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 2)
    });
    w2.kill();
    let status = master.wait(Duration::from_secs(90));
    let text = master.lines().join("\n") + &master.rest().join("\n");
    assert_eq!(status.code(), Some(1), "a missing share exits 1: {text}");
    assert!(
        text.contains(&format!(
            "Worker {killed} failed to send heartbeat, setting state to missing"
        )),
        "{text}"
    );
    assert_exit(&mut w1, 0);
    let run = c.json("out/run/run.json");
    let missing = run["meta"]["distributed"]["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].as_str().unwrap().contains(&killed),
        "{missing:?}"
    );
    // What the killed worker measured until its last report is in the record.
    let reqs = metric(&run, "http_reqs")["value"].as_u64().unwrap();
    let own = c.json("w1/run.json");
    assert!(reqs > own["metrics"]["http_reqs"]["value"].as_u64().unwrap());
    // Asked for all 20 devices after the rebalance, the survivor held its 10 and recorded
    // the other 10 as unplaced.
    let unplaced = &own["metrics"]["devices_unplaced{journey=phones}"];
    assert_eq!(unplaced["max"], 10, "{unplaced}");
    assert_eq!(own["metrics"]["connections_opened"]["value"], 10);
}

#[test]
fn workers_stop_and_write_their_slice_when_the_master_is_killed() {
    let gw = gateway();
    let c = Cluster::new(&gw);
    let mut master = c.headless("2.47.0", "2", "30", "60s", &[]);
    let timeout = ["--heartbeat-timeout", "2s"];
    let mut w1 = c.worker("w1", "s.yaml", &timeout);
    let mut w2 = c.worker("w2", "s.yaml", &timeout);
    for w in [&mut w1, &mut w2] {
        w.wait_for(Duration::from_secs(60), |l| {
            l.contains("run 1 started").then_some(())
        });
    }
    master.kill();
    for (w, dir) in [(&mut w1, "w1"), (&mut w2, "w2")] {
        // 2 s of silence, then the drain: in-flight requests and 2 s delivery deadlines.
        let status = w.wait(Duration::from_secs(30));
        assert_eq!(status.code(), Some(1));
        let err = w.lines().join("\n") + &w.rest().join("\n");
        assert!(
            err.contains(&format!(
                "error: no heartbeat from the master at {} for 2s: stopped",
                c.master_addr
            )),
            "{err}"
        );
        let run = c.json(&format!("{dir}/run.json"));
        assert!(
            metric(&run, "connections_opened")["value"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert!(run["meta"]["stopped_early"]
            .as_str()
            .unwrap()
            .contains("no heartbeat from the master"));
    }
}

#[test]
fn the_oldest_supported_master_2_20_runs_workers_too() {
    let gw = gateway();
    let c = Cluster::new(&gw);
    let mut master = c.headless("2.20.0", "2", "26", "6s", &[]);
    let mut w1 = c.worker("w1", "s.yaml", &[]);
    let mut w2 = c.worker("w2", "s.yaml", &[]);
    let status = master.wait(Duration::from_secs(90));
    let text = master.lines().join("\n") + &master.rest().join("\n");
    assert_eq!(status.code(), Some(0), "{text}");
    assert_exit(&mut w1, 0);
    assert_exit(&mut w2, 0);
    let merged = load(&c.dir.path().join("out/run/run.json"));
    let out = c.dir.loadgen(&[
        "report",
        "merge",
        "w1/run.json",
        "w2/run.json",
        "-o",
        "own.json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_numbers(&merged, &load(&c.dir.path().join("own.json")));
    let run = c.json("out/run/run.json");
    assert_eq!(metric(&run, "connections_opened")["value"], 20);
}

#[test]
fn a_class_the_scenario_does_not_have_is_bad_input() {
    let gw = gateway();
    let c = Cluster::new(&gw);
    // The worker's scenario has no `health` journey; the master's has.
    c.dir.write(
        "w.yaml",
        &SCENARIO.replace(
            "  - name: health\n    weight: 2",
            "  - name: other\n    weight: 2",
        ),
    );
    let mut master = c.headless("2.47.0", "1", "25", "20s", &[]);
    let err = ends_with(&mut c.worker("w", "w.yaml", &[]), 2);
    assert!(
        err.lines().any(|l| l
            == "error: the master asked for user class `health`, which w.yaml does not have (its classes: unicast, other, phones)"),
        "{err}"
    );
    // The worker told the master (an exception, then quit): the master stops as its last
    // worker quit, and exits 1 as Locust does after a worker's exception.
    let status = master.wait(Duration::from_secs(60));
    let text = master.lines().join("\n") + &master.rest().join("\n");
    assert!(
        text.contains("The last worker quit, stopping test."),
        "{text}"
    );
    assert_eq!(status.code(), Some(1), "{text}");
}

#[test]
fn a_worker_checks_its_share_against_the_machine_when_its_run_starts() {
    let gw = gateway();
    let c = Cluster::new(&gw);
    // A hundred million devices: more memory than this machine has, for a worker's share
    // as for one process. The worker starts (its share is not known before the master's
    // plugin says it) and refuses at the run's start, naming the field.
    c.dir
        .write("s.yaml", &SCENARIO.replace("count: 20", "count: 100000000"));
    let mut master = c.headless("2.47.0", "1", "1", "20s", &[]);
    let err = ends_with(&mut c.worker("w", "s.yaml", &[]), 2);
    assert!(
        err.contains("this run: worker share 0/1 (from the master's plugin)"),
        "{err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("s.yaml:")
            && line.contains("100000000 device connections")
            && line.ends_with("use --ignore-limits to run it anyway"),
        "{line}"
    );
    let _ = master.wait(Duration::from_secs(60));
}

#[test]
fn masters_that_are_not_locust_or_speak_another_protocol_are_bad_input() {
    let gw = gateway();
    let c = Cluster::new(&gw);
    // An HTTP server where the master should be.
    let http = gw.gw.base_url().trim_start_matches("http://").to_string();
    let out = c.loadgen(&[
        "worker",
        "--master",
        &http,
        "s.yaml",
        "--connect-timeout",
        "5s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: {http} does not speak ZeroMQ (Codec Error: Bad first byte of greeting): is it a Locust master's port (--master-bind-port, 5557 by default)?")
    );
    // A ZeroMQ ROUTER (pyzmq, as Locust's) acknowledging as Locust before 2.11 did: no index.
    c.dir.write(
        "old.py",
        "import sys, zmq, msgpack\ns = zmq.Context().socket(zmq.ROUTER)\nport = s.bind_to_random_port('tcp://127.0.0.1')\nprint(port, flush=True)\nident, frame = s.recv_multipart()\nkind, data, node = msgpack.loads(frame)\ns.send_multipart([ident, msgpack.dumps(('ack', None, node))])\ns.poll(10000)\n",
    );
    let python = locust("2.47.0").with_file_name("python");
    let mut old = Spawned::start({
        let mut cmd = Command::new(python);
        cmd.arg(c.dir.path().join("old.py"));
        cmd
    });
    let port = old.wait_for(Duration::from_secs(20), |l| l.trim().parse::<u16>().ok());
    let addr = format!("127.0.0.1:{port}");
    let out = c.loadgen(&["worker", "--master", &addr, "s.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: {addr} speaks an older Locust protocol (its ack carries no worker index: Locust before 2.11); this worker speaks Locust 2.20 to 2.47's")
    );
    // Nothing listening: the connect timeout.
    let out = c.loadgen(&[
        "worker",
        "--master",
        "127.0.0.1:1",
        "s.yaml",
        "--connect-timeout",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: no Locust master answered at 127.0.0.1:1 within 1s"));
    // Bad flags name themselves.
    let out = c.loadgen(&["worker", "--master", "m:port", "s.yaml"]);
    assert_eq!(
        stderr(&out).trim(),
        "error: --master `m:port`: expected HOST:PORT such as 127.0.0.1:5557"
    );
    let out = c.loadgen(&[
        "worker",
        "--master",
        "m:1",
        "s.yaml",
        "--heartbeat-timeout",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --heartbeat-timeout: "),
        "{}",
        stderr(&out)
    );
    old.signal(Signal::SIGTERM);
}
