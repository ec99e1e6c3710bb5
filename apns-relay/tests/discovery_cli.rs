//! The discovery paths of the `apns-relay` command with bad input, each one line and an exit
//! code, never a hang: an unreachable ensemble, a path with no instances, a malformed node, a
//! bad `[discovery]` or `apple.discovery` section; and the documented fallbacks (a relay that
//! cannot register still serves; `send` with a static `relay_url` uses it).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use testbed::apns::ApnsFaults;
use testkit::servers::ZooKeeper;

/// Runs `apns-relay ARGS`; returns (exit code, stdout, stderr) and checks it took < `within`.
fn run(args: &[&str], within: Duration) -> (Option<i32>, String, String) {
    let start = Instant::now();
    let out: Output = bin().args(args).output().unwrap();
    assert!(
        start.elapsed() < within,
        "{args:?} took {:?}",
        start.elapsed()
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `apns-relay send` of one push with `router` (a router.toml text, written to `dir`).
fn send(dir: &Path, router: &str) -> (Option<i32>, String, String) {
    let path = dir.join("router.toml");
    std::fs::write(&path, router).unwrap();
    let path = path.display().to_string();
    let device = device(1);
    run(
        &[
            "send", "--config", &path, "--vendor", "apple", "--to", &device, "--topic", TOPIC,
            "--title", "hi",
        ],
        Duration::from_secs(20),
    )
}

fn one_line(stderr: &str) -> &str {
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.trim_end()
}

fn router_toml(discovery: &str, relay_url: Option<&str>) -> String {
    format!(
        "retry_for = \"2s\"\n[apple]\nvia = \"relay\"\nrelay_token = \"{SENDER_TOKEN}\"\n{}discovery = {{ {discovery} }}\n",
        relay_url
            .map(|u| format!("relay_url = \"{u}\"\n"))
            .unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_and_send_say_what_is_wrong_in_one_line() {
    let zk = ZooKeeper::start();
    let hosts = zk.connect_string();
    let nowhere = testkit::net::private_addr().to_string();
    zk::create(&hosts, "/services/broken/n1", b"hello").await;
    zk::create(&hosts, "/services/empty", b"").await;
    let h = Harness::new(ApnsFaults::default()).await;
    let dir = h.dir.path();

    // discover: unreachable (2), no path (1), empty (1), malformed only (1), bad path (2).
    let (code, _, err) = run(
        &["discover", &nowhere, "/services/apns-relay"],
        Duration::from_secs(15),
    );
    assert_eq!(code, Some(2));
    assert!(
        one_line(&err).starts_with(&format!(
            "apns-relay: cannot reach the ZooKeeper ensemble `{nowhere}` within 5s"
        )),
        "{err}"
    );
    let (code, out, err) = run(
        &["discover", &hosts, "/services/none"],
        Duration::from_secs(15),
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(1), "(the path does not exist)\n")
    );
    assert_eq!(
        one_line(&err),
        "apns-relay: no instance of `/services/none` to use: the path does not exist"
    );
    let (code, out, err) = run(
        &["discover", &hosts, "/services/empty"],
        Duration::from_secs(15),
    );
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(
        one_line(&err),
        "apns-relay: no instance of `/services/empty` to use: the path has no children"
    );
    let (code, out, err) = run(
        &["discover", &hosts, "/services/broken"],
        Duration::from_secs(15),
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        "n1  malformed: not JSON: expected value at line 1 column 1\n"
    );
    assert_eq!(
        one_line(&err),
        "apns-relay: no instance of `/services/broken` to use: all 1 nodes are malformed (first: n1: not JSON: expected value at line 1 column 1)"
    );
    let (code, _, err) = run(&["discover", &hosts, "relays"], Duration::from_secs(15));
    assert_eq!(code, Some(2));
    assert_eq!(
        one_line(&err),
        "apns-relay: path: expected `/base/service` (node names: no empty, `.` or `..` segment), got `relays`"
    );

    // send with no static URL to fall back on: exit 2, one line.
    let quick = "connect_timeout = \"1s\"";
    let (code, _, err) = send(
        dir,
        &router_toml(
            &format!("ensemble = \"{nowhere}\", path = \"/services/apns-relay\", {quick}"),
            None,
        ),
    );
    assert_eq!(code, Some(2));
    assert!(
        one_line(&err).starts_with(&format!(
            "apns-relay: apple.discovery: cannot reach the ZooKeeper ensemble `{nowhere}` within 1s"
        )),
        "{err}"
    );
    for (path, why) in [
        ("/services/none", "the path does not exist"),
        ("/services/empty", "the path has no children"),
        (
            "/services/broken",
            "all 1 nodes are malformed (first: n1: not JSON: expected value at line 1 column 1)",
        ),
    ] {
        let (code, _, err) = send(
            dir,
            &router_toml(&format!("ensemble = \"{hosts}\", path = \"{path}\""), None),
        );
        assert_eq!(code, Some(2), "{path}: {err}");
        assert_eq!(
            one_line(&err),
            format!("apns-relay: apple.discovery: no instance of `{path}` to use: {why}")
        );
    }
    // Bad sections are refused before anything is asked of ZooKeeper.
    let (code, _, err) = send(
        dir,
        &router_toml(&format!("ensemble = \"{hosts}\", path = \"relays\""), None),
    );
    assert_eq!(code, Some(2));
    assert!(
        one_line(&err).ends_with(
            "router.toml: apple.discovery.path: expected `/base/service` (node names: no empty, `.` or `..` segment), got `relays`"
        ),
        "{err}"
    );
    let (code, _, err) = send(
        dir,
        &router_toml(
            &format!("ensemble = \"{hosts}\", path = \"/a/b\", balance = \"random\""),
            None,
        ),
    );
    assert_eq!(code, Some(2));
    assert!(one_line(&err).contains("router.toml:5:"), "{err}");
    assert!(err.contains("unknown variant `random`"), "{err}");
    let (code, _, err) = send(
        dir,
        &format!("[apple]\nvia = \"proxy\"\nproxy_url = \"http://127.0.0.1:1\"\ndiscovery = {{ ensemble = \"{hosts}\", path = \"/a/b\" }}\n"),
    );
    assert_eq!(code, Some(2));
    assert!(
        one_line(&err).ends_with(
            "router.toml: apple.discovery: relays are discovered only with via = \"relay\""
        ),
        "{err}"
    );

    // With a static relay_url: one line saying so, and the push goes there.
    let relay = h.start_relay("").await;
    let url = format!("http://{}", relay.relay_addr.unwrap());
    for discovery in [
        format!("ensemble = \"{nowhere}\", path = \"/services/apns-relay\", {quick}"),
        format!("ensemble = \"{hosts}\", path = \"/services/empty\""),
    ] {
        let (code, out, err) = send(dir, &router_toml(&discovery, Some(&url)));
        assert_eq!(code, Some(0), "{err}");
        assert!(out.starts_with("accepted status=200 path=relay"), "{out}");
        assert!(out.contains(&format!("relay={url}")), "{out}");
        let note = one_line(&err);
        assert!(
            note.starts_with("apns-relay: apple.discovery: ")
                && note.contains(&format!("; sending to apple.relay_url {url}")),
            "{note}"
        );
    }
    assert_eq!(h.mock.count(), 2);
    relay.shutdown().await;
}

#[test]
fn a_bad_discovery_section_is_one_line_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[relay]\nlisten = \"127.0.0.1:0\"\n[dedupe]\npath = \"d\"\n[discovery]\nensemble = \"127.0.0.1:2181\"\n";
    let cases = [
        (
            "sesion_timeout = \"4s\"\n",
            "relay.toml:7:1: unknown field `sesion_timeout`",
        ),
        (
            "session_timeout = \"4\"\n",
            "relay.toml:7:19: expected a duration such as `500us`",
        ),
        (
            "base_path = \"services\"\n",
            "relay.toml: discovery.base_path: must start with `/`, got `services`",
        ),
        (
            "id = \"a/b\"\n",
            "relay.toml: discovery.id: must be a node name (not empty, no `/`), got `a/b`",
        ),
    ];
    for (extra, want) in cases {
        std::fs::write(dir.path().join("relay.toml"), format!("{base}{extra}")).unwrap();
        let out = bin()
            .current_dir(dir.path())
            .args(["check", "--config", "relay.toml"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {err}");
        assert!(one_line(&err).contains(want), "{extra}: {err}");
    }
    let text = "[relay]\nlisten = \"0.0.0.0:8443\"\ntls = { cert = \"c\", key = \"k\" }\n[discovery]\nensemble = \"zk:2181\"\n";
    std::fs::write(dir.path().join("relay.toml"), text).unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["check", "--config", "relay.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_line(&String::from_utf8_lossy(&out.stderr)),
        "apns-relay: relay.toml: discovery.address: the listener binds 0.0.0.0 (every address): say which address senders reach this instance at"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_register_serves_and_says_so() {
    let h = Harness::new(ApnsFaults::default()).await;
    let nowhere = testkit::net::private_addr();
    let extra = format!(
        "[discovery]\nensemble = \"{nowhere}\"\nconnect_timeout = \"500ms\"\n[ops]\nlisten = \"127.0.0.1:0\"\n"
    );
    let config = h.path("relay.toml");
    std::fs::write(&config, h.relay_toml("127.0.0.1:0", &extra)).unwrap();
    let out = check_config(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("discovery: registers under /services/apns-relay in ZooKeeper `{nowhere}` as id <a new UUID per start>, at 127.0.0.1")),
        "{stdout}"
    );
    let (mut child, relay) = spawn_binary(&config);
    let ops = announced_ops(&mut child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let res = reqwest::get(format!("http://{ops}/healthz")).await.unwrap();
        assert_eq!(
            res.status().as_u16(),
            200,
            "unregistered is reported, not judged"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        if body["discovery"]["why"]
            .as_str()
            .is_some_and(|w| w.contains("cannot reach"))
        {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["discovery"]["registered"], false);
    // It serves senders that know its address.
    let router = h.router_via_relay(relay);
    let d = router.send(&notification(1)).await.unwrap();
    assert_eq!(d.outcome, "accepted");
    // And stops at once on SIGTERM (nothing to deregister).
    let status = child.stop(Duration::from_secs(15));
    assert!(status.success());
}
