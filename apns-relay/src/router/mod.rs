//! The sender-side router: what a sender in China runs to push to every vendor. Apple pushes
//! go through the relay (the relay's dedupe makes the router's retries safe) or through the
//! CONNECT proxy straight to APNs, as configured; Huawei, Xiaomi, vivo, OPPO and FCM pushes go
//! direct to the vendors' own APIs ([`crate::vendors`]), and Honor's to a configured URL as
//! generic JSON. One reqwest client carries everything; its `Proxy::custom` sends only
//! Apple's host names to the proxy.
//!
//! Apple notifications are built with a2's payload types ([`apple_payload`]). The relay is one
//! URL, or the relays ZooKeeper lists ([`relays`]: picked per push, failed over on a
//! connection failure; [`Router::start`]).

mod relays;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::RootCertStore;

use crate::config::{AppleVia, RouterConfig};
use crate::jwt::{Signer, TokenCache};
use crate::vendors::{error_chain, Answer, Content, VendorError, Vendors};
use relays::Relays;

/// A router error.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Bad setup (a key, a CA, a URL): exit 2.
    #[error("{0}")]
    Setup(String),
    /// The push names a vendor with no endpoint configured.
    #[error("no endpoint configured for vendor `{0}`")]
    NoVendor(String),
    /// The push could not be sent and no outcome is known.
    #[error("{0}")]
    Transport(String),
    /// No relay to send to: ZooKeeper lists none and no `apple.relay_url` is configured
    /// (exit 2).
    #[error("{0}")]
    NoRelay(String),
    /// The push cannot be expressed in the vendor's format (exit 2).
    #[error("{0}")]
    BadPush(String),
}

impl From<VendorError> for RouterError {
    fn from(e: VendorError) -> RouterError {
        match e {
            VendorError::Setup(s) => RouterError::Setup(s),
            VendorError::BadPush(s) => RouterError::BadPush(s),
            VendorError::Transport(s) => RouterError::Transport(s),
        }
    }
}

/// A vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// Apple (APNs).
    Apple,
    /// Any other vendor, by its config name.
    Other(&'static str),
}

impl Vendor {
    /// Parses `apple`, `huawei`, `xiaomi`, `vivo`, `oppo`, `honor`, `fcm`.
    pub fn parse(s: &str) -> Option<Vendor> {
        Some(match s {
            "apple" => Vendor::Apple,
            "huawei" => Vendor::Other("huawei"),
            "xiaomi" => Vendor::Other("xiaomi"),
            "vivo" => Vendor::Other("vivo"),
            "oppo" => Vendor::Other("oppo"),
            "honor" => Vendor::Other("honor"),
            "fcm" => Vendor::Other("fcm"),
            _ => return None,
        })
    }
}

/// One push to send.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Vendor.
    pub vendor: Vendor,
    /// Device token.
    pub device_token: String,
    /// JSON payload (for Apple: built with [`apple_payload`]).
    pub payload: Bytes,
    /// Apple: `apns-topic`.
    pub topic: Option<String>,
    /// Apple: `apns-id`; the router makes one when absent, so its retries keep one identity.
    pub apns_id: Option<uuid::Uuid>,
    /// Apple: `apns-collapse-id`.
    pub collapse_id: Option<String>,
    /// Apple: `apns-push-type`.
    pub push_type: Option<String>,
    /// Apple: `apns-priority`.
    pub priority: Option<u8>,
    /// Relay: allow resending a push whose outcome is unknown (may duplicate it).
    pub resend_unknown: bool,
}

impl Notification {
    /// An Apple push of `payload` to `device_token` on `topic`.
    pub fn apple(device_token: &str, topic: &str, payload: String) -> Notification {
        Notification {
            vendor: Vendor::Apple,
            device_token: device_token.into(),
            payload: payload.into(),
            topic: Some(topic.into()),
            apns_id: None,
            collapse_id: None,
            push_type: Some("alert".into()),
            priority: None,
            resend_unknown: false,
        }
    }
}

