//! The `apns-relay` command: config errors are one line naming the place, exit 2; `send`
//! pushes through a real relay and prints the outcome; `serve` drains on SIGTERM.

mod common;

use common::*;
use testbed::apns::ApnsFaults;

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
    let out = check_config(std::path::Path::new("/nonexistent/relay.toml"));
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
    // `check` opens every file the sample names: give it those files, under a temporary root.
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let ca = testbed::pki::CertificateAuthority::new("sample CA").unwrap();
    let server = ca.issue_server(&["relay.example"]).unwrap();
    let key = |id: &str| testbed::pki::ProviderKey::generate(id).unwrap().to_p8_pem();
    for (name, text) in [
        ("relay.crt", server.cert_pem.clone()),
        ("relay.key", server.key_pem.clone()),
        ("proxy.crt", server.cert_pem.clone()),
        ("proxy.key", server.key_pem.clone()),
        ("senders-ca.pem", ca.cert_pem().to_string()),
        ("AuthKey_ABC123DEFG.p8", key("ABC123DEFG")),
        ("AuthKey_XYZ987WXYZ.p8", key("XYZ987WXYZ")),
    ] {
        std::fs::write(etc.join(name), text).unwrap();
    }
    let sample = std::fs::read_to_string(deploy.join("relay.toml"))
        .unwrap()
        .replace("/etc/apns-relay/", &format!("{}/", etc.display()))
        .replace(
            "/var/lib/apns-relay/",
            &format!("{}/var/", root.path().display()),
        );
    let config = root.path().join("relay.toml");
    std::fs::write(&config, sample).unwrap();
    let out = check_config(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "proxy: TLS listener on 0.0.0.0:3128: required, Basic credentials (cn-backend)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("discovery: registers under /services/apns-relay in ZooKeeper `zk1.example.com:2181,zk2.example.com:2181,zk3.example.com:2181` as id <a new UUID per start>, at relay-1.us-west.example.com"),
        "{stdout}"
    );
    assert!(!root.path().join("var").exists(), "check created nothing");
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

