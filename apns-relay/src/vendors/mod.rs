//! The non-Apple vendors' own push APIs, as the sender-side router speaks them directly: FCM
//! HTTP v1, Huawei Push Kit, Xiaomi MiPush, vivo Push and OPPO Push. Each module builds its
//! vendor's real request (URL, auth, body encoding), fetches and caches its vendor's access
//! token where the API has one, and maps the vendor's answer to an [`Answer`]: accepted,
//! rejected with the vendor's reason, or retryable (throttling, a temporary server error).
//!
//! Every base URL is configurable, so tests point them at local stand-ins.

pub mod fcm;
pub mod huawei;
pub mod oppo;
pub mod vivo;
pub mod xiaomi;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::RouterConfig;

/// A vendor push error that is not the vendor's answer to the push.
#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// Bad setup (a key file, a URL): exit 2.
    #[error("{0}")]
    Setup(String),
    /// The push cannot be expressed in the vendor's format (a missing title, say).
    #[error("{0}")]
    BadPush(String),
    /// The vendor could not be reached, or answered something that is not its API.
    #[error("{0}")]
    Transport(String),
}

/// What a vendor said about one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted; the vendor's message or task id, if it gives one.
    Accepted {
        /// HTTP status.
        status: u16,
        /// The vendor's id for the message.
        id: Option<String>,
    },
    /// Refused for good (bad token, bad credentials, bad message): do not resend as is.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The vendor's code and message.
        reason: String,
    },
    /// Not delivered now; the same push may be sent again later (throttled, server busy).
    Retryable {
        /// HTTP status.
        status: u16,
        /// The vendor's code and message.
        reason: String,
    },
    /// The access token was refused (expired or revoked): fetch a new one and resend once.
    Unauthorized {
        /// HTTP status.
        status: u16,
        /// The vendor's code and message.
        reason: String,
    },
}

/// The vendor-neutral content of a push, read from the router's JSON payload: either
/// APNs-shaped (`aps.alert.title`/`aps.alert.body`, or `aps.alert` as a string; every other
/// top-level key is custom data), or flat (`title`, `body`, and custom data in `data`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    /// Notification title.
    pub title: Option<String>,
    /// Notification body.
    pub body: Option<String>,
    /// Custom key/value data (non-string JSON values as their JSON text).
    pub data: BTreeMap<String, String>,
    /// This push's identity, the same on every resend: vivo (`requestId`) and OPPO
    /// (`app_message_id`) deliver a push with a repeated id only once, so the router's resends
    /// after a lost answer do not duplicate it there.
    pub push_id: String,
}

impl Content {
    /// Reads the content of a push payload.
    pub fn from_payload(payload: &[u8]) -> Result<Content, VendorError> {
        let v: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| VendorError::BadPush(format!("payload: not JSON: {e}")))?;
        let serde_json::Value::Object(map) = v else {
            return Err(VendorError::BadPush("payload: not a JSON object".into()));
        };
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut c = Content {
            push_id: uuid::Uuid::new_v4().simple().to_string(),
            ..Content::default()
        };
        if let Some(aps) = map.get("aps") {
            match aps.get("alert") {
                Some(serde_json::Value::String(s)) => c.body = Some(s.clone()),
                Some(alert) => {
                    c.title = alert.get("title").map(text);
                    c.body = alert.get("body").map(text);
                }
                None => {}
            }
            for (k, v) in &map {
                if k != "aps" {
                    c.data.insert(k.clone(), text(v));
                }
            }
        } else {
            c.title = map.get("title").map(text);
            c.body = map.get("body").map(text);
            if let Some(serde_json::Value::Object(data)) = map.get("data") {
                for (k, v) in data {
                    c.data.insert(k.clone(), text(v));
                }
            }
        }
        Ok(c)
    }

    /// The title and body a notification-bar message needs (vivo, OPPO, Xiaomi).
    fn title_and_body(&self, vendor: &str) -> Result<(&str, &str), VendorError> {
        match (self.title.as_deref(), self.body.as_deref()) {
            (Some(t), Some(b)) if !t.trim().is_empty() && !b.trim().is_empty() => Ok((t, b)),
            _ => Err(VendorError::BadPush(format!(
                "{vendor}: a notification needs a non-empty title and body"
            ))),
        }
    }

    /// The custom data as one JSON object text.
    fn data_json(&self) -> String {
        serde_json::to_string(&self.data).unwrap_or_else(|_| "{}".into())
    }
}