/// The final outcome at the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// HTTP status of the last answer.
    pub status: u16,
    /// `accepted`, `rejected` or `unknown`.
    pub outcome: String,
    /// The APNs (or vendor) reason, if any.
    pub reason: String,
    /// Attempts towards APNs as the relay reports them (1 to APNs direct; to other vendors,
    /// the sends the router made).
    pub attempts: u32,
    /// Sends the router made (its own retries towards the relay).
    pub sends: u32,
    /// `relay`, `proxy` or `direct`.
    pub path: &'static str,
    /// The push's apns-id (Apple).
    pub apns_id: Option<uuid::Uuid>,
    /// Whether the relay answered from its dedupe store.
    pub dedupe: Option<String>,
    /// Not delivered, and the same push may be sent again later (a vendor throttled it or
    /// failed temporarily, and the router's `retry_for` ran out).
    pub retryable: bool,
    /// The vendor's id for an accepted message (FCM's message name, Huawei's request id,
    /// Xiaomi's message id, vivo's task id, OPPO's message id).
    pub message_id: Option<String>,
    /// The relay that gave the final answer (its base URL), on the relay path.
    pub relay: Option<String>,
}

/// The router; see the module doc.
pub struct Router {
    config: RouterConfig,
    client: reqwest::Client,
    /// For `http://` relays (h2c on loopback): HTTP/2 with prior knowledge.
    h2c: Option<reqwest::Client>,
    relays: Relays,
    /// Why discovery is not in use (or lists no relay), said once at start.
    note: Option<String>,
    tokens: Option<TokenCache>,
    vendors: Vendors,
}

