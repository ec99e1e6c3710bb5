//! Benchmark: the same HTTP/2-over-TLS APNs client sends pushes straight to the mock APNs and
//! through the relay (the release `apns-relay` binary, TLS inbound, fjall dedupe), flat-out and
//! at a fixed rate, alternating rounds in one sitting. Latency is measured from each push's
//! intended start (open model), so a stall shows in the tail.
//!
//! ```text
//! cargo build --release -p apns-relay --bin apns-relay --example relay_bench
//! target/release/examples/relay_bench --relay-bin target/release/apns-relay
//! ```
//!
//! `--store DIR` runs the relay on an existing dedupe store (one filled with a day of keys by
//! `store_bench --keep DIR`) instead of an empty one. `--soak SECS` replaces the rounds: pushes
//! at `--rate` straight to the mock (for `--soak-direct` seconds, default SECS), then for SECS
//! through the relay, printing a row
//! per 10 s (latency from the intended start: p50, p99, max; the relay's RSS).

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use h2::client::SendRequest;
use hdrhistogram::Histogram;
use rustls::pki_types::ServerName;
use testbed::apns::{self, MockApnsConfig};
use testbed::pki::{h2_client_config, CertificateAuthority, ProviderKey};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

mod common;
use common::{arg, cpu_us};

const TEAM: &str = "TEAM123456";

#[derive(Clone)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    auth: String,
}

async fn connect(t: &Target) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(t.addr).await.expect("connect");
    tcp.set_nodelay(true).ok();
    let tls = TlsConnector::from(t.tls.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("tls");
    let (send, conn) = h2::client::handshake(tls).await.expect("h2");
    tokio::spawn(conn);
    send
}

/// Push `i`'s device token: 32 bytes that look random, as APNs tokens do (sequential tokens
/// would flatter the relay's store, whose lookups then hit neighbouring keys).
fn device_token(i: u64) -> String {
    let mut x = i;
    let mut splitmix = || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..4).map(|_| format!("{:016x}", splitmix())).collect()
}

async fn push(send: SendRequest<Bytes>, t: &Target, i: u64) -> u16 {
    let req = http::Request::post(format!("https://localhost/3/device/{}", device_token(i)))
        .header("authorization", &t.auth)
        .header("apns-topic", "com.example.app")
        .header("apns-push-type", "alert")
        .header("apns-id", uuid::Uuid::new_v4().to_string())
        .body(())
        .unwrap();
    let Ok(mut send) = send.ready().await else {
        return 0;
    };
    let Ok((resp, mut body)) = send.send_request(req, false) else {
        return 0;
    };
    if body
        .send_data(
            Bytes::from_static(br#"{"aps":{"alert":{"title":"bench","body":"hello"}}}"#),
            true,
        )
        .is_err()
    {
        return 0;
    }
    match resp.await {
        Ok(r) => {
            let status = r.status().as_u16();
            let mut b = r.into_body();
            while let Some(Ok(c)) = b.data().await {
                let _ = b.flow_control().release_capacity(c.len());
            }
            status
        }
        Err(_) => 0,
    }
}

/// Flat-out: `n` pushes, `conc` in flight over `conns` connections. Returns pushes/s.
async fn flat_out(t: &Target, n: u64, conc: usize, conns: usize) -> (f64, u64) {
    let mut senders = Vec::new();
    for _ in 0..conns {
        senders.push(connect(t).await);
    }
    let start = Instant::now();
    let statuses: Vec<u16> = stream::iter(0..n)
        .map(|i| push(senders[i as usize % conns].clone(), t, i))
        .buffer_unordered(conc)
        .collect()
        .await;
    let elapsed = start.elapsed();
    (n as f64 / elapsed.as_secs_f64(), failed(t, &statuses))
}

/// Counts the pushes not answered 200 and, if any, says which statuses they got (0: no
/// answer) on stderr, so a failed run shows its cause.
fn failed(t: &Target, statuses: &[u16]) -> u64 {
    let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
    for s in statuses.iter().filter(|s| **s != 200) {
        *by_status.entry(*s).or_default() += 1;
    }
    if !by_status.is_empty() {
        eprintln!(
            "{}: pushes not answered 200, by status: {by_status:?}",
            t.name
        );
    }
    by_status.values().sum()
}

/// Fixed rate: `n` pushes at `rate`/s; latency from the intended start, µs.
async fn paced(t: &Target, n: u64, rate: f64, conns: usize) -> (Histogram<u64>, u64) {
    let mut senders = Vec::new();
    for _ in 0..conns {
        senders.push(connect(t).await);
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let intended = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(intended).await;
        let (send, t) = (senders[i as usize % conns].clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let s = push(send, &t, i).await;
            (s, intended.elapsed())
        }));
    }
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut statuses = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (s, d) = task.await.unwrap();
        statuses.push(s);
        h.record(d.as_micros() as u64).unwrap();
    }
    (h, failed(t, &statuses))
}

