//! The `relay.toml` configuration: plain serde types with `deny_unknown_fields`, so a typo is
//! an error, and [`Config::load`], whose every error is one line naming `file:line:column` (or
//! the file and the field) and maps to exit code 2.
//!
//! `serve` runs whatever the file enables: the terminating relay (`[relay]`), the CONNECT
//! proxy (`[proxy]`), or both, plus the operations listener (`[ops]`) and the instance's
//! registration in ZooKeeper (`[discovery]`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// The dedupe store's block cache when none is configured (`dedupe.cache_mib`), in bytes.
pub const DEFAULT_DEDUPE_CACHE: u64 = 256 << 20;

mod discovery;
mod router;
pub use discovery::DiscoveryConfig;
pub use router::*;

/// A configuration error: one line, naming the file and the place or field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The terminating relay; absent means no relay listener.
    pub relay: Option<RelayConfig>,
    /// Where the relay sends: the APNs endpoint, its CA and the relay's own credentials.
    #[serde(default)]
    pub apns: ApnsConfig,
    /// Retries towards APNs.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The dedupe store.
    #[serde(default)]
    pub dedupe: DedupeConfig,
    /// The CONNECT forward proxy; absent means no proxy listener.
    pub proxy: Option<ProxyConfig>,
    /// Senders: who may use the relay and the proxy, and how they authenticate.
    #[serde(default)]
    pub senders: Vec<SenderConfig>,
    /// The operations listener (`/metrics`, `/healthz`).
    pub ops: Option<OpsConfig>,
    /// Registering this instance in ZooKeeper, so senders find it; absent means no
    /// registration.
    pub discovery: Option<DiscoveryConfig>,
}

/// TLS for a listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle for sender client certificates (enables mTLS; senders may still use
    /// bearer tokens instead).
    pub client_ca: Option<PathBuf>,
}

/// The terminating relay's inbound side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// TLS; without it the relay speaks h2c, which is only allowed on a loopback address.
    pub tls: Option<ListenerTls>,
    /// How long a graceful shutdown waits for in-flight pushes.
    #[serde(
        default = "defaults::drain",
        deserialize_with = "common::duration::deserialize"
    )]
    pub drain_timeout: Duration,
    /// Largest accepted payload in bytes (APNs: 4096, 5120 for VoIP).
    #[serde(default = "defaults::max_payload")]
    pub max_payload: usize,
}

/// Where and how the relay talks to APNs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// APNs base URL (`https://api.push.apple.com` or the sandbox; tests use the mock).
    #[serde(default = "defaults::endpoint")]
    pub endpoint: String,
    /// PEM CA bundle to trust instead of the system roots (tests: the mock's CA).
    pub ca: Option<PathBuf>,
    /// Outbound HTTP/2 connections in the pool.
    #[serde(default = "defaults::connections")]
    pub connections: usize,
    /// HTTP/2 PING interval on idle and busy connections.
    #[serde(
        default = "defaults::ping",
        deserialize_with = "common::duration::deserialize"
    )]
    pub ping_interval: Duration,
    /// How long to wait for APNs's answer to one request before the outcome is unknown.
    #[serde(
        default = "defaults::request_timeout",
        deserialize_with = "common::duration::deserialize"
    )]
    pub request_timeout: Duration,
    /// Connect + TLS handshake timeout.
    #[serde(
        default = "defaults::connect_timeout",
        deserialize_with = "common::duration::deserialize"
    )]
    pub connect_timeout: Duration,
    /// Token auth: the relay signs ES256 provider tokens with its own p8 key.
    pub token: Option<TokenConfig>,
    /// Certificate auth: the relay's own APNs client certificate.
    pub certificate: Option<CertificateConfig>,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        ApnsConfig {
            endpoint: defaults::endpoint(),
            ca: None,
            connections: defaults::connections(),
            ping_interval: defaults::ping(),
            request_timeout: defaults::request_timeout(),
            connect_timeout: defaults::connect_timeout(),
            token: None,
            certificate: None,
        }
    }
}

