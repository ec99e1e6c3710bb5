//! The mock APNs over real TLS and HTTP/2 on loopback, driven by the `h2` client (and curl
//! where installed): success and `apns-id`, every validation reason, provider tokens,
//! unregistered devices, payload limits, certificate auth, ALPN, shutdown.

#[allow(dead_code)] // each test binary uses part of it
mod apns_client;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apns_client::*;
use rustls::pki_types::ServerName;
use testbed::apns::{self, ApnsFaults, Auth, CertificateAuth, Environment, MockApnsConfig};
use testbed::pki::{self, CertificateAuthority, ProviderKey};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[tokio::test]
async fn accepts_echoes_or_generates_apns_id_and_records() {
    let (mock, key) = token_mock(|_| {}).await;
    assert!(
        mock.url().starts_with("https://127.0.0.1:"),
        "{}",
        mock.url()
    );
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;

    let id = "123e4567-e89b-12d3-a456-4266554400a0";
    let echoed = Push::new(&jwt)
        .header("apns-id", id)
        .header("apns-collapse-id", "score")
        .header("apns-priority", "5")
        .header("apns-expiration", "0")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.apns_id.as_deref(), Some(id));
    assert!(echoed.body.is_empty());
    assert_eq!(echoed.unique_id, None, "production has no apns-unique-id");

    let generated = Push::new(&jwt).send(&client).await.unwrap();
    assert_eq!(generated.status, 200);
    let generated_id = generated.apns_id.unwrap();
    assert!(is_uuid(&generated_id), "{generated_id}");

    let notifications = mock.notifications();
    assert_eq!(mock.count(), 2);
    let first = &notifications[0];
    assert_eq!(first.apns_id, id);
    assert_eq!(first.device_token, DEVICE);
    assert_eq!(first.topic.as_deref(), Some(TOPIC));
    assert_eq!(first.collapse_id.as_deref(), Some("score"));
    assert_eq!(first.push_type.as_deref(), Some("alert"));
    assert_eq!(first.priority, Some(5));
    assert_eq!(first.expiration, Some(0));
    assert_eq!(&first.payload[..], br#"{"aps":{"alert":"hello"}}"#);
    assert!(!first.reset);
    assert_eq!(first.key_id.as_deref(), Some("KEY1234567"));
    let iat = first.token_issued_at.unwrap();
    assert!(iat.abs_diff(now_secs()) < 60, "{iat}");
    assert_eq!(first.connection, 1);
    assert_eq!(notifications[1].apns_id, generated_id);
    // The second notification has no collapse id: the device shows both.
    assert_eq!(mock.displayed(DEVICE).len(), 2);
    // A second connection is numbered 2.
    let second = connect(&mock, None).await;
    assert_eq!(Push::new(&jwt).send(&second).await.unwrap().status, 200);
    assert_eq!(mock.notifications()[2].connection, 2);
    assert_eq!(mock.stats().connections, 2);
    assert!(mock.duplicates().is_empty());
    assert_eq!(mock.stats().by_status.get(&200), Some(&3));
    mock.shutdown().await;
}

