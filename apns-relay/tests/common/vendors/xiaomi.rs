//! Xiaomi MiPush's stand-in: `/v3/message/regid`, form-encoded, `Authorization: key=…`.

use super::*;

pub(super) async fn start(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
    let log = Arc::new(Log::default());
    let l = log.clone();
    let addr = serve(ca, Arc::new(move |req: Req| {
        let err = |code: u32, reason: &str| {
            (200, json!({"result": "error", "code": code, "reason": reason, "description": reason, "trace_id": "Xmtest"}))
        };
        if req.method != http::Method::POST || req.path != "/v3/message/regid" {
            return (404, json!({"result": "error", "reason": "not found"}));
        }
        if req.header("authorization") != Some(&format!("key={XIAOMI_SECRET}")) {
            l.refused.fetch_add(1, Ordering::SeqCst);
            return err(21301, "Authentication failed");
        }
        let Some(form) = req.form() else {
            return err(10017, "Content-Type must be application/x-www-form-urlencoded");
        };
        let Some(regid) = nonempty(get(&form, "registration_id")) else {
            return err(20301, "registration_id is required");
        };
        if get(&form, "restricted_package_name") != Some(XIAOMI_PACKAGE) {
            return err(22022, "restricted_package_name does not match the app");
        }
        let Some(payload) = get(&form, "payload") else {
            return err(10017, "payload is required");
        };
        let (title, desc) = match get(&form, "pass_through") {
            Some("1") => ("", ""),
            Some("0") => {
                let (Some(t), Some(d)) = (nonempty(get(&form, "title")), nonempty(get(&form, "description"))) else {
                    return err(10017, "title and description are required for a notification");
                };
                if t.chars().count() >= 50 || d.chars().count() >= 128 {
                    return err(10017, "title or description too long");
                }
                if get(&form, "notify_type").and_then(|v| v.parse::<i32>().ok()).is_none() {
                    return err(10017, "notify_type must be an integer");
                }
                (t, d)
            }
            _ => return err(10017, "pass_through must be 0 or 1"),
        };
        if l.throttled() {
            return (503, json!({"result": "error", "code": 10003, "reason": "busy"}));
        }
        if regid.starts_with("unregistered") {
            return err(20301, "invalid registration_id");
        }
        l.record(Pushed { device: regid.into(), title: title.into(), body: desc.into(), data: payload.into() });
        (200, json!({"result": "ok", "code": 0, "trace_id": "Xmtest", "description": "成功",
                     "data": {"id": format!("sdm{}", uuid::Uuid::new_v4().simple())},
                     "info": "Received push messages for 1 REGID"}))
    }))
    .await;
    (addr, log)
}
