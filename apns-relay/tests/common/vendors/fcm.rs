//! FCM's stand-in: the service-account JWT grant at `/token`, then HTTP v1 sends.

use super::*;

/// A test-only RSA key for the FCM service account (generated for these tests; it signs
/// nothing but the stand-in's JWT grants).
pub const FCM_KEY_PEM: &str = include_str!("../../fixtures/fcm-test-key.pem");

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Checks a JWT-bearer assertion the way Google's token endpoint does.
fn check_assertion(jwt: &str, public_key: &[u8], token_uri: &str) -> Result<(), String> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let header: Value =
        serde_json::from_slice(&b64url(h).ok_or("bad header")?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err("alg must be RS256".into());
    }
    let sig = b64url(s).ok_or("bad signature encoding")?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(format!("{h}.{c}").as_bytes(), &sig)
    .map_err(|_| "Invalid JWT Signature.".to_string())?;
    let claims: Value =
        serde_json::from_slice(&b64url(c).ok_or("bad claims")?).map_err(|e| e.to_string())?;
    if claims["iss"] != FCM_EMAIL {
        return Err("iss is not the service account".into());
    }
    if claims["aud"] != token_uri {
        return Err("aud is not the token URI".into());
    }
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes
        .split(' ')
        .any(|s| s == apns_relay::vendors::fcm::SCOPE)
    {
        return Err("scope lacks firebase.messaging".into());
    }
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap_or(0),
        claims["exp"].as_u64().unwrap_or(0),
    );
    let now = now_secs();
    if iat > now + 60 || exp <= now || exp.saturating_sub(iat) > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".into());
    }
    Ok(())
}

fn fcm_error(code: u16, status: &str, error_code: Option<&str>, message: &str) -> (u16, Value) {
    let mut e = json!({"code": code, "message": message, "status": status});
    if let Some(ec) = error_code {
        e["details"] = json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": ec}]);
    }
    (code, json!({ "error": e }))
}

pub(super) async fn start(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
    let log = Arc::new(Log::default());
    let der = apns_relay::vendors::fcm::pem_der(FCM_KEY_PEM).unwrap();
    let public = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .unwrap()
        .public()
        .as_ref()
        .to_vec();
    let l = log.clone();
    // The token URI embeds the stand-in's own address, known only once bound: a cell.
    let me: Arc<Mutex<String>> = Arc::default();
    let m = me.clone();
    let addr = serve(ca, Arc::new(move |req: Req| {
        let token_uri = format!("https://{}/token", m.lock().unwrap());
        if req.method != http::Method::POST {
            return (405, json!({"error": "method not allowed"}));
        }
        if req.path == "/token" {
            let Some(form) = req.form() else {
                return (400, json!({"error": "invalid_request", "error_description": "form-encoded body required"}));
            };
            if get(&form, "grant_type") != Some(apns_relay::vendors::fcm::JWT_GRANT) {
                return (400, json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}));
            }
            return match check_assertion(get(&form, "assertion").unwrap_or(""), &public, &token_uri) {
                Ok(()) => (200, json!({"access_token": l.issue("ya29."), "expires_in": 3599, "token_type": "Bearer"})),
                Err(e) => {
                    l.refused.fetch_add(1, Ordering::SeqCst);
                    (400, json!({"error": "invalid_grant", "error_description": e}))
                }
            };
        }
        if req.path != format!("/v1/projects/{FCM_PROJECT}/messages:send") {
            return fcm_error(404, "NOT_FOUND", None, "Requested entity was not found.");
        }
        if !l.valid(req.bearer()) {
            l.refused.fetch_add(1, Ordering::SeqCst);
            return fcm_error(401, "UNAUTHENTICATED", None, "Request had invalid authentication credentials.");
        }
        let Some(body) = req.json() else {
            return fcm_error(400, "INVALID_ARGUMENT", None, "Invalid JSON payload received.");
        };
        let m = &body["message"];
        let Some(token) = nonempty(m["token"].as_str()) else {
            return fcm_error(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), "Recipient of the message is not set.");
        };
        if let Some(data) = m.get("data") {
            if !data.as_object().is_some_and(|d| d.values().all(Value::is_string)) {
                return fcm_error(400, "INVALID_ARGUMENT", None, "Invalid value at 'message.data' (TYPE_STRING)");
            }
        }
        if l.throttled() {
            return fcm_error(429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), "Quota exceeded.");
        }
        if token.starts_with("unregistered") {
            return fcm_error(404, "NOT_FOUND", Some("UNREGISTERED"), "Requested entity was not found.");
        }
        l.record(Pushed {
            device: token.into(),
            title: m["notification"]["title"].as_str().unwrap_or("").into(),
            body: m["notification"]["body"].as_str().unwrap_or("").into(),
            data: m.get("data").map(Value::to_string).unwrap_or_default(),
        });
        (200, json!({"name": format!("projects/{FCM_PROJECT}/messages/{}", uuid::Uuid::new_v4().simple())}))
    }))
    .await;
    *me.lock().unwrap() = addr.to_string();
    (addr, log)
}
