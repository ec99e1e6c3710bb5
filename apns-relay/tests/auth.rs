//! Sender authentication: by client certificate (mTLS) with the sender's own provider token
//! passed through, by the sender's own provider token (verified by the relay, as APNs
//! verifies it), and the relay's own APNs client certificate towards APNs.

mod common;

use std::sync::Arc;

use common::*;
use testbed::apns::{self, ApnsFaults, Auth, CertificateAuth, MockApnsConfig};
use testbed::pki::{h2_client_config, CertificateAuthority, ProviderKey};

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn fingerprint_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_sender_passes_its_own_provider_token_through() {
    let h = Harness::new(ApnsFaults::default()).await;
    let ca = CertificateAuthority::new("senders CA").unwrap();
    let server = ca.issue_server(&["localhost"]).unwrap();
    let client = ca.issue_client("cn-passthrough").unwrap();
    let stranger = CertificateAuthority::new("other CA")
        .unwrap()
        .issue_client("x")
        .unwrap();
    for (name, text) in [
        ("relay.crt", &server.cert_pem),
        ("relay.key", &server.key_pem),
        ("senders-ca.pem", &ca.cert_pem().to_string()),
    ] {
        std::fs::write(h.path(name), text).unwrap();
    }
    let extra = format!(
        "[[senders]]\nname = \"cn-passthrough\"\nclient_cert_sha256 = \"{}\"\ncredentials = \"passthrough\"\n",
        fingerprint_hex(client.cert_der().as_ref())
    );
    let toml = h.relay_toml("127.0.0.1:0", &extra).replace(
        "drain_timeout = \"5s\"\n",
        "drain_timeout = \"5s\"\ntls = { cert = \"relay.crt\", key = \"relay.key\", client_ca = \"senders-ca.pem\" }\n",
    );
    let relay = apns_relay::server::start(&h.config(&toml)).await.unwrap();
    let url = format!(
        "https://localhost:{}/3/device/{}",
        relay.relay_addr.unwrap().port(),
        device(3)
    );
    let client_for = |identity: Option<&testbed::pki::IssuedCert>| {
        reqwest::Client::builder()
            .tls_backend_preconfigured(h2_client_config(&server.ca_pem, identity).unwrap())
            .resolve("localhost", relay.relay_addr.unwrap())
            .build()
            .unwrap()
    };
    let own_token = format!("bearer {}", h.key.provider_token_now(TEAM).unwrap());
    let send = |c: reqwest::Client, auth: Option<String>| {
        let url = url.clone();
        async move {
            let mut r = c
                .post(url)
                .header("apns-topic", TOPIC)
                .body(r#"{"aps":{"alert":"hi"}}"#);
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            let res = r.send().await.unwrap();
            let outcome = res.headers()["apns-relay-outcome"]
                .to_str()
                .unwrap()
                .to_string();
            (res.status().as_u16(), outcome, res.text().await.unwrap())
        }
    };
    // The client certificate names the sender; its own token reaches APNs unchanged.
    let (status, outcome, _) = send(client_for(Some(&client)), Some(own_token.clone())).await;
    assert_eq!((status, outcome.as_str()), (200, "accepted"));
    // Another token for the same team within 20 minutes of the first: APNs (and the mock)
    // answers 429 TooManyProviderTokenUpdates, which a retry cannot change: not retried.
    let other_token = format!(
        "bearer {}",
        h.key.provider_token(TEAM, unix_now_secs() - 120).unwrap()
    );
    let (status, outcome, body) = send(client_for(Some(&client)), Some(other_token)).await;
    assert_eq!((status, outcome.as_str()), (429, "rejected"), "{body}");
    assert!(body.contains("TooManyProviderTokenUpdates"), "{body}");
    let refused = h
        .mock
        .stats()
        .by_reason
        .get("TooManyProviderTokenUpdates")
        .copied();
    assert_eq!(refused, Some(1), "sent to APNs once, not retried");
    assert_eq!(h.mock.count(), 1);
    // Passthrough without a token of its own: refused before APNs.
    let (status, _, body) = send(client_for(Some(&client)), None).await;
    assert_eq!(status, 403);
    assert!(body.contains("MissingProviderToken"), "{body}");
    // No certificate, or one from another CA (not accepted by the TLS layer), and no relay
    // token: not a sender.
    let (status, _, body) = send(client_for(None), Some(own_token.clone())).await;
    assert_eq!(status, 403, "{body}");
    let refused = client_for(Some(&stranger))
        .post(&url)
        .body("{}")
        .send()
        .await;
    assert!(refused.is_err() || refused.unwrap().status() == 403);
    assert_eq!(h.mock.count(), 1);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_authenticates_to_apns_with_its_own_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider_ca = CertificateAuthority::new("Apple provider CA (test)").unwrap();
    let relay_identity = provider_ca.issue_client("com.example.app").unwrap();
    let mock = apns::spawn(MockApnsConfig {
        auth: Auth::Certificate(CertificateAuth {
            client_ca_pem: provider_ca.cert_pem().to_string(),
        }),
        ..MockApnsConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("apns-ca.pem"), mock.ca_pem()).unwrap();
    std::fs::write(dir.path().join("apns.crt"), &relay_identity.cert_pem).unwrap();
    std::fs::write(dir.path().join("apns.key"), &relay_identity.key_pem).unwrap();
    let toml = format!(
        "[relay]\nlisten = \"127.0.0.1:0\"\n[apns]\nendpoint = \"{}\"\nca = \"apns-ca.pem\"\n\
         certificate = {{ cert = \"apns.crt\", key = \"apns.key\" }}\n[dedupe]\npath = \"d\"\n\
         [[senders]]\nname = \"s\"\nbearer_token = \"{SENDER_TOKEN}\"\n",
        mock.url()
    );
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, toml).unwrap();
    let relay = apns_relay::server::start(&apns_relay::config::Config::load(&path).unwrap())
        .await
        .unwrap();
    let router = {
        let p = dir.path().join("router.toml");
        let addr = relay.relay_addr.unwrap();
        std::fs::write(&p, format!("[apple]\nvia = \"relay\"\nrelay_url = \"http://{addr}\"\nrelay_token = \"{SENDER_TOKEN}\"\n")).unwrap();
        Arc::new(
            apns_relay::router::Router::new(apns_relay::config::RouterConfig::load(&p).unwrap())
                .unwrap(),
        )
    };
    let d = router.send(&notification(1)).await.unwrap();
    assert_eq!((d.status, d.outcome.as_str()), (200, "accepted"), "{d:?}");
    assert_eq!(mock.count(), 1);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sender_is_known_by_its_provider_token_and_refused_as_apns_refuses() {
    let h = Harness::new(ApnsFaults::default()).await;
    let sender_key = ProviderKey::generate("SENDERKEY1").unwrap();
    std::fs::write(h.path("AuthKey_SENDERKEY1.p8"), sender_key.to_p8_pem()).unwrap();
    let extra = "[[senders]]\nname = \"cn-token\"\nteam_id = \"SENDERTEAM\"\n\
                 keys = [{ key_id = \"SENDERKEY1\", p8 = \"AuthKey_SENDERKEY1.p8\" }]\n";
    let relay = h
        .start_relay(&format!("{extra}[ops]\nlisten = \"127.0.0.1:0\"\n"))
        .await;
    let url = format!(
        "http://{}/3/device/{}",
        relay.relay_addr.unwrap(),
        device(1)
    );
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let send = |auth: Option<String>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut r = client
                .post(url)
                .header("apns-topic", TOPIC)
                .header("apns-id", uuid::Uuid::new_v4().to_string())
                .body(r#"{"aps":{"alert":"hi"}}"#);
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            let res = r.send().await.unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (
                status,
                body["reason"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let now = unix_now_secs();
    let token = |key: &ProviderKey, team: &str, iat: u64| {
        Some(format!("bearer {}", key.provider_token(team, iat).unwrap()))
    };
    // The sender's own token, as a stock client sends it: accepted, signed again by the
    // relay's key for APNs (credentials = "relay", the default).
    assert_eq!(
        send(token(&sender_key, "SENDERTEAM", now - 5)).await,
        (200, String::new())
    );
    assert_eq!(
        h.mock.notifications()[0].key_id.as_deref(),
        Some("KEY1234567")
    );
    let impostor = ProviderKey::generate("SENDERKEY1").unwrap();
    let stranger = ProviderKey::generate("OTHERKEY01").unwrap();
    let refused = [
        (
            "signed by another key under the same kid",
            token(&impostor, "SENDERTEAM", now),
            "InvalidProviderToken",
        ),
        (
            "an hour old",
            token(&sender_key, "SENDERTEAM", now - 3700),
            "ExpiredProviderToken",
        ),
        (
            "issued in the future",
            token(&sender_key, "SENDERTEAM", now + 600),
            "InvalidProviderToken",
        ),
        (
            "another team",
            token(&sender_key, "TEAM999999", now),
            "InvalidProviderToken",
        ),
        (
            "an unknown key id",
            token(&stranger, "SENDERTEAM", now),
            "InvalidProviderToken",
        ),
        (
            "not a JWT",
            Some("bearer abc.def".into()),
            "InvalidProviderToken",
        ),
        (
            "not bearer",
            Some("Basic Y246cHc=".into()),
            "InvalidProviderToken",
        ),
        ("no authorization", None, "MissingProviderToken"),
    ];
    for (what, auth, reason) in refused {
        assert_eq!(send(auth).await, (403, reason.to_string()), "{what}");
    }
    // Bearer senders keep working beside token senders.
    assert_eq!(
        send(Some(format!("bearer {SENDER_TOKEN}"))).await,
        (200, String::new())
    );
    assert_eq!(h.mock.count(), 2, "nothing refused reached APNs");
    let metrics = reqwest::get(format!("http://{}/metrics", relay.ops_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (reason, n) in [
        ("InvalidProviderToken", 6),
        ("ExpiredProviderToken", 1),
        ("MissingProviderToken", 1),
    ] {
        let line =
            format!(r#"apns_relay_inbound_rejections_total{{status="403",reason="{reason}"}} {n}"#);
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    relay.shutdown().await;
}