#[tokio::test]
async fn sandbox_adds_unique_id_and_collapse_replaces() {
    let (mock, key) = token_mock(|c| c.environment = Environment::Sandbox).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    for text in ["1-0", "2-0"] {
        let body = format!(r#"{{"aps":{{"alert":"{text}"}}}}"#);
        let mut push = Push::new(&jwt).header("apns-collapse-id", "score");
        push.body = body.into_bytes();
        let reply = push.send(&client).await.unwrap();
        assert_eq!(reply.status, 200);
        assert!(is_uuid(reply.unique_id.as_deref().unwrap()));
    }
    let shown = mock.displayed(DEVICE);
    assert_eq!(shown.len(), 1, "same collapse id: one notification shown");
    assert!(std::str::from_utf8(&shown[0].payload)
        .unwrap()
        .contains("2-0"));
    mock.shutdown().await;
}

#[tokio::test]
async fn every_validation_reason() {
    let (mock, key) = token_mock(|_| {}).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    let base = || Push::new(&jwt);
    let with_body = |body: &[u8]| {
        let mut push = Push::new(&jwt);
        push.body = body.to_vec();
        push
    };
    let with_path = |path: &str| {
        let mut push = Push::new(&jwt);
        push.path = path.into();
        push
    };
    let mut get = base();
    get.method = "GET";
    let mut duplicate = base();
    duplicate.headers.push(("apns-topic".into(), TOPIC.into()));
    let cases: Vec<(Push, u16, &str)> = vec![
        (with_path("/3/device/abc"), 400, "BadDeviceToken"),
        (with_path("/3/device/zz11"), 400, "BadDeviceToken"),
        (with_path("/3/device/"), 400, "MissingDeviceToken"),
        (with_path("/2/device/ab"), 404, "BadPath"),
        (with_path("/3/device/ab/cd"), 404, "BadPath"),
        (get, 405, "MethodNotAllowed"),
        (base().without("apns-topic"), 400, "MissingTopic"),
        (
            base().header("apns-topic", "com.other.app"),
            400,
            "TopicDisallowed",
        ),
        (
            base().header("apns-collapse-id", &"c".repeat(65)),
            400,
            "BadCollapseId",
        ),
        (base().header("apns-priority", "11"), 400, "BadPriority"),
        (
            base().header("apns-expiration", "tomorrow"),
            400,
            "BadExpirationDate",
        ),
        (
            base().header("apns-push-type", "telegram"),
            400,
            "InvalidPushType",
        ),
        (base().header("apns-id", "42"), 400, "BadMessageId"),
        (duplicate, 400, "DuplicateHeaders"),
        (with_body(b""), 400, "PayloadEmpty"),
        (with_body(b"not json"), 400, "BadPayload"),
        (with_body(b"[\"an array\"]"), 400, "BadPayload"),
    ];
    for (push, status, reason) in cases {
        let reply = push.send(&client).await.unwrap();
        assert_eq!(
            (reply.status, reply.reason().as_str()),
            (status, reason),
            "{}",
            push.path
        );
        assert!(reply.apns_id.is_some(), "errors carry an apns-id too");
    }
    // Valid edge cases: a short even-length token, a 64-byte collapse id, the voip topic.
    for push in [
        with_path("/3/device/AB"),
        base().header("apns-collapse-id", &"c".repeat(64)),
        base()
            .header("apns-topic", "com.example.app.voip")
            .header("apns-push-type", "voip"),
        base().without("apns-push-type").without("apns-id"),
    ] {
        assert_eq!(
            push.send(&client).await.unwrap().status,
            200,
            "{}",
            push.path
        );
    }
    assert_eq!(mock.count(), 4, "refused requests are not recorded");
    mock.shutdown().await;
}

#[tokio::test]
async fn provider_tokens_missing_invalid_expired_and_updated_too_often() {
    let (mock, key) = token_mock(|_| {}).await;
    let client = connect(&mock, None).await;
    let reason = |reply: Reply| (reply.status, reply.reason());
    let now = now_secs();

    let missing = Push::new("x")
        .without("authorization")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(reason(missing), (403, "MissingProviderToken".into()));
    let garbage = Push::new("not.a.jwt").send(&client).await.unwrap();
    assert_eq!(reason(garbage), (403, "InvalidProviderToken".into()));
    let wrong_team = key.provider_token("OTHERTEAM1", now).unwrap();
    let reply = Push::new(&wrong_team).send(&client).await.unwrap();
    assert_eq!(reason(reply), (403, "InvalidProviderToken".into()));
    let impostor = ProviderKey::generate(key.key_id()).unwrap();
    let forged = impostor.provider_token(TEAM, now).unwrap();
    let reply = Push::new(&forged).send(&client).await.unwrap();
    assert_eq!(
        reason(reply),
        (403, "InvalidProviderToken".into()),
        "bad signature"
    );
    let unknown = ProviderKey::generate("UNKNOWNKID").unwrap();
    let reply = Push::new(&unknown.provider_token(TEAM, now).unwrap())
        .send(&client)
        .await
        .unwrap();
    assert_eq!(
        reason(reply),
        (403, "InvalidProviderToken".into()),
        "unknown kid"
    );
    let old = key.provider_token(TEAM, now - 3601).unwrap();
    let reply = Push::new(&old).send(&client).await.unwrap();
    assert_eq!(reason(reply), (403, "ExpiredProviderToken".into()));

    let first = key.provider_token(TEAM, now - 10).unwrap();
    assert_eq!(Push::new(&first).send(&client).await.unwrap().status, 200);
    // The same token again is fine; a new one a few seconds later is an update too soon.
    assert_eq!(Push::new(&first).send(&client).await.unwrap().status, 200);
    let second = key.provider_token(TEAM, now).unwrap();
    let reply = Push::new(&second).send(&client).await.unwrap();
    assert_eq!(reason(reply), (429, "TooManyProviderTokenUpdates".into()));
    assert_eq!(mock.count(), 2);
    mock.shutdown().await;

    // With the check off, tokens may change at will.
    let (mock, key) = token_mock(|c| {
        if let Auth::Token(auth) = &mut c.auth {
            auth.min_update_interval = None;
        }
    })
    .await;
    let client = connect(&mock, None).await;
    for iat in [now - 20, now - 10, now] {
        let jwt = key.provider_token(TEAM, iat).unwrap();
        assert_eq!(Push::new(&jwt).send(&client).await.unwrap().status, 200);
    }
    mock.shutdown().await;
}

#[tokio::test]
async fn unregistered_tokens_get_410_with_timestamp() {
    let configured = "00ff".to_owned();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (mock, key) = token_mock(|c| {
        c.unregistered = HashSet::from([configured.clone()]);
    })
    .await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    let mut push = Push::new(&jwt);
    push.path = "/3/device/00FF".into();
    let reply = push.send(&client).await.unwrap();
    assert_eq!(reply.status, 410);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["reason"], "Unregistered");
    let timestamp = body["timestamp"].as_u64().expect("a numeric timestamp");
    assert!(timestamp >= before, "{timestamp} < {before}");

    assert_eq!(Push::new(&jwt).send(&client).await.unwrap().status, 200);
    mock.unregister(DEVICE);
    let reply = Push::new(&jwt).send(&client).await.unwrap();
    assert_eq!(
        (reply.status, reply.reason().as_str()),
        (410, "Unregistered")
    );
    assert_eq!(mock.count(), 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn payload_limits_4096_and_voip_5120() {
    let (mock, key) = token_mock(|_| {}).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    // A JSON object of exactly `size` bytes.
    let object = |size: usize| format!(r#"{{"a":"{}"}}"#, "x".repeat(size - 8)).into_bytes();
    let push = |size: usize, voip: bool| {
        let mut push = Push::new(&jwt);
        if voip {
            push = push
                .header("apns-push-type", "voip")
                .header("apns-topic", "com.example.app.voip");
        }
        push.body = object(size);
        push
    };
    assert_eq!(object(4096).len(), 4096);
    let cases = [
        (4096, false, 200),
        (4097, false, 413),
        (5120, true, 200),
        (5121, true, 413),
        (5120, false, 413),
        (100_000, false, 413),
    ];
    for (size, voip, status) in cases {
        let reply = push(size, voip).send(&client).await.unwrap();
        assert_eq!(reply.status, status, "{size} bytes, voip {voip}");
        if status == 413 {
            assert_eq!(reply.reason(), "PayloadTooLarge");
        }
    }
    assert_eq!(mock.count(), 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn certificate_auth_accepts_issued_certs_and_refuses_others() {
    let provider_ca = CertificateAuthority::new("provider CA").unwrap();
    let config = MockApnsConfig {
        auth: Auth::Certificate(CertificateAuth {
            client_ca_pem: provider_ca.cert_pem().to_owned(),
        }),
        topics: vec![TOPIC.into()],
        ..MockApnsConfig::default()
    };
    let mock = apns::spawn(config).await.unwrap();
    let good = provider_ca.issue_client(TOPIC).unwrap();
    let client = connect(&mock, Some(&good)).await;
    // One topic in the certificate: apns-topic may be left out.
    let reply = Push::new("ignored")
        .without("authorization")
        .without("apns-topic")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(mock.notifications()[0].topic.as_deref(), Some(TOPIC));
    assert_eq!(
        mock.notifications()[0].key_id,
        None,
        "no token under certificate auth"
    );

    let stranger = CertificateAuthority::new("someone else")
        .unwrap()
        .issue_client(TOPIC)
        .unwrap();
    let client = connect(&mock, Some(&stranger)).await;
    let reply = Push::new("x")
        .without("authorization")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.reason().as_str()),
        (403, "BadCertificate")
    );

    let client = connect(&mock, None).await;
    let reply = Push::new("x")
        .without("authorization")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.reason().as_str()),
        (403, "MissingProviderToken")
    );
    assert_eq!(mock.count(), 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn alpn_h2_only() {
    let (mock, _key) = token_mock(|_| {}).await;
    let handshake = |alpn: Vec<Vec<u8>>| {
        let mut config = pki::h2_client_config(mock.ca_pem(), None).unwrap();
        config.alpn_protocols = alpn;
        let addr = mock.addr();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
        }
    };
    let http1 = handshake(vec![b"http/1.1".to_vec()]).await;
    let error = http1.expect_err("an http/1.1-only client must fail the handshake");
    assert!(
        error.to_string().contains("NoApplicationProtocol"),
        "{error}"
    );
    // Without ALPN the handshake completes but the mock closes at once: no HTTP/2.
    let plain = handshake(Vec::new()).await.unwrap();
    let refused = match h2::client::handshake(plain).await {
        Err(_) => true,
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Push::new("x").send(&client).await.is_err()
        }
    };
    assert!(refused, "a client without ALPN h2 must not be served");
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.stats().handshake_failures < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(mock.stats().handshake_failures, 2);
    assert_eq!(mock.stats().connections, 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn curl_http2_client() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: curl is not installed (scripts/test.sh installs it)");
        return;
    }
    let (mock, key) = token_mock(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, mock.ca_pem()).unwrap();
    let jwt = key.provider_token_now(TEAM).unwrap();
    let url = format!("{}/3/device/{DEVICE}", mock.url());
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--http2", "--cacert"])
        .arg(&ca)
        .args(["--write-out", "\n%{http_version} %{http_code}", "--include"])
        .args(["-H", &format!("authorization: bearer {jwt}")])
        .args([
            "-H",
            &format!("apns-topic: {TOPIC}"),
            "-H",
            "apns-push-type: alert",
        ])
        .args(["-H", "apns-id: 5a2b0c3d-1111-4222-8333-944455556666"])
        .args(["--data", r#"{"aps":{"alert":"from curl"}}"#, &url])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.trim_end().ends_with("2 200"), "{stdout}");
    assert!(
        stdout.contains("apns-id: 5a2b0c3d-1111-4222-8333-944455556666"),
        "{stdout}"
    );
    assert_eq!(mock.count(), 1);

    // An error as curl sees it.
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--http2", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("apns-topic: {TOPIC}"), "--data", "{}", &url])
        .output()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["reason"], "MissingProviderToken");
    // curl forced to HTTP/1.1 cannot talk to it.
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--http1.1", "--cacert"])
        .arg(&ca)
        .args(["--data", "{}", &url])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "HTTP/1.1 must fail");
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_config_is_refused() {
    let config = MockApnsConfig {
        faults: ApnsFaults {
            rate_503: 2.0,
            ..ApnsFaults::default()
        },
        ..MockApnsConfig::default()
    };
    let error = apns::spawn(config).await.unwrap_err();
    assert_eq!(error.to_string(), "rate_503 must be between 0 and 1, got 2");
    let config = MockApnsConfig {
        auth: Auth::Certificate(CertificateAuth {
            client_ca_pem: "not a pem".into(),
        }),
        ..MockApnsConfig::default()
    };
    let error = apns::spawn(config).await.unwrap_err();
    assert!(error.to_string().contains("CA"), "{error}");
}

#[tokio::test]
async fn device_bound_to_another_topic() {
    let (mock, key) = token_mock(|c| c.topics.push("com.example.other".into())).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    mock.set_device_topic(DEVICE, "com.example.other");
    let reply = Push::new(&jwt).send(&client).await.unwrap();
    assert_eq!(
        (reply.status, reply.reason().as_str()),
        (400, "DeviceTokenNotForTopic")
    );
    let reply = Push::new(&jwt)
        .header("apns-topic", "com.example.other.voip")
        .header("apns-push-type", "voip")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    mock.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_streams_then_closes() {
    let (mock, key) = token_mock(|c| c.faults.latency_ms = 150).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    let addr = mock.addr();
    let in_flight = tokio::spawn({
        let push = Push::new(&jwt);
        let client = client.clone();
        async move { push.send(&client).await }
    });
    assert!(
        mock.wait_until(Duration::from_secs(5), |m| m.stats().streams == 1)
            .await,
        "the request reached the mock"
    );
    let started = Instant::now();
    mock.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let reply = in_flight.await.unwrap().expect("answered before closing");
    assert_eq!(reply.status, 200);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

/// PyJWT (Debian's python3-jwt), as Python APNs clients use it, and the mock agree on ES256
/// provider tokens both ways.
#[tokio::test]
async fn provider_tokens_interoperate_with_pyjwt() {
    const PYTHON: &str = "/usr/bin/python3";
    let has_pyjwt = std::process::Command::new(PYTHON)
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pyjwt {
        eprintln!("SKIP: {PYTHON} has no jwt module (scripts/test.sh installs python3-jwt)");
        return;
    }
    let (mock, key) = token_mock(|c| {
        if let Auth::Token(auth) = &mut c.auth {
            auth.min_update_interval = None;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p8 = dir.path().join("AuthKey_KEY1234567.p8");
    std::fs::write(&p8, key.to_p8_pem()).unwrap();
    let ours = key.provider_token_now(TEAM).unwrap();
    let script = r#"
import sys, time, jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
key = load_pem_private_key(open(sys.argv[1], "rb").read(), None)
claims = jwt.decode(sys.argv[2], key.public_key(), algorithms=["ES256"])
assert jwt.get_unverified_header(sys.argv[2])["kid"] == "KEY1234567", "kid"
assert claims["iss"] == "TEAM123456", claims
print(jwt.encode({"iss": "TEAM123456", "iat": int(time.time())}, key, algorithm="ES256",
                 headers={"kid": "KEY1234567"}))
"#;
    let output = tokio::process::Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .arg(&p8)
        .arg(&ours)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "PyJWT refused our token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let client = connect(&mock, None).await;
    assert_eq!(Push::new(&theirs).send(&client).await.unwrap().status, 200);
    // Another last signature character (never the same one).
    let last = if theirs.ends_with('A') { 'B' } else { 'A' };
    let tampered = format!("{}{last}", &theirs[..theirs.len() - 1]);
    let reply = Push::new(&tampered).send(&client).await.unwrap();
    assert_eq!(reply.reason(), "InvalidProviderToken");
    mock.shutdown().await;
}