fn add_roots(roots: &mut RootCertStore, path: &std::path::Path) -> Result<(), RouterError> {
    for c in crate::tls::load_certs(path).map_err(|e| RouterError::Setup(e.to_string()))? {
        roots
            .add(c)
            .map_err(|e| RouterError::Setup(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

impl Router {
    /// A router from its config; with `apple.discovery`, use [`Router::start`].
    pub fn new(config: RouterConfig) -> Result<Router, RouterError> {
        if config.apple.discovery.is_some() {
            return Err(RouterError::Setup(
                "apple.discovery: the relays are found in ZooKeeper; build the router with Router::start".into(),
            ));
        }
        Router::build(config)
    }

    /// A router from its config, following the relays in ZooKeeper when `apple.discovery` is
    /// set (connecting within its `connect_timeout`; see [`relays`] for the fallbacks).
    pub async fn start(config: RouterConfig) -> Result<Router, RouterError> {
        let Some(discover) = config.apple.discovery.clone() else {
            return Router::build(config);
        };
        let fallback = config.apple.relay_url.clone();
        let mut router = Router::build(config)?;
        let (relays, note) = Relays::start(discover, fallback).await?;
        router.relays = relays;
        router.note = note;
        Ok(router)
    }

    /// Why the router is not using discovery, or what discovery lacks, if it said so at start
    /// (one line, for the command line to print).
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Stops following ZooKeeper (see [`discovery::ServiceWatch::close`]); call it before the
    /// runtime shuts down.
    pub async fn close(self) {
        self.relays.close().await;
    }

    fn build(config: RouterConfig) -> Result<Router, RouterError> {
        let a = &config.apple;
        let mut roots = RootCertStore::empty();
        let custom: Vec<_> = [&a.relay_ca, &a.apns_ca, &a.proxy_ca, &config.vendor_ca]
            .into_iter()
            .flatten()
            .collect();
        for path in &custom {
            add_roots(&mut roots, path)?;
        }
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| RouterError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(64);
        if a.via == AppleVia::Proxy {
            let url = a.proxy_url.clone().unwrap_or_default();
            let apple: HashSet<String> = a
                .apple_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            let mut proxy_url: reqwest::Url = url
                .parse()
                .map_err(|e| RouterError::Setup(format!("apple.proxy_url: {e}")))?;
            if let (Some(user), Some(pass)) = (&a.proxy_user, &a.proxy_password) {
                let _ = proxy_url.set_username(user);
                let _ = proxy_url.set_password(Some(pass));
            }
            let proxy = reqwest::Proxy::custom(move |url| {
                let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
                apple.contains(&host).then(|| proxy_url.clone())
            });
            builder = builder.proxy(proxy);
        } else {
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| RouterError::Setup(format!("http client: {e}")))?;
        let tokens = match (&a.token, a.via) {
            (Some(t), AppleVia::Proxy | AppleVia::Direct) => Some(TokenCache::new(
                Signer::from_p8_file(&t.key, &t.key_id, &t.team_id)
                    .map_err(|e| RouterError::Setup(e.to_string()))?,
                t.refresh,
                t.min_refresh_gap,
                Default::default(),
            )),
            _ => None,
        };
        // An h2c relay (loopback) needs HTTP/2 prior knowledge, which would break HTTP/1.1
        // vendor endpoints, so it gets a client of its own.
        let h2c = if a.via == AppleVia::Relay {
            Some(
                reqwest::Client::builder()
                    .tls_backend_preconfigured(tls)
                    .http2_prior_knowledge()
                    .no_proxy()
                    .timeout(config.request_timeout)
                    .build()
                    .map_err(|e| RouterError::Setup(format!("http client: {e}")))?,
            )
        } else {
            None
        };
        let relays = match a.via {
            AppleVia::Relay => Relays::Static(a.relay_url.clone()),
            AppleVia::Proxy | AppleVia::Direct => Relays::Static(Some(a.apns_url.clone())),
        };
        let vendors = Vendors::new(&config)?;
        Ok(Router {
            config,
            client,
            h2c,
            relays,
            note: None,
            tokens,
            vendors,
        })
    }

    /// Sends one push and returns its final outcome. Towards the relay, transport failures
    /// and "not delivered" answers (503 `rejected`) are retried with the same apns-id until
    /// `retry_for` has passed: the relay's dedupe makes that safe.
    pub async fn send(&self, n: &Notification) -> Result<Delivery, RouterError> {
        match n.vendor {
            Vendor::Apple => self.send_apple(n).await,
            Vendor::Other(name) => self.send_vendor(name, n).await,
        }
    }

    /// An Apple push: to the relay (a discovered one per send, failing over on a connection
    /// failure), the proxy or APNs directly, retried as [`Router::send`] says.
    async fn send_apple(&self, n: &Notification) -> Result<Delivery, RouterError> {
        let via = self.config.apple.via;
        let path = match via {
            AppleVia::Relay => "relay",
            AppleVia::Proxy => "proxy",
            AppleVia::Direct => "direct",
        };
        // Through the relay any failure may be retried (the relay dedupes); to APNs directly
        // only a failure to connect is safe.
        let retry_safe = via == AppleVia::Relay;
        let apns_id = n.apns_id.unwrap_or_else(uuid::Uuid::new_v4);
        let deadline = Instant::now() + self.config.retry_for;
        let mut pause = Duration::from_millis(20);
        let backoff = |pause: &mut Duration| {
            let now = *pause;
            *pause = (*pause * 2).min(Duration::from_secs(1));
            tokio::time::sleep(now)
        };
        let mut tries = self.relays.tries();
        let mut sends = 0;
        loop {
            let picked = match tries.next() {
                Ok(p) => p,
                // Every relay listed was tried: wait, then try them all again.
                Err(_) if sends > 0 && Instant::now() < deadline => {
                    backoff(&mut pause).await;
                    tries = self.relays.tries();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let base = picked.base.unwrap_or_default();
            let url = format!("{}/3/device/{}", base.trim_end_matches('/'), n.device_token);
            sends += 1;
            let delivery = |status, outcome: String, reason, attempts, dedupe| Delivery {
                status,
                outcome,
                reason,
                attempts,
                sends,
                path,
                apns_id: Some(apns_id),
                dedupe,
                retryable: false,
                message_id: None,
                relay: retry_safe.then(|| base.clone()),
            };
            match self.apple_request(&url, n, apns_id).send().await {
                Ok(res) => {
                    if let Some(lease) = picked.lease {
                        lease.done();
                    }
                    let a = AppleAnswer::read(res).await;
                    let not_delivered =
                        a.outcome == "rejected" && matches!(a.status, 429 | 500 | 503);
                    if retry_safe && not_delivered && Instant::now() < deadline {
                        backoff(&mut pause).await;
                        tries = self.relays.tries();
                        continue;
                    }
                    return Ok(delivery(
                        a.status, a.outcome, a.reason, a.attempts, a.dedupe,
                    ));
                }
                Err(e) => {
                    let connect = e.is_connect();
                    let safe = retry_safe || connect;
                    if safe && Instant::now() < deadline {
                        tracing::debug!(error = %e, sends, %url, "retrying the push");
                        match picked.lease {
                            // Another discovered relay at once.
                            Some(lease) if connect => lease.connect_failed(),
                            _ => {
                                backoff(&mut pause).await;
                                tries = self.relays.tries();
                            }
                        }
                        continue;
                    }
                    if !safe {
                        return Ok(delivery(0, "unknown".into(), error_chain(&e), 1, None));
                    }
                    return Err(RouterError::Transport(format!(
                        "{url}: {}",
                        error_chain(&e)
                    )));
                }
            }
        }
    }

    /// The request of one Apple send to `url`.
    fn apple_request(
        &self,
        url: &str,
        n: &Notification,
        apns_id: uuid::Uuid,
    ) -> reqwest::RequestBuilder {
        let a = &self.config.apple;
        let client = match &self.h2c {
            Some(h2c) if url.starts_with("http://") => h2c,
            _ => &self.client,
        };
        let mut req = client
            .post(url)
            .header("apns-id", apns_id.hyphenated().to_string())
            .body(n.payload.clone());
        if let Some(t) = &n.topic {
            req = req.header("apns-topic", t);
        }
        if let Some(c) = &n.collapse_id {
            req = req.header("apns-collapse-id", c);
        }
        if let Some(t) = &n.push_type {
            req = req.header("apns-push-type", t);
        }
        if let Some(p) = n.priority {
            req = req.header("apns-priority", p.to_string());
        }
        match (a.via, &self.tokens) {
            (AppleVia::Relay, _) => {
                let mut r = req.bearer_auth(a.relay_token.clone().unwrap_or_default());
                if n.resend_unknown {
                    r = r.header(crate::relay::inbound::RESEND_UNKNOWN, "1");
                }
                r
            }
            (_, Some(tokens)) => req.header(http::header::AUTHORIZATION, tokens.get().header),
            (_, None) => req,
        }
    }

    /// A push to a vendor's own API. Retryable answers (throttling, temporary server errors)
    /// are resent with backoff until `retry_for` has passed; the vendors say to do so.
    async fn send_native(
        &self,
        name: &'static str,
        n: &Notification,
    ) -> Result<Delivery, RouterError> {
        let content = Content::from_payload(&n.payload)?;
        let deadline = Instant::now() + self.config.retry_for;
        let mut pause = Duration::from_millis(20);
        let mut sends = 0;
        loop {
            sends += 1;
            let answer = self
                .vendors
                .send(&self.client, name, &n.device_token, &content)
                .await?;
            let mut message_id = None;
            let (status, outcome, reason, retryable) = match answer {
                Answer::Accepted { status, id } => {
                    message_id = id;
                    (status, "accepted", String::new(), false)
                }
                Answer::Retryable { status, reason } if Instant::now() < deadline => {
                    tracing::debug!(vendor = name, status, %reason, sends, "retrying the push");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
                Answer::Retryable { status, reason } => (status, "rejected", reason, true),
                Answer::Rejected { status, reason } | Answer::Unauthorized { status, reason } => {
                    (status, "rejected", reason, false)
                }
            };
            return Ok(Delivery {
                status,
                outcome: outcome.into(),
                reason,
                attempts: sends,
                sends,
                path: "direct",
                apns_id: None,
                dedupe: None,
                retryable,
                message_id,
                relay: None,
            });
        }
    }

    async fn send_vendor(
        &self,
        name: &'static str,
        n: &Notification,
    ) -> Result<Delivery, RouterError> {
        if self.vendors.has(name) {
            return self.send_native(name, n).await;
        }
        let ep = self
            .config
            .vendors
            .get(name)
            .ok_or_else(|| RouterError::NoVendor(name.into()))?;
        let url = ep.url.replace("{token}", &n.device_token);
        let mut req = self
            .client
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(n.payload.clone());
        if let Some(b) = &ep.bearer {
            req = req.bearer_auth(b);
        }
        let res = req
            .send()
            .await
            .map_err(|e| RouterError::Transport(format!("{url}: {}", error_chain(&e))))?;
        let status = res.status().as_u16();
        let body = res.bytes().await.unwrap_or_default();
        Ok(Delivery {
            status,
            outcome: if (200..300).contains(&status) {
                "accepted".into()
            } else {
                "rejected".into()
            },
            reason: String::from_utf8_lossy(&body).chars().take(200).collect(),
            attempts: 1,
            sends: 1,
            path: "direct",
            apns_id: None,
            dedupe: None,
            retryable: false,
            message_id: None,
            relay: None,
        })
    }
}

/// What an Apple answer (the relay's or APNs's) says.
struct AppleAnswer {
    status: u16,
    outcome: String,
    reason: String,
    attempts: u32,
    dedupe: Option<String>,
}

impl AppleAnswer {
    /// Reads the status, the relay's headers (`apns-relay-outcome`, `-attempts`, `-dedupe`)
    /// and the reason in the body.
    async fn read(res: reqwest::Response) -> AppleAnswer {
        let status = res.status().as_u16();
        let h = res.headers();
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let outcome = get("apns-relay-outcome").unwrap_or_else(|| {
            if status == 200 {
                "accepted".into()
            } else {
                "rejected".into()
            }
        });
        let attempts = get("apns-relay-attempts")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let dedupe = get("apns-relay-dedupe");
        let body = res.bytes().await.unwrap_or_default();
        AppleAnswer {
            status,
            outcome,
            reason: crate::relay::reason_of(&body),
            attempts,
            dedupe,
        }
    }
}

/// An Apple payload built with a2's types: alert title/body, optional badge and sound, and
/// custom data merged at the top level.
pub fn apple_payload(
    title: Option<&str>,
    body: Option<&str>,
    badge: Option<u32>,
    sound: Option<&str>,
    data: Option<&serde_json::Value>,
) -> Result<String, RouterError> {
    use a2::request::notification::{
        DefaultNotificationBuilder, NotificationBuilder, NotificationOptions,
    };
    use a2::request::payload::PayloadLike;
    let mut b = DefaultNotificationBuilder::new();
    if let Some(t) = title {
        b = b.set_title(t);
    }
    if let Some(t) = body {
        b = b.set_body(t);
    }
    if let Some(n) = badge {
        b = b.set_badge(n);
    }
    if let Some(s) = sound {
        b = b.set_sound(s);
    }
    let mut payload = b.build("", NotificationOptions::default());
    if let Some(serde_json::Value::Object(map)) = data {
        for (k, v) in map {
            payload
                .add_custom_data(k.as_str(), v)
                .map_err(|e| RouterError::Setup(format!("custom data `{k}`: {e}")))?;
        }
    }
    payload
        .to_json_string()
        .map_err(|e| RouterError::Setup(e.to_string()))
}
