//! `apns-relay`: `serve` runs the relay and/or proxy a config enables; `send` pushes one
//! notification through the sender-side router; `check` validates a config and opens every
//! file it names; `health` asks a running relay's `/healthz`; `discover` lists the instances
//! registered in ZooKeeper. Exit codes: 0 success (for `send`: accepted), 1 runtime failure
//! (or a push rejected / unknown; for `discover`: no instance to use), 2 bad input (config,
//! arguments, an unreachable ensemble, no relay to send to).

use std::path::PathBuf;
use std::process::ExitCode;

use apns_relay::config::{Config, LogFormat, RouterConfig};
use apns_relay::preflight::preflight;
use apns_relay::router::{apple_payload, Notification, Router, Vendor};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "apns-relay",
    version,
    about = "APNs relay with idempotent retries, Apple-only CONNECT proxy and sender-side router"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay and/or the proxy that the config enables, until SIGTERM or Ctrl-C.
    Serve {
        /// relay.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a relay.toml and exit.
    Check {
        /// relay.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// Send one push through the sender-side router (Apple via relay/proxy, others direct).
    Send(Box<SendArgs>),
    /// Ask a running relay's /healthz (the Docker HEALTHCHECK): exit 0 when healthy, 1 when
    /// not (draining, store failing) or unreachable; prints the report.
    Health {
        /// The /healthz URL of the operations listener.
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
    },
    /// List the instances registered under a service path in ZooKeeper (one line each, and
    /// one per malformed node); with --follow, again on every change until the time is up.
    /// Exit 0 when an instance takes work, 1 when none does, 2 on bad input or an unreachable
    /// ensemble.
    Discover {
        /// The connect string: host:port[,host:port...][/chroot].
        ensemble: String,
        /// The service's path, /base/service (e.g. /services/apns-relay).
        path: String,
        /// Keep listing changes for this long (e.g. 60s).
        #[arg(long, value_parser = common::duration::parse)]
        follow: Option<std::time::Duration>,
    },
}

#[derive(clap::Args)]
struct SendArgs {
    /// router.toml
    #[arg(long)]
    config: PathBuf,
    /// apple, huawei, xiaomi, vivo, oppo, honor or fcm
    #[arg(long)]
    vendor: String,
    /// Device token.
    #[arg(long)]
    to: String,
    /// Apple: apns-topic (bundle id).
    #[arg(long)]
    topic: Option<String>,
    /// Alert title.
    #[arg(long)]
    title: Option<String>,
    /// Alert body.
    #[arg(long)]
    body: Option<String>,
    /// Badge.
    #[arg(long)]
    badge: Option<u32>,
    /// Sound.
    #[arg(long)]
    sound: Option<String>,
    /// Custom data (a JSON object merged into the payload).
    #[arg(long)]
    data: Option<String>,
    /// The whole payload as JSON (instead of --title/--body/...).
    #[arg(long)]
    payload: Option<String>,
    /// Apple: apns-id (a UUID); a retry with the same id is never delivered twice by the relay.
    #[arg(long)]
    apns_id: Option<uuid::Uuid>,
    /// Apple: apns-collapse-id.
    #[arg(long)]
    collapse_id: Option<String>,
    /// Apple: apns-push-type.
    #[arg(long, default_value = "alert")]
    push_type: String,
    /// Apple: apns-priority (1, 5, 10).
    #[arg(long)]
    priority: Option<u8>,
    /// Relay: allow resending a push whose outcome is unknown (may duplicate it).
    #[arg(long)]
    resend_unknown: bool,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("APNS_RELAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apns-relay: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Check { config: path } => {
            let notes = match Config::load(&path)
                .and_then(|c| preflight(&c, &path.display().to_string()))
            {
                Ok(notes) => notes,
                Err(e) => return fail(2, &e),
            };
            println!("{}: ok", path.display());
            for note in notes {
                println!("{note}");
            }
            ExitCode::SUCCESS
        }
        Command::Health { url } => runtime.block_on(health(&url)),
        Command::Discover {
            ensemble,
            path,
            follow,
        } => runtime.block_on(discover(&ensemble, &path, follow)),
        Command::Serve { config: path } => {
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => return fail(2, &e),
            };
            if let Err(e) = preflight(&config, &path.display().to_string()) {
                return fail(2, &e);
            }
            init_logs(
                config
                    .ops
                    .as_ref()
                    .map(|o| o.log_format)
                    .unwrap_or_default(),
            );
            runtime.block_on(serve(config))
        }
        Command::Send(args) => runtime.block_on(send(*args)),
    }
}

fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("apns-relay: {e}");
    ExitCode::from(code)
}

