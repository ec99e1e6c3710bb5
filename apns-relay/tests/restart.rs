//! The relay killed with SIGKILL mid-run and restarted on the same dedupe store, and two
//! relay instances sharing one Redis: no apns-id reaches the mock twice and every push ends
//! with a final outcome at the sender.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use testbed::apns::ApnsFaults;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_restart_loses_and_duplicates_nothing() {
    // A little latency keeps pushes in flight at the moment of the kill.
    let h = Harness::new(ApnsFaults {
        latency_ms: 2,
        ..ApnsFaults::default()
    })
    .await;
    let listen = testkit::net::private_addr().to_string();
    let config = h.path("relay.toml");
    std::fs::write(&config, h.relay_toml(&listen, "")).unwrap();
    let (mut child, addr) = spawn_binary(&config);
    let router = Arc::new(h.router_via_relay(addr));
    let sender = tokio::spawn({
        let router = router.clone();
        async move { blast(&router, N, CONCURRENCY, false).await }
    });
    assert!(
        h.mock.wait_for_count(N / 3, Duration::from_secs(60)).await,
        "the run did not get going"
    );
    child.kill(); // SIGKILL
    let at_kill = h.mock.count();
    assert!(at_kill < N, "the kill came after the run");
    let (mut child, _) = spawn_binary(&config);
    let results = tokio::time::timeout(timeout(), sender)
        .await
        .expect("run timed out")
        .unwrap();
    child.kill();
    assert_eq!(results.len(), N);
    let (accepted, rejected, unknown) = tally(&results);
    assert_no_duplicates(&h.mock);
    assert_eq!(rejected, 0);
    assert_eq!(accepted + unknown, N);
    // Unknown pushes were in flight at the kill: delivered or not, never sent again.
    assert!(h.mock.count() <= N && h.mock.count() >= accepted);
    assert!(
        results.iter().flatten().any(|d| d.sends > 1),
        "no sender retried across the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_sharing_redis_deliver_a_push_sent_to_both_once() {
    let redis = testkit::servers::Redis::start();
    let h = Harness::new(ApnsFaults {
        latency_ms: 1,
        ..ApnsFaults::default()
    })
    .await;
    let extra = format!("[dedupe]\nbackend = \"redis\"\nurl = \"{}\"\n", redis.url());
    let toml = h
        .relay_toml("127.0.0.1:0", "")
        .replace("[dedupe]\npath = \"dedupe\"\n", &extra);
    let a = apns_relay::server::start(&h.config(&toml)).await.unwrap();
    let b = apns_relay::server::start(&h.config(&toml)).await.unwrap();
    let ra = Arc::new(h.router_via_relay(a.relay_addr.unwrap()));
    let rb = Arc::new(h.router_via_relay(b.relay_addr.unwrap()));
    let n = 2_000;
    let results: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(
            futures::stream::iter(0..n).map(|i| {
                let (ra, rb) = (ra.clone(), rb.clone());
                async move {
                    let note = notification(i);
                    let (x, y) = tokio::join!(ra.send(&note), rb.send(&note));
                    [x.map_err(|e| e.to_string()), y.map_err(|e| e.to_string())]
                }
            }),
            128,
        ))
        .await
        .into_iter()
        .flatten()
        .collect();
    let (accepted, _, _) = tally(&results);
    assert_no_duplicates(&h.mock);
    assert_eq!(accepted, 2 * n);
    assert_eq!(h.mock.count(), n);
    let hits = results
        .iter()
        .flatten()
        .filter(|d| d.dedupe.is_some())
        .count();
    assert!(
        hits >= n,
        "each push's second copy is answered from the shared store ({hits})"
    );
    a.shutdown().await;
    b.shutdown().await;
}

use futures::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_a_failing_store_with_503() {
    let mut redis = testkit::servers::Redis::start();
    let h = Harness::new(ApnsFaults::default()).await;
    let extra = format!(
        "[dedupe]\nbackend = \"redis\"\nurl = \"{}\"\n[ops]\nlisten = \"127.0.0.1:0\"\n",
        redis.url()
    );
    let toml = h
        .relay_toml("127.0.0.1:0", "")
        .replace("[dedupe]\npath = \"dedupe\"\n", &extra);
    let relay = apns_relay::server::start(&h.config(&toml)).await.unwrap();
    let url = format!("http://{}/healthz", relay.ops_addr.unwrap());
    let get = || async {
        let res = reqwest::get(&url).await.unwrap();
        let status = res.status().as_u16();
        (status, res.json::<serde_json::Value>().await.unwrap())
    };
    let (status, body) = get().await;
    assert_eq!(
        (status, body["store"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    // The store goes away: the relay says so, and refuses pushes rather than risk duplicates.
    redis.process().kill();
    let (status, body) = get().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "store failing");
    assert!(
        body["store"].as_str().unwrap_or_default().contains("redis"),
        "{body}"
    );
    relay.shutdown().await;
}
