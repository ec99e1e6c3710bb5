//! FCM HTTP v1.
//!
//! - Send: `POST {base}/v1/projects/{project_id}/messages:send` with
//!   `{"message": {"token", "notification", "data", "android"}}`, data values strings
//!   (<https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send>).
//! - Auth: `Authorization: Bearer` an OAuth2 access token for the
//!   `https://www.googleapis.com/auth/firebase.messaging` scope, obtained from the service
//!   account's `token_uri` with the JWT-bearer grant: an RS256 JWT signed with the key file's
//!   `private_key`, claims `iss` (client_email), `scope`, `aud` (token_uri), `iat`, `exp`
//!   (at most one hour) (<https://developers.google.com/identity/protocols/oauth2/service-account#httprest>).
//! - Errors: the body is `{"error": {"code", "message", "status", "details": [{"@type":
//!   "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode"}]}}`; UNREGISTERED,
//!   INVALID_ARGUMENT, SENDER_ID_MISMATCH, THIRD_PARTY_AUTH_ERROR are final; QUOTA_EXCEEDED
//!   (429), UNAVAILABLE (503) and INTERNAL (500) are retried with backoff; 401 means the access
//!   token is bad (<https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode>).

use std::time::Duration;

use base64::Engine;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;

use super::{field, oauth_token, read_json, refusal, Answer, Content, TokenSlot, VendorError};
use crate::config::FcmConfig;

/// The OAuth2 scope FCM sends need.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The JWT-bearer grant type.
pub const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fields of a service-account JSON key the router uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccount {
    /// The Firebase/Google Cloud project.
    pub project_id: String,
    /// The key's id (the JWT's `kid`).
    #[serde(default)]
    pub private_key_id: String,
    /// PEM PKCS#8 RSA private key.
    pub private_key: String,
    /// The service account's e-mail (the JWT's `iss`).
    pub client_email: String,
    /// Where access tokens are minted.
    pub token_uri: String,
}

/// FCM with its service-account signer and cached access token.
pub struct Fcm {
    url: String,
    token_uri: String,
    account: ServiceAccount,
    key: RsaKeyPair,
    token: TokenSlot,
}

/// The DER body of a PEM block.
pub fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    let b64: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("not PEM: {e}"))
}

impl Fcm {
    /// FCM from its config: reads and checks the service-account key.
    pub fn new(c: &FcmConfig) -> Result<Fcm, VendorError> {
        let path = c.service_account.display();
        let text = std::fs::read_to_string(&c.service_account)
            .map_err(|e| VendorError::Setup(format!("fcm.service_account: {path}: {e}")))?;
        let account: ServiceAccount = serde_json::from_str(&text)
            .map_err(|e| VendorError::Setup(format!("{path}: not a service-account key: {e}")))?;
        let der = pem_der(&account.private_key)
            .map_err(|e| VendorError::Setup(format!("{path}: private_key: {e}")))?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            VendorError::Setup(format!("{path}: private_key: not an RSA PKCS#8 key: {e}"))
        })?;
        let project = c
            .project_id
            .clone()
            .unwrap_or_else(|| account.project_id.clone());
        Ok(Fcm {
            url: format!(
                "{}/v1/projects/{project}/messages:send",
                c.base_url.trim_end_matches('/')
            ),
            token_uri: c
                .token_uri
                .clone()
                .unwrap_or_else(|| account.token_uri.clone()),
            account,
            key,
            token: TokenSlot::default(),
        })
    }

    /// The signed JWT assertion for the token request.
    fn assertion(&self, now: u64) -> Result<String, VendorError> {
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let header =
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.account.private_key_id});
        let claims = serde_json::json!({
            "iss": self.account.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| VendorError::Setup("fcm: RS256 signing failed".into()))?;
        Ok(format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        ))
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
    ) -> Result<Result<(String, Duration), Answer>, VendorError> {
        let now = super::unix_millis() as u64 / 1000;
        let assertion = self.assertion(now)?;
        let res = http
            .post(&self.token_uri)
            .form(&[("grant_type", JWT_GRANT), ("assertion", assertion.as_str())])
            .send()
            .await;
        let (status, body) = read_json(res, &self.token_uri).await?;
        Ok(oauth_token("fcm", status, &body))
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
        let mut message = serde_json::json!({
            "token": device,
            "android": {"priority": "high"},
        });
        if content.title.is_some() || content.body.is_some() {
            message["notification"] =
                serde_json::json!({"title": content.title, "body": content.body});
        }
        if !content.data.is_empty() {
            message["data"] = serde_json::json!(content.data);
        }
        let res = http
            .post(&self.url)
            .bearer_auth(&token)
            .json(&serde_json::json!({ "message": message }))
            .send()
            .await;
        let (status, body) = read_json(res, &self.url).await?;
        Ok(self.token.checked(&token, answer(status, &body)).await)
    }
}

/// FCM's answer to a send.
pub fn answer(status: u16, body: &serde_json::Value) -> Answer {
    if status == 200 {
        return Answer::Accepted {
            status,
            id: field(body, "name"),
        };
    }
    let err = body.get("error").unwrap_or(&serde_json::Value::Null);
    let code = err
        .get("details")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .find_map(|d| field(d, "errorCode"))
        .or_else(|| field(err, "status"))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let reason = match field(err, "message") {
        Some(m) => format!("{code}: {m}"),
        None => code,
    };
    // 401 with THIRD_PARTY_AUTH_ERROR is about the app's APNs/web-push credentials at FCM,
    // not our access token: a new token would not help.
    if status == 401 && !reason.starts_with("THIRD_PARTY_AUTH_ERROR") {
        Answer::Unauthorized { status, reason }
    } else {
        refusal(status, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: u16, status: &str, error_code: &str) -> serde_json::Value {
        serde_json::json!({"error": {"code": code, "message": "m", "status": status, "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]}})
    }

    #[test]
    fn answers_map_to_outcomes() {
        let ok = serde_json::json!({"name": "projects/p/messages/1"});
        assert_eq!(
            answer(200, &ok),
            Answer::Accepted {
                status: 200,
                id: Some("projects/p/messages/1".into())
            }
        );
        assert_eq!(
            answer(404, &error(404, "NOT_FOUND", "UNREGISTERED")),
            Answer::Rejected {
                status: 404,
                reason: "UNREGISTERED: m".into()
            }
        );
        assert!(matches!(
            answer(429, &error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")),
            Answer::Retryable { .. }
        ));
        assert!(matches!(
            answer(503, &error(503, "UNAVAILABLE", "UNAVAILABLE")),
            Answer::Retryable { .. }
        ));
        let unauth = serde_json::json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}});
        assert!(matches!(answer(401, &unauth), Answer::Unauthorized { .. }));
        assert!(matches!(
            answer(
                401,
                &error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")
            ),
            Answer::Rejected { .. }
        ));
    }
}
