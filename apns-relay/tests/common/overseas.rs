//! The overseas hop, for the tests in `tests/overseas.rs` and `examples/overseas_bench.rs`
//! (each includes this file by path): a "China" network namespace where the sender's router
//! runs, a "US" namespace with the relay (the real binary, TLS inbound, CONNECT proxy on)
//! and the mock APNs beside it on the same host (a fast link), and between them the
//! user-space link emulator `testbed::link` with a profile such as
//! `rtt=180ms jitter=10ms loss=2% rate=20mbit`.
//!
//! In-process parts live in their namespace through their runtime's threads: the mock APNs
//! runs on a runtime whose threads entered "US", the router's sends run as tasks on one whose
//! threads entered "China" (a socket belongs to the namespace of the thread that made it).
//! The test's own thread stays where it was. Everything is torn down on drop, the relay
//! process first and the namespaces last.

// Each includer uses part of it.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apns_relay::config::RouterConfig;
use apns_relay::router::{apple_payload, Delivery, Notification, Router};
use futures::stream::{self, StreamExt};
use testbed::apns::{self, ApnsFaults, Auth, MockApnsConfig, MockApnsHandle};
use testbed::link::{Link, LinkConfig, Profile, Side};
use testbed::pki::{CertificateAuthority, ProviderKey};
use testkit::netns::Netns;
use testkit::Spawned;
use tokio::runtime::Runtime;

/// The sender's address, in "China".
pub const CN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The relay's address, in "US" (the mock APNs listens there too, for direct sends).
pub const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const RELAY_PORT: u16 = 8443;
const PROXY_PORT: u16 = 8080;
const TEAM: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const SENDER_TOKEN: &str = "overseas-sender-token";
const PROXY_PASSWORD: &str = "overseas-proxy-password";

/// How the sender reaches APNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Through the terminating relay (dedupes, so the router resends safely).
    Relay,
    /// Through the CONNECT proxy, straight to APNs.
    Proxy,
    /// Straight to APNs across the link.
    Direct,
}

impl Via {
    /// All three, in the order the benchmark reports them.
    pub const ALL: [Via; 3] = [Via::Direct, Via::Relay, Via::Proxy];

    /// `direct`, `relay` or `proxy`.
    pub fn name(self) -> &'static str {
        match self {
            Via::Relay => "relay",
            Via::Proxy => "proxy",
            Via::Direct => "direct",
        }
    }
}

/// The two namespaces, the link between them and what runs on each side; see the module docs.
/// Fields drop in order.
pub struct Overseas {
    relay: Option<Spawned>,
    /// The emulated cross-border link (cut it, read its counters, change its profile).
    pub link: Link,
    /// The mock APNs, in "US".
    pub mock: MockApnsHandle,
    us_runtime: Runtime,
    cn_runtime: Runtime,
    dir: tempfile::TempDir,
    relay_bin: PathBuf,
    /// The sender's namespace.
    pub cn: Netns,
    /// The relay's and the mock's namespace.
    pub us: Netns,
}

fn runtime(ns: &Netns) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(ns.enterer())
        .build()
        .expect("a runtime")
}

