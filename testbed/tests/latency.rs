//! Injected latency is the truth a load tester is checked against, so it is checked here from
//! the client side over loopback.
//!
//! A client that idles 5 ms between requests pays this machine's wake-up cost on every round
//! trip (on a shared virtual machine, 50–200 µs that no server can remove), so the fixed 5 ms is
//! compared with the same client's round trip to an unfaulted route after the same idle gap: the
//! median must exceed that by 5 ms within 3 % (150 µs), and nothing may be answered early.
//!
//! Alone in its own test binary so that no other test competes for the CPU while it measures.

mod http_client;
use http_client::http_client;

use std::time::{Duration, Instant};

use testbed::{FaultConfig, GatewayConfig};

const LATENCY: Duration = Duration::from_millis(5);
const SAMPLES: usize = 200;
const WARM_UP: usize = 30;

/// Median of `SAMPLES` sequential round trips to `path`, each after `idle` without traffic.
async fn median_round_trip(
    client: &reqwest::Client,
    url: &str,
    idle: Duration,
) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(SAMPLES);
    for i in 0..WARM_UP + SAMPLES {
        if !idle.is_zero() {
            tokio::time::sleep(idle).await;
        }
        let start = Instant::now();
        let response = client.get(url).send().await.expect("answer");
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.expect("body");
        if i >= WARM_UP {
            times.push(start.elapsed());
        }
    }
    times.sort();
    (times[0], times[SAMPLES / 2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_latency_median_is_within_three_percent() {
    let gateway = testbed::spawn(GatewayConfig {
        faults: FaultConfig {
            latency_ms: 5.0,
            ..FaultConfig::default()
        },
        ..GatewayConfig::default()
    })
    .await
    .expect("gateway starts");
    let client = http_client();
    let base = gateway.base_url();

    let (_, idle_round_trip) =
        median_round_trip(&client, &format!("{base}/healthz"), LATENCY).await;
    let (fastest, median) =
        median_round_trip(&client, &format!("{base}/stats"), Duration::ZERO).await;
    eprintln!("5 ms injected: fastest {fastest:?}, median {median:?}; round trip after 5 ms idle {idle_round_trip:?}");

    assert!(fastest >= LATENCY, "answered early: {fastest:?}");
    let expected = LATENCY + idle_round_trip;
    let error = median.abs_diff(expected);
    assert!(
        error <= LATENCY * 3 / 100,
        "median {median:?} is {error:?} away from 5 ms + the {idle_round_trip:?} round trip"
    );
    gateway.shutdown().await;
}
