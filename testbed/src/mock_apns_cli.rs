//! `testbed mock-apns`: the mock APNs from the command line, with its credentials written to
//! (or read from) a directory so that an outside APNs client can be pointed at it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use common::duration::parse as parse_duration;
use testbed::apns::{
    self, ApnsFaults, Auth, CertificateAuth, Credentials, Environment, MockApnsConfig, TokenAuth,
};

/// Arguments of `testbed mock-apns`.
#[derive(Debug, Args)]
pub(crate) struct MockApnsArgs {
    /// Address to listen on, e.g. 127.0.0.1:8443 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Directory of the credentials: read when DIR/ca.pem exists, else made and written there
    /// (ca.pem, server.pem, server-key.pem, AuthKey_KEYID.p8, provider.json). Default: a new
    /// directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// Team id of the provider key made for a new credentials directory.
    #[arg(long, value_name = "ID", default_value = "TEAM123456")]
    team_id: String,
    /// Key id of the provider key made for a new credentials directory.
    #[arg(long, value_name = "ID", default_value = "KEY1234567")]
    key_id: String,
    /// Authenticate providers by client certificates issued by the CA in FILE (PEM) instead
    /// of provider tokens.
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// A topic (bundle id) providers may push to; repeat for more. None: any topic.
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// A device token answered 410 Unregistered; repeat for more.
    #[arg(long = "unregistered", value_name = "TOKEN")]
    unregistered: Vec<String>,
    /// Behave as the sandbox (adds apns-unique-id to successful responses).
    #[arg(long)]
    sandbox: bool,
    /// Allow provider tokens to change at any pace (APNs answers 429
    /// TooManyProviderTokenUpdates to a new token within 20 minutes of the last).
    #[arg(long)]
    no_token_update_limit: bool,
    /// Delay before every answer, e.g. 5ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0ms")]
    latency: Duration,
    /// Fraction (0 to 1) of requests answered 429 TooManyRequests.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    rate_429: f64,
    /// Fraction (0 to 1) of requests answered 500 InternalServerError.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    rate_500: f64,
    /// Fraction (0 to 1) of requests answered 503 ServiceUnavailable.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    rate_503: f64,
    /// Fraction (0 to 1) of streams reset with REFUSED_STREAM.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    refused_stream_rate: f64,
    /// Fraction (0 to 1) of streams read, delivered, then reset (unknown outcome).
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    reset_after_read_rate: f64,
    /// Send GOAWAY after this many streams on each connection.
    #[arg(long, value_name = "N")]
    goaway_after: Option<u32>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS (default 1000).
    #[arg(long, value_name = "N")]
    max_concurrent_streams: Option<u32>,
    /// Close connections idle for this long with GOAWAY, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// Seed of the fault rates.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Write every accepted notification to FILE (created or emptied) as one JSON line, when
    /// it is accepted.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Serve the admin endpoint (plain HTTP, keep it on loopback) at ADDR: GET /notifications
    /// lists what was accepted, GET /stats the counters and the apns-ids accepted twice.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
}

impl MockApnsArgs {
    fn faults(&self) -> ApnsFaults {
        ApnsFaults {
            latency_ms: u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX),
            rate_429: self.rate_429,
            rate_500: self.rate_500,
            rate_503: self.rate_503,
            refused_stream_rate: self.refused_stream_rate,
            reset_after_read_rate: self.reset_after_read_rate,
            goaway_after: self.goaway_after,
            max_concurrent_streams: self.max_concurrent_streams,
            seed: self.seed,
            idle_timeout_ms: self
                .idle_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Arguments of `testbed apns-token`.
#[derive(Debug, Args)]
pub(crate) struct ApnsTokenArgs {
    /// A credentials directory written by `testbed mock-apns --tls-dir DIR`.
    #[arg(long, value_name = "DIR")]
    tls_dir: PathBuf,
    /// The token's `iat`, in seconds since the Unix epoch (default: now).
    #[arg(long, value_name = "SECONDS")]
    iat: Option<u64>,
}

/// Runs `testbed apns-token`: prints `bearer`-ready JWT; 2 on bad input.
pub(crate) fn token(args: ApnsTokenArgs) -> ExitCode {
    let credentials = match Credentials::load(&args.tls_dir) {
        Ok(credentials) => credentials,
        Err(error) => {
            eprintln!("testbed: {error}");
            return ExitCode::from(2);
        }
    };
    let iat = args.iat.unwrap_or_else(testbed::pki::unix_now);
    match credentials
        .provider_key
        .provider_token(&credentials.provider.team_id, iat)
    {
        Ok(jwt) => {
            println!("{jwt}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("testbed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `testbed mock-apns`; 2 on bad input, 1 when the mock cannot run.
pub(crate) fn main(args: MockApnsArgs) -> ExitCode {
    let faults = args.faults();
    if let Err(error) = faults.validate() {
        eprintln!("testbed: {error}");
        return ExitCode::from(2);
    }
    let client_ca_pem = match &args.client_ca {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(pem) => Some(pem),
            Err(error) => {
                eprintln!("testbed: {}: {error}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let dir = args.tls_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("testbed-mock-apns-{}", std::process::id()))
    });
    let credentials = match Credentials::load_or_create(&dir, &args.team_id, &args.key_id) {
        Ok(credentials) => credentials,
        Err(error) => {
            eprintln!("testbed: {error}");
            return ExitCode::from(2);
        }
    };
    let auth = match client_ca_pem {
        Some(client_ca_pem) => Auth::Certificate(CertificateAuth { client_ca_pem }),
        None => {
            let mut auth =
                TokenAuth::new(&credentials.provider.team_id, [&credentials.provider_key]);
            if args.no_token_update_limit {
                auth.min_update_interval = None;
            }
            Auth::Token(auth)
        }
    };
    let config = MockApnsConfig {
        listen: args.listen,
        auth,
        tls: Some(credentials.server.clone()),
        faults,
        unregistered: args.unregistered.iter().cloned().collect::<HashSet<_>>(),
        topics: args.topics.clone(),
        environment: if args.sandbox {
            Environment::Sandbox
        } else {
            Environment::Production
        },
        record: args.record.clone(),
        admin: args.admin,
    };
    match run(config, &dir, &credentials) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_input_error(&error) => {
            eprintln!("testbed: {error:#}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("testbed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A certificate the mock cannot use is bad input; anything else is the harness failing.
fn is_input_error(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::InvalidInput)
}

fn run(
    config: MockApnsConfig,
    dir: &std::path::Path,
    credentials: &Credentials,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("could not start the Tokio runtime")?;
    let record = config.record.clone();
    runtime.block_on(async {
        let listen = config.listen;
        let mock = match apns::spawn(config).await {
            Ok(mock) => mock,
            Err(error) if error.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(anyhow::Error::new(error))
            }
            Err(error) => {
                return Err(error).with_context(|| format!("could not listen on {listen}"))
            }
        };
        println!("listening on {}", mock.url());
        println!(
            "credentials in {} (trust ca.pem; provider key {} for team {}, key id {})",
            dir.display(),
            credentials.provider.key_file,
            credentials.provider.team_id,
            credentials.provider.key_id
        );
        if let Some(admin) = mock.admin_addr() {
            println!("admin on http://{admin} (GET /notifications, GET /stats)");
        }
        if let Some(record) = &record {
            println!("recording to {}", record.display());
        }
        crate::wait_for_signal().await?;
        mock.shutdown().await;
        Ok(())
    })
}
