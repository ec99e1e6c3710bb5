//! Huawei Push Kit (server API v1).
//!
//! - Auth: OAuth 2.0 client credentials, `POST {token_url}` form-encoded `grant_type=
//!   client_credentials&client_id={app_id}&client_secret={app_secret}` → `{"access_token",
//!   "expires_in", "token_type": "Bearer"}`; the token lives one hour
//!   (<https://developer.huawei.com/consumer/en/doc/HMSCore-Guides/open-platform-oauth-0000001053629189>).
//! - Send: `POST {base}/v1/{app_id}/messages:send`, `Authorization: Bearer …`, JSON
//!   `{"validate_only": false, "message": {"android": {"notification": {"title", "body",
//!   "click_action": {"type": 3}}}, "token": [...]}}` (`click_action` is mandatory for a
//!   notification; type 3 opens the app), custom data in `message.data` (a JSON object
//!   text; alone, without a notification, it makes a data message)
//!   (<https://developer.huawei.com/consumer/en/doc/HMSCore-References/https-send-api-0000001050986197>).
//! - Answer: `{"code", "msg", "requestId"}`; "80000000" is success. 80200001 (OAuth
//!   authentication error) and 80200003 (OAuth token expired) mean a new access token; HTTP
//!   503 is flow control and 500/502 and 81000001 (internal error) are temporary; everything
//!   else (80300007 invalid push token, 80100003 bad message, 80300002 no permission, …) is
//!   final.

use std::time::Duration;

use super::{
    field, oauth_token, read_json, reason, refusal, Answer, Content, TokenSlot, VendorError,
};
use crate::config::HuaweiConfig;

/// Huawei Push Kit with its cached access token.
pub struct Huawei {
    config: HuaweiConfig,
    url: String,
    token: TokenSlot,
}

impl Huawei {
    /// Huawei from its config.
    pub fn new(config: HuaweiConfig) -> Huawei {
        let url = format!(
            "{}/v1/{}/messages:send",
            config.base_url.trim_end_matches('/'),
            config.app_id
        );
        Huawei {
            config,
            url,
            token: TokenSlot::default(),
        }
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
    ) -> Result<Result<(String, Duration), Answer>, VendorError> {
        let res = http
            .post(&self.config.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.config.app_id.as_str()),
                ("client_secret", self.config.app_secret.as_str()),
            ])
            .send()
            .await;
        let (status, body) = read_json(res, &self.config.token_url).await?;
        Ok(oauth_token("huawei", status, &body))
    }

    /// Sends one push.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        device: &str,
        content: &Content,
    ) -> Result<Answer, VendorError> {
        let token = match self.token.get(|| self.fetch_token(http)).await? {
            Ok(t) => t,
            Err(answer) => return Ok(answer),
        };
        let mut message = serde_json::json!({ "token": [device] });
        if content.title.is_some() || content.body.is_some() {
            message["android"] = serde_json::json!({
                "notification": {
                    "title": content.title,
                    "body": content.body,
                    "click_action": {"type": 3},
                }
            });
        }
        // With a notification, `data` must be a JSON object text; without one it makes the
        // push a data message.
        if !content.data.is_empty() || message.get("android").is_none() {
            message["data"] = serde_json::Value::String(content.data_json());
        }
        let res = http
            .post(&self.url)
            .bearer_auth(&token)
            .json(&serde_json::json!({ "validate_only": false, "message": message }))
            .send()
            .await;
        let (status, body) = read_json(res, &self.url).await?;
        Ok(self.token.checked(&token, answer(status, &body)).await)
    }
}

/// Huawei's answer to a send.
pub fn answer(status: u16, body: &serde_json::Value) -> Answer {
    let code = field(body, "code").unwrap_or_default();
    if status == 200 && code == "80000000" {
        return Answer::Accepted {
            status,
            id: field(body, "requestId"),
        };
    }
    let reason = reason(&code, field(body, "msg"), status);
    match code.as_str() {
        "80200001" | "80200003" => Answer::Unauthorized { status, reason },
        "81000001" => Answer::Retryable { status, reason },
        _ if status == 401 => Answer::Unauthorized { status, reason },
        _ => refusal(status, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_outcomes() {
        let hw = |code: &str| serde_json::json!({"code": code, "msg": "m", "requestId": "r1"});
        assert_eq!(
            answer(200, &hw("80000000")),
            Answer::Accepted {
                status: 200,
                id: Some("r1".into())
            }
        );
        assert!(matches!(
            answer(401, &hw("80200003")),
            Answer::Unauthorized { .. }
        ));
        assert!(matches!(
            answer(400, &hw("80300007")),
            Answer::Rejected { .. }
        ));
        assert!(matches!(
            answer(503, &serde_json::Value::Null),
            Answer::Retryable { .. }
        ));
        // A 200 without the success code is not a success.
        assert!(matches!(
            answer(200, &hw("80100000")),
            Answer::Rejected { .. }
        ));
    }
}