/// A process's resident memory in KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The soak: `secs` seconds at `rate`/s over one set of connections, open model; a row per
/// 10 s window (pushes, p50, p99, max in µs, failures, the relay's RSS). Returns the largest
/// latency seen, in µs.
async fn soak(t: &Target, secs: u64, rate: f64, relay_pid: u32) -> u64 {
    const WINDOW: u64 = 10;
    let mut senders = Vec::new();
    for _ in 0..4 {
        senders.push(connect(t).await);
    }
    let total = (secs as f64 * rate) as u64;
    let per_window = (WINDOW as f64 * rate) as u64;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u16, Duration)>();
    let name = t.name;
    let collector = tokio::spawn(async move {
        let windows = total.div_ceil(per_window);
        let mut hists: Vec<Histogram<u64>> = (0..windows)
            .map(|_| Histogram::<u64>::new(3).unwrap())
            .collect();
        let mut failed = vec![0u64; windows as usize];
        let mut next = 0u64;
        let mut worst = 0u64;
        while let Some((w, status, d)) = rx.recv().await {
            hists[w as usize].record(d.as_micros() as u64).unwrap();
            failed[w as usize] += u64::from(status != 200);
            // Windows finish in order (a push is due after every push of earlier windows,
            // and each ends within the timeouts): print each once complete.
            while next < windows
                && hists[next as usize].len() == per_window.min(total - next * per_window)
            {
                let h = &hists[next as usize];
                worst = worst.max(h.max());
                println!(
                    "{name},{},{},{},{},{},{},{}",
                    (next + 1) * WINDOW,
                    h.len(),
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.max(),
                    failed[next as usize],
                    rss_kib(relay_pid)
                );
                next += 1;
            }
        }
        worst
    });
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    for i in 0..total {
        let intended = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(intended).await;
        let (send, t, tx) = (senders[i as usize % 4].clone(), t.clone(), tx.clone());
        tokio::spawn(async move {
            let s = push(send, &t, i).await;
            let _ = tx.send((i / per_window, s, intended.elapsed()));
        });
    }
    drop(tx);
    collector.await.unwrap()
}

