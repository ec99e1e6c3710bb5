//! The CONNECT proxy refuses everything but Apple's push hosts, and the router sends only
//! Apple traffic through it while the other vendors' stand-ins get their pushes directly.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apns_relay::config::RouterConfig;
use apns_relay::router::{Notification, Router, Vendor};
use base64::Engine;
use common::*;
use testbed::apns::{self, MockApnsConfig, MockApnsHandle};
use testbed::pki::{CertificateAuthority, ProviderKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct ProxyEnv {
    dir: tempfile::TempDir,
    mock: MockApnsHandle,
    proxy: apns_relay::server::Running,
}

async fn proxy_env(idle: &str) -> ProxyEnv {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = CertificateAuthority::new("test APNs CA").unwrap();
    let cert = ca
        .issue_server(&["api.push.apple.com", "api.sandbox.push.apple.com"])
        .unwrap();
    let key = ProviderKey::generate("KEY1234567").unwrap();
    let mock = apns::spawn(MockApnsConfig {
        tls: Some(cert),
        ..MockApnsConfig::with_token_key(TEAM, &key)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("apns-ca.pem"), mock.ca_pem()).unwrap();
    std::fs::write(dir.path().join("key.p8"), key.to_p8_pem()).unwrap();
    let toml = format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
idle_timeout = "{idle}"
resolve = {{ "api.push.apple.com:443" = "{mock}" }}

[[senders]]
name = "cn-app"
proxy_password = "pw"

[[senders]]
name = "legacy-client"
proxy_source_cidrs = ["127.0.0.2/32"]
"#,
        mock = mock.addr()
    );
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, toml).unwrap();
    let proxy = apns_relay::server::start(&apns_relay::config::Config::load(&path).unwrap())
        .await
        .unwrap();
    ProxyEnv { dir, mock, proxy }
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// Sends one raw request head from `source` and returns the status line and the stream.
async fn raw(proxy: SocketAddr, source: &str, head: &str) -> (String, tokio::net::TcpStream) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(proxy).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "proxy closed before answering"
        );
        buf.push(byte[0]);
    }
    (String::from_utf8(buf).unwrap(), s)
}

