//! vivo Push (server API).
//!
//! - Auth: `POST {base}/message/auth`, JSON `{"appId", "appKey", "timestamp" (ms, within ten
//!   minutes of vivo's clock), "sign"}` with `sign` = lower-case hex MD5 of
//!   `appId + appKey + timestamp + appSecret` → `{"result": 0, "authToken"}`. The token lives a
//!   day; vivo asks senders to cache it and renew every one to two hours, so the router renews
//!   it hourly.
//! - Send: `POST {base}/message/send`, header `authToken`, JSON `{"appId", "regId",
//!   "notifyType" (1–4), "title", "content", "skipType" (1 opens the app), "requestId"
//!   (unique per push; vivo drops a repeated one, so resends keep it), "pushMode",
//!   "clientCustomMap"}` → `{"result": 0, "taskId"}`.
//! - Answer: `result` 0 is success; 10000 (permission authentication failed: a bad or expired
//!   authToken) means a new token; HTTP 5xx is temporary; every other result (10302 invalid
//!   regId, 10070 daily quota exceeded, …) is final.
//!
//! Reference: vivo's PUSH-UPS-API document, <https://dev.vivo.com.cn/documentCenter/doc/362>.

use std::time::Duration;

use md5::{Digest, Md5};

use super::{
    field, hex, read_json, reason, refusal, token_refused, Answer, Content, TokenSlot, VendorError,
};
use crate::config::VivoConfig;

/// How long the router keeps a vivo authToken.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// vivo Push with its cached authToken.
pub struct Vivo {
    config: VivoConfig,
    base: String,
    token: TokenSlot,
}

/// The auth signature: lower-case hex MD5 of appId + appKey + timestamp + appSecret.
pub fn sign(app_id: u64, app_key: &str, timestamp: u128, app_secret: &str) -> String {
    let text = format!("{app_id}{}{timestamp}{}", app_key.trim(), app_secret.trim());
    hex(&Md5::digest(text.as_bytes()))
}

impl Vivo {
    /// vivo from its config.
    pub fn new(config: VivoConfig) -> Vivo {
        let base = config.base_url.trim_end_matches('/').to_string();
        Vivo {
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
        let url = format!("{}/message/auth", self.base);
        let res = http
            .post(&url)
            .json(&serde_json::json!({
                "appId": c.app_id,
                "appKey": c.app_key,
                "timestamp": timestamp as u64,
                "sign": sign(c.app_id, &c.app_key, timestamp, &c.app_secret),
            }))
            .send()
            .await;
        let (status, body) = read_json(res, &url).await?;
        match (
            status,
            field(&body, "result").as_deref(),
            field(&body, "authToken"),
        ) {
            (200, Some("0"), Some(token)) => Ok(Ok((token, TOKEN_TTL))),
            _ => Ok(Err(token_refused("vivo", status, &body))),
        }
    }

    /// Sends one push.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        device: &str,
        content: &Content,
    ) -> Result<Answer, VendorError> {
        let (title, text) = content.title_and_body("vivo")?;
        let token = match self.token.get(|| self.fetch_token(http)).await? {
            Ok(t) => t,
            Err(answer) => return Ok(answer),
        };
        let c = &self.config;
        let mut body = serde_json::json!({
            "appId": c.app_id,
            "regId": device,
            "notifyType": c.notify_type,
            "title": title,
            "content": text,
            "skipType": 1,
            "requestId": content.push_id,
            "pushMode": c.push_mode,
        });
        if !content.data.is_empty() {
            body["clientCustomMap"] = serde_json::json!(content.data);
        }
        let url = format!("{}/message/send", self.base);
        let res = http
            .post(&url)
            .header("authToken", &token)
            .json(&body)
            .send()
            .await;
        let (status, body) = read_json(res, &url).await?;
        Ok(self.token.checked(&token, answer(status, &body)).await)
    }
}

/// vivo's answer to a send.
pub fn answer(status: u16, body: &serde_json::Value) -> Answer {
    let result = field(body, "result").unwrap_or_default();
    if status == 200 && result == "0" {
        return Answer::Accepted {
            status,
            id: field(body, "taskId"),
        };
    }
    let reason = reason(&result, field(body, "desc"), status);
    match result.as_str() {
        "10000" => Answer::Unauthorized { status, reason },
        _ => refusal(status, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_is_lower_hex_md5_of_the_concatenation() {
        // printf '%s' "1000425509283-3767-4b9e-83fe-b6e55ac6243e1501484120000secret" | md5sum
        let s = sign(
            10004,
            "25509283-3767-4b9e-83fe-b6e55ac6243e",
            1501484120000,
            "secret",
        );
        assert_eq!(s, "1fd1ef0cacdec2165c2d08c3c52f3eb0");
    }

    #[test]
    fn answers_map_to_outcomes() {
        let ok = serde_json::json!({"result": 0, "desc": "请求成功", "taskId": "12"});
        assert_eq!(
            answer(200, &ok),
            Answer::Accepted {
                status: 200,
                id: Some("12".into())
            }
        );
        let auth = serde_json::json!({"result": 10000, "desc": "权限认证失败"});
        assert!(matches!(answer(200, &auth), Answer::Unauthorized { .. }));
        let quota = serde_json::json!({"result": 10070, "desc": "发送总量超出限制"});
        assert!(matches!(answer(200, &quota), Answer::Rejected { .. }));
        assert!(matches!(
            answer(500, &serde_json::Value::Null),
            Answer::Retryable { .. }
        ));
    }
}
