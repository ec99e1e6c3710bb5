//! Test harness: a real mock APNs (TLS + HTTP/2) from testbed, its CA and a provider key on
//! disk, relay configs pointing at it, and a sender that pushes N notifications through the
//! router and collects every final outcome.

#![allow(dead_code)]

pub mod stock;
pub mod vendors;
pub mod zk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apns_relay::config::{Config, RouterConfig};
use apns_relay::router::{apple_payload, Delivery, Notification, Router};
use futures::stream::{self, StreamExt};
use testbed::apns::{self, ApnsFaults, MockApnsConfig, MockApnsHandle};
use testbed::pki::ProviderKey;

pub const TEAM: &str = "TEAM123456";
pub const TOPIC: &str = "com.example.app";
pub const SENDER_TOKEN: &str = "s3cret-sender-token";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub mock: MockApnsHandle,
    pub key: ProviderKey,
}

impl Harness {
    pub async fn new(faults: ApnsFaults) -> Harness {
        // Plain reqwest clients in tests need a process-wide rustls provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = ProviderKey::generate("KEY1234567").unwrap();
        let mock = apns::spawn(MockApnsConfig {
            faults,
            ..MockApnsConfig::with_token_key(TEAM, &key)
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("apns-ca.pem"), mock.ca_pem()).unwrap();
        std::fs::write(dir.path().join("key.p8"), key.to_p8_pem()).unwrap();
        Harness { dir, mock, key }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A relay config on `listen` (h2c on loopback) signing with the harness key, plus `extra`
    /// TOML appended.
    pub fn relay_toml(&self, listen: &str, extra: &str) -> String {
        format!(
            r#"
[relay]
listen = "{listen}"
drain_timeout = "5s"

[apns]
endpoint = "{endpoint}"
ca = "apns-ca.pem"
connections = 4
request_timeout = "5s"
token = {{ key = "key.p8", key_id = "KEY1234567", team_id = "{TEAM}" }}

[retry]
max_attempts = 6
backoff_base = "2ms"
backoff_max = "50ms"
budget_ratio = 0.5
budget_min_per_second = 200

[dedupe]
path = "dedupe"

[[senders]]
name = "cn-app"
bearer_token = "{SENDER_TOKEN}"

{extra}
"#,
            endpoint = self.mock.url(),
        )
    }

    /// [`Harness::relay_toml`] with the dedupe store in the Redis at `redis_url` (shared by
    /// every relay of a test), in-flight claims honoured for `lease`.
    pub fn relay_toml_redis(
        &self,
        listen: &str,
        redis_url: &str,
        lease: &str,
        extra: &str,
    ) -> String {
        let dedupe = format!(
            "[dedupe]\nbackend = \"redis\"\nurl = \"{redis_url}\"\nin_flight_lease = \"{lease}\"\n"
        );
        self.relay_toml(listen, extra)
            .replace("[dedupe]\npath = \"dedupe\"\n", &dedupe)
    }

    pub fn config(&self, toml: &str) -> Config {
        let path = self.path("relay.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(&path).unwrap()
    }

    pub async fn start_relay(&self, extra: &str) -> apns_relay::server::Running {
        let config = self.config(&self.relay_toml("127.0.0.1:0", extra));
        apns_relay::server::start(&config).await.unwrap()
    }

    pub fn router_via_relay(&self, relay: std::net::SocketAddr) -> Router {
        let toml = format!(
            r#"
retry_for = "30s"
request_timeout = "10s"
[apple]
via = "relay"
relay_url = "http://{relay}"
relay_token = "{SENDER_TOKEN}"
"#
        );
        let path = self.path("router.toml");
        std::fs::write(&path, toml).unwrap();
        Router::new(RouterConfig::load(&path).unwrap()).unwrap()
    }
}

pub fn device(i: usize) -> String {
    format!("{:064x}", i)
}

pub fn notification(i: usize) -> Notification {
    let payload = apple_payload(Some("hi"), Some(&format!("push {i}")), None, None, None).unwrap();
    let mut n = Notification::apple(&device(i), TOPIC, payload);
    n.apns_id = Some(uuid::Uuid::new_v4());
    n
}

/// Sends `n` pushes, `concurrency` at a time; with `twice`, each push is sent twice at once
/// (same apns-id). Returns one result per send.
pub async fn blast(
    router: &Arc<Router>,
    n: usize,
    concurrency: usize,
    twice: bool,
) -> Vec<Result<Delivery, String>> {
    stream::iter(0..n)
        .map(|i| {
            let router = router.clone();
            async move {
                let note = notification(i);
                if twice {
                    let (a, b) = tokio::join!(router.send(&note), router.send(&note));
                    vec![a.map_err(|e| e.to_string()), b.map_err(|e| e.to_string())]
                } else {
                    vec![router.send(&note).await.map_err(|e| e.to_string())]
                }
            }
        })
        .buffer_unordered(concurrency)
        .flat_map(stream::iter)
        .collect()
        .await
}

/// Counts by outcome; panics on a lost push (no final outcome).
pub fn tally(results: &[Result<Delivery, String>]) -> (usize, usize, usize) {
    let lost: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .take(3)
        .collect();
    assert!(
        lost.is_empty(),
        "pushes without a final outcome, e.g. {lost:?}"
    );
    let count = |o: &str| {
        results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|d| d.outcome == o))
            .count()
    };
    (count("accepted"), count("rejected"), count("unknown"))
}

pub fn assert_no_duplicates(mock: &MockApnsHandle) {
    let dups = mock.duplicates();
    assert!(
        dups.is_empty(),
        "{} apns-ids delivered more than once, e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(3)]
    );
}

pub const N: usize = 10_000;
pub const CONCURRENCY: usize = 256;

pub fn timeout() -> Duration {
    Duration::from_secs(120)
}

/// The `apns-relay` binary, to be given its arguments.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_apns-relay"))
}

/// `apns-relay check --config CONFIG`, run to its end.
pub fn check_config(config: &std::path::Path) -> std::process::Output {
    bin()
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// The `apns-relay` binary serving `config`; returns the process and the relay address it
/// announced (`relay=ADDR`).
pub fn spawn_binary(config: &std::path::Path) -> (testkit::Spawned, std::net::SocketAddr) {
    let mut cmd = bin();
    cmd.args(["serve", "--config"]).arg(config).env(
        "APNS_RELAY_LOG",
        std::env::var("TEST_RELAY_LOG").unwrap_or_else(|_| "warn".into()),
    );
    let mut child = testkit::Spawned::start(cmd);
    let addr = child.announced("relay=").parse().unwrap();
    (child, addr)
}

/// The operations listener a relay binary announced (`ops=ADDR`).
pub fn announced_ops(child: &mut testkit::Spawned) -> std::net::SocketAddr {
    child.announced("ops=").parse().unwrap()
}