fn connect(target: &str, auth: Option<&str>) -> String {
    let auth = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_everything_but_apple_push_hosts_with_credentials() {
    let env = proxy_env("300ms").await;
    let p = env.proxy.proxy_addr.unwrap();
    let good = basic("cn-app", "pw");
    let cases = [
        ("other host", connect("example.com:443", Some(&good)), "403"),
        ("IPv4 literal", connect("127.0.0.1:443", Some(&good)), "403"),
        ("IPv6 literal", connect("[::1]:443", Some(&good)), "403"),
        (
            "Apple's IP as a literal",
            connect("17.188.143.34:443", Some(&good)),
            "403",
        ),
        (
            "other port",
            connect("api.push.apple.com:80", Some(&good)),
            "403",
        ),
        (
            "lookalike host",
            connect("api.push.apple.com.evil.example:443", Some(&good)),
            "403",
        ),
        (
            "missing credentials",
            connect("api.push.apple.com:443", None),
            "407",
        ),
        (
            "wrong password",
            connect("api.push.apple.com:443", Some(&basic("cn-app", "nope"))),
            "407",
        ),
        (
            "unknown user",
            connect("api.push.apple.com:443", Some(&basic("mallory", "pw"))),
            "407",
        ),
        (
            "not basic",
            connect("api.push.apple.com:443", Some("Bearer pw")),
            "407",
        ),
        (
            "plain forward GET",
            "GET http://api.push.apple.com/ HTTP/1.1\r\nHost: api.push.apple.com\r\n\r\n".into(),
            "405",
        ),
        (
            "forward POST",
            "POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n"
                .into(),
            "405",
        ),
    ];
    for (name, head, status) in cases {
        let (line, _) = raw(p, "127.0.0.1", &head).await;
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: {line}"
        );
        if status == "407" {
            assert!(
                line.to_ascii_lowercase()
                    .contains("proxy-authenticate: basic"),
                "{name}: {line}"
            );
        }
    }
    // Credentials open a tunnel; so does a source address in a sender's CIDRs, without any.
    let (line, _) = raw(
        p,
        "127.0.0.1",
        &connect("api.push.apple.com:443", Some(&good)),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let (line, mut idle) = raw(p, "127.0.0.2", &connect("api.push.apple.com:443", None)).await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // An idle tunnel is closed (idle_timeout 300ms; the deadline here is generous).
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf))
        .await
        .expect("idle tunnel not closed");
    assert_eq!(n.unwrap_or(0), 0);
    let metrics = env.proxy.metrics.render();
    assert!(
        metrics.contains(r#"apns_relay_proxy_tunnels_total{result="forbidden"} 6"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"apns_relay_proxy_tunnels_total{result="auth"} 4"#),
        "{metrics}"
    );
    drop(env.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_sends_only_apple_through_the_proxy_and_other_vendors_direct() {
    let env = proxy_env("60s").await;
    // Every other vendor's stand-in speaks its vendor's real API, over TLS, and refuses a
    // request that the real service would refuse.
    let stand_ins = common::vendors::StandIns::start().await;
    let vendor_toml = stand_ins.router_toml(env.dir.path());
    let toml = format!(
        r#"{vendor_toml}
[apple]
via = "proxy"
proxy_url = "http://{proxy}"
proxy_user = "cn-app"
proxy_password = "pw"
apns_url = "https://api.push.apple.com"
apns_ca = "apns-ca.pem"
token = {{ key = "key.p8", key_id = "KEY1234567", team_id = "{TEAM}" }}
"#,
        proxy = env.proxy.proxy_addr.unwrap()
    );
    let path = env.dir.path().join("router.toml");
    std::fs::write(&path, toml).unwrap();
    let router = Router::new(RouterConfig::load(&path).unwrap()).unwrap();
    for i in 0..40 {
        let d = router.send(&notification(i)).await.unwrap();
        assert_eq!((d.outcome.as_str(), d.path), ("accepted", "proxy"), "{d:?}");
    }
    let vendors = ["huawei", "xiaomi", "vivo", "oppo", "fcm"];
    for v in vendors {
        for i in 0..10 {
            let payload = apns_relay::router::apple_payload(
                Some("hi"),
                Some(&format!("push {i}")),
                None,
                None,
                Some(&serde_json::json!({"order": i})),
            )
            .unwrap();
            let mut n = Notification::apple(&format!("{v}-device-{i}"), TOPIC, payload);
            n.vendor = Vendor::parse(v).unwrap();
            let d = router.send(&n).await.unwrap();
            assert_eq!(
                (d.outcome.as_str(), d.path),
                ("accepted", "direct"),
                "{v}: {d:?}"
            );
        }
    }
    assert_eq!(env.mock.count(), 40);
    for v in vendors {
        let log = stand_ins.log(v);
        let pushes = log.pushes();
        assert_eq!(pushes.len(), 10, "{v}");
        assert_eq!(pushes[3].device, format!("{v}-device-3"), "{v}");
        assert_eq!(
            (pushes[3].title.as_str(), pushes[3].body.as_str()),
            ("hi", "push 3"),
            "{v}"
        );
        assert!(pushes[3].data.contains("order"), "{v}: {:?}", pushes[3]);
        // One access token for all ten pushes (Xiaomi has none: its secret is the credential).
        let tokens = if v == "xiaomi" { 0 } else { 1 };
        assert_eq!(log.auth_calls.load(Ordering::SeqCst), tokens, "{v}");
    }
    // The proxy saw Apple's host only, and refused nothing (no vendor push tried it).
    let metrics = env.proxy.metrics.render();
    let tunnels: Vec<_> = metrics
        .lines()
        .filter(|l| l.starts_with("apns_relay_proxy_tunnels_total{"))
        .collect();
    assert!(!tunnels.is_empty(), "{metrics}");
    for line in tunnels {
        assert!(
            line.contains(r#"result="ok",host="api.push.apple.com""#),
            "{line}"
        );
    }
}
