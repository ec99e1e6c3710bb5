//! Hand-written goose 0.19 baseline for BENCHMARKS.md, measurement 2: the same request as
//! `bench/closed-healthz.yaml` (GET /healthz, status 200 expected, body read), the same users
//! and run time, with no YAML, templates or loadgen metrics in the way.
//!
//!   cargo build --release -p loadgen --example goose_baseline
//!   target/release/examples/goose_baseline http://127.0.0.1:18080 64 10
//!
//! Prints one line: `goose_baseline users=U secs=S requests=N failed=F req_per_s=R`
//! (requests are counted in the transaction; req_per_s = requests / S, like loadgen's
//! http_reqs / duration_s).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType};
use goose::goose::{GooseUser, Scenario, Transaction, TransactionFunction};
use goose::GooseAttack;

static OK: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
/// End of the measuring window: responses completed after it are not counted, and users
/// then idle (goose 0.19 was seen not to stop at the end of its test plan here, so the
/// example bounds the run itself).
static DEADLINE: OnceLock<Instant> = OnceLock::new();

fn healthz() -> TransactionFunction {
    Arc::new(|user: &mut GooseUser| {
        Box::pin(async move {
            let deadline = *DEADLINE.get().expect("deadline set before the attack");
            if Instant::now() >= deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Ok(());
            }
            match user.get("/healthz").await {
                Ok(goose) => match goose.response {
                    Ok(resp) if resp.status().as_u16() == 200 => {
                        // Read the body, as loadgen does, so the connection is reused.
                        let read = resp.bytes().await.is_ok();
                        if Instant::now() >= deadline {
                            // finished after the window: not counted
                        } else if read {
                            OK.fetch_add(1, Ordering::Relaxed);
                        } else {
                            FAILED.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        FAILED.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Err(_) => {
                    FAILED.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        })
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let host = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18080".into());
    let users: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let plan = format!("{users},0s;{users},{secs}s");

    let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?;
    attack = *attack.set_default(GooseDefault::Host, host.as_str())?;
    attack = *attack.set_default(GooseDefault::TestPlan, plan.as_str())?;
    for key in [
        GooseDefault::NoTelnet,
        GooseDefault::NoPrintMetrics,
        GooseDefault::NoErrorSummary,
    ] {
        attack = *attack.set_default(key, true)?;
    }
    attack = attack.register_scenario(
        Scenario::new("healthz")
            .register_transaction(Transaction::new(healthz()).set_name("healthz")),
    );
    DEADLINE
        .set(Instant::now() + Duration::from_secs(secs))
        .ok();
    // Bound the whole run: count what finished inside the window, then report and exit.
    let _ = tokio::time::timeout(Duration::from_secs(secs + 2), Box::pin(attack.execute())).await;

    let ok = OK.load(Ordering::Relaxed);
    let failed = FAILED.load(Ordering::Relaxed);
    let total = ok + failed;
    println!(
        "goose_baseline users={users} secs={secs} requests={total} failed={failed} req_per_s={:.0}",
        total as f64 / secs as f64
    );
    std::process::exit(0)
}
