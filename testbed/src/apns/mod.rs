//! A mock of Apple's Push Notification service (the HTTP/2 provider API), for testing APNs
//! clients such as the relay: HTTP/2 over TLS with ALPN `h2` only, `POST /3/device/{token}`
//! validated as APNs validates it, token (ES256 JWT) or certificate authentication, APNs error
//! bodies, a record of every accepted notification, and injectable faults.
//!
//! [`spawn`] binds and serves in background Tokio tasks; the [`MockApnsHandle`] reads what was
//! delivered, changes faults and shuts down. Outside the process, what was delivered is read
//! from the admin endpoint ([`MockApnsConfig::admin`]: `GET /notifications`, `GET /stats`) or
//! the record file ([`MockApnsConfig::record`]: one JSON line per accepted notification). The request rules are in `request`, provider
//! tokens in `token`, the faults in [`faults`], the TLS and HTTP/2 serving in `server`.
//!
//! Build [`MockApnsConfig`], [`ApnsFaults`] and [`TokenAuth`] with `..Default::default()`:
//! fields may be added. Not emulated: APNs' limit of one stream until the first valid token
//! (SETTINGS cannot be changed mid-connection through the `h2` crate), and the JSON reason APNs
//! may put in a GOAWAY's debug data (no public `h2` API sends it).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use testbed::apns::{self, MockApnsConfig};
//! use testbed::pki::ProviderKey;
//!
//! let key = ProviderKey::generate("KEY1234567")?;
//! let mock = apns::spawn(MockApnsConfig::with_token_key("TEAM123456", &key)).await?;
//! // Point a client at mock.url(), trusting mock.ca_pem(), sending
//! // `authorization: bearer {key.provider_token_now("TEAM123456")?}`.
//! assert_eq!(mock.count(), 0);
//! mock.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod admin;
pub mod faults;
pub mod files;
mod reason;
mod request;
mod seen;
mod server;
mod token;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pki::{CertificateAuthority, IssuedCert, ProviderKey};

pub use faults::{ApnsFaults, ApnsFaultsError, Fault};
pub use files::{Credentials, CredentialsError, ProviderInfo};
pub use reason::{Reason, UnknownReason};
pub use request::{check_request, MAX_COLLAPSE_ID, MAX_PAYLOAD, MAX_VOIP_PAYLOAD, PUSH_TYPES};
pub use seen::{displayed, ApnsStats, Notification};
pub use token::{Claims, TokenVerifier};

/// APNs asks providers to replace their token no more often than this.
pub const TOKEN_UPDATE_INTERVAL: Duration = Duration::from_secs(20 * 60);

/// How a mock APNs authenticates providers.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// Provider authentication tokens (JWT, ES256) in `authorization: bearer …`.
    Token(TokenAuth),
    /// TLS client certificates issued by a given CA.
    Certificate(CertificateAuth),
}

impl Default for Auth {
    /// Token authentication for team `TEAM000000` with no key (every token is refused).
    fn default() -> Self {
        Self::Token(TokenAuth::default())
    }
}

/// Token authentication settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenAuth {
    /// The team id every token's `iss` must name.
    pub team_id: String,
    /// Public keys by key id (`kid`): uncompressed SEC1 P-256 points, as
    /// [`ProviderKey::public_key`] returns.
    pub keys: HashMap<String, Vec<u8>>,
    /// A new token (a new `kid`/`iat` pair) arriving sooner than this after the team's previous
    /// new token is refused with 429 `TooManyProviderTokenUpdates`, as APNs does; counted per
    /// team across keys. `None` turns the check off. Default: 20 minutes.
    pub min_update_interval: Option<Duration>,
}

impl Default for TokenAuth {
    fn default() -> Self {
        Self {
            team_id: "TEAM000000".into(),
            keys: HashMap::new(),
            min_update_interval: Some(TOKEN_UPDATE_INTERVAL),
        }
    }
}

impl TokenAuth {
    /// Team `team_id` with the public halves of `keys`.
    pub fn new<'a>(team_id: &str, keys: impl IntoIterator<Item = &'a ProviderKey>) -> Self {
        Self {
            team_id: team_id.to_owned(),
            keys: keys
                .into_iter()
                .map(|k| (k.key_id().to_owned(), k.public_key()))
                .collect(),
            ..Self::default()
        }
    }
}

/// Certificate authentication settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateAuth {
    /// PEM of the CA(s) that issue valid provider certificates. A client certificate from
    /// anyone else is answered 403 `BadCertificate`; a connection without a certificate is a
    /// token connection to APNs, and the mock (which has no keys then) answers 403
    /// `MissingProviderToken` or `InvalidProviderToken`.
    pub client_ca_pem: String,
}

