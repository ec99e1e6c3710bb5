//! A target found through ZooKeeper (a real server from the test kit): two reference gateways
//! registered in Curator's format, the real `loadgen` binary following them — one removed
//! mid-run, the run goes on against the other and its record says the set changed — and the
//! bad inputs (an unreachable ensemble, a path with no instances, a malformed node, a bad
//! section), each one line and exit 2 from `check` and `run`.

mod common;

use std::time::{Duration, Instant};

use common::{metric, stderr, stdout, Dir};
use discovery::{Registration, ServiceInstance, ServicePath, ZkConfig};
use testbed::gateway::{GatewayConfig, GatewayHandle};
use testkit::servers::ZooKeeper;

const WAIT: Duration = Duration::from_secs(20);

/// A reference gateway of its own, registered under `/services/gateway` in `zk` with its HTTP
/// API as the `http` endpoint.
async fn registered_gateway(zk: &ZooKeeper) -> (GatewayHandle, Registration) {
    let gw = testbed::gateway::spawn(GatewayConfig::default())
        .await
        .unwrap();
    let mut instance = ServiceInstance::new("gateway", &gw.addr().ip().to_string())
        .with_endpoint("http", &gw.base_url());
    instance.port = Some(gw.addr().port());
    let config = ZkConfig {
        session_timeout: Duration::from_secs(2),
        ..ZkConfig::new(&zk.connect_string())
    };
    let path = ServicePath::new("/services", "gateway").unwrap();
    let reg = Registration::start(&config, &path, instance).await.unwrap();
    (gw, reg)
}

