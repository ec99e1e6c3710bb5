//! Stock APNs clients through the relay, as senders in China run them: @parse/node-apn 8.1
//! (npm) and aioapns 4.0 (PyPI), each pointed at the relay (TLS) or the CONNECT proxy like any
//! APNs client is pointed at Apple, with token auth (the sender's own ES256 provider token,
//! verified by the relay) and certificate auth (mTLS). 2,000 pushes each; the mock APNs's
//! record must hold exactly what the client says it sent, each once.

mod common;

use std::path::PathBuf;

use apns_relay::server::Running;
use common::stock::{assert_mock_holds_exactly, StockClients};
use common::TOPIC;
use serde_json::json;
use testbed::apns::{self, ApnsFaults, Auth, MockApnsConfig, MockApnsHandle, TokenAuth};
use testbed::pki::{CertificateAuthority, ProviderKey};

const N: usize = 2_000;
const TEAM: &str = common::TEAM;
/// The relay's own key (it signs for senders with `credentials = "relay"`).
const RELAY_KEY: &str = "KEY1234567";

/// A relay with TLS (and client certificates accepted) in front of a mock APNs, its files in a
/// temporary directory.
struct Env {
    dir: tempfile::TempDir,
    mock: MockApnsHandle,
    relay: Running,
    senders_ca: CertificateAuthority,
}

