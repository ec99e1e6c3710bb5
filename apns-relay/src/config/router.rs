//! `router.toml`, the sender-side router's file (`apns-relay send --config router.toml`): the
//! Apple path (relay, proxy or direct) and every other vendor's own API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{defaults, parse_toml, ConfigError, TokenConfig};

/// The sender-side router's file (`apns-relay send --config router.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// How Apple pushes travel.
    pub apple: AppleRoute,
    /// Every other vendor's endpoint, sent to directly: `huawei`, `xiaomi`, `vivo`, `oppo`,
    /// `fcm`.
    #[serde(default)]
    pub vendors: BTreeMap<String, VendorEndpoint>,
    /// How long a push may keep being retried while the path is down (relay restarting).
    #[serde(
        default = "defaults::router_retry_for",
        deserialize_with = "common::duration::deserialize"
    )]
    pub retry_for: Duration,
    /// Timeout of one request.
    #[serde(
        default = "defaults::request_timeout",
        deserialize_with = "common::duration::deserialize"
    )]
    pub request_timeout: Duration,
    /// CA of the vendors' endpoints' certificates, added to the system roots (tests: the
    /// stand-ins' CA).
    pub vendor_ca: Option<PathBuf>,
    /// FCM HTTP v1 (service-account OAuth2).
    pub fcm: Option<FcmConfig>,
    /// Huawei Push Kit (OAuth2 client credentials).
    pub huawei: Option<HuaweiConfig>,
    /// Xiaomi MiPush (`Authorization: key=APP_SECRET`).
    pub xiaomi: Option<XiaomiConfig>,
    /// vivo Push (signed auth request, `authToken` header).
    pub vivo: Option<VivoConfig>,
    /// OPPO Push (signed auth request, `auth_token`).
    pub oppo: Option<OppoConfig>,
}

/// FCM HTTP v1: `POST {base_url}/v1/projects/{project_id}/messages:send` with an OAuth2 access
/// token minted from a service-account key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The service-account JSON key file (as downloaded from the Firebase console).
    pub service_account: PathBuf,
    /// Firebase project id (default: the key file's `project_id`).
    pub project_id: Option<String>,
    /// API base URL.
    #[serde(default = "vendor_defaults::fcm_base")]
    pub base_url: String,
    /// OAuth2 token URI (default: the key file's `token_uri`).
    pub token_uri: Option<String>,
}

/// Huawei Push Kit: OAuth2 client credentials, then `POST {base_url}/v1/{app_id}/messages:send`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HuaweiConfig {
    /// The app id (also the OAuth2 client id).
    pub app_id: String,
    /// The app secret (OAuth2 client secret).
    pub app_secret: String,
    /// API base URL.
    #[serde(default = "vendor_defaults::huawei_base")]
    pub base_url: String,
    /// OAuth2 token URL.
    #[serde(default = "vendor_defaults::huawei_token_url")]
    pub token_url: String,
}

/// Xiaomi MiPush: `POST {base_url}/v3/message/regid`, form-encoded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XiaomiConfig {
    /// The app secret (sent as `Authorization: key=…`).
    pub app_secret: String,
    /// The app's Android package name (`restricted_package_name`).
    pub package_name: String,
    /// API base URL (global regions have their own hosts).
    #[serde(default = "vendor_defaults::xiaomi_base")]
    pub base_url: String,
    /// `notify_type`: -1 all (sound, vibration, lights), 1 sound, 2 vibration, 4 lights.
    #[serde(default = "vendor_defaults::xiaomi_notify_type")]
    pub notify_type: i32,
}

/// vivo Push: `POST {base_url}/message/auth`, then `POST {base_url}/message/send`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VivoConfig {
    /// The app id.
    pub app_id: u64,
    /// The app key.
    pub app_key: String,
    /// The app secret (only used in the auth signature).
    pub app_secret: String,
    /// API base URL.
    #[serde(default = "vendor_defaults::vivo_base")]
    pub base_url: String,
    /// `pushMode`: 0 production, 1 test devices only.
    #[serde(default)]
    pub push_mode: u8,
    /// `notifyType`: 1 none, 2 sound, 3 vibration, 4 both.
    #[serde(default = "vendor_defaults::vivo_notify_type")]
    pub notify_type: u8,
}

/// OPPO Push: `POST {base_url}/server/v1/auth`, then
/// `POST {base_url}/server/v1/message/notification/unicast`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OppoConfig {
    /// The app key.
    pub app_key: String,
    /// The master secret (only used in the auth signature).
    pub master_secret: String,
    /// API base URL.
    #[serde(default = "vendor_defaults::oppo_base")]
    pub base_url: String,
    /// Notification channel id (`channel_id`), needed on ColorOS 11+ for private channels.
    pub channel_id: Option<String>,
}

