//! The overseas hop, emulated (issue 17, item 9): a sender in a "China" network namespace,
//! the relay and the mock APNs in a "US" one, and between them `testbed::link` at 180 ms RTT
//! with jitter, 1–3 % loss and a 20 Mbit/s cap. Over that link, with loss bursts, a 5 s cut,
//! the relay SIGKILLed and restarted, and the sender resending on its own timeout: no
//! apns-id reaches the mock twice and every push ends with a final outcome at the sender.
//!
//! The tests need root (network namespaces, TUN devices) and skip with the reason without it;
//! CI runs as root. A few hundred pushes each; the benchmark (`bench/overseas.sh`) sends
//! 20,000 per path.

mod common;
#[path = "common/overseas.rs"]
mod overseas;

use std::path::Path;
use std::time::Duration;

use common::{assert_no_duplicates, tally};
use overseas::{send_all, Overseas, Sent, Via};
use testbed::apns::ApnsFaults;

/// The cross-border link of every case: 180 ms RTT, ±10 ms jitter each way, 2 % loss each
/// way, 20 Mbit/s.
const LINK: &str = "rtt=180ms jitter=10ms loss=2% rate=20mbit";
const N: usize = 300;
const CONCURRENCY: usize = 32;

fn env(test: &str, profile: &str, faults: ApnsFaults) -> Option<Overseas> {
    if testkit::netns::skip(test) {
        return None;
    }
    let relay = Path::new(env!("CARGO_BIN_EXE_apns-relay"));
    Some(Overseas::start("ov", profile, faults, relay))
}

fn outcomes(sent: &[Sent]) -> Vec<Result<apns_relay::router::Delivery, String>> {
    sent.iter().map(|s| s.result.clone()).collect()
}

#[test]
fn every_path_gives_every_push_a_final_outcome_across_the_lossy_link() {
    let Some(env) = env(
        "every_path_gives_every_push_a_final_outcome_across_the_lossy_link",
        LINK,
        ApnsFaults::default(),
    ) else {
        return;
    };
    for via in [Via::Relay, Via::Proxy, Via::Direct] {
        let before = env.mock.count();
        let router = env.router(via, "");
        let sent = env.in_china(send_all(router, N, CONCURRENCY));
        let (accepted, rejected, unknown) = tally(&outcomes(&sent));
        let delivered = env.mock.count() - before;
        eprintln!(
            "{}: {accepted} accepted, {unknown} unknown, {delivered} at the mock",
            via.name()
        );
        assert_eq!(rejected, 0, "{}", via.name());
        assert_eq!(accepted + unknown, N, "{}", via.name());
        if via == Via::Relay {
            // The relay's path resends until it knows: everything arrives.
            assert_eq!((accepted, delivered), (N, N));
        } else {
            assert!(
                delivered >= accepted && delivered <= N,
                "{}: {delivered}",
                via.name()
            );
        }
        assert_no_duplicates(&env.mock);
    }
    let stats = env.link.stats();
    assert!(
        stats.up.lost_random > 0 && stats.down.lost_random > 0,
        "the link lost nothing: {stats:?}"
    );
}

#[test]
fn loss_bursts_cost_time_not_pushes() {
    // A burst starts at about one packet in a hundred and takes 8 packets on average: with
    // the 1 % random loss, ~8 % of the packets are lost, most of them in runs.
    let profile = "rtt=180ms jitter=10ms loss=1% burst_rate=1% burst_length=8 rate=20mbit";
    let Some(env) = env(
        "loss_bursts_cost_time_not_pushes",
        profile,
        ApnsFaults::default(),
    ) else {
        return;
    };
    let sent = env.in_china(send_all(env.router(Via::Relay, ""), N, CONCURRENCY));
    let (accepted, _, _) = tally(&outcomes(&sent));
    assert_eq!(accepted, N);
    assert_eq!(env.mock.count(), N);
    assert_no_duplicates(&env.mock);
    let stats = env.link.stats();
    assert!(
        stats.up.lost_burst + stats.down.lost_burst >= 30,
        "no loss burst happened: {stats:?}"
    );
}