/// An access token cached until shortly before it expires.
#[derive(Default)]
pub(crate) struct TokenSlot(tokio::sync::Mutex<Option<(String, Instant)>>);

impl TokenSlot {
    /// The cached token, or a new one from `fetch` (which returns the token and its
    /// lifetime). One fetch at a time: concurrent pushes wait for it instead of each minting
    /// a token (vendors rate-limit their token endpoints).
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<Result<String, Answer>, VendorError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Result<(String, Duration), Answer>, VendorError>>,
    {
        let mut slot = self.0.lock().await;
        if let Some((token, until)) = slot.as_ref() {
            if Instant::now() < *until {
                return Ok(Ok(token.clone()));
            }
        }
        let (token, ttl) = match fetch().await? {
            Ok(t) => t,
            Err(answer) => return Ok(Err(answer)),
        };
        // Refresh a minute early (a tenth early for short-lived tokens), so a push never
        // carries a token that expires in flight.
        let margin = Duration::from_secs(60).min(ttl / 10);
        *slot = Some((token.clone(), Instant::now() + ttl - margin));
        Ok(Ok(token))
    }

    /// Forgets `token` if it is still the cached one (the vendor refused it).
    pub(crate) async fn invalidate(&self, token: &str) {
        let mut slot = self.0.lock().await;
        if slot.as_ref().is_some_and(|(t, _)| t == token) {
            *slot = None;
        }
    }

    /// Passes a send's answer on, forgetting `token` first when the vendor refused it, so the
    /// retry fetches a new one.
    pub(crate) async fn checked(&self, token: &str, answer: Answer) -> Answer {
        if matches!(answer, Answer::Unauthorized { .. }) {
            self.invalidate(token).await;
        }
        answer
    }
}

/// The configured vendors.
pub struct Vendors {
    fcm: Option<fcm::Fcm>,
    huawei: Option<huawei::Huawei>,
    xiaomi: Option<xiaomi::Xiaomi>,
    vivo: Option<vivo::Vivo>,
    oppo: Option<oppo::Oppo>,
}

impl Vendors {
    /// The vendors a router file configures.
    pub fn new(config: &RouterConfig) -> Result<Vendors, VendorError> {
        Ok(Vendors {
            fcm: config.fcm.as_ref().map(fcm::Fcm::new).transpose()?,
            huawei: config.huawei.clone().map(huawei::Huawei::new),
            xiaomi: config.xiaomi.clone().map(xiaomi::Xiaomi::new),
            vivo: config.vivo.clone().map(vivo::Vivo::new),
            oppo: config.oppo.clone().map(oppo::Oppo::new),
        })
    }

    /// Whether `name` is configured with its own API.
    pub fn has(&self, name: &str) -> bool {
        match name {
            "fcm" => self.fcm.is_some(),
            "huawei" => self.huawei.is_some(),
            "xiaomi" => self.xiaomi.is_some(),
            "vivo" => self.vivo.is_some(),
            "oppo" => self.oppo.is_some(),
            _ => false,
        }
    }

    /// Sends one push to `device` through vendor `name`; when the vendor refuses the access
    /// token, fetches a new one and sends once more.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        name: &str,
        device: &str,
        content: &Content,
    ) -> Result<Answer, VendorError> {
        let mut answer = self.send_once(http, name, device, content).await?;
        if matches!(answer, Answer::Unauthorized { .. }) {
            answer = self.send_once(http, name, device, content).await?;
        }
        Ok(match answer {
            Answer::Unauthorized { status, reason } => Answer::Rejected { status, reason },
            other => other,
        })
    }

    async fn send_once(
        &self,
        http: &reqwest::Client,
        name: &str,
        device: &str,
        content: &Content,
    ) -> Result<Answer, VendorError> {
        let missing = || VendorError::Setup(format!("vendor `{name}` is not configured"));
        match name {
            "fcm" => {
                self.fcm
                    .as_ref()
                    .ok_or_else(missing)?
                    .send(http, device, content)
                    .await
            }
            "huawei" => {
                let v = self.huawei.as_ref().ok_or_else(missing)?;
                v.send(http, device, content).await
            }
            "xiaomi" => {
                let v = self.xiaomi.as_ref().ok_or_else(missing)?;
                v.send(http, device, content).await
            }
            "vivo" => {
                self.vivo
                    .as_ref()
                    .ok_or_else(missing)?
                    .send(http, device, content)
                    .await
            }
            "oppo" => {
                self.oppo
                    .as_ref()
                    .ok_or_else(missing)?
                    .send(http, device, content)
                    .await
            }
            _ => Err(missing()),
        }
    }
}