/// The relay's own p8 signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Path of the `AuthKey_XXXX.p8` file (PKCS#8 PEM, P-256).
    pub key: PathBuf,
    /// The key id (`kid`).
    pub key_id: String,
    /// The team id (`iss`).
    pub team_id: String,
    /// Age at which a token is replaced (Apple: between 20 and 60 minutes).
    #[serde(
        default = "defaults::token_refresh",
        deserialize_with = "common::duration::deserialize"
    )]
    pub refresh: Duration,
    /// Smallest gap between two refreshes, also for the one refresh forced by
    /// `ExpiredProviderToken` (Apple answers 429 TooManyProviderTokenUpdates otherwise).
    #[serde(
        default = "defaults::token_min_gap",
        deserialize_with = "common::duration::deserialize"
    )]
    pub min_refresh_gap: Duration,
}

/// The relay's APNs client certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Retries towards APNs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per push, the first included.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, full jitter.
    #[serde(
        default = "defaults::backoff_base",
        deserialize_with = "common::duration::deserialize"
    )]
    pub backoff_base: Duration,
    /// Largest backoff.
    #[serde(
        default = "defaults::backoff_max",
        deserialize_with = "common::duration::deserialize"
    )]
    pub backoff_max: Duration,
    /// Retry budget: each first attempt earns this many retry tokens.
    #[serde(default = "defaults::budget_ratio")]
    pub budget_ratio: f64,
    /// Retry budget: tokens earned per second regardless of traffic (and the bucket's floor).
    #[serde(default = "defaults::budget_min_per_second")]
    pub budget_min_per_second: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: defaults::max_attempts(),
            backoff_base: defaults::backoff_base(),
            backoff_max: defaults::backoff_max(),
            budget_ratio: defaults::budget_ratio(),
            budget_min_per_second: defaults::budget_min_per_second(),
        }
    }
}

/// Which dedupe backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupeBackend {
    /// Embedded fjall database (a directory) on disk.
    Disk,
    /// A Redis server shared by several relay instances.
    Redis,
}

/// The dedupe store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// `disk` (default) or `redis`.
    #[serde(default = "defaults::backend")]
    pub backend: DedupeBackend,
    /// Disk: the database directory (created if missing).
    #[serde(default = "defaults::dedupe_path")]
    pub path: PathBuf,
    /// Disk: sync each group commit to the disk (survives a power cut; `syncfs` of the
    /// store's filesystem, so give it one of its own). `false` writes it to the OS only
    /// (survives a killed relay, not a power cut) and is faster on a busy disk.
    #[serde(default = "defaults::fsync")]
    pub fsync: bool,
    /// Disk: the block cache, MiB. Each claim looks up a key the store does not hold, which
    /// needs the bloom filter and index blocks of the stored keys in memory (~2 bytes per key:
    /// a day at 500 pushes/s is ~90 MB); with too small a cache every lookup reads them back.
    #[serde(default = "defaults::cache_mib")]
    pub cache_mib: u64,
    /// Redis: `redis://host:port/db` or `redis+unix:///path`.
    pub url: Option<String>,
    /// Redis: key prefix.
    #[serde(default = "defaults::redis_prefix")]
    pub prefix: String,
    /// How long a key is remembered.
    #[serde(
        default = "defaults::ttl",
        deserialize_with = "common::duration::deserialize"
    )]
    pub ttl: Duration,
    /// How long another instance's in-flight claim is honoured before it counts as unknown.
    #[serde(
        default = "defaults::lease",
        deserialize_with = "common::duration::deserialize"
    )]
    pub in_flight_lease: Duration,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            backend: defaults::backend(),
            path: defaults::dedupe_path(),
            fsync: defaults::fsync(),
            cache_mib: defaults::cache_mib(),
            url: None,
            prefix: defaults::redis_prefix(),
            ttl: defaults::ttl(),
            in_flight_lease: defaults::lease(),
        }
    }
}

/// One allowed CONNECT destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTarget {
    /// Host name (never an IP literal).
    pub host: String,
    /// Allowed ports.
    pub ports: Vec<u16>,
}

/// The CONNECT forward proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// TLS on the proxy listener, so credentials never cross the border in clear.
    pub tls: Option<ListenerTls>,
    /// Allowed destinations; default: Apple's three push hosts on 443 and 2197.
    #[serde(default = "defaults::proxy_allow")]
    pub allow: Vec<ProxyTarget>,
    /// `"host:port" = "ip:port"` overrides of DNS (tests point Apple's names at the mock).
    #[serde(default)]
    pub resolve: BTreeMap<String, SocketAddr>,
    /// A tunnel with no traffic either way for this long is closed.
    #[serde(
        default = "defaults::idle",
        deserialize_with = "common::duration::deserialize"
    )]
    pub idle_timeout: Duration,
    /// Connect timeout towards the destination.
    #[serde(
        default = "defaults::connect_timeout",
        deserialize_with = "common::duration::deserialize"
    )]
    pub connect_timeout: Duration,
}