impl Env {
    /// A mock that accepts tokens of `mock_keys` (team [`TEAM`]) with `faults`, and a relay
    /// signing with `relay_key` whose senders are `senders` (TOML, paths relative to the dir),
    /// after `files` are written there.
    async fn start(
        mock_keys: &[&ProviderKey],
        relay_key: &ProviderKey,
        faults: ApnsFaults,
        senders: &str,
        files: &[(&str, String)],
    ) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mock = apns::spawn(MockApnsConfig {
            auth: Auth::Token(TokenAuth::new(TEAM, mock_keys.iter().copied())),
            faults,
            ..MockApnsConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::new("relay CA").unwrap();
        let relay_server = ca.issue_server(&["localhost"]).unwrap();
        let senders_ca = CertificateAuthority::new("senders CA").unwrap();
        let mut all = vec![
            ("apns-ca.pem", mock.ca_pem().to_string()),
            ("relay-key.p8", relay_key.to_p8_pem()),
            ("relay.crt", relay_server.cert_pem.clone()),
            ("relay.key", relay_server.key_pem.clone()),
            ("relay-ca.pem", relay_server.ca_pem.clone()),
            ("senders-ca.pem", senders_ca.cert_pem().to_string()),
        ];
        all.extend(files.iter().cloned());
        for (name, text) in all {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let toml = format!(
            r#"
[relay]
listen = "127.0.0.1:0"
tls = {{ cert = "relay.crt", key = "relay.key", client_ca = "senders-ca.pem" }}
drain_timeout = "5s"

[apns]
endpoint = "{endpoint}"
ca = "apns-ca.pem"
connections = 2
token = {{ key = "relay-key.p8", key_id = "{RELAY_KEY}", team_id = "{TEAM}" }}

[dedupe]
path = "dedupe"
fsync = false

{senders}
"#,
            endpoint = mock.url()
        );
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, toml).unwrap();
        let config = apns_relay::config::Config::load(&path).unwrap();
        let relay = apns_relay::server::start(&config).await.unwrap();
        Env {
            dir,
            mock,
            relay,
            senders_ca,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn port(&self) -> u16 {
        self.relay.relay_addr.unwrap().port()
    }

    /// A client certificate for `name`, written as `name.crt`/`name.key` and as one PEM
    /// `name.pem` (aioapns takes both in one file); returns its SHA-256 fingerprint (hex).
    fn client_cert(&self, name: &str) -> String {
        let cert = self.senders_ca.issue_client(name).unwrap();
        std::fs::write(self.dir.path().join(format!("{name}.crt")), &cert.cert_pem).unwrap();
        std::fs::write(self.dir.path().join(format!("{name}.key")), &cert.key_pem).unwrap();
        std::fs::write(
            self.dir.path().join(format!("{name}.pem")),
            format!("{}{}", cert.cert_pem, cert.key_pem),
        )
        .unwrap();
        fingerprint_hex(cert.cert_der().as_ref())
    }
}

fn fingerprint_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `key`'s public half as a PEM `PUBLIC KEY` (what a sender may give the relay instead of
/// its .p8).
fn public_key_pem(key: &ProviderKey) -> String {
    use base64::Engine;
    let prefix: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let der = [&prefix[..], &key.public_key()].concat();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

/// The relay's rejections and pushes, from its metrics.
fn metric_lines(relay: &Running, prefix: &str) -> Vec<String> {
    relay
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_apn_token_auth_through_the_relay_passes_its_own_token_to_apns() {
    let relay_key = ProviderKey::generate(RELAY_KEY).unwrap();
    let sender_key = ProviderKey::generate("SENDERKEY1").unwrap();
    let senders = format!(
        "[[senders]]\nname = \"node-token\"\nteam_id = \"{TEAM}\"\n\
         keys = [{{ key_id = \"SENDERKEY1\", p8 = \"AuthKey_SENDERKEY1.p8\" }}]\n\
         credentials = \"passthrough\"\n"
    );
    let env = Env::start(
        &[&sender_key],
        &relay_key,
        ApnsFaults::default(),
        &senders,
        &[("AuthKey_SENDERKEY1.p8", sender_key.to_p8_pem())],
    )
    .await;
    let config = json!({
        "address": "localhost", "port": env.port(), "ca": env.path("relay-ca.pem"),
        "token": { "key": env.path("AuthKey_SENDERKEY1.p8"), "keyId": "SENDERKEY1", "teamId": TEAM },
        "topic": TOPIC, "count": N, "concurrency": 100, "first": 0,
    });
    let sent = tokio::task::spawn_blocking(move || StockClients::find().node_apn(&config, None))
        .await
        .unwrap();
    assert_mock_holds_exactly(&sent, N, &env.mock);
    let kids: std::collections::BTreeSet<_> = env
        .mock
        .notifications()
        .into_iter()
        .map(|n| n.key_id)
        .collect();
    assert_eq!(
        kids,
        [Some("SENDERKEY1".to_string())].into(),
        "passthrough: APNs saw the sender's own token"
    );
    assert!(metric_lines(&env.relay, "apns_relay_inbound_rejections_total").is_empty());
    env.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioapns_token_auth_through_the_relay_which_signs_with_its_own_key() {
    let relay_key = ProviderKey::generate(RELAY_KEY).unwrap();
    let sender_key = ProviderKey::generate("SENDERKEY2").unwrap();
    // The sender's key given as a public key only, in a team of its own: the relay verifies
    // the token and signs for APNs with its own key.
    let senders = "[[senders]]\nname = \"py-token\"\nteam_id = \"SENDERTEAM\"\n\
         keys = [{ key_id = \"SENDERKEY2\", public_key = \"sender2.pub\" }]\n\
         credentials = \"relay\"\n";
    let env = Env::start(
        &[&relay_key],
        &relay_key,
        ApnsFaults::default(),
        senders,
        &[
            ("AuthKey_SENDERKEY2.p8", sender_key.to_p8_pem()),
            ("sender2.pub", public_key_pem(&sender_key)),
        ],
    )
    .await;
    let config = json!({
        "host": "localhost", "port": env.port(), "ca": env.path("relay-ca.pem"),
        "key": env.path("AuthKey_SENDERKEY2.p8"), "key_id": "SENDERKEY2", "team_id": "SENDERTEAM",
        "topic": TOPIC, "count": N, "concurrency": 100, "first": 0,
    });
    let sent = tokio::task::spawn_blocking(move || StockClients::find().aioapns(&config))
        .await
        .unwrap();
    assert_mock_holds_exactly(&sent, N, &env.mock);
    assert!(
        env.mock
            .notifications()
            .iter()
            .all(|n| n.key_id.as_deref() == Some(RELAY_KEY)),
        "APNs saw the relay's token only"
    );
    env.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_apn_certificate_auth_through_the_relay() {
    let relay_key = ProviderKey::generate(RELAY_KEY).unwrap();
    let env = Env::start(&[&relay_key], &relay_key, ApnsFaults::default(), "", &[]).await;
    let fp = env.client_cert("node-cert");
    // The relay reads its senders when it starts: restart it with this one.
    let env = env
        .restart_with_senders(&format!(
            "[[senders]]\nname = \"node-cert\"\nclient_cert_sha256 = \"{fp}\"\n"
        ))
        .await;
    let config = json!({
        "address": "localhost", "port": env.port(), "ca": env.path("relay-ca.pem"),
        "token": null, "cert": env.path("node-cert.crt"), "key": env.path("node-cert.key"),
        "topic": TOPIC, "count": N, "concurrency": 100, "first": 0,
    });
    let sent = tokio::task::spawn_blocking(move || StockClients::find().node_apn(&config, None))
        .await
        .unwrap();
    assert_mock_holds_exactly(&sent, N, &env.mock);
    env.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioapns_certificate_auth_through_the_relay() {
    let relay_key = ProviderKey::generate(RELAY_KEY).unwrap();
    let env = Env::start(&[&relay_key], &relay_key, ApnsFaults::default(), "", &[]).await;
    let fp = env.client_cert("py-cert");
    let env = env
        .restart_with_senders(&format!(
            "[[senders]]\nname = \"py-cert\"\nclient_cert_sha256 = \"{fp}\"\n"
        ))
        .await;
    let config = json!({
        "host": "localhost", "port": env.port(), "ca": env.path("relay-ca.pem"),
        "client_cert": env.path("py-cert.pem"),
        "topic": TOPIC, "count": N, "concurrency": 100, "first": 0,
    });
    let sent = tokio::task::spawn_blocking(move || StockClients::find().aioapns(&config))
        .await
        .unwrap();
    assert_mock_holds_exactly(&sent, N, &env.mock);
    env.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_apn_reads_an_unknown_outcome_as_retry_later_and_keeps_its_session() {
    // 3 % of pushes are read by APNs and then reset: delivered, but nobody hears so. The relay
    // answers those 503 ServiceUnavailable (never resent: node-apn's own retries get the
    // stored outcome). No other push may fail with them: with 500, node-apn destroyed its
    // HTTP/2 session after its retries and failed the pushes in flight on it.
    let relay_key = ProviderKey::generate(RELAY_KEY).unwrap();
    let sender_key = ProviderKey::generate("SENDERKEY1").unwrap();
    let senders = format!(
        "[[senders]]\nname = \"node-token\"\nteam_id = \"{TEAM}\"\n\
         keys = [{{ key_id = \"SENDERKEY1\", p8 = \"AuthKey_SENDERKEY1.p8\" }}]\n\
         credentials = \"passthrough\"\n"
    );
    let faults = ApnsFaults {
        reset_after_read_rate: 0.03,
        seed: 17,
        ..ApnsFaults::default()
    };
    let env = Env::start(
        &[&sender_key],
        &relay_key,
        faults,
        &senders,
        &[("AuthKey_SENDERKEY1.p8", sender_key.to_p8_pem())],
    )
    .await;
    let config = json!({
        "address": "localhost", "port": env.port(), "ca": env.path("relay-ca.pem"),
        "token": { "key": env.path("AuthKey_SENDERKEY1.p8"), "keyId": "SENDERKEY1", "teamId": TEAM },
        "topic": TOPIC, "count": N, "concurrency": 100, "first": 0,
    });
    let sent = tokio::task::spawn_blocking(move || StockClients::find().node_apn(&config, None))
        .await
        .unwrap();
    assert_eq!(sent.len(), N);
    let resets = env.mock.stats().resets_after_read as usize;
    assert!(resets > 0, "the fault never fired");
    let (ok, later): (Vec<_>, Vec<_>) = sent.iter().partition(|s| s.status == Some(200));
    let odd: Vec<_> = later
        .iter()
        .filter(|s| s.status != Some(503) || s.reason.as_deref() != Some("ServiceUnavailable"))
        .take(5)
        .collect();
    assert!(odd.is_empty(), "failures other than retry-later: {odd:?}");
    assert_eq!(later.len(), resets, "exactly the reset pushes are unknown");
    assert_eq!(ok.len(), N - resets, "no collateral failures");
    // Every push reached the mock once (the unknown ones too), none twice.
    assert_eq!(env.mock.count(), N);
    assert!(env.mock.duplicates().is_empty());
    // The relay counted exactly those as unknown.
    assert_eq!(
        metric_lines(&env.relay, "apns_relay_pushes_total{outcome=\"unknown\"")
            .first()
            .map(|l| l.ends_with(&format!(" {resets}"))),
        Some(true),
        "{:?}",
        metric_lines(&env.relay, "apns_relay_pushes_total")
    );
    env.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_apn_through_a_plain_proxy_off_loopback_admitted_by_source_address() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sender_key = ProviderKey::generate("SENDERKEY1").unwrap();
    let apple_ca = CertificateAuthority::new("test APNs CA").unwrap();
    let mock = apns::spawn(MockApnsConfig {
        auth: Auth::Token(TokenAuth::new(TEAM, [&sender_key])),
        tls: Some(apple_ca.issue_server(&["api.push.apple.com"]).unwrap()),
        ..MockApnsConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    std::fs::write(file("apns-ca.pem"), mock.ca_pem()).unwrap();
    std::fs::write(file("AuthKey_SENDERKEY1.p8"), sender_key.to_p8_pem()).unwrap();
    // A plain listener on every interface: allowed, because its only sender is admitted by
    // source address and sends no credentials to carry in clear.
    std::fs::write(
        file("proxy.toml"),
        format!(
            "[proxy]\nlisten = \"0.0.0.0:0\"\nresolve = {{ \"api.push.apple.com:443\" = \"{}\" }}\n\
             [[senders]]\nname = \"legacy-node\"\nproxy_source_cidrs = [\"127.0.0.0/8\"]\n",
            mock.addr()
        ),
    )
    .unwrap();
    let config = apns_relay::config::Config::load(&file("proxy.toml")).unwrap();
    let proxy = apns_relay::server::start(&config).await.unwrap();
    let port = proxy.proxy_addr.unwrap().port();
    let client = json!({
        "address": "api.push.apple.com", "port": 443, "ca": null,
        "token": { "key": file("AuthKey_SENDERKEY1.p8"), "keyId": "SENDERKEY1", "teamId": TEAM },
        "proxy": { "host": "127.0.0.1", "port": port },
        "topic": TOPIC, "count": N, "concurrency": 100, "first": 0,
    });
    let ca: PathBuf = file("apns-ca.pem");
    let sent =
        tokio::task::spawn_blocking(move || StockClients::find().node_apn(&client, Some(&ca)))
            .await
            .unwrap();
    assert_mock_holds_exactly(&sent, N, &mock);
    let tunnels = proxy.metrics.render();
    assert!(
        tunnels
            .contains(r#"apns_relay_proxy_tunnels_total{result="ok",host="api.push.apple.com"}"#),
        "{tunnels}"
    );
    proxy.shutdown().await;
}

impl Env {
    /// The same files and mock, with a new relay whose senders are `senders`.
    async fn restart_with_senders(self, senders: &str) -> Env {
        self.relay.shutdown().await;
        let path = self.dir.path().join("relay.toml");
        let toml = std::fs::read_to_string(&path).unwrap() + senders;
        std::fs::write(&path, toml).unwrap();
        let config = apns_relay::config::Config::load(&path).unwrap();
        let relay = apns_relay::server::start(&config).await.unwrap();
        Env { relay, ..self }
    }
}