/// Runs `apns-relay check` on `text` written as `relay.toml` in `dir`: (exit code, stdout,
/// stderr).
fn check(dir: &std::path::Path, text: &str) -> (Option<i32>, String, String) {
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    let out = check_config(&path);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_opens_every_file_and_names_the_field_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let ca = testbed::pki::CertificateAuthority::new("CA").unwrap();
    let server = ca.issue_server(&["localhost"]).unwrap();
    std::fs::write(dir.path().join("ok.crt"), &server.cert_pem).unwrap();
    std::fs::write(dir.path().join("ok.key"), &server.key_pem).unwrap();
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("a-file"), "").unwrap();
    let key = testbed::pki::ProviderKey::generate("K1").unwrap();
    std::fs::write(dir.path().join("ok.p8"), key.to_p8_pem()).unwrap();
    let relay = "[relay]\nlisten = \"127.0.0.1:0\"\n";
    let token = "token = { key = \"ok.p8\", key_id = \"K1\", team_id = \"T1\" }\n";
    let bearer = "[[senders]]\nname = \"s\"\nbearer_token = \"t\"\n";
    let cases = [
        (
            format!("{relay}[apns]\ntoken = {{ key = \"missing.p8\", key_id = \"K\", team_id = \"T\" }}\n{bearer}"),
            format!("relay.toml: apns.token.key: {d}/missing.p8: "),
        ),
        (
            format!("{relay}[apns]\nca = \"none.pem\"\n{token}{bearer}"),
            format!("relay.toml: apns.ca: {d}/none.pem: "),
        ),
        (
            format!("{relay}tls = {{ cert = \"garbage.pem\", key = \"ok.key\" }}\n[apns]\n{token}{bearer}"),
            format!("relay.toml: relay.tls.cert: {d}/garbage.pem: no certificate in the file"),
        ),
        (
            format!("{relay}tls = {{ cert = \"ok.crt\", key = \"ok.key\", client_ca = \"nope.pem\" }}\n[apns]\n{token}{bearer}"),
            format!("relay.toml: relay.tls.client_ca: {d}/nope.pem: "),
        ),
        (
            format!("{relay}[apns]\ncertificate = {{ cert = \"ok.crt\", key = \"absent.key\" }}\n{bearer}"),
            format!("relay.toml: apns.certificate.key: {d}/absent.key: "),
        ),
        (
            format!("{relay}[apns]\n{token}[[senders]]\nname = \"x\"\nteam_id = \"T2\"\nkeys = [{{ key_id = \"K2\", p8 = \"x.p8\" }}]\n"),
            format!("relay.toml: senders[0] (x).keys[0].p8: {d}/x.p8: "),
        ),
        (
            format!("{relay}[apns]\n{token}[dedupe]\npath = \"a-file/dedupe\"\n{bearer}"),
            format!("relay.toml: dedupe.path: {d}/a-file: not a directory"),
        ),
        (
            format!("{relay}[apns]\n{token}[[senders]]\nname = \"x\"\nkeys = [{{ key_id = \"K2\", p8 = \"ok.p8\" }}]\n"),
            "relay.toml: senders[0] (x): keys need the sender's team_id".into(),
        ),
        (
            format!("{relay}[apns]\n{token}[[senders]]\nname = \"x\"\nteam_id = \"T\"\nkeys = [{{ key_id = \"K2\", p8 = \"ok.p8\", public_key = \"k.pem\" }}]\n"),
            "relay.toml: senders[0] (x).keys[0] (K2): give exactly one of p8".into(),
        ),
        (
            "[proxy]\nlisten = \"0.0.0.0:3128\"\n[[senders]]\nname = \"cn\"\nproxy_password = \"pw\"\n".to_string(),
            "relay.toml: proxy.tls: a plain proxy listener off loopback would carry the Basic \
             credentials of cn in clear across the border"
                .into(),
        ),
    ];
    for (text, want) in cases {
        let (code, _, err) = check(dir.path(), &text);
        assert_eq!(code, Some(2), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("apns-relay: {}", dir.path().join(&want).display()))
                || err.contains(&want),
            "want `{want}`, got `{err}`"
        );
    }
    // A plain proxy off loopback whose senders are known by source address only: allowed, and
    // `check` says why.
    let (code, out, err) = check(
        dir.path(),
        "[proxy]\nlisten = \"0.0.0.0:3128\"\n[[senders]]\nname = \"legacy\"\nproxy_source_cidrs = [\"203.0.113.0/28\"]\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("proxy: plain listener on 0.0.0.0:3128: allowed, every proxy sender (legacy) is admitted by source address alone"),
        "{out}"
    );
    assert!(!dir.path().join("dedupe").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_draining_and_the_health_command_says_so() {
    // APNs answers after 1.5 s: SIGTERM lands while a push waits, so the relay drains.
    let h = Harness::new(ApnsFaults {
        latency_ms: 1500,
        ..ApnsFaults::default()
    })
    .await;
    let ops = testkit::net::private_addr();
    let config = h.path("relay.toml");
    std::fs::write(
        &config,
        h.relay_toml("127.0.0.1:0", &format!("[ops]\nlisten = \"{ops}\"\n")),
    )
    .unwrap();
    let (mut child, addr) = spawn_binary(&config);
    let url = format!("http://{ops}/healthz");
    let health = move || {
        let out = bin().args(["health", "--url", &url]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = tokio::task::spawn_blocking(health.clone()).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("200 {\"draining\":false,"), "{out}");
    let router = std::sync::Arc::new(h.router_via_relay(addr));
    let push = tokio::spawn(async move { router.send(&notification(1)).await });
    // The mock records a push after its latency: watch the relay's own gauge instead.
    let metrics = format!("http://{ops}/metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !reqwest::get(&metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("apns_relay_pushes_in_flight 1")
    {
        assert!(std::time::Instant::now() < deadline, "the push never left");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    child.signal(testkit::process::Signal::SIGTERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, out) = tokio::task::spawn_blocking(health.clone()).await.unwrap();
        if code == Some(1) {
            assert!(out.starts_with("503 {\"draining\":true,"), "{out}");
            assert!(out.contains("\"status\":\"draining\""), "{out}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never draining: {out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let d = push.await.unwrap().unwrap();
    assert_eq!(
        d.outcome, "accepted",
        "the push in flight was drained: {d:?}"
    );
    assert!(child.wait(std::time::Duration::from_secs(20)).success());
    let (code, _) = tokio::task::spawn_blocking(health).await.unwrap();
    assert_eq!(code, Some(1), "a stopped relay is not healthy");
}