#[test]
fn a_5s_cut_delays_pushes_and_loses_none() {
    let Some(env) = env(
        "a_5s_cut_delays_pushes_and_loses_none",
        LINK,
        ApnsFaults::default(),
    ) else {
        return;
    };
    // A 3 s request timeout: the sender also resends into the cut.
    let router = env.router(Via::Relay, "request_timeout = \"3s\"");
    let run = env.spawn_in_china(send_all(router, N, 16));
    assert!(
        env.wait_for_count(N / 3, Duration::from_secs(60)),
        "the run did not get going"
    );
    env.link.cut(Some(Duration::from_secs(5)));
    let at_cut = env.mock.count();
    let sent = env.in_china(run).unwrap();
    let (accepted, _, _) = tally(&outcomes(&sent));
    assert!(at_cut < N, "the cut came after the run");
    assert_eq!(accepted, N);
    assert_eq!(env.mock.count(), N);
    assert_no_duplicates(&env.mock);
    let longest = sent.iter().map(|s| s.took).max().unwrap_or_default();
    assert!(
        longest >= Duration::from_secs(5),
        "no push waited out the cut ({longest:?})"
    );
    let stats = env.link.stats();
    assert!(stats.up.dropped_cut > 0, "{stats:?}");
}

#[test]
fn relay_sigkill_and_restart_over_the_link_lose_and_duplicate_nothing() {
    // Latency at the mock keeps pushes in flight at the moment of the kill.
    let faults = ApnsFaults {
        latency_ms: 50,
        ..ApnsFaults::default()
    };
    let Some(mut env) = env(
        "relay_sigkill_and_restart_over_the_link_lose_and_duplicate_nothing",
        LINK,
        faults,
    ) else {
        return;
    };
    let router = env.router(Via::Relay, "retry_for = \"60s\"");
    let run = env.spawn_in_china(send_all(router, N, CONCURRENCY));
    assert!(
        env.wait_for_count(N / 3, Duration::from_secs(60)),
        "the run did not get going"
    );
    env.kill_relay();
    let at_kill = env.mock.count();
    env.start_relay();
    let sent = env.in_china(run).unwrap();
    assert!(at_kill < N, "the kill came after the run");
    let results = outcomes(&sent);
    let (accepted, rejected, unknown) = tally(&results);
    assert_eq!(rejected, 0);
    assert_eq!(accepted + unknown, N);
    assert_no_duplicates(&env.mock);
    // Unknown pushes were in flight at the kill: delivered or not, never sent again.
    assert!(env.mock.count() >= accepted && env.mock.count() <= N);
    assert!(
        results.iter().flatten().any(|d| d.sends > 1),
        "no push was resent across the restart"
    );
}

#[test]
fn the_sender_resending_on_its_own_timeout_delivers_each_push_once() {
    // APNs at peak: 1.2 s to answer, past the sender's 1 s timeout, so every push's first
    // send times out and is sent again with the same apns-id.
    let faults = ApnsFaults {
        latency_ms: 1200,
        ..ApnsFaults::default()
    };
    let Some(env) = env(
        "the_sender_resending_on_its_own_timeout_delivers_each_push_once",
        LINK,
        faults,
    ) else {
        return;
    };
    let n = 200;
    let router = env.router(Via::Relay, "request_timeout = \"1s\"\nretry_for = \"60s\"");
    let sent = env.in_china(send_all(router, n, 64));
    let results = outcomes(&sent);
    let (accepted, _, _) = tally(&results);
    assert_eq!(accepted, n);
    assert_eq!(env.mock.count(), n);
    assert_no_duplicates(&env.mock);
    let resent = results.iter().flatten().filter(|d| d.sends > 1).count();
    assert_eq!(resent, n, "every first send should have timed out");
    assert!(
        results
            .iter()
            .flatten()
            .any(|d| d.dedupe.as_deref() == Some("in_flight")),
        "no resend was answered from the push in flight"
    );
}