/// A vendor's HTTP answer: status and body parsed as JSON (`Null` when it is not JSON).
pub(crate) async fn read_json(
    res: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> Result<(u16, serde_json::Value), VendorError> {
    let res = res.map_err(|e| VendorError::Transport(format!("{what}: {}", error_chain(&e))))?;
    let status = res.status().as_u16();
    let body = res.bytes().await.map_err(|e| {
        VendorError::Transport(format!("{what}: reading the answer: {}", error_chain(&e)))
    })?;
    Ok((
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    ))
}

/// A vendor's refusal by its HTTP status alone: retryable when the status says "try again
/// later" (throttled, or a server-side failure), else rejected.
pub(crate) fn refusal(status: u16, reason: String) -> Answer {
    if matches!(status, 429 | 500 | 502 | 503 | 504) {
        Answer::Retryable { status, reason }
    } else {
        Answer::Rejected { status, reason }
    }
}

/// A token endpoint's refusal as an answer to the push.
pub(crate) fn token_refused(vendor: &str, status: u16, body: &serde_json::Value) -> Answer {
    refusal(status, format!("{vendor} auth refused: {}", compact(body)))
}

/// An OAuth2 token endpoint's answer (RFC 6749 §5.1: `access_token`, `expires_in`, one hour
/// when absent) as the token and its lifetime, or `vendor`'s refusal.
pub(crate) fn oauth_token(
    vendor: &str,
    status: u16,
    body: &serde_json::Value,
) -> Result<(String, Duration), Answer> {
    match (status, field(body, "access_token")) {
        (200, Some(token)) => {
            let ttl = body
                .get("expires_in")
                .and_then(|v| v.as_u64())
                .unwrap_or(3600);
            Ok((token, Duration::from_secs(ttl)))
        }
        _ => Err(token_refused(vendor, status, body)),
    }
}

/// A refusal's reason: the vendor's code and its text, or the HTTP status when the body has
/// no code.
pub(crate) fn reason(code: &str, text: Option<String>, status: u16) -> String {
    match (code, text) {
        ("", _) => format!("HTTP {status}"),
        (c, Some(t)) => format!("{c}: {t}"),
        (c, None) => c.to_string(),
    }
}

/// A JSON value as short text for a reason.
pub(crate) fn compact(v: &serde_json::Value) -> String {
    v.to_string().chars().take(200).collect()
}

/// A string field of a JSON object, or a number field as text.
pub(crate) fn field(v: &serde_json::Value, name: &str) -> Option<String> {
    match v.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch (vivo and OPPO sign with it).
pub(crate) fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_reads_apns_shaped_and_flat_payloads() {
        let c = Content::from_payload(
            br#"{"aps":{"alert":{"title":"T","body":"B"}},"order":42,"kind":"x"}"#,
        )
        .unwrap();
        assert_eq!(c.title.as_deref(), Some("T"));
        assert_eq!(c.body.as_deref(), Some("B"));
        assert_eq!(c.data.get("order").map(String::as_str), Some("42"));
        assert_eq!(c.data.get("kind").map(String::as_str), Some("x"));
        let c = Content::from_payload(br#"{"title":"T","body":"B","data":{"k":"v"}}"#).unwrap();
        assert_eq!(
            (c.title.as_deref(), c.body.as_deref()),
            (Some("T"), Some("B"))
        );
        assert_eq!(c.data.len(), 1);
        let e = Content::from_payload(b"[1]").unwrap_err().to_string();
        assert_eq!(e, "payload: not a JSON object");
        let e = Content::default()
            .title_and_body("vivo")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "vivo: a notification needs a non-empty title and body");
    }
}