/// Whose credentials the relay presents to APNs for a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Credentials {
    /// The relay signs with its own p8 key or certificate.
    #[default]
    Relay,
    /// The sender's own `authorization: bearer <provider token>` goes to APNs unchanged (after
    /// the relay verified it, when the sender's `keys` are configured).
    Passthrough,
}

/// One of a token-auth sender's signing keys: its key id and its public half, given as the
/// `.p8` file itself (the public key is taken from it) or as a PEM public key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderKey {
    /// The key id (`kid` of the sender's provider tokens).
    pub key_id: String,
    /// The sender's `AuthKey_<KEYID>.p8` (PKCS#8 PEM, P-256); only its public half is kept.
    pub p8: Option<PathBuf>,
    /// The key's public half as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, P-256).
    pub public_key: Option<PathBuf>,
}

impl SenderKey {
    /// The file that holds the key, and the name of its field.
    pub fn file(&self) -> Option<(&'static str, &Path)> {
        match (&self.p8, &self.public_key) {
            (Some(p), None) => Some(("p8", p)),
            (None, Some(p)) => Some(("public_key", p)),
            _ => None,
        }
    }
}

/// One sender.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// Name (also the proxy user name).
    pub name: String,
    /// Bearer token for the relay (`authorization` or `apns-relay-authorization`).
    pub bearer_token: Option<String>,
    /// Token auth: the sender's team id, the `iss` of its provider tokens. With `keys`, the
    /// relay verifies the ES256 provider token a stock APNs client sends in `authorization`
    /// (signature, `iss`, `kid`, `iat` within the hour) and knows the sender by it.
    pub team_id: Option<String>,
    /// Token auth: the sender's signing keys.
    #[serde(default)]
    pub keys: Vec<SenderKey>,
    /// SHA-256 fingerprint (hex, `:` allowed) of the sender's client certificate (mTLS).
    pub client_cert_sha256: Option<String>,
    /// Which credentials go to APNs.
    #[serde(default)]
    pub credentials: Credentials,
    /// Proxy: password for `Proxy-Authorization: Basic name:password`.
    pub proxy_password: Option<String>,
    /// Proxy: source addresses allowed without credentials (for APNs clients whose proxy
    /// support cannot send any).
    #[serde(default)]
    pub proxy_source_cidrs: Vec<IpNet>,
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The operations listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Listen address for `/metrics` and `/healthz` (plain HTTP: keep it private).
    pub listen: SocketAddr,
    /// Log format.
    #[serde(default)]
    pub log_format: LogFormat,
}

