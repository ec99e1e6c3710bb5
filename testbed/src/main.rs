//! `testbed`: serves pushbench's embedded default targets from the command line.
//!
//! ```text
//! testbed gateway --listen 127.0.0.1:8080 [--latency 5ms] [--latency-jitter 2ms]
//!                 [--error-rate 0.01] [--error-status 503]
//! ```
//! prints `listening on http://ADDR` once bound and runs until SIGINT or SIGTERM. Exits 2 on bad
//! arguments, 1 when the gateway cannot run.
//!
//! ```text
//! testbed mock-apns --listen 127.0.0.1:8443 [--tls-dir DIR] [--client-ca FILE] [--topic T]…
//! ```
//! serves the mock APNs (see `testbed::apns`) and prints `listening on https://ADDR`, then
//! `credentials in DIR` (CA to trust, `.p8` provider key, team and key id).
//! `testbed apns-token --tls-dir DIR` prints a fresh provider token signed with that key.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use testbed::{parse_duration, FaultConfig, GatewayConfig};

mod mock_apns_cli;

/// Embedded default targets for pushbench.
#[derive(Debug, Parser)]
#[command(name = "testbed", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference push gateway (HTTP/1.1 and h2c) until SIGINT or SIGTERM.
    Gateway(GatewayArgs),
    /// Run the mock APNs (HTTP/2 over TLS, ALPN h2) until SIGINT or SIGTERM.
    MockApns(mock_apns_cli::MockApnsArgs),
    /// Print a provider token (JWT) signed with the .p8 key of a mock-apns credentials dir.
    ApnsToken(mock_apns_cli::ApnsTokenArgs),
}

#[derive(Debug, Args)]
struct GatewayArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Latency added to every request, e.g. 5ms, 1s, 250us.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0ms")]
    latency: Duration,
    /// Extra latency drawn uniformly from 0 up to this, per request.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0ms")]
    latency_jitter: Duration,
    /// Fraction of requests (0 to 1) answered with --error-status instead.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// Status of injected errors (400-599).
    #[arg(long, value_name = "STATUS", default_value_t = 503)]
    error_status: u16,
}

impl GatewayArgs {
    fn faults(&self) -> FaultConfig {
        FaultConfig {
            latency_ms: self.latency.as_secs_f64() * 1e3,
            jitter_ms: self.latency_jitter.as_secs_f64() * 1e3,
            error_rate: self.error_rate,
            error_status: self.error_status,
            stall_ms: 0,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Gateway(args) => {
            let faults = args.faults();
            if let Err(error) = faults.validate() {
                eprintln!("testbed: {error}");
                return ExitCode::from(2);
            }
            let config = GatewayConfig {
                listen: args.listen,
                faults,
            };
            match run_gateway(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("testbed: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::MockApns(args) => mock_apns_cli::main(args),
        Command::ApnsToken(args) => mock_apns_cli::token(args),
    }
}

fn run_gateway(config: GatewayConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("could not start the Tokio runtime")?;
    runtime.block_on(async {
        let listen = config.listen;
        let gateway = testbed::spawn(config)
            .await
            .with_context(|| format!("could not listen on {listen}"))?;
        println!("listening on {}", gateway.base_url());
        wait_for_signal().await?;
        gateway.shutdown().await;
        Ok(())
    })
}

/// Returns on SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate =
            signal(SignalKind::terminate()).context("could not listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("could not listen for SIGINT")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("could not listen for Ctrl-C")?;
    Ok(())
}
