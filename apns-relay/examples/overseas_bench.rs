//! Benchmark: the overseas hop, emulated. A sender's router in a "China" network namespace
//! sends N pushes to the mock APNs in a "US" namespace across `testbed::link` (180 ms RTT,
//! jitter, a bandwidth cap, each loss level in turn) three ways, in one sitting: directly,
//! through the relay (the release binary, TLS inbound, fjall dedupe) and through its CONNECT
//! proxy, `--rounds` times in turn. Per round, path and loss level: completion time,
//! p50/p99/max per push (from handing the push to the router to its final outcome, retries
//! included), outcomes, duplicates at the mock, the packets and bytes offered to the link in
//! each direction and the packets it dropped, and the TCP segments both kernels retransmitted
//! (`RetransSegs` of the two namespaces). Needs root.
//!
//! ```text
//! cargo build --release -p apns-relay --bin apns-relay --example overseas_bench
//! target/release/examples/overseas_bench --relay-bin target/release/apns-relay
//! ```

use std::path::Path;
use std::time::Instant;

use hdrhistogram::Histogram;
use testbed::apns::ApnsFaults;

// Only `arg` of the benches' shared helpers is needed here.
#[allow(dead_code)]
mod common;
use common::arg;
#[path = "../tests/common/overseas.rs"]
mod overseas;
use overseas::{send_all, Overseas, Sent, Via};

fn main() {
    if let Some(reason) = testkit::netns::unavailable() {
        eprintln!("overseas_bench: {reason}");
        std::process::exit(2);
    }
    let relay_bin = arg("--relay-bin", "target/release/apns-relay");
    let n: usize = arg("--n", "20000").parse().expect("--n: a number");
    let concurrency: usize = arg("--concurrency", "256").parse().expect("--concurrency");
    let warmup: usize = arg("--warmup", "500").parse().expect("--warmup: a number");
    let link = arg("--link", "rtt=180ms jitter=10ms rate=20mbit");
    let losses = arg("--loss", "1%,3%");
    let timeout = arg("--request-timeout", "10s");
    let rounds: usize = arg("--rounds", "2").parse().expect("--rounds: a number");
    let router_extra = format!("request_timeout = \"{timeout}\"\nretry_for = \"120s\"");
    println!(
        "loss,round,path,pushes,completion_s,pushes_per_s,p50_ms,p99_ms,max_ms,accepted,unknown,rejected,no_outcome,resent,at_mock,duplicates,packets_up,packets_down,bytes_up,bytes_down,packets_lost,tcp_retransmits"
    );
    for loss in losses.split(',') {
        let profile = format!("{link} loss={loss}");
        eprintln!("link: {profile}");
        let env = Overseas::start(
            "bench",
            &profile,
            ApnsFaults::default(),
            Path::new(&relay_bin),
        );
        let routers: Vec<_> = Via::ALL
            .iter()
            .map(|via| (*via, env.router(*via, &router_extra)))
            .collect();
        for round in 1..=rounds {
            for (via, router) in &routers {
                // Connections up and tokens signed before the clock starts, as for a sender
                // that has been running.
                env.in_china(send_all(router.clone(), warmup, concurrency));
                env.mock.clear();
                let before = Counts::now(&env);
                let started = Instant::now();
                let sent = env.in_china(send_all(router.clone(), n, concurrency));
                let completion = started.elapsed();
                let after = Counts::now(&env);
                let row = row(&sent, &env);
                println!(
                    "{loss},{round},{},{n},{:.2},{:.0},{row},{},{},{},{},{},{}",
                    via.name(),
                    completion.as_secs_f64(),
                    n as f64 / completion.as_secs_f64(),
                    after.up - before.up,
                    after.down - before.down,
                    after.bytes_up - before.bytes_up,
                    after.bytes_down - before.bytes_down,
                    after.lost - before.lost,
                    after.retransmits - before.retransmits,
                );
            }
        }
    }
}

/// Latency percentiles, outcomes and what the mock saw, as CSV fields.
fn row(sent: &[Sent], env: &Overseas) -> String {
    let mut h = Histogram::<u64>::new(3).expect("a histogram");
    for s in sent {
        h.record(s.took.as_micros() as u64)
            .expect("a latency in range");
    }
    let count = |o: &str| {
        sent.iter()
            .filter(|s| s.result.as_ref().is_ok_and(|d| d.outcome == o))
            .count()
    };
    let no_outcome = sent.iter().filter(|s| s.result.is_err()).count();
    if let Some(e) = sent.iter().find_map(|s| s.result.as_ref().err()) {
        eprintln!("no outcome, e.g. {e}");
    }
    let resent = sent
        .iter()
        .filter(|s| s.result.as_ref().is_ok_and(|d| d.sends > 1))
        .count();
    let duplicates: usize = env.mock.duplicates().iter().map(|(_, k)| k - 1).sum();
    let ms = |us: u64| us as f64 / 1e3;
    format!(
        "{:.1},{:.1},{:.1},{},{},{},{no_outcome},{resent},{},{duplicates}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        count("accepted"),
        count("unknown"),
        count("rejected"),
        env.mock.count(),
    )
}

/// Counters that only grow: packets and bytes offered to the link from China (up) and from
/// the US (down), packets it dropped (both ways), and TCP segments the kernels of both
/// namespaces retransmitted.
struct Counts {
    up: u64,
    down: u64,
    bytes_up: u64,
    bytes_down: u64,
    lost: u64,
    retransmits: u64,
}

impl Counts {
    fn now(env: &Overseas) -> Counts {
        let s = env.link.stats();
        let both = [s.up, s.down];
        Counts {
            up: s.up.packets,
            down: s.down.packets,
            bytes_up: s.up.bytes,
            bytes_down: s.down.bytes,
            lost: both
                .iter()
                .map(|c| c.lost_random + c.lost_burst + c.dropped_queue + c.dropped_cut)
                .sum(),
            retransmits: retransmits(&env.cn) + retransmits(&env.us),
        }
    }
}

/// `Tcp: RetransSegs` of `ns` (read from a thread inside it: /proc/thread-self/net is the
/// reading thread's namespace).
fn retransmits(ns: &testkit::netns::Netns) -> u64 {
    let snmp = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"));
    let snmp = snmp.expect("/proc/thread-self/net/snmp");
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