async fn serve(config: Config) -> ExitCode {
    let running = match apns_relay::server::start(&config).await {
        Ok(r) => r,
        Err(e @ apns_relay::server::StartError::Config(_)) => return fail(2, &e),
        Err(e) => return fail(1, &e),
    };
    // Tests and scripts read the bound addresses from this line.
    println!(
        "listening relay={} proxy={} ops={}",
        running
            .relay_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into()),
        running
            .proxy_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into()),
        running
            .ops_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => return fail(1, &format!("cannot watch SIGTERM: {e}")),
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    running.shutdown().await;
    ExitCode::SUCCESS
}

async fn health(url: &str) -> ExitCode {
    // reqwest is built without a default TLS provider (the relay picks ring everywhere).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(1, &format!("http client: {e}")),
    };
    match client.get(url).send().await {
        Ok(res) => {
            let ok = res.status().is_success();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            println!("{status} {}", body.trim());
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(1, &format!("{url}: {e}")),
    }
}

async fn discover(ensemble: &str, path: &str, follow: Option<std::time::Duration>) -> ExitCode {
    let path = match discovery::ServicePath::parse(path) {
        Ok(p) => p,
        Err(e) => return fail(2, &e),
    };
    let config = discovery::ZkConfig::new(ensemble);
    let watch = match discovery::ServiceWatch::start(&config, &path, Default::default()).await {
        Ok(w) => w,
        Err(e) => return fail(2, &e),
    };
    let print = |watch: &discovery::ServiceWatch| {
        for line in watch.instances().describe() {
            println!("{line}");
        }
    };
    print(&watch);
    if let Some(follow) = follow {
        let mut changes = watch.subscribe();
        let end = tokio::time::sleep(follow);
        tokio::pin!(end);
        loop {
            tokio::select! {
                _ = &mut end => break,
                r = changes.changed() => {
                    if r.is_err() {
                        break;
                    }
                    println!("--");
                    print(&watch);
                }
            }
        }
    }
    let usable = watch.pick().map(drop);
    watch.close().await;
    match usable {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, &e),
    }
}

async fn send(args: SendArgs) -> ExitCode {
    let config = match RouterConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(2, &e),
    };
    let Some(vendor) = Vendor::parse(&args.vendor) else {
        return fail(
            2,
            &format!(
                "--vendor: unknown vendor `{}` (apple, huawei, xiaomi, vivo, oppo, honor, fcm)",
                args.vendor
            ),
        );
    };
    let data = match args
        .data
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
    {
        Ok(d) => d,
        Err(e) => return fail(2, &format!("--data: not JSON: {e}")),
    };
    let payload = match &args.payload {
        Some(p) => match serde_json::from_str::<serde_json::Value>(p) {
            Ok(_) => p.clone(),
            Err(e) => return fail(2, &format!("--payload: not JSON: {e}")),
        },
        None => match apple_payload(
            args.title.as_deref(),
            args.body.as_deref(),
            args.badge,
            args.sound.as_deref(),
            data.as_ref(),
        ) {
            Ok(p) => p,
            Err(e) => return fail(2, &e),
        },
    };
    if vendor == Vendor::Apple && args.topic.is_none() {
        return fail(2, &"--topic is required for Apple pushes");
    }
    let router = match Router::start(config).await {
        Ok(r) => r,
        Err(e) => return fail(2, &e),
    };
    if let Some(note) = router.note() {
        eprintln!("apns-relay: {note}");
    }
    let n = Notification {
        vendor,
        device_token: args.to,
        payload: payload.into(),
        topic: args.topic,
        apns_id: args.apns_id,
        collapse_id: args.collapse_id,
        push_type: Some(args.push_type),
        priority: args.priority,
        resend_unknown: args.resend_unknown,
    };
    let result = router.send(&n).await;
    router.close().await;
    match result {
        Ok(d) => {
            println!(
                "{} status={} path={} attempts={}{}{}{}",
                d.outcome,
                d.status,
                d.path,
                d.attempts,
                d.apns_id
                    .map(|i| format!(" apns-id={i}"))
                    .unwrap_or_default(),
                if d.reason.is_empty() {
                    String::new()
                } else {
                    format!(" reason={}", d.reason)
                },
                d.dedupe.map(|s| format!(" dedupe={s}")).unwrap_or_default(),
            );
            if let Some(relay) = &d.relay {
                println!("relay={relay}");
            }
            if let Some(id) = &d.message_id {
                println!("message-id={id}");
            }
            if d.retryable {
                println!("retryable: the vendor asks to send it again later");
            }
            if d.outcome == "accepted" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e @ apns_relay::router::RouterError::NoVendor(_)) => fail(2, &e),
        Err(e @ apns_relay::router::RouterError::BadPush(_)) => fail(2, &e),
        Err(e @ apns_relay::router::RouterError::NoRelay(_)) => fail(2, &e),
        Err(e) => fail(1, &e),
    }
}