/// Waits until `cond` holds on `gw`'s request count.
async fn wait_requests(gw: &GatewayHandle, what: &str, cond: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond(gw.stats().requests) {
        assert!(Instant::now() < deadline, "{what}: {:?}", gw.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `gw` has had no request for `quiet` (its count stood still that long).
async fn wait_quiet(gw: &GatewayHandle, quiet: Duration) {
    let deadline = Instant::now() + WAIT;
    let (mut last, mut since) = (gw.stats().requests, Instant::now());
    while since.elapsed() < quiet {
        assert!(Instant::now() < deadline, "never quiet: {:?}", gw.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = gw.stats().requests;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

fn scenario(discovery: &str) -> String {
    format!(
        r#"version: 1
name: discovered
target:
  discovery: {discovery}
duration: 6s
senders:
  - name: broadcast
    rate: {{ per_second: 40 }}
    pool: {{ connections: 4 }}
    steps:
      - post: "{{{{base_url}}}}/broadcast"
        json: {{ body: "hi" }}
        expect: {{ status: 202 }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_follows_the_discovered_gateways_when_one_is_removed() {
    let zk = ZooKeeper::start();
    let (a, reg_a) = registered_gateway(&zk).await;
    let (b, _reg_b) = registered_gateway(&zk).await;
    let dir = Dir::new();
    let discovery = format!(
        "{{ ensemble: \"{}\", path: /services/gateway, endpoint: http }}",
        zk.connect_string()
    );
    dir.write("s.yaml", &scenario(&discovery));

    let check = dir.loadgen(&["check", "s.yaml"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let out = stdout(&check);
    let mut both = [a.base_url(), b.base_url()];
    both.sort();
    assert!(
        out.contains("target:   the instances of /services/gateway in ZooKeeper")
            && out.contains(&format!("2 instances take work: {}, {}", both[0], both[1])),
        "{out}"
    );

    let mut run =
        testkit::Spawned::start_stderr(dir.command(&["run", "s.yaml", "--out", "out", "--quiet"]));
    // Both gateways take requests for two seconds (two whole seconds of the gauge at 2); then
    // A leaves the list, goes quiet, and stops.
    wait_requests(&a, "A serves", |n| n >= 40).await;
    wait_requests(&b, "B serves", |n| n >= 40).await;
    reg_a.drain().await.unwrap();
    wait_quiet(&a, Duration::from_secs(1)).await;
    let served_by_a = a.stats().requests;
    let a_url = a.base_url();
    a.shutdown().await;
    let b_at_removal = b.stats().requests;
    let status = tokio::task::spawn_blocking(move || run.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        b.stats().requests > b_at_removal + 40,
        "the run went on against B"
    );

    let record = dir.run_record().expect("run.json");
    assert_eq!(
        metric(&record, "http_req_failed")["value"],
        0,
        "no request went to the removed gateway"
    );
    assert_eq!(metric(&record, "target_changes")["value"], 1);
    let level = metric(&record, "target_instances");
    assert_eq!(
        (&level["min"], &level["max"]),
        (&1.into(), &2.into()),
        "{level}"
    );
    let picks = |url: &str| {
        metric(&record, &format!("target_picks{{instance={url}}}"))["value"]
            .as_u64()
            .unwrap()
    };
    let (to_a, to_b) = (picks(&a_url), picks(&b.base_url()));
    assert_eq!(to_a, served_by_a, "every iteration picked for A reached A");
    assert!(to_b > to_a, "{to_a} to A, {to_b} to B");
    let meta = &record["meta"];
    assert_eq!(
        meta["target"],
        format!("zookeeper:{}/services/gateway", zk.connect_string())
    );
    let sets = meta["target_discovery"]["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{sets:?}");
    assert_eq!(sets[0]["instances"], serde_json::json!(both));
    assert_eq!(sets[1]["instances"], serde_json::json!([b.base_url()]));
    assert!(sets[1]["at_s"].as_f64().unwrap() > sets[0]["at_s"].as_f64().unwrap());
}

/// The only gateway leaves mid-run: the iterations after find no instance, each one an error
/// with its cause (none reaches the gone gateway), paced (a closed-model user without think
/// time does not spin), and the run still ends on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_last_gateway_leaves_counts_each_iteration_without_one() {
    let zk = ZooKeeper::start();
    let (a, reg) = registered_gateway(&zk).await;
    let dir = Dir::new();
    let discovery = format!(
        "{{ ensemble: \"{}\", path: /services/gateway, endpoint: http }}",
        zk.connect_string()
    );
    // Closed model, no think time: without a pause, a user that finds no instance would spin.
    let closed = scenario(&discovery)
        .replace("duration: 6s", "duration: 6s\nusers: 2")
        .replace(
            "    rate: { per_second: 40 }\n    pool: { connections: 4 }\n",
            "",
        );
    dir.write("s.yaml", &closed);
    let started = Instant::now();
    let mut run =
        testkit::Spawned::start_stderr(dir.command(&["run", "s.yaml", "--out", "out", "--quiet"]));
    wait_requests(&a, "A serves", |n| n >= 40).await;
    reg.drain().await.unwrap();
    wait_quiet(&a, Duration::from_secs(1)).await;
    let served = a.stats().requests;
    let status = tokio::task::spawn_blocking(move || run.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(status.code().is_some(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        a.stats().requests,
        served,
        "nothing reached the gone gateway"
    );

    let record = dir.run_record().expect("run.json");
    let missed = metric(
        &record,
        "http_errors{cause=no_instance,journey=broadcast,step=POST /broadcast}",
    )["value"]
        .as_u64()
        .unwrap();
    // Two users, each at most one iteration per 100 ms pause while the list is empty (< 6 s).
    assert!(
        (20..=2 * 60).contains(&missed),
        "{missed} iterations without an instance"
    );
    let picks = metric(
        &record,
        &format!("target_picks{{instance={}}}", a.base_url()),
    )["value"]
        .as_u64()
        .unwrap();
    assert_eq!(picks, served);
    assert_eq!(metric(&record, "target_changes")["value"], 1);
    assert_eq!(metric(&record, "target_instances")["min"], 0);
    let sets = record["meta"]["target_discovery"]["sets"]
        .as_array()
        .unwrap();
    assert_eq!(sets[1]["instances"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_discovery_input_is_one_line_and_exit_2() {
    let zk = ZooKeeper::start();
    let hosts = zk.connect_string();
    let nowhere = testkit::net::private_addr();
    let client = zookeeper_client::Client::connect(&hosts).await.unwrap();
    let persistent =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    client.mkdir("/services/empty", &persistent).await.unwrap();
    client.mkdir("/services/broken", &persistent).await.unwrap();
    client.mkdir("/services/other", &persistent).await.unwrap();
    client
        .create("/services/broken/n1", b"{\"id\":", &persistent)
        .await
        .unwrap();
    // An instance without the endpoint the scenario asks for.
    let mut plain = ServiceInstance::new("other", "127.0.0.1");
    plain.port = Some(1);
    client
        .create("/services/other/n1", &plain.to_json(), &persistent)
        .await
        .unwrap();
    drop(client);

    let dir = Dir::new();
    let cases = [
        (
            format!("{{ ensemble: \"{nowhere}\", path: /services/gateway, connect_timeout: 1s }}"),
            format!("error: target.discovery: cannot reach the ZooKeeper ensemble `{nowhere}` within 1s: "),
        ),
        (
            format!("{{ ensemble: \"{hosts}\", path: /services/none }}"),
            "error: target.discovery: no instance of `/services/none` to use: the path does not exist".to_string(),
        ),
        (
            format!("{{ ensemble: \"{hosts}\", path: /services/empty }}"),
            "error: target.discovery: no instance of `/services/empty` to use: the path has no children".to_string(),
        ),
        (
            format!("{{ ensemble: \"{hosts}\", path: /services/broken }}"),
            "error: target.discovery: no instance of `/services/broken` to use: all 1 nodes are malformed (first: n1: truncated JSON: EOF while parsing a value at line 1 column 6)".to_string(),
        ),
        (
            format!("{{ ensemble: \"{hosts}\", path: /services/other, endpoint: http }}"),
            "error: target.discovery: no instance of `/services/other` to use: ".to_string(),
        ),
    ];
    for (discovery, want) in &cases {
        dir.write("s.yaml", &scenario(discovery));
        for cmd in ["check", "run"] {
            let start = Instant::now();
            let args: &[&str] = match cmd {
                "check" => &["check", "s.yaml"],
                _ => &["run", "s.yaml", "--out", "out", "--quiet"],
            };
            let out = dir.loadgen(args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{cmd} {discovery}: {err}");
            let line = err.lines().last().unwrap_or_default();
            assert!(line.starts_with(want.as_str()), "{cmd} {discovery}: {err}");
            assert_eq!(
                err.lines().filter(|l| l.starts_with("error:")).count(),
                1,
                "{err}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{cmd} took {:?}",
                start.elapsed()
            );
        }
    }
    // The instance without the asked endpoint is named as such.
    dir.write(
        "s.yaml",
        &scenario(&format!(
            "{{ ensemble: \"{hosts}\", path: /services/other, endpoint: http }}"
        )),
    );
    let err = stderr(&dir.loadgen(&["check", "s.yaml"]));
    assert!(err.contains("1 instances have no `http` endpoint"), "{err}");

    // Sections serde or the checker refuse, located in the file.
    for (discovery, want) in [
        (
            format!("{{ ensemble: \"{hosts}\", path: relays }}"),
            "target.discovery.path: expected `/base/service` (node names: no empty, `.` or `..` segment), got `relays`",
        ),
        (
            format!("{{ ensemble: \"{hosts}\", path: /a/b, balance: random }}"),
            "unknown variant `random`, expected `round_robin` or `least_in_flight`",
        ),
        (
            format!("{{ ensemble: \"{hosts}\", path: /a/b, sesion_timeout: 2s }}"),
            "unknown field `sesion_timeout`",
        ),
    ] {
        dir.write("s.yaml", &scenario(&discovery));
        let out = dir.loadgen(&["check", "s.yaml"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: s.yaml:4:"), "{err}");
        assert!(err.contains(want), "{err}");
    }
    dir.write(
        "s.yaml",
        &scenario(&format!(
            "{{ ensemble: \"{hosts}\", path: /a/b }}\n  base_url: http://127.0.0.1:1"
        )),
    );
    let err = stderr(&dir.loadgen(&["check", "s.yaml"]));
    assert!(
        err.contains("target: expected exactly one of `embedded: gateway`, `base_url: URL` or `discovery: { ensemble, path }`"),
        "{err}"
    );
}

/// A `loadgen worker` under a real Locust master (2.47.0, installed by scripts/test.sh) follows
/// a discovered target as `loadgen run` does: its users pick an instance per iteration, and its
/// own record says the set changed when one gateway leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locust_worker_follows_the_discovered_gateways_too() {
    let cache = std::env::var("PUSHBENCH_LOCUST_DIR").map_or_else(
        |_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/pushbench")
        },
        std::path::PathBuf::from,
    );
    let locust_bin = cache.join("locust-2.47.0/bin/locust");
    assert!(
        locust_bin.exists(),
        "{locust_bin:?}: scripts/test.sh installs it"
    );
    let zk = ZooKeeper::start();
    let (a, reg_a) = registered_gateway(&zk).await;
    let (b, _reg_b) = registered_gateway(&zk).await;
    let dir = Dir::new();
    dir.write(
        "s.yaml",
        &format!(
            r#"version: 1
name: discovered
target:
  discovery: {{ ensemble: "{}", path: /services/gateway, endpoint: http }}
duration: 10m
users: 4
senders:
  - name: broadcast
    think: 50ms
    steps:
      - post: "{{{{base_url}}}}/broadcast"
        json: {{ body: "hi" }}
        expect: {{ status: 202 }}
"#,
            zk.connect_string()
        ),
    );
    let master_addr = testkit::net::private_addr();
    let plugin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/locust/locustfile.py");
    let mut master_cmd = std::process::Command::new(&locust_bin);
    master_cmd
        .current_dir(dir.path())
        .arg("-f")
        .arg(&plugin)
        .args(["--master", "--headless", "--expect-workers", "1"])
        .args(["--master-bind-host", &master_addr.ip().to_string()])
        .args(["--master-bind-port", &master_addr.port().to_string()])
        .args(["--users", "4", "--spawn-rate", "100", "--run-time", "8s"])
        .env("PUSHBENCH_SCENARIO", "s.yaml")
        .env("PUSHBENCH_LOADGEN", env!("CARGO_BIN_EXE_loadgen"))
        .env("PUSHBENCH_OUT", "out")
        .env("PUSHBENCH_WAIT", "30");
    let mut master = testkit::Spawned::start_stderr(master_cmd);
    let worker_args = ["worker", "--master", &master_addr.to_string(), "s.yaml"];
    let mut worker_cmd = dir.command(&worker_args);
    worker_cmd.args(["--out", "w1"]);
    let mut worker = testkit::Spawned::start_stderr(worker_cmd);

    wait_requests(&a, "A serves", |n| n >= 20).await;
    wait_requests(&b, "B serves", |n| n >= 20).await;
    reg_a.drain().await.unwrap();
    wait_quiet(&a, Duration::from_secs(1)).await;
    let b_at_removal = b.stats().requests;
    let (master_status, worker_status) = tokio::task::spawn_blocking(move || {
        let m = master.wait(Duration::from_secs(60));
        let text = master.lines().join("\n") + &master.rest().join("\n");
        let w = worker.wait(Duration::from_secs(60));
        (
            (m, text),
            (w, worker.lines().join("\n") + &worker.rest().join("\n")),
        )
    })
    .await
    .unwrap();
    assert_eq!(master_status.0.code(), Some(0), "{}", master_status.1);
    assert_eq!(worker_status.0.code(), Some(0), "{}", worker_status.1);
    assert!(
        b.stats().requests > b_at_removal + 20,
        "the run went on against B"
    );

    let text = std::fs::read_to_string(dir.path().join("w1/run.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(metric(&record, "http_req_failed")["value"], 0);
    assert_eq!(metric(&record, "target_changes")["value"], 1);
    let sets = record["meta"]["target_discovery"]["sets"]
        .as_array()
        .unwrap();
    assert_eq!(sets.len(), 2, "{sets:?}");
    assert_eq!(sets[1]["instances"], serde_json::json!([b.base_url()]));
    let to_a = metric(
        &record,
        &format!("target_picks{{instance={}}}", a.base_url()),
    )["value"]
        .as_u64()
        .unwrap();
    assert_eq!(
        to_a,
        a.stats().requests,
        "every iteration picked for A reached A"
    );
}
