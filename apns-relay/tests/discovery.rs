//! Relays found through ZooKeeper (a real server from the test kit): relay binaries register
//! themselves, the router picks one per push and fails over when one is killed, with no push
//! reaching the mock APNs twice (the relays share a Redis dedupe store); a relay's session
//! expires and it registers again; a drain removes the node before the listener stops.

mod common;

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apns_relay::config::RouterConfig;
use apns_relay::router::Router;
use common::*;
use discovery::{Discover, ServiceWatch};
use testbed::apns::ApnsFaults;
use testkit::process::Signal;
use testkit::servers::{Redis, ZooKeeper};

const WAIT: Duration = Duration::from_secs(20);

/// The `[discovery]` section of a relay registering under `/services/{service}`.
fn registration(zk: &ZooKeeper, service: &str, extra: &str) -> String {
    format!(
        "[discovery]\nensemble = \"{}\"\nservice = \"{service}\"\n{extra}\n",
        zk.connect_string()
    )
}

/// A watch on `/services/{service}`, as a sender's would be.
async fn watch(zk: &ZooKeeper, service: &str) -> ServiceWatch {
    let d: Discover = toml::from_str(&format!(
        "ensemble = \"{}\"\npath = \"/services/{service}\"\nsession_timeout = \"2s\"",
        zk.connect_string()
    ))
    .unwrap();
    d.watch().await.unwrap()
}

