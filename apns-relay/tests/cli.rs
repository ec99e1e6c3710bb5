//! The `apns-relay` command: config errors are one line naming the place, exit 2; `send`
//! pushes through a real relay and prints the outcome; `serve` drains on SIGTERM.

mod common;

use std::process::Command;

use common::*;
use testbed::apns::ApnsFaults;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apns-relay"))
}

#[test]
fn config_errors_are_one_located_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[relay]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n",
            "relay.toml:3:1: unknown field `lisen`",
        ),
        (
            "[relay]\nlisten = \"nowhere\"\n",
            "relay.toml:2:10: invalid socket address syntax",
        ),
        (
            "[relay]\nlisten = \"0.0.0.0:8443\"\n",
            "relay.toml: relay.tls: plain h2c is only allowed on a loopback address",
        ),
        (
            "[ops]\nlisten = \"127.0.0.1:0\"\n",
            "relay.toml: relay: neither [relay] nor [proxy] is configured",
        ),
    ];
    for (text, want) in cases {
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, text).unwrap();
        for cmd in ["check", "serve"] {
            let out = bin()
                .current_dir(dir.path())
                .args([cmd, "--config", "relay.toml"])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {text:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{cmd}: {err}");
            assert!(err.contains(want), "{cmd}: {err}");
        }
    }
    let out = bin()
        .args(["check", "--config", "/nonexistent/relay.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/relay.toml: cannot read"));
}

#[test]
fn a_missing_key_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        "[relay]\nlisten = \"127.0.0.1:0\"\n[apns]\ntoken = { key = \"missing.p8\", key_id = \"K\", team_id = \"T\" }\n[dedupe]\npath = \"d\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.p8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_pushes_through_the_relay_binary_and_sigterm_drains() {
    let h = Harness::new(ApnsFaults {
        latency_ms: 200,
        ..ApnsFaults::default()
    })
    .await;
    let config = h.path("relay.toml");
    std::fs::write(&config, h.relay_toml("127.0.0.1:0", "")).unwrap();
    let (mut child, addr) = spawn_binary(&config);
    let router = h.path("router.toml");
    std::fs::write(&router, format!("[apple]\nvia = \"relay\"\nrelay_url = \"http://{addr}\"\nrelay_token = \"{SENDER_TOKEN}\"\n")).unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let send = {
        let router = router.clone();
        move |id: &str| {
            bin()
                .args(["send", "--config"])
                .arg(&router)
                .args([
                    "--vendor",
                    "apple",
                    "--to",
                    &device(1),
                    "--topic",
                    TOPIC,
                    "--title",
                    "Hi",
                    "--body",
                    "there",
                ])
                .args(["--apns-id", id])
                .output()
                .unwrap()
        }
    };
    let out = tokio::task::spawn_blocking({
        let id = id.clone();
        move || send(&id)
    });
    // SIGTERM while that push waits on APNs's 200 ms: the relay drains it before exiting.
    assert!(
        h.mock
            .wait_for_count(1, std::time::Duration::from_secs(20))
            .await
    );
    child.signal(testkit::process::Signal::SIGTERM);
    let out = out.await.unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        line.starts_with(&format!(
            "accepted status=200 path=relay attempts=1 apns-id={id}"
        )),
        "{line}"
    );
    assert!(
        child.wait(std::time::Duration::from_secs(20)).success(),
        "serve exits 0 after draining"
    );
    let n = h.mock.notifications();
    assert_eq!(n.len(), 1);
    let bad = bin()
        .args(["send", "--config"])
        .arg(&router)
        .args(["--vendor", "nokia", "--to", "aa"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_shipped_sample_configs_are_valid() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let out = bin()
        .args(["check", "--config"])
        .arg(deploy.join("relay.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    apns_relay::config::RouterConfig::load(&deploy.join("router.toml")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_pushes_to_each_vendor_direct_and_a_push_it_cannot_express_exits_2() {
    let stand_ins = common::vendors::StandIns::start().await;
    let dir = tempfile::tempdir().unwrap();
    let router = dir.path().join("router.toml");
    std::fs::write(
        &router,
        format!(
            "{}\n[apple]\nvia = \"relay\"\nrelay_url = \"http://127.0.0.1:9\"\n",
            stand_ins.router_toml(dir.path())
        ),
    )
    .unwrap();
    for v in ["fcm", "huawei", "xiaomi", "vivo", "oppo"] {
        let router = router.clone();
        let out = tokio::task::spawn_blocking(move || {
            bin()
                .args(["send", "--config"])
                .arg(&router)
                .args([
                    "--vendor", v, "--to", "device-1", "--title", "Hi", "--body", "there",
                ])
                .args(["--data", r#"{"order":"42"}"#])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{v}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.starts_with("accepted status=200 path=direct attempts=1"),
            "{v}: {text}"
        );
        assert!(text.contains("message-id="), "{v}: {text}");
        let pushed = stand_ins.log(v).pushes();
        assert_eq!(pushed.len(), 1, "{v}");
        assert_eq!(
            (pushed[0].title.as_str(), pushed[0].body.as_str()),
            ("Hi", "there"),
            "{v}"
        );
        assert!(pushed[0].data.contains("42"), "{v}: {:?}", pushed[0]);
    }
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["send", "--config"])
            .arg(&router)
            .args(["--vendor", "oppo", "--to", "device-1", "--body", "no title"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "apns-relay: oppo: a notification needs a non-empty title and body"
    );
}
