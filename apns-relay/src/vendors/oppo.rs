//! OPPO Push (server API v1).
//!
//! - Auth: `POST {base}/server/v1/auth`, form-encoded `app_key`, `timestamp` (ms), `sign` =
//!   lower-case hex SHA-256 of `app_key + timestamp + master_secret` → `{"code": 0, "data":
//!   {"auth_token", "create_time"}}`; the token lives 24 hours, the router renews it after 12.
//! - Send (unicast notification): `POST {base}/server/v1/message/notification/unicast`,
//!   form-encoded `auth_token` and `message`, a JSON object `{"target_type": 2 (registration
//!   id), "target_value", "notification": {"title", "content", "click_action_type": 0 (open the
//!   app), "action_parameters" (custom data, a JSON string), "channel_id", "app_message_id"
//!   (OPPO pushes one id to one target once, so resends keep it)}}` → `{"code": 0, "data":
//!   {"messageId"}}`.
//! - Answer: `code` 0 is success; 11 (invalid auth_token) means a new token; -1 (service
//!   unavailable) and -2 (flow control), and HTTP 5xx, are temporary; everything else (33 over
//!   the daily quota, 10000 invalid registration id, …) is final.
//!
//! Reference: OPPO Push server API, <https://open.oppomobile.com/new/developmentDoc/info?id=11236>
//! (notification fields) and the unicast and auth chapters beside it.

use std::time::Duration;

use super::{
    field, hex, read_json, reason, refusal, token_refused, Answer, Content, TokenSlot, VendorError,
};
use crate::config::OppoConfig;

/// How long the router keeps an OPPO auth_token.
pub const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// OPPO Push with its cached auth_token.
pub struct Oppo {
    config: OppoConfig,
    base: String,
    token: TokenSlot,
}

/// The auth signature: lower-case hex SHA-256 of app_key + timestamp + master_secret.
pub fn sign(app_key: &str, timestamp: u128, master_secret: &str) -> String {
    let text = format!("{app_key}{timestamp}{master_secret}");
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

impl Oppo {
    /// OPPO from its config.
    pub fn new(config: OppoConfig) -> Oppo {
        let base = config.base_url.trim_end_matches('/').to_string();
        Oppo {
            config,
            base,
            token: TokenSlot::default(),
        }
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
    ) -> Result<Result<(String, Duration), Answer>, VendorError> {
        let c = &self.config;
        let timestamp = super::unix_millis();
        let url = format!("{}/server/v1/auth", self.base);
        let res = http
            .post(&url)
            .form(&[
                ("app_key", c.app_key.clone()),
                ("timestamp", timestamp.to_string()),
                ("sign", sign(&c.app_key, timestamp, &c.master_secret)),
            ])
            .send()
            .await;
        let (status, body) = read_json(res, &url).await?;
        let token = body.get("data").and_then(|d| field(d, "auth_token"));
        match (status, field(&body, "code").as_deref(), token) {
            (200, Some("0"), Some(token)) => Ok(Ok((token, TOKEN_TTL))),
            _ => Ok(Err(token_refused("oppo", status, &body))),
        }
    }

    /// Sends one push.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        device: &str,
        content: &Content,
    ) -> Result<Answer, VendorError> {
        let (title, text) = content.title_and_body("oppo")?;
        let token = match self.token.get(|| self.fetch_token(http)).await? {
            Ok(t) => t,
            Err(answer) => return Ok(answer),
        };
        let mut notification = serde_json::json!({
            "title": title,
            "content": text,
            "click_action_type": 0,
            "app_message_id": content.push_id,
        });
        if !content.data.is_empty() {
            notification["action_parameters"] = serde_json::Value::String(content.data_json());
        }
        if let Some(ch) = &self.config.channel_id {
            notification["channel_id"] = serde_json::Value::String(ch.clone());
        }
        let message = serde_json::json!({
            "target_type": 2,
            "target_value": device,
            "notification": notification,
        });
        let url = format!("{}/server/v1/message/notification/unicast", self.base);
        let res = http
            .post(&url)
            .form(&[
                ("auth_token", token.clone()),
                ("message", message.to_string()),
            ])
            .send()
            .await;
        let (status, body) = read_json(res, &url).await?;
        Ok(self.token.checked(&token, answer(status, &body)).await)
    }
}

/// OPPO's answer to a send.
pub fn answer(status: u16, body: &serde_json::Value) -> Answer {
    let code = field(body, "code").unwrap_or_default();
    if status == 200 && code == "0" {
        let id = body.get("data").and_then(|d| field(d, "messageId"));
        return Answer::Accepted { status, id };
    }
    let reason = reason(&code, field(body, "message"), status);
    match code.as_str() {
        "11" => Answer::Unauthorized { status, reason },
        "-1" | "-2" => Answer::Retryable { status, reason },
        _ => refusal(status, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_is_lower_hex_sha256_of_the_concatenation() {
        // printf '%s' "appkey1501484120000master" | sha256sum
        assert_eq!(
            sign("appkey", 1501484120000, "master"),
            "8faeb27a26502a300f6e2aa9f46d481c445ce7a0ad5c23a241a117fe1230189e"
        );
    }

    #[test]
    fn answers_map_to_outcomes() {
        let ok = serde_json::json!({"code": 0, "message": "Success", "data": {"messageId": "m1"}});
        assert_eq!(
            answer(200, &ok),
            Answer::Accepted {
                status: 200,
                id: Some("m1".into())
            }
        );
        let token = serde_json::json!({"code": 11, "message": "Invalid AuthToken"});
        assert!(matches!(answer(200, &token), Answer::Unauthorized { .. }));
        let flow = serde_json::json!({"code": -2, "message": "Service in Flow Control"});
        assert!(matches!(answer(200, &flow), Answer::Retryable { .. }));
        let quota = serde_json::json!({"code": 33, "message": "The number of messages exceeds the daily limit"});
        assert!(matches!(answer(200, &quota), Answer::Rejected { .. }));
    }
}