mod defaults {
    use super::*;
    pub fn drain() -> Duration {
        Duration::from_secs(15)
    }
    pub fn max_payload() -> usize {
        5120
    }
    pub fn endpoint() -> String {
        "https://api.push.apple.com".into()
    }
    pub fn connections() -> usize {
        4
    }
    pub fn ping() -> Duration {
        Duration::from_secs(30)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn token_refresh() -> Duration {
        Duration::from_secs(40 * 60)
    }
    pub fn token_min_gap() -> Duration {
        Duration::from_secs(20 * 60)
    }
    pub fn max_attempts() -> u32 {
        5
    }
    pub fn backoff_base() -> Duration {
        Duration::from_millis(25)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(2)
    }
    pub fn budget_ratio() -> f64 {
        0.2
    }
    pub fn budget_min_per_second() -> f64 {
        10.0
    }
    pub fn backend() -> DedupeBackend {
        DedupeBackend::Disk
    }
    pub fn dedupe_path() -> PathBuf {
        PathBuf::from("apns-relay-dedupe")
    }
    pub fn fsync() -> bool {
        true
    }
    pub fn cache_mib() -> u64 {
        DEFAULT_DEDUPE_CACHE >> 20
    }
    pub fn redis_prefix() -> String {
        "apns-relay:".into()
    }
    pub fn ttl() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn lease() -> Duration {
        Duration::from_secs(30)
    }
    pub fn idle() -> Duration {
        Duration::from_secs(300)
    }
    pub fn router_retry_for() -> Duration {
        Duration::from_secs(60)
    }
    pub fn apple_hosts() -> Vec<String> {
        [
            "api.push.apple.com",
            "api.sandbox.push.apple.com",
            "api.development.push.apple.com",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }
    pub fn proxy_allow() -> Vec<ProxyTarget> {
        [
            "api.push.apple.com",
            "api.sandbox.push.apple.com",
            "api.development.push.apple.com",
        ]
        .into_iter()
        .map(|h| ProxyTarget {
            host: h.into(),
            ports: vec![443, 2197],
        })
        .collect()
    }
}

impl Config {
    /// Reads, parses and checks a configuration file; relative paths in it are taken from the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.check(&path.display().to_string())?;
        Ok(config)
    }

    /// Parses configuration text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        parse_toml(text, name)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let fix_tls = |t: &mut ListenerTls| {
            fix(&mut t.cert);
            fix(&mut t.key);
            if let Some(ca) = t.client_ca.as_mut() {
                fix(ca);
            }
        };
        if let Some(tls) = self.relay.as_mut().and_then(|r| r.tls.as_mut()) {
            fix_tls(tls);
        }
        if let Some(tls) = self.proxy.as_mut().and_then(|p| p.tls.as_mut()) {
            fix_tls(tls);
        }
        if let Some(ca) = self.apns.ca.as_mut() {
            fix(ca);
        }
        if let Some(t) = self.apns.token.as_mut() {
            fix(&mut t.key);
        }
        if let Some(c) = self.apns.certificate.as_mut() {
            fix(&mut c.cert);
            fix(&mut c.key);
        }
        fix(&mut self.dedupe.path);
        for k in self.senders.iter_mut().flat_map(|s| s.keys.iter_mut()) {
            for p in [k.p8.as_mut(), k.public_key.as_mut()].into_iter().flatten() {
                fix(p);
            }
        }
    }

    /// Checks what serde cannot: combinations and ranges. Errors name the field.
    pub fn check(&self, name: &str) -> Result<(), ConfigError> {
        let err = |field: &str, msg: &str| Err(ConfigError(format!("{name}: {field}: {msg}")));
        if self.relay.is_none() && self.proxy.is_none() {
            return err(
                "relay",
                "neither [relay] nor [proxy] is configured: nothing to serve",
            );
        }
        if let Some(relay) = &self.relay {
            if relay.tls.is_none() && !relay.listen.ip().is_loopback() {
                return err(
                    "relay.tls",
                    "plain h2c is only allowed on a loopback address; configure TLS",
                );
            }
            if self.apns.token.is_some() && self.apns.certificate.is_some() {
                return err(
                    "apns",
                    "configure either apns.token or apns.certificate, not both",
                );
            }
            if !self.apns.endpoint.starts_with("https://") {
                return err("apns.endpoint", "must be an https:// URL");
            }
            if self.apns.connections == 0 {
                return err("apns.connections", "must be at least 1");
            }
            if self.retry.max_attempts == 0 {
                return err("retry.max_attempts", "must be at least 1");
            }
            if self.dedupe.backend == DedupeBackend::Redis && self.dedupe.url.is_none() {
                return err("dedupe.url", "the redis backend needs a url");
            }
        }
        if let Some(proxy) = &self.proxy {
            if proxy.tls.is_none() && !proxy.listen.ip().is_loopback() {
                if let Some(names) = self.proxy_password_senders() {
                    return err(
                        "proxy.tls",
                        &format!(
                            "a plain proxy listener off loopback would carry the Basic \
                             credentials of {names} in clear across the border; configure TLS \
                             (a plain listener is allowed off loopback only when every sender \
                             is admitted by proxy_source_cidrs alone)"
                        ),
                    );
                }
            }
            for t in &proxy.allow {
                if t.host.parse::<std::net::IpAddr>().is_ok() {
                    return err(
                        "proxy.allow",
                        &format!("`{}` is an IP literal; allow host names only", t.host),
                    );
                }
            }
        }
        if let Some(d) = &self.discovery {
            let listen = self.relay.as_ref().map(|r| r.listen);
            d.check(listen.or(self.proxy.as_ref().map(|p| p.listen)))
                .map_err(|e| ConfigError(format!("{name}: {e}")))?;
        }
        for (i, s) in self.senders.iter().enumerate() {
            let field = format!("senders[{i}] ({})", s.name);
            if s.bearer_token.is_none()
                && s.client_cert_sha256.is_none()
                && s.keys.is_empty()
                && s.proxy_password.is_none()
                && s.proxy_source_cidrs.is_empty()
            {
                return err(&field, "has no way to authenticate (bearer_token, client_cert_sha256, team_id + keys, proxy_password or proxy_source_cidrs)");
            }
            if !s.keys.is_empty() && s.team_id.as_deref().is_none_or(str::is_empty) {
                return err(
                    &field,
                    "keys need the sender's team_id (the `iss` of its provider tokens)",
                );
            }
            if s.team_id.is_some() && s.keys.is_empty() {
                return err(
                    &field,
                    "team_id needs keys = [{ key_id, p8 or public_key }]",
                );
            }
            for (j, k) in s.keys.iter().enumerate() {
                if k.file().is_none() {
                    return err(
                        &format!("{field}.keys[{j}] ({})", k.key_id),
                        "give exactly one of p8 (the AuthKey .p8 file) or public_key (a PEM public key)",
                    );
                }
                let twin = self.senders[..i].iter().find(|o| {
                    o.team_id == s.team_id && o.keys.iter().any(|ok| ok.key_id == k.key_id)
                });
                if let Some(other) = twin {
                    return err(
                        &format!("{field}.keys[{j}] ({})", k.key_id),
                        &format!("team {} key {} is already sender {}'s: a provider token must name one sender", s.team_id.as_deref().unwrap_or_default(), k.key_id, other.name),
                    );
                }
            }
            if let Some(fp) = &s.client_cert_sha256 {
                if parse_fingerprint(fp).is_none() {
                    return err(&field, "client_cert_sha256 must be 64 hex digits");
                }
            }
            if s.credentials == Credentials::Relay
                && self.relay.is_some()
                && (s.bearer_token.is_some()
                    || s.client_cert_sha256.is_some()
                    || !s.keys.is_empty())
                && self.apns.token.is_none()
                && self.apns.certificate.is_none()
            {
                return err(&field, "uses the relay's credentials but neither apns.token nor apns.certificate is configured");
            }
        }
        Ok(())
    }
}