/// Which APNs environment the mock plays. The sandbox adds `apns-unique-id` to successful
/// responses, as Apple's development server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// `api.push.apple.com`.
    #[default]
    Production,
    /// `api.sandbox.push.apple.com`.
    Sandbox,
}

/// How to start a mock APNs.
#[derive(Debug, Clone)]
pub struct MockApnsConfig {
    /// Address to listen on; port 0 picks a free port (see [`MockApnsHandle::addr`]).
    pub listen: SocketAddr,
    /// How providers authenticate.
    pub auth: Auth,
    /// The server certificate (with `ca_pem` set to its CA). `None` makes a fresh CA and a
    /// certificate for `localhost`, `127.0.0.1` and `::1`.
    pub tls: Option<IssuedCert>,
    /// Faults in force from the start.
    pub faults: ApnsFaults,
    /// Device tokens answered 410 `Unregistered` (compared ignoring case).
    pub unregistered: HashSet<String>,
    /// Topics (bundle ids) the credential may push to, each also with the push-type suffixes
    /// (`.voip`, `.complication`, …); any other topic is 400 `TopicDisallowed`. Empty: any
    /// topic. With certificate auth and exactly one topic here, `apns-topic` may be left out.
    pub topics: Vec<String>,
    /// Production or sandbox behaviour.
    pub environment: Environment,
    /// Writes every accepted notification to this file (created or emptied) as a JSON line,
    /// when it is accepted.
    pub record: Option<std::path::PathBuf>,
    /// Serves the admin endpoint (plain HTTP: `GET /notifications`, `GET /stats`) here.
    pub admin: Option<SocketAddr>,
}

impl Default for MockApnsConfig {
    /// A free port on 127.0.0.1, default [`Auth`], a generated certificate, no faults.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            auth: Auth::default(),
            tls: None,
            faults: ApnsFaults::default(),
            unregistered: HashSet::new(),
            topics: Vec::new(),
            environment: Environment::default(),
            record: None,
            admin: None,
        }
    }
}

impl MockApnsConfig {
    /// The default config with token authentication for `team_id` and `key`.
    pub fn with_token_key(team_id: &str, key: &ProviderKey) -> Self {
        Self {
            auth: Auth::Token(TokenAuth::new(team_id, [key])),
            ..Self::default()
        }
    }
}

/// What every connection of one mock shares.
pub(crate) struct Mock {
    pub(crate) tokens: Option<TokenVerifier>,
    pub(crate) faults: faults::Faults,
    pub(crate) seen: seen::Seen,
    /// Unregistered device tokens (lowercase) with the time, in ms since the Unix epoch, from
    /// which APNs knows them to be invalid.
    pub(crate) unregistered: Mutex<HashMap<String, u64>>,
    /// Device tokens (lowercase) bound to a topic: other topics get
    /// `DeviceTokenNotForTopic`.
    pub(crate) device_topics: Mutex<HashMap<String, String>>,
    pub(crate) topics: Vec<String>,
    pub(crate) environment: Environment,
    /// Numbers connections in handshake order.
    pub(crate) next_connection: std::sync::atomic::AtomicU64,
}

impl Mock {
    pub(crate) fn unregistered_since(&self, token: &str) -> Option<u64> {
        common::sync::lock(&self.unregistered)
            .get(&token.to_ascii_lowercase())
            .copied()
    }

    pub(crate) fn device_topic(&self, token: &str) -> Option<String> {
        common::sync::lock(&self.device_topics)
            .get(&token.to_ascii_lowercase())
            .cloned()
    }
}