impl Overseas {
    /// Makes the namespaces, starts the link with `profile`, the mock APNs with `faults` and
    /// the relay binary `relay_bin` (with its proxy listener) in "US".
    pub fn start(tag: &str, profile: &str, faults: ApnsFaults, relay_bin: &Path) -> Overseas {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (cn, us) = (
            Netns::new(&format!("{tag}-cn")),
            Netns::new(&format!("{tag}-us")),
        );
        let link = Link::start(LinkConfig {
            a: Side::new(Some(cn.name()), "pbl", CN, 24),
            b: Side::new(Some(us.name()), "pbl", US, 24),
            profile: Profile::parse(profile).unwrap(),
            seed: 17,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let (us_runtime, cn_runtime) = (runtime(&us), runtime(&cn));

        let key = ProviderKey::generate(KEY_ID).unwrap();
        let apns_ca = CertificateAuthority::new("overseas APNs CA").unwrap();
        let us_ip = US.to_string();
        let apns_cert = apns_ca
            .issue_server(&["api.push.apple.com", &us_ip, "127.0.0.1"])
            .unwrap();
        let relay_ca = CertificateAuthority::new("overseas relay CA").unwrap();
        let relay_cert = relay_ca.issue_server(&[&us_ip]).unwrap();
        // The relay and the senders of the proxy and direct paths sign for one team with one
        // key, each at its own `iat`; APNs's limit on token changes (one per 20 minutes)
        // would refuse every other provider, so the mock leaves it out.
        let mut config = MockApnsConfig {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            tls: Some(apns_cert),
            faults,
            ..MockApnsConfig::with_token_key(TEAM, &key)
        };
        if let Auth::Token(auth) = &mut config.auth {
            auth.min_update_interval = None;
        }
        let mock = us_runtime
            .block_on(us_runtime.spawn(apns::spawn(config)))
            .unwrap()
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("apns-ca.pem", mock.ca_pem().to_string()),
            ("key.p8", key.to_p8_pem()),
            ("relay.crt", relay_cert.cert_pem.clone()),
            ("relay.key", relay_cert.key_pem.clone()),
            ("relay-ca.pem", relay_cert.ca_pem.clone()),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let relay_toml = relay_toml(&format!("127.0.0.1:{}", mock.addr().port()));
        std::fs::write(dir.path().join("relay.toml"), relay_toml).unwrap();
        let mut env = Overseas {
            relay: None,
            link,
            mock,
            us_runtime,
            cn_runtime,
            dir,
            relay_bin: relay_bin.to_path_buf(),
            cn,
            us,
        };
        env.start_relay();
        env
    }

    /// Starts the relay (again, after [`kill_relay`](Self::kill_relay)) on the same store and
    /// ports, and waits for its announcement.
    pub fn start_relay(&mut self) {
        let mut cmd = self.us.command(&self.relay_bin);
        cmd.args(["serve", "--config"])
            .arg(self.dir.path().join("relay.toml"))
            .env(
                "APNS_RELAY_LOG",
                std::env::var("TEST_RELAY_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let mut relay = Spawned::start(cmd);
        let addr = relay.announced("relay=");
        assert_eq!(addr, format!("{US}:{RELAY_PORT}"));
        self.relay = Some(relay);
    }

    /// SIGKILLs the relay (a crash).
    pub fn kill_relay(&mut self) {
        if let Some(mut relay) = self.relay.take() {
            relay.kill();
        }
    }

    /// A router in "China" sending Apple pushes `via` the relay, the proxy or directly;
    /// `extra` is TOML for the top of its file (`request_timeout = "1s"`, `retry_for = …`).
    pub fn router(&self, via: Via, extra: &str) -> Arc<Router> {
        let apple = match via {
            Via::Relay => format!(
                "via = \"relay\"\nrelay_url = \"https://{US}:{RELAY_PORT}\"\n\
                 relay_token = \"{SENDER_TOKEN}\"\nrelay_ca = \"relay-ca.pem\"\n"
            ),
            Via::Proxy => format!(
                "via = \"proxy\"\nproxy_url = \"https://{US}:{PROXY_PORT}\"\n\
                 proxy_user = \"cn-app\"\nproxy_password = \"{PROXY_PASSWORD}\"\n\
                 proxy_ca = \"relay-ca.pem\"\napns_url = \"https://api.push.apple.com\"\n\
                 apns_ca = \"apns-ca.pem\"\n{}",
                self.sender_key()
            ),
            Via::Direct => format!(
                "via = \"direct\"\napns_url = \"https://{US}:{}\"\napns_ca = \"apns-ca.pem\"\n{}",
                self.mock.addr().port(),
                self.sender_key()
            ),
        };
        let path = self.dir.path().join(format!("router-{}.toml", via.name()));
        std::fs::write(&path, format!("{extra}\n[apple]\n{apple}")).unwrap();
        Arc::new(Router::new(RouterConfig::load(&path).unwrap()).unwrap())
    }

    fn sender_key(&self) -> String {
        format!("token = {{ key = \"key.p8\", key_id = \"{KEY_ID}\", team_id = \"{TEAM}\" }}\n")
    }

    /// Runs `future` as a task in "China" and waits for it.
    pub fn in_china<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.cn_runtime
            .block_on(self.cn_runtime.spawn(future))
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Starts `future` as a task in "China"; wait for it with [`in_china`](Self::in_china).
    pub fn spawn_in_china<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.cn_runtime.spawn(future)
    }

    /// Waits (in "US") until the mock accepted `n` pushes; false after `within`.
    pub fn wait_for_count(&self, n: usize, within: Duration) -> bool {
        self.us_runtime
            .block_on(self.mock.wait_for_count(n, within))
    }
}

/// The relay's config: TLS relay and proxy listeners on the US address, the mock APNs at
/// `mock_local` (its loopback address in "US"), one sender with a bearer token and a proxy
/// password.
fn relay_toml(mock_local: &str) -> String {
    format!(
        r#"[relay]
listen = "{US}:{RELAY_PORT}"
tls = {{ cert = "relay.crt", key = "relay.key" }}
drain_timeout = "5s"

[apns]
endpoint = "https://{mock_local}"
ca = "apns-ca.pem"
connections = 4
request_timeout = "5s"
token = {{ key = "key.p8", key_id = "{KEY_ID}", team_id = "{TEAM}" }}

[dedupe]
path = "dedupe"

[proxy]
listen = "{US}:{PROXY_PORT}"
tls = {{ cert = "relay.crt", key = "relay.key" }}
resolve = {{ "api.push.apple.com:443" = "{mock_local}" }}

[[senders]]
name = "cn-app"
bearer_token = "{SENDER_TOKEN}"
proxy_password = "{PROXY_PASSWORD}"
"#
    )
}

/// Push `i`: an alert to a device token made from `i`, with a fresh apns-id.
pub fn push(i: usize) -> Notification {
    let payload = apple_payload(
        Some("overseas"),
        Some(&format!("push {i}")),
        None,
        None,
        None,
    )
    .expect("a payload");
    let mut n = Notification::apple(&format!("{i:064x}"), "com.example.app", payload);
    n.apns_id = Some(uuid::Uuid::new_v4());
    n
}

/// One push's final outcome at the sender and how long it took to get it (from the moment the
/// push was handed to the router, retries included).
#[derive(Debug, Clone)]
pub struct Sent {
    /// The outcome, or the error when the router gave up without one.
    pub result: Result<Delivery, String>,
    /// Time to the outcome.
    pub took: Duration,
}

/// Sends pushes `0..n` through `router`, `concurrency` at a time.
pub async fn send_all(router: Arc<Router>, n: usize, concurrency: usize) -> Vec<Sent> {
    stream::iter(0..n)
        .map(|i| {
            let router = router.clone();
            async move {
                let note = push(i);
                let started = Instant::now();
                let result = router.send(&note).await.map_err(|e| e.to_string());
                Sent {
                    result,
                    took: started.elapsed(),
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}