impl Config {
    /// The names of the senders with a proxy password, joined, or `None` when no sender has
    /// one (every proxy user is then admitted by source address alone).
    pub fn proxy_password_senders(&self) -> Option<String> {
        let names: Vec<&str> = self
            .senders
            .iter()
            .filter(|s| s.proxy_password.is_some())
            .map(|s| s.name.as_str())
            .collect();
        (!names.is_empty()).then(|| names.join(", "))
    }
}

/// Parses a SHA-256 fingerprint written as hex, with or without `:`.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Parses TOML into `T`; errors are `name:line:column: message`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    name: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        let msg = e.message().trim().replace('\n', " ");
        ConfigError(format!("{name}:{line}:{col}: {msg}"))
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_names_line_and_column() {
        let text = "[relay]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n";
        let e = Config::parse(text, "relay.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("relay.toml:3:1: unknown field `lisen`"),
            "{e}"
        );
    }

    #[test]
    fn bad_duration_is_located() {
        let text = "[relay]\nlisten = \"127.0.0.1:1\"\ndrain_timeout = \"5 parsecs\"\n";
        let e = Config::parse(text, "r.toml").unwrap_err().to_string();
        assert!(e.starts_with("r.toml:3:17:"), "{e}");
        assert!(
            e.contains("expected a duration such as `500us`, `250ms` or `1m30s`"),
            "{e}"
        );
    }

    #[test]
    fn h2c_off_loopback_is_refused() {
        let text = "[relay]\nlisten = \"0.0.0.0:1\"\n";
        let c = Config::parse(text, "r.toml").unwrap();
        let e = c.check("r.toml").unwrap_err().to_string();
        assert_eq!(
            e,
            "r.toml: relay.tls: plain h2c is only allowed on a loopback address; configure TLS"
        );
    }

    #[test]
    fn proxy_refuses_ip_literal_in_allowlist() {
        let text =
            "[proxy]\nlisten = \"127.0.0.1:1\"\nallow = [{ host = \"10.0.0.1\", ports = [443] }]\n";
        let e = Config::parse(text, "p.toml")
            .unwrap()
            .check("p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("IP literal"), "{e}");
    }

    #[test]
    fn durations_take_microseconds() {
        let text = "[relay]\nlisten = \"127.0.0.1:1\"\ndrain_timeout = \"500us\"\n";
        let c = Config::parse(text, "r.toml").unwrap();
        assert_eq!(
            c.relay.map(|r| r.drain_timeout),
            Some(Duration::from_micros(500))
        );
    }
}
