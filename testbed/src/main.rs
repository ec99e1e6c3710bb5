//! `testbed`: serves pushbench's embedded default targets from the command line.
//!
//! ```text
//! testbed gateway --listen 127.0.0.1:8080 [--latency 5ms] [--latency-jitter 2ms]
//!                 [--error-rate 0.01] [--error-status 503]
//!                 [--rooms 6 --room-processes] [--heartbeat 30s] [--push-drop-rate 0.01] …
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
//!
//! ```text
//! testbed link --a-netns cn --a-addr 198.18.0.1/24 --b-netns us --b-addr 198.18.0.2/24 \
//!              --profile "rtt=180ms jitter=20ms loss=2% rate=20mbit" [--control 127.0.0.1:0]
//! ```
//! joins two network namespaces through TUN devices and emulates the link between them (see
//! `testbed::link`); prints `link up: …` and `control on ADDR`, takes `cut [DURATION]`,
//! `restore`, `profile [PROFILE]` and `stats` there, one per line, and prints `stats {…}` on
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use common::duration::parse as parse_duration;
use testbed::{FaultConfig, GatewayConfig, RoomCommand, RoomsConfig};

mod link_cli;
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
    /// Emulate a link (delay, jitter, loss, bandwidth cap, cuts) between two network
    /// namespaces through TUN devices, until SIGINT or SIGTERM (needs root).
    Link(link_cli::LinkArgs),
    /// A room process of `gateway --room-processes` (started by the gateway, not by hand).
    #[command(hide = true)]
    Room {
        /// `--control ADDR --index N`, as the gateway passes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
    /// Rooms holding device connections (WebSocket and TCP listeners each); 0 for none.
    #[arg(long, value_name = "N", default_value_t = 1)]
    rooms: usize,
    /// Run each room as a process of its own (needed beyond ~18k connections per room).
    #[arg(long)]
    room_processes: bool,
    /// Address the rooms listen on (each on free ports).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    room_host: std::net::IpAddr,
    /// Heartbeat period announced to devices.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    heartbeat: Duration,
    /// Heartbeats missed before a silent connection is closed with `idle`.
    #[arg(long, value_name = "N", default_value_t = 3)]
    missed_heartbeats: u32,
    /// An unacked push is redelivered after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    ack_timeout: Duration,
    /// Redeliveries of one push on one connection at most.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_redeliveries: u32,
    /// Frames a connection may have waiting for its socket before it is closed as a slow
    /// consumer (counted in `/stats` `slow_consumer_closed`).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_queued_frames: u64,
    /// Fraction of (push, connection) deliveries dropped for good.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    push_drop_rate: f64,
    /// Fraction of deliveries sent twice.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    push_duplicate_rate: f64,
    /// Fraction of deliveries held --push-delay first.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    push_delay_rate: f64,
    /// How long a delayed delivery is held.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0ms")]
    push_delay: Duration,
    /// Fraction of connections reset (TCP RST) per second.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    conn_reset_rate: f64,
    /// Fraction of hellos refused.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    refuse_rate: f64,
}

impl GatewayArgs {
    fn faults(&self) -> FaultConfig {
        FaultConfig {
            latency_ms: self.latency.as_secs_f64() * 1e3,
            jitter_ms: self.latency_jitter.as_secs_f64() * 1e3,
            error_rate: self.error_rate,
            error_status: self.error_status,
            stall_ms: 0,
            push_drop_rate: self.push_drop_rate,
            push_duplicate_rate: self.push_duplicate_rate,
            push_delay_rate: self.push_delay_rate,
            push_delay_ms: self.push_delay.as_secs_f64() * 1e3,
            conn_reset_rate: self.conn_reset_rate,
            refuse_rate: self.refuse_rate,
        }
    }

    fn rooms(&self) -> anyhow::Result<RoomsConfig> {
        let processes = if self.room_processes {
            let program =
                std::env::current_exe().context("cannot find this program to start rooms")?;
            Some(RoomCommand::testbed(program))
        } else {
            None
        };
        Ok(RoomsConfig {
            count: self.rooms,
            host: self.room_host,
            processes,
            heartbeat: self.heartbeat,
            missed_heartbeats: self.missed_heartbeats,
            ack_timeout: self.ack_timeout,
            max_redeliveries: self.max_redeliveries,
            max_queued_frames: usize::try_from(self.max_queued_frames).unwrap_or(usize::MAX),
            ..RoomsConfig::default()
        })
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
            let rooms = match args.rooms() {
                Ok(rooms) => rooms,
                Err(error) => {
                    eprintln!("testbed: {error:#}");
                    return ExitCode::FAILURE;
                }
            };
            let config = GatewayConfig {
                listen: args.listen,
                faults,
                rooms,
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
        Command::Link(args) => link_cli::main(args),
        Command::Room { args } => testbed::gateway::room::run_process(args),
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
        for room in gateway.room_addrs() {
            tracing::info!(room = %room.name, ws = %room.ws, tcp = %room.tcp, "room ready");
        }
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
