//! OPPO Push's stand-in: signed `/server/v1/auth`, then the unicast notification.

use super::*;

pub(super) async fn start(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
    let log = Arc::new(Log::default());
    let l = log.clone();
    let addr = serve(ca, Arc::new(move |req: Req| {
        let err = |code: i32, message: &str| (200, json!({"code": code, "message": message}));
        if req.method != http::Method::POST {
            return (405, json!({}));
        }
        let Some(form) = req.form() else {
            return err(41, "Invalid Parameter: form-encoded body required");
        };
        if req.path == "/server/v1/auth" {
            if get(&form, "app_key") != Some(OPPO_KEY) {
                return err(14, "Invalid AppKey");
            }
            let Some(ts) = get(&form, "timestamp").and_then(|t| t.parse::<u64>().ok()) else {
                return err(18, "Missing Timestamp");
            };
            if (ts / 1000).abs_diff(now_secs()) > 600 {
                return err(19, "Invalid Timestamp");
            }
            // OPPO: lower-case hex SHA-256 of app_key + timestamp + master_secret.
            let digest = ring::digest::digest(&ring::digest::SHA256, format!("{OPPO_KEY}{ts}{OPPO_MASTER}").as_bytes());
            let want: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            if get(&form, "sign") != Some(want.as_str()) {
                l.refused.fetch_add(1, Ordering::SeqCst);
                return err(16, "Invalid Signature");
            }
            return (200, json!({"code": 0, "message": "success",
                                "data": {"auth_token": l.issue("oppo-"), "create_time": ts}}));
        }
        if req.path != "/server/v1/message/notification/unicast" {
            return (404, json!({}));
        }
        let token = get(&form, "auth_token").or_else(|| req.header("auth_token"));
        if !l.valid(token) {
            l.refused.fetch_add(1, Ordering::SeqCst);
            return err(11, "Invalid AuthToken");
        }
        let Some(m) = get(&form, "message").and_then(|m| serde_json::from_str::<Value>(m).ok()) else {
            return err(40, "Required Parameter Missing: message");
        };
        if !matches!(m["target_type"].as_u64(), Some(2 | 5)) {
            return err(41, "Invalid Parameter: target_type");
        }
        let Some(target) = nonempty(m["target_value"].as_str()) else {
            return err(40, "Required Parameter Missing: target_value");
        };
        let n = &m["notification"];
        let (Some(title), Some(content)) = (nonempty(n["title"].as_str()), nonempty(n["content"].as_str())) else {
            return err(40, "Required Parameter Missing: title or content");
        };
        if title.chars().count() > 50 || content.chars().count() > 200 {
            return err(41, "Invalid Parameter: title or content too long");
        }
        if !n["action_parameters"].is_null() && !n["action_parameters"].is_string() {
            return err(41, "Invalid Parameter: action_parameters must be a JSON string");
        }
        if l.throttled() {
            return err(-2, "Service in Flow Control");
        }
        if target.starts_with("unregistered") {
            return err(10000, "Invalid RegistrationId");
        }
        // OPPO pushes one app_message_id to one target once.
        let dedupe = n["app_message_id"].as_str().map(|id| format!("{target}/{id}"));
        if dedupe.is_none_or(|k| l.first_time(&k)) {
            l.record(Pushed {
                device: target.into(),
                title: title.into(),
                body: content.into(),
                data: n["action_parameters"].as_str().unwrap_or("").into(),
            });
        }
        if l.answer_lost() {
            return err(-1, "Service Currently Unavailable");
        }
        (200, json!({"code": 0, "message": "Success", "data": {"messageId": uuid::Uuid::new_v4().simple().to_string()}}))
    }))
    .await;
    (addr, log)
}