/// Read and write system calls a process has made, from `/proc/PID/io`.
fn syscalls(pid: u32) -> (u64, u64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("syscr:"), field("syscw:"))
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let relay_bin = arg("--relay-bin", "target/release/apns-relay");
    let n: u64 = arg("--n", "20000").parse().unwrap();
    let rate: f64 = arg("--rate", "5000").parse().unwrap();
    let rounds: usize = arg("--rounds", "3").parse().unwrap();
    let conc: usize = arg("--concurrency", "256").parse().unwrap();

    // A key id of its own per run: the relay keeps its provider token in the dedupe store under
    // (team, key id), and a run on a store an earlier run used (`--store`) would otherwise
    // adopt a token signed by that run's key, which this run's mock refuses.
    let key_id = format!("K{:09}", fastrand::u32(..1_000_000_000));
    let key = ProviderKey::generate(&key_id).unwrap();
    // Two providers sign for the one team here, each with its own `iat`: this bench (direct)
    // and the relay. APNs, and the mock, refuse a team's new token within 20 minutes of its
    // last one (429 TooManyProviderTokenUpdates), so when the two tokens' `iat` fell in
    // different seconds every relayed push was refused: the rare run where all of them
    // failed. A deployment has one provider per team; the bench turns that rule off.
    let mut config = MockApnsConfig::with_token_key(TEAM, &key);
    if let apns::Auth::Token(auth) = &mut config.auth {
        auth.min_update_interval = None;
    }
    let mock = apns::spawn(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::new("bench relay CA").unwrap();
    let relay_cert = ca.issue_server(&["localhost"]).unwrap();
    for (name, text) in [
        ("apns-ca.pem", mock.ca_pem().to_string()),
        ("key.p8", key.to_p8_pem()),
        ("relay.crt", relay_cert.cert_pem.clone()),
        ("relay.key", relay_cert.key_pem.clone()),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let toml = format!(
        r#"[relay]
listen = "127.0.0.1:0"
tls = {{ cert = "relay.crt", key = "relay.key" }}
[apns]
endpoint = "{}"
ca = "apns-ca.pem"
connections = 4
token = {{ key = "key.p8", key_id = "{key_id}", team_id = "{TEAM}" }}
[dedupe]
path = "{store}"
fsync = {fsync}
cache_mib = {cache_mib}
[[senders]]
name = "bench"
bearer_token = "bench-token"
"#,
        mock.url(),
        fsync = arg("--fsync", "true"),
        cache_mib = arg("--cache-mib", "256"),
        store = {
            let given = arg("--store", "");
            if given.is_empty() {
                dir.path().join("dedupe").display().to_string()
            } else {
                given
            }
        },
    );
    std::fs::write(dir.path().join("relay.toml"), toml).unwrap();
    // `--relay-cpu N` pins the relay to CPU N (run this bench itself under `taskset` on
    // another CPU), the way a deployed relay has its own machine.
    let relay_cpu = arg("--relay-cpu", "");
    let mut command = if relay_cpu.is_empty() {
        std::process::Command::new(&relay_bin)
    } else {
        let mut c = std::process::Command::new("taskset");
        c.args(["-c", &relay_cpu]).arg(&relay_bin);
        c
    };
    let mut child = command
        .args(["serve", "--config"])
        .arg(dir.path().join("relay.toml"))
        .env("APNS_RELAY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("relay binary");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let relay_addr: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("relay="))
        .unwrap()
        .parse()
        .unwrap();

    let direct = Target {
        name: "direct",
        addr: mock.addr(),
        tls: Arc::new(h2_client_config(mock.ca_pem(), None).unwrap()),
        auth: format!("bearer {}", key.provider_token_now(TEAM).unwrap()),
    };
    let relay = Target {
        name: "relay",
        addr: relay_addr,
        tls: Arc::new(h2_client_config(&relay_cert.ca_pem, None).unwrap()),
        auth: "bearer bench-token".into(),
    };
    // Warm-up: connections, token, page cache.
    for t in [&direct, &relay] {
        flat_out(t, 2000, conc, 4).await;
    }
    let soak_secs: u64 = arg("--soak", "0").parse().unwrap();
    if soak_secs > 0 {
        println!("target,second,pushes,p50_us,p99_us,max_us,failed,relay_rss_kib");
        let direct_secs: u64 = arg("--soak-direct", &soak_secs.to_string())
            .parse()
            .unwrap();
        let direct_max = soak(&direct, direct_secs, rate, child.id()).await;
        let relay_max = soak(&relay, soak_secs, rate, child.id()).await;
        println!("# largest latency: direct {direct_max} us, relay {relay_max} us");
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    println!(
        "round,target,flat_out_per_s,flat_failed,bench_cpu_us_per_push,bench_reads_per_push,bench_writes_per_push,relay_cpu_us_per_push,relay_reads_per_push,relay_writes_per_push,paced_rate,p50_us,p99_us,max_us,paced_failed"
    );
    let (me, relay_pid) = (std::process::id(), child.id());
    for round in 1..=rounds {
        for t in [&direct, &relay] {
            let (cpu_me, cpu_relay) = (cpu_us(me), cpu_us(relay_pid));
            let (io, my_io) = (syscalls(relay_pid), syscalls(me));
            let (tput, ff) = flat_out(t, n, conc, 4).await;
            let (io_after, my_io_after) = (syscalls(relay_pid), syscalls(me));
            let my_reads = (my_io_after.0 - my_io.0) as f64 / n as f64;
            let my_writes = (my_io_after.1 - my_io.1) as f64 / n as f64;
            let reads = (io_after.0 - io.0) as f64 / n as f64;
            let writes = (io_after.1 - io.1) as f64 / n as f64;
            let per_push = |before: u64, pid: u32| (cpu_us(pid) - before) as f64 / n as f64;
            let (bench_cpu, relay_cpu) = (per_push(cpu_me, me), per_push(cpu_relay, relay_pid));
            let (h, pf) = paced(t, n, rate, 4).await;
            println!(
                "{round},{},{tput:.0},{ff},{bench_cpu:.1},{my_reads:.2},{my_writes:.2},{relay_cpu:.1},{reads:.2},{writes:.2},{rate},{},{},{},{pf}",
                t.name,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.max()
            );
        }
    }
    println!("# relay RSS at the end: {} KiB", rss_kib(relay_pid));
    let _ = child.kill();
    let _ = child.wait();
}