mod vendor_defaults {
    pub fn fcm_base() -> String {
        "https://fcm.googleapis.com".into()
    }
    pub fn huawei_base() -> String {
        "https://push-api.cloud.huawei.com".into()
    }
    pub fn huawei_token_url() -> String {
        "https://oauth-login.cloud.huawei.com/oauth2/v3/token".into()
    }
    pub fn xiaomi_base() -> String {
        "https://api.xmpush.xiaomi.com".into()
    }
    pub fn xiaomi_notify_type() -> i32 {
        -1
    }
    pub fn vivo_base() -> String {
        "https://api-push.vivo.com.cn".into()
    }
    pub fn vivo_notify_type() -> u8 {
        4
    }
    pub fn oppo_base() -> String {
        "https://api.push.oppomobile.com".into()
    }
}

/// Which path Apple pushes take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppleVia {
    /// To the terminating relay.
    Relay,
    /// Straight to APNs through the CONNECT proxy.
    Proxy,
    /// Straight to APNs.
    Direct,
}

/// The Apple path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppleRoute {
    /// `relay`, `proxy` or `direct`.
    pub via: AppleVia,
    /// Relay: its URL (`https://…`, or `http://` for h2c on loopback). With `discovery`, the
    /// fallback when ZooKeeper cannot be reached at start or lists no relay.
    pub relay_url: Option<String>,
    /// Relay: find the relays in ZooKeeper (`{ ensemble, path, balance }`) and pick one per
    /// push, failing over to another on a connection failure.
    pub discovery: Option<discovery::Discover>,
    /// Relay: the sender's bearer token.
    pub relay_token: Option<String>,
    /// Relay: CA of the relay's certificate (default: system roots).
    pub relay_ca: Option<PathBuf>,
    /// Proxy/direct: APNs base URL.
    #[serde(default = "defaults::endpoint")]
    pub apns_url: String,
    /// Proxy/direct: CA of APNs's certificate (default: system roots; tests: the mock's).
    pub apns_ca: Option<PathBuf>,
    /// Proxy/direct: the sender's own p8 key.
    pub token: Option<TokenConfig>,
    /// Proxy: URL (`https://host:port` for a TLS listener).
    pub proxy_url: Option<String>,
    /// Proxy: user (the sender's name at the proxy).
    pub proxy_user: Option<String>,
    /// Proxy: password.
    pub proxy_password: Option<String>,
    /// Proxy: CA of the proxy's certificate.
    pub proxy_ca: Option<PathBuf>,
    /// Host names that count as Apple's (these, and only these, go through the proxy).
    #[serde(default = "defaults::apple_hosts")]
    pub apple_hosts: Vec<String>,
}

/// A direct vendor endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorEndpoint {
    /// URL to POST to; `{token}` is replaced by the device token.
    pub url: String,
    /// Bearer token for the vendor, if it uses one.
    pub bearer: Option<String>,
}

impl RouterConfig {
    /// Reads and checks a router file.
    pub fn load(path: &Path) -> Result<RouterConfig, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{name}: cannot read: {e}")))?;
        let mut c: RouterConfig = parse_toml(&text, &name)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut c.apple.relay_ca,
            &mut c.apple.apns_ca,
            &mut c.apple.proxy_ca,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(t) = c.apple.token.as_mut() {
            if t.key.is_relative() {
                t.key = base.join(&t.key);
            }
        }
        for p in [
            c.vendor_ca.as_mut(),
            c.fcm.as_mut().map(|f| &mut f.service_account),
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        c.check(&name)?;
        Ok(c)
    }

    /// Checks combinations.
    pub fn check(&self, name: &str) -> Result<(), ConfigError> {
        let err = |field: &str, msg: &str| Err(ConfigError(format!("{name}: {field}: {msg}")));
        let a = &self.apple;
        if let Some(d) = &a.discovery {
            if a.via != AppleVia::Relay {
                return err(
                    "apple.discovery",
                    "relays are discovered only with via = \"relay\"",
                );
            }
            if let Err(e) = d.check() {
                return Err(ConfigError(format!("{name}: apple.discovery.{e}")));
            }
        }
        match a.via {
            AppleVia::Relay if a.relay_url.is_none() && a.discovery.is_none() => {
                return err(
                    "apple.relay_url",
                    "via = \"relay\" needs relay_url or discovery",
                )
            }
            AppleVia::Proxy if a.proxy_url.is_none() => {
                return err("apple.proxy_url", "via = \"proxy\" needs proxy_url")
            }
            AppleVia::Proxy | AppleVia::Direct if a.token.is_none() => {
                return err(
                    "apple.token",
                    "sending to APNs without the relay needs the sender's own p8 key",
                )
            }
            _ => {}
        }
        for vendor in self.vendors.keys() {
            if ["huawei", "xiaomi", "vivo", "oppo", "fcm"].contains(&vendor.as_str()) {
                return err(
                    &format!("vendors.{vendor}"),
                    &format!("{vendor} speaks its own API: configure it in a [{vendor}] section"),
                );
            }
            if !["huawei", "xiaomi", "vivo", "oppo", "fcm", "honor"].contains(&vendor.as_str()) {
                return err(
                    &format!("vendors.{vendor}"),
                    "unknown vendor (huawei, xiaomi, vivo, oppo, honor, fcm)",
                );
            }
        }
        Ok(())
    }
}
