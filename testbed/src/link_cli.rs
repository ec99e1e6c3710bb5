//! `testbed link`: the link emulator (`testbed::link`) between two network namespaces, with
//! its control socket, until SIGINT or SIGTERM.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use testbed::link::{control, Link, LinkConfig, Profile, Side};

/// Arguments of `testbed link`.
#[derive(Debug, Args)]
pub(crate) struct LinkArgs {
    /// Network namespace of side A (a name from `ip netns`, or a path); default: this one.
    #[arg(long, value_name = "NETNS")]
    a_netns: Option<String>,
    /// Side A's address and prefix on its TUN device, e.g. 198.18.0.1/24.
    #[arg(long, value_name = "ADDR/PREFIX", value_parser = parse_subnet)]
    a_addr: (Ipv4Addr, u8),
    /// Side A's TUN device name.
    #[arg(long, value_name = "NAME", default_value = "pbl-a")]
    a_dev: String,
    /// Network namespace of side B; default: this one.
    #[arg(long, value_name = "NETNS")]
    b_netns: Option<String>,
    /// Side B's address and prefix, e.g. 198.18.0.2/24.
    #[arg(long, value_name = "ADDR/PREFIX", value_parser = parse_subnet)]
    b_addr: (Ipv4Addr, u8),
    /// Side B's TUN device name.
    #[arg(long, value_name = "NAME", default_value = "pbl-b")]
    b_dev: String,
    /// What the link does, e.g. "rtt=180ms jitter=20ms loss=2% rate=20mbit" (keys: rtt,
    /// jitter, loss, burst_rate, burst_length, burst_loss, rate, up_rate, down_rate, queue,
    /// bucket, reorder, cut_every, cut_for). Up is from A to B.
    #[arg(long, value_name = "PROFILE", conflicts_with = "profile_file", value_parser = parse_profile)]
    profile: Option<Profile>,
    /// The profile as a TOML file with the same keys.
    #[arg(long, value_name = "FILE")]
    profile_file: Option<PathBuf>,
    /// Address of the control socket (commands: cut [DURATION], restore, profile [PROFILE],
    /// stats).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Seed of the loss and jitter draws.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
}

fn parse_subnet(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("expected an IPv4 address and prefix such as 198.18.0.1/24, got `{text}`");
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    match prefix.parse::<u8>() {
        Ok(p) if (1..=30).contains(&p) => Ok((addr, p)),
        _ => Err(bad()),
    }
}

fn parse_profile(text: &str) -> Result<Profile, String> {
    Profile::parse(text).map_err(|e| e.to_string())
}

pub(crate) fn main(args: LinkArgs) -> ExitCode {
    let profile = match (&args.profile, &args.profile_file) {
        (Some(p), _) => p.clone(),
        (None, Some(path)) => match Profile::load(path) {
            Ok(p) => p,
            Err(error) => {
                eprintln!("testbed: {error}");
                return ExitCode::from(2);
            }
        },
        (None, None) => Profile::default(),
    };
    let config = LinkConfig {
        a: Side::new(
            args.a_netns.as_deref(),
            &args.a_dev,
            args.a_addr.0,
            args.a_addr.1,
        ),
        b: Side::new(
            args.b_netns.as_deref(),
            &args.b_dev,
            args.b_addr.0,
            args.b_addr.1,
        ),
        profile,
        seed: args.seed,
    };
    match run(config, args.control) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("testbed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: LinkConfig, control_addr: SocketAddr) -> anyhow::Result<()> {
    let profile = config.profile.to_string();
    let link = Arc::new(Link::start(config)?);
    let listener = TcpListener::bind(control_addr)
        .with_context(|| format!("cannot listen for control commands on {control_addr}"))?;
    let control_at = listener.local_addr()?;
    println!("link up: {}; profile {profile}", link.description());
    println!("control on {control_at}");
    {
        let link = link.clone();
        std::thread::Builder::new()
            .name("link-control".into())
            .spawn(move || {
                if let Err(error) = control::serve(listener, link) {
                    tracing::error!(%error, "link control socket failed");
                }
            })?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the Tokio runtime")?;
    runtime.block_on(crate::wait_for_signal())?;
    println!("stats {}", serde_json::to_string(&link.stats())?);
    Ok(())
}
