//! Xiaomi MiPush (server API v3).
//!
//! - Send: `POST {base}/v3/message/regid`, form-encoded (`registration_id`,
//!   `restricted_package_name`, `pass_through` 0 for a notification, `notify_type`, `title`,
//!   `description`, `payload`), header `Authorization: key=APP_SECRET` (lower-case `key`)
//!   (<https://dev.mi.com/xiaomihyperos/documentation/detail?pId=1559>, the server API
//!   addresses and parameters; global regions use their own hosts, hence `base_url`).
//! - Answer: `{"result": "ok", "code": 0, "data": {"id"}, "trace_id"}` on success;
//!   `{"result": "error", "code", "reason", "description"}` otherwise. There is no token to
//!   refresh (the secret is the credential), so an auth error (21301) is final; HTTP 429 and
//!   5xx are temporary.

use super::{field, read_json, reason, refusal, Answer, Content, VendorError};
use crate::config::XiaomiConfig;

/// Xiaomi MiPush.
pub struct Xiaomi {
    config: XiaomiConfig,
    url: String,
}

impl Xiaomi {
    /// Xiaomi from its config.
    pub fn new(config: XiaomiConfig) -> Xiaomi {
        let url = format!("{}/v3/message/regid", config.base_url.trim_end_matches('/'));
        Xiaomi { config, url }
    }

    /// Sends one push.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        device: &str,
        content: &Content,
    ) -> Result<Answer, VendorError> {
        let notify_type = self.config.notify_type.to_string();
        let payload = content.data_json();
        let mut form = vec![
            ("registration_id", device),
            ("restricted_package_name", self.config.package_name.as_str()),
            ("payload", payload.as_str()),
        ];
        if content.title.is_none() && content.body.is_none() {
            // No title and body: a pass-through (data) message for the app.
            form.push(("pass_through", "1"));
        } else {
            let (title, body) = content.title_and_body("xiaomi")?;
            form.extend([
                ("pass_through", "0"),
                ("notify_type", notify_type.as_str()),
                ("title", title),
                ("description", body),
            ]);
        }
        let res = http
            .post(&self.url)
            .header(
                http::header::AUTHORIZATION,
                format!("key={}", self.config.app_secret),
            )
            .form(&form)
            .send()
            .await;
        let (status, body) = read_json(res, &self.url).await?;
        Ok(answer(status, &body))
    }
}

/// Xiaomi's answer to a send.
pub fn answer(status: u16, body: &serde_json::Value) -> Answer {
    let code = field(body, "code").unwrap_or_default();
    if status == 200 && field(body, "result").as_deref() == Some("ok") && code == "0" {
        let id = body.get("data").and_then(|d| field(d, "id"));
        return Answer::Accepted { status, id };
    }
    let text = field(body, "reason").or_else(|| field(body, "description"));
    refusal(status, reason(&code, text, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_outcomes() {
        let ok = serde_json::json!({"result": "ok", "code": 0, "data": {"id": "sdm1"}});
        assert_eq!(
            answer(200, &ok),
            Answer::Accepted {
                status: 200,
                id: Some("sdm1".into())
            }
        );
        let auth = serde_json::json!({"result": "error", "code": 21301, "reason": "Authentication failed"});
        assert_eq!(
            answer(200, &auth),
            Answer::Rejected {
                status: 200,
                reason: "21301: Authentication failed".into()
            }
        );
        assert!(matches!(
            answer(503, &serde_json::Value::Null),
            Answer::Retryable { .. }
        ));
    }
}
