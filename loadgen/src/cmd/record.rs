//! `loadgen record --listen ADDR --upstream URL --out FILE.gor`: runs the recording proxy
//! ([`crate::proxy`]) until Ctrl-C, SIGTERM or `--duration`, and says what it recorded.

use std::net::SocketAddr;

use super::{exit, fail};
use crate::cli::RecordArgs;
use crate::proxy::{GorProxy, ProxyConfig, ProxyError};
use crate::stop::{Stop, StopReason};

/// Runs `loadgen record`; returns the exit code.
pub fn main(args: RecordArgs) -> i32 {
    let listen: SocketAddr = match args.listen.parse() {
        Ok(a) => a,
        Err(e) => {
            return fail(
                exit::BAD_INPUT,
                &format!("--listen {}: expected IP:PORT: {e}", args.listen),
            )
        }
    };
    let duration = match args
        .duration
        .as_deref()
        .map(common::duration::parse)
        .transpose()
    {
        Ok(d) => d,
        Err(e) => return fail(exit::BAD_INPUT, &format!("--duration: {e}")),
    };
    let timeout = match common::duration::parse(&args.timeout) {
        Ok(d) => d,
        Err(e) => return fail(exit::BAD_INPUT, &format!("--timeout: {e}")),
    };
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let stop = Stop::new();
    super::install_signal_handler(stop.clone());
    runtime.block_on(async {
        if let Err(e) = crate::run::target::reachable(&args.upstream).await {
            return fail(
                exit::BAD_INPUT,
                &e.to_string().replacen("target", "--upstream", 1),
            );
        }
        let config = ProxyConfig {
            listen,
            upstream: args.upstream.clone(),
            out: args.out.clone(),
            timeout,
            insecure: args.insecure,
        };
        let proxy = match GorProxy::bind(config).await {
            Ok(p) => p,
            Err(e) => return fail(exit::BAD_INPUT, &e.to_string()),
        };
        eprintln!(
            "recording http://{} → {} into {} (Ctrl-C to stop)",
            proxy.addr(),
            args.upstream,
            args.out.display()
        );
        if let Some(d) = duration {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                stop.stop(StopReason::DurationReached);
            });
        }
        match proxy.run(stop).await {
            Ok(s) => {
                eprintln!(
                    "recorded {} requests and {} responses into {}{}",
                    s.requests,
                    s.responses,
                    args.out.display(),
                    if s.upstream_errors > 0 {
                        format!(" ({} upstream errors, answered 502)", s.upstream_errors)
                    } else {
                        String::new()
                    }
                );
                exit::OK
            }
            Err(ProxyError::BadInput(m)) => fail(exit::BAD_INPUT, &m),
            Err(ProxyError::Io(m)) => fail(exit::HARNESS, &m),
        }
    })
}