async fn healthz(ops: std::net::SocketAddr) -> (u16, serde_json::Value) {
    let res = reqwest::get(format!("http://{ops}/healthz")).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn metric(ops: std::net::SocketAddr, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Polls `/healthz` until `cond` holds on its `discovery` member (at most `WAIT`).
async fn wait_healthz(
    ops: std::net::SocketAddr,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = healthz(ops).await;
        if cond(&body["discovery"]) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_discovered_relays_one_killed_mid_run_no_duplicate_at_apns() {
    let zk = ZooKeeper::start();
    let redis = Redis::start();
    let h = Harness::new(ApnsFaults {
        latency_ms: 5,
        ..ApnsFaults::default()
    })
    .await;
    let config = h.path("relay.toml");
    let extra = registration(&zk, "relays", "session_timeout = \"2s\"");
    std::fs::write(
        &config,
        h.relay_toml_redis("127.0.0.1:0", redis.url(), "1s", &extra),
    )
    .unwrap();
    let mut relays: Vec<_> = (0..3).map(|_| spawn_binary(&config)).collect();
    let urls: Vec<String> = relays.iter().map(|(_, a)| format!("http://{a}")).collect();
    let sender_view = watch(&zk, "relays").await;
    sender_view
        .wait_until(WAIT, |v| v.members.len() == 3)
        .await
        .unwrap_or_else(|v| panic!("three relays registered: {:?}", v.describe()));

    let router_toml = h.path("router.toml");
    std::fs::write(
        &router_toml,
        format!(
            r#"
retry_for = "30s"
request_timeout = "5s"
[apple]
via = "relay"
relay_token = "{SENDER_TOKEN}"
discovery = {{ ensemble = "{}", path = "/services/relays", balance = "least_in_flight", down_for = "30s" }}
"#,
            zk.connect_string()
        ),
    )
    .unwrap();
    let router = Arc::new(
        Router::start(RouterConfig::load(&router_toml).unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(router.note(), None);

    const PUSHES: usize = 600;
    const CONCURRENCY: usize = 24;
    let run = tokio::spawn({
        let router = router.clone();
        async move { blast(&router, PUSHES, CONCURRENCY, false).await }
    });
    // A third of the way in, one relay dies without a word.
    assert!(h.mock.wait_for_count(PUSHES / 3, WAIT).await);
    let (mut killed, killed_addr) = relays.remove(1);
    killed.kill();
    let results = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("every push ends within 90 s")
        .unwrap();

    // Every push has a final outcome, and none reached APNs twice.
    let (accepted, rejected, unknown) = tally(&results);
    assert_no_duplicates(&h.mock);
    let at_apns: HashMap<String, usize> =
        h.mock
            .notifications()
            .into_iter()
            .fold(HashMap::new(), |mut m, n| {
                *m.entry(n.apns_id).or_default() += 1;
                m
            });
    let deliveries: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    // An accepted push reached APNs exactly once; a push is `unknown` only when the killed
    // relay had claimed it (at most the pushes in flight there), and then reached APNs at most
    // once (whether it did is what nobody can know).
    for d in &deliveries {
        let id = d.apns_id.unwrap().hyphenated().to_string();
        let seen = at_apns.get(&id).copied().unwrap_or(0);
        match d.outcome.as_str() {
            "accepted" => assert_eq!(seen, 1, "{d:?}"),
            _ => assert!(seen <= 1, "{d:?}"),
        }
    }
    assert_eq!(rejected, 0, "{deliveries:?}");
    assert!(unknown <= CONCURRENCY, "{unknown} unknown");
    assert_eq!(accepted + unknown, PUSHES);
    let lost = deliveries
        .iter()
        .filter(|d| d.outcome == "accepted")
        .filter(|d| !at_apns.contains_key(&d.apns_id.unwrap().hyphenated().to_string()))
        .count();
    assert_eq!(lost, 0);
    // All three relays answered pushes; the ones cut by the kill were sent again elsewhere.
    for url in &urls {
        assert!(
            deliveries.iter().any(|d| d.relay.as_deref() == Some(url)),
            "no push answered by {url}"
        );
    }
    let resent = deliveries.iter().filter(|d| d.sends > 1).count();
    assert!(resent > 0, "no push was resent after the kill");
    let killed_url = format!("http://{killed_addr}");
    let resent_elsewhere = deliveries
        .iter()
        .filter(|d| d.sends > 1)
        .all(|d| d.relay.as_deref() != Some(killed_url.as_str()));
    assert!(
        resent_elsewhere,
        "a resent push was answered by the dead relay"
    );
    eprintln!(
        "{PUSHES} pushes: {accepted} accepted, {unknown} unknown (claimed by the killed relay), \
         {resent} resent, {} at the mock APNs, 0 twice",
        at_apns.len()
    );

    // The dead relay's session expires: the senders' list drops it.
    let view = sender_view
        .wait_until(WAIT, |v| v.members.len() == 2)
        .await
        .unwrap_or_else(|v| panic!("{:?}", v.describe()));
    assert!(view
        .instances()
        .all(|i| i.endpoint("relay") != Some(killed_url.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_registers_again_after_its_session_expires_and_leaves_before_it_stops() {
    let mut zk = ZooKeeper::start();
    let h = Harness::new(ApnsFaults::default()).await;
    let extra = registration(
        &zk,
        "apns-relay",
        "id = \"relay-a\"\nregion = \"test-1\"\nweight = 2\nsession_timeout = \"1s\"\nderegister_lead = \"3s\"\n[ops]\nlisten = \"127.0.0.1:0\"",
    );
    let config = h.path("relay.toml");
    std::fs::write(&config, h.relay_toml("127.0.0.1:0", &extra)).unwrap();
    let (mut child, relay) = spawn_binary(&config);
    let ops = announced_ops(&mut child);
    let senders = watch(&zk, "apns-relay").await;

    // Registered as the listener really is: h2c on loopback, so http:// and `port`.
    let view = senders
        .wait_until(WAIT, |v| v.members.len() == 1)
        .await
        .unwrap_or_else(|v| panic!("{:?}", v.describe()));
    let i = view.members[0].instance();
    assert_eq!(i.id, "relay-a");
    assert_eq!(i.name, "apns-relay");
    assert_eq!(
        i.endpoint("relay"),
        Some(format!("http://{relay}").as_str())
    );
    assert_eq!((i.port, i.ssl_port), (Some(relay.port()), None));
    assert_eq!((i.region(), i.weight()), (Some("test-1"), 2));
    let node = format!("/services/apns-relay/{}", view.members[0].node());
    let body = wait_healthz(ops, "registered", |d| d["registered"] == true).await;
    assert_eq!(body["discovery"]["node"], node.as_str(), "{body}");
    let first_session = body["discovery"]["session"].clone();
    assert_eq!(
        metric(ops, "apns_relay_discovery_registrations_total").await,
        1.0
    );
    assert_eq!(metric(ops, "apns_relay_discovery_registered").await, 1.0);

    // ZooKeeper down past the session timeout: the relay's session expires (its client says
    // so after 7/5 of the timeout without a server); back up, it registers again.
    zk.stop();
    let body = wait_healthz(ops, "the session ended", |d| d["registered"] == false).await;
    assert_eq!(metric(ops, "apns_relay_discovery_registered").await, 0.0);
    assert!(
        body["discovery"]["why"]
            .as_str()
            .unwrap_or_default()
            .contains("session ended"),
        "{body}"
    );
    zk.start_again();
    let body = wait_healthz(ops, "registered again", |d| {
        d["registered"] == true && d["session"] != first_session
    })
    .await;
    assert_eq!(
        metric(ops, "apns_relay_discovery_registrations_total").await,
        2.0
    );
    let again = body["discovery"]["node"].as_str().unwrap().to_string();
    assert_ne!(again, node, "a new protected node in the new session");
    let view = senders
        .wait_until(WAIT, |v| {
            v.stale.is_none()
                && v.members.len() == 1
                && format!("/services/apns-relay/{}", v.members[0].node()) == again
        })
        .await
        .unwrap_or_else(|v| panic!("the senders see it again: {:?}", v.describe()));
    assert_eq!(view.members[0].instance().id, "relay-a");

    // SIGTERM: the node goes first; for the lead the relay still accepts connections and
    // /healthz says it drains; then the listener stops and the process exits 0.
    child.signal(Signal::SIGTERM);
    senders
        .wait_until(WAIT, |v| v.members.is_empty())
        .await
        .unwrap_or_else(|v| panic!("the node is removed: {:?}", v.describe()));
    assert!(
        TcpStream::connect_timeout(&relay, Duration::from_secs(1)).is_ok(),
        "the listener still accepts once the node is gone"
    );
    let (status, body) = healthz(ops).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "draining");
    assert_eq!(
        body["discovery"],
        serde_json::json!({"registered": false, "why": "drained"})
    );
    assert!(child.wait(WAIT).success());
    assert!(TcpStream::connect_timeout(&relay, Duration::from_secs(1)).is_err());
}
