//! Huawei Push Kit's stand-in: OAuth2 client credentials, then `/v1/{app_id}/messages:send`.

use super::*;

pub(super) async fn start(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
    let log = Arc::new(Log::default());
    let l = log.clone();
    let addr = serve(ca, Arc::new(move |req: Req| {
        let hw = |status: u16, code: &str, msg: &str| {
            (status, json!({"code": code, "msg": msg, "requestId": uuid::Uuid::new_v4().simple().to_string()}))
        };
        if req.path == "/oauth2/v3/token" {
            let Some(form) = req.form() else {
                return (400, json!({"error": 1102, "error_description": "missing required param"}));
            };
            if get(&form, "grant_type") != Some("client_credentials") {
                return (400, json!({"error": 1104, "error_description": "unsupported grant type"}));
            }
            if get(&form, "client_id") != Some(HUAWEI_APP_ID) || get(&form, "client_secret") != Some(HUAWEI_SECRET) {
                l.refused.fetch_add(1, Ordering::SeqCst);
                return (400, json!({"error": 1101, "sub_error": 20152, "error_description": "invalid client"}));
            }
            return (200, json!({"access_token": l.issue("CF3"), "expires_in": 3600, "token_type": "Bearer"}));
        }
        if req.method != http::Method::POST || req.path != format!("/v1/{HUAWEI_APP_ID}/messages:send") {
            return hw(404, "80100002", "Service not found");
        }
        match req.bearer() {
            None => return hw(401, "80200001", "Oauth authentication error"),
            Some(t) if !l.valid(Some(t)) => {
                l.refused.fetch_add(1, Ordering::SeqCst);
                return hw(401, "80200003", "Oauth Token expired");
            }
            Some(_) => {}
        }
        let Some(body) = req.json() else {
            return hw(400, "80100001", "Some request parameters are incorrect");
        };
        if !body["validate_only"].is_boolean() {
            return hw(400, "80100001", "validate_only must be a boolean");
        }
        let m = &body["message"];
        let tokens: Vec<&str> = m["token"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        if tokens.is_empty() || tokens.len() > 1000 || tokens.iter().any(|t| t.is_empty()) {
            return hw(400, "80300010", "The number of tokens in the message body exceeds the default value");
        }
        let n = &m["android"]["notification"];
        if !n.is_null() && !n["click_action"]["type"].is_u64() {
            return hw(400, "80100003", "Illegal payload, click_action is mandatory");
        }
        if n.is_null() && !m["data"].is_string() {
            return hw(400, "80100003", "Illegal payload, a message needs a notification or data (a string)");
        }
        if !n.is_null() && !m["data"].is_null() {
            let json_object = m["data"].as_str().and_then(|d| serde_json::from_str::<Value>(d).ok()).is_some_and(|d| d.is_object());
            if !json_object {
                return hw(400, "80100003", "Illegal payload, data of a notification message must be a JSON string");
            }
        }
        if l.throttled() {
            return hw(503, "81000001", "Internal service error, flow control");
        }
        if tokens[0].starts_with("unregistered") {
            return hw(400, "80300007", "All the tokens are invalid");
        }
        l.record(Pushed {
            device: tokens[0].into(),
            title: n["title"].as_str().unwrap_or("").into(),
            body: n["body"].as_str().unwrap_or("").into(),
            data: m["data"].as_str().unwrap_or("").into(),
        });
        hw(200, "80000000", "Success")
    }))
    .await;
    (addr, log)
}