/// Binds `config.listen` and serves the mock APNs in background tasks on the current Tokio
/// runtime until the handle is shut down or dropped.
///
/// Fails with [`io::ErrorKind::InvalidInput`] when the faults do not
/// [validate](ApnsFaults::validate) or the certificates cannot be used, and with the bind error
/// when the address cannot be bound.
pub async fn spawn(config: MockApnsConfig) -> io::Result<MockApnsHandle> {
    let invalid =
        |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    config.faults.validate().map_err(|e| invalid(&e))?;
    let tls = match config.tls {
        Some(tls) => tls,
        None => CertificateAuthority::new("pushbench mock APNs CA")
            .and_then(|ca| ca.issue_server(&["localhost", "127.0.0.1", "::1"]))
            .map_err(|e| invalid(&e))?,
    };
    let acceptor = server::acceptor(&tls, &config.auth).map_err(|e| invalid(&e))?;
    let seen = match &config.record {
        Some(path) => seen::Seen::with_log(std::fs::File::create(path).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: {e}", path.display()),
            )
        })?),
        None => seen::Seen::default(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let admin = match config.admin {
        Some(at) => Some(tokio::net::TcpListener::bind(at).await?),
        None => None,
    };
    let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
    let now_ms = unix_ms(SystemTime::now());
    let mock = Arc::new(Mock {
        tokens: match &config.auth {
            Auth::Token(auth) => Some(TokenVerifier::new(auth)),
            Auth::Certificate(_) => None,
        },
        faults: faults::Faults::new(config.faults),
        seen,
        unregistered: Mutex::new(
            config
                .unregistered
                .iter()
                .map(|t| (t.to_ascii_lowercase(), now_ms))
                .collect(),
        ),
        device_topics: Mutex::new(HashMap::new()),
        topics: config.topics,
        environment: config.environment,
        next_connection: std::sync::atomic::AtomicU64::new(1),
    });
    let (shutdown, stop) = watch::channel(false);
    if let Some(admin) = admin {
        tokio::spawn(admin::serve(admin, Arc::clone(&mock), stop.clone()));
    }
    let task = tokio::spawn(server::serve(listener, acceptor, Arc::clone(&mock), stop));
    tracing::info!(%addr, "mock APNs listening");
    Ok(MockApnsHandle {
        addr,
        admin_addr,
        ca_pem: tls.ca_pem,
        mock,
        shutdown,
        task: Some(task),
    })
}

/// A running mock APNs. Dropping it stops the mock too, without waiting.
pub struct MockApnsHandle {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    ca_pem: String,
    mock: Arc<Mock>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockApnsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockApnsHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockApnsHandle {
    /// The address the mock is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin endpoint's address, when [`MockApnsConfig::admin`] asked for one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// `https://IP:PORT`, with a loopback IP when the mock listens on all interfaces.
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("https://{addr}")
    }

    /// PEM of the CA that issued the server certificate: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Every notification accepted so far, in arrival order.
    pub fn notifications(&self) -> Vec<Notification> {
        self.mock.seen.notifications()
    }

    /// How many notifications were accepted so far.
    pub fn count(&self) -> usize {
        self.mock.seen.len()
    }

    /// What the device `device_token` would show: its notifications, a later one with the
    /// collapse id of an earlier one replacing it.
    pub fn displayed(&self, device_token: &str) -> Vec<Notification> {
        displayed(&self.notifications(), device_token)
    }

    /// `apns-id`s accepted more than once, with how many times, sorted by id.
    pub fn duplicates(&self) -> Vec<(String, usize)> {
        self.mock.seen.duplicates()
    }

    /// Waits until at least `n` notifications were accepted; false when `timeout` passed
    /// first.
    pub async fn wait_for_count(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |mock| mock.count() >= n).await
    }

    /// Waits until `condition` holds (checked every 5 ms); false when `timeout` passed first.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&MockApnsHandle) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while !condition(self) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Forgets the notifications recorded so far (counters stay).
    pub fn clear(&self) {
        self.mock.seen.clear();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ApnsStats {
        self.mock.seen.stats()
    }

    /// The faults in force.
    pub fn faults(&self) -> ApnsFaults {
        self.mock.faults.current()
    }

    /// Replaces the faults and reseeds their generator. `max_concurrent_streams` applies to
    /// connections opened afterwards.
    pub fn set_faults(&self, faults: ApnsFaults) -> Result<(), ApnsFaultsError> {
        faults.validate()?;
        self.mock.faults.set(faults);
        Ok(())
    }

    /// Queues faults for the next streams, one each, in arrival order, ahead of the rates.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.mock.faults.push(faults);
    }

    /// From now on `device_token` is answered 410 `Unregistered` with the current time as
    /// `timestamp`.
    pub fn unregister(&self, device_token: &str) {
        common::sync::lock(&self.mock.unregistered).insert(
            device_token.to_ascii_lowercase(),
            unix_ms(SystemTime::now()),
        );
    }

    /// Binds `device_token` to the app `topic` (a bundle id): pushes to it on another topic
    /// (other than `topic` plus a push-type suffix) get 400 `DeviceTokenNotForTopic`.
    pub fn set_device_topic(&self, device_token: &str, topic: &str) {
        common::sync::lock(&self.mock.device_topics)
            .insert(device_token.to_ascii_lowercase(), topic.to_owned());
    }

    /// Stops accepting connections, sends GOAWAY on every connection, lets in-flight streams
    /// finish for up to a second, and returns once everything is closed.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::warn!(%error, "mock APNs task failed");
            }
        }
    }
}

impl Drop for MockApnsHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
