//! The fault matrix: 10,000 pushes per case through the relay to a real mock APNs (TLS,
//! HTTP/2) that injects one fault. In every case the mock records no apns-id twice and every
//! push has a final outcome at the sender.

mod common;

use std::sync::Arc;

use common::*;
use testbed::apns::ApnsFaults;

/// Runs one case; returns the harness, (accepted, rejected, unknown) and the relay's metrics.
async fn run(faults: ApnsFaults, twice: bool) -> (Harness, (usize, usize, usize), String) {
    let h = Harness::new(faults).await;
    let relay = h.start_relay("").await;
    let router = Arc::new(h.router_via_relay(relay.relay_addr.unwrap()));
    let results = tokio::time::timeout(timeout(), blast(&router, N, CONCURRENCY, twice))
        .await
        .expect("run timed out");
    assert_eq!(results.len(), if twice { 2 * N } else { N });
    let t = tally(&results);
    assert_no_duplicates(&h.mock);
    let metrics = relay.metrics.render();
    relay.shutdown().await;
    (h, t, metrics)
}

/// Runs a case whose fault APNs asks the relay to retry: every push ends accepted, the mock
/// holds each once, and the relay counted retries under `cause`.
async fn all_delivered_after_retries(faults: ApnsFaults, cause: &str) {
    let (h, (accepted, rejected, unknown), metrics) = run(faults, false).await;
    // On failure, say what the pushes that were not accepted ended as, and why.
    let outcomes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("apns_relay_pushes_total") || l.contains("retries_total"))
        .collect();
    assert_eq!(
        (accepted, rejected, unknown),
        (N, 0, 0),
        "accepted, rejected, unknown; relay: {outcomes:#?}"
    );
    assert_eq!(h.mock.count(), N);
    assert!(
        metrics.contains(&format!(r#"apns_relay_retries_total{{cause="{cause}"}}"#)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_request_written_ends_unknown_never_resent() {
    let faults = ApnsFaults {
        reset_after_read_rate: 0.05,
        seed: 7,
        ..ApnsFaults::default()
    };
    let (h, (accepted, rejected, unknown), _) = run(faults, false).await;
    assert!(unknown > 0, "the fault never fired");
    assert_eq!(rejected, 0);
    assert_eq!(accepted + unknown, N);
    // The mock recorded every push exactly once: the unknown ones were delivered, not resent.
    assert_eq!(h.mock.count(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_every_500_streams_loses_and_duplicates_nothing() {
    let faults = ApnsFaults {
        goaway_after: Some(500),
        ..ApnsFaults::default()
    };
    let (h, (accepted, _, _), metrics) = run(faults, false).await;
    assert_eq!(accepted, N);
    assert_eq!(h.mock.count(), N);
    assert!(h.mock.stats().goaways >= 10, "{:?}", h.mock.stats());
    // The mock's GOAWAY is h2's graceful one (last-stream-id MAX, a PING, then the real last
    // stream id), and the relay stops opening streams on a connection at the first GOAWAY, so
    // a stream above the final last-stream-id (refused, then retried under `goaway`) happens
    // only when streams were on the wire during that PING: not in every run. The retry of
    // such a stream is what `retries_total{cause="goaway"}` counts when it does happen.
    assert!(
        !metrics.contains(r#"outcome="unknown""#),
        "a GOAWAY left a push unknown: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_stream_is_retried() {
    let faults = ApnsFaults {
        refused_stream_rate: 0.05,
        seed: 3,
        ..ApnsFaults::default()
    };
    all_delivered_after_retries(faults, "refused_stream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_429_is_retried() {
    all_delivered_after_retries(
        ApnsFaults {
            rate_429: 0.05,
            seed: 4,
            ..ApnsFaults::default()
        },
        "status_429",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_500_is_retried() {
    all_delivered_after_retries(
        ApnsFaults {
            rate_500: 0.05,
            seed: 5,
            ..ApnsFaults::default()
        },
        "status_500",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_503_is_retried() {
    all_delivered_after_retries(
        ApnsFaults {
            rate_503: 0.05,
            seed: 6,
            ..ApnsFaults::default()
        },
        "status_503",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_sends_every_push_twice_delivers_each_once() {
    let (h, (accepted, _, _), metrics) = run(ApnsFaults::default(), true).await;
    assert_eq!(accepted, 2 * N, "both copies report the one outcome");
    assert_eq!(h.mock.count(), N);
    assert!(
        metrics.contains("apns_relay_dedupe_hits_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_stream_limit_is_respected() {
    // 4 connections × 8 streams against 256 pushes in flight: the pool queues instead of
    // opening streams APNs would refuse.
    let faults = ApnsFaults {
        max_concurrent_streams: Some(8),
        latency_ms: 1,
        ..ApnsFaults::default()
    };
    let h = Harness::new(faults).await;
    let relay = h.start_relay("").await;
    let router = Arc::new(h.router_via_relay(relay.relay_addr.unwrap()));
    let results = blast(&router, 3_000, CONCURRENCY, false).await;
    let (accepted, _, _) = tally(&results);
    assert_eq!(accepted, 3_000);
    let metrics = relay.metrics.render();
    assert!(
        !metrics.contains("apns_relay_retries_total{"),
        "no stream was refused or retried: {metrics}"
    );
    relay.shutdown().await;
}
