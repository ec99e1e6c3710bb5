//! vivo Push's stand-in: signed `/message/auth`, then `/message/send` with `authToken`.

use super::*;

pub(super) async fn start(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
    let log = Arc::new(Log::default());
    let l = log.clone();
    let addr = serve(ca, Arc::new(move |req: Req| {
        let err = |result: u32, desc: &str| (200, json!({"result": result, "desc": desc}));
        if req.method != http::Method::POST {
            return (405, json!({}));
        }
        let Some(body) = req.json() else {
            return (415, json!({"result": 10055, "desc": "Content-Type must be application/json"}));
        };
        if req.path == "/message/auth" {
            if body["appId"].as_u64() != Some(VIVO_APP_ID) || body["appKey"] != VIVO_KEY {
                return err(10202, "appId或appKey不合法");
            }
            let Some(ts) = body["timestamp"].as_u64() else {
                return err(10204, "timestamp不能为空");
            };
            if (ts / 1000).abs_diff(now_secs()) > 600 {
                return err(10205, "timestamp不合法");
            }
            // vivo: lower-case hex MD5 of appId + appKey + timestamp + appSecret.
            use md5::Digest;
            let digest = md5::Md5::digest(format!("{VIVO_APP_ID}{VIVO_KEY}{ts}{VIVO_SECRET}").as_bytes());
            let want: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            if body["sign"] != want.as_str() {
                l.refused.fetch_add(1, Ordering::SeqCst);
                return err(10206, "sign不合法");
            }
            return (200, json!({"result": 0, "desc": "请求成功", "authToken": l.issue("vivo-")}));
        }
        if req.path != "/message/send" {
            return (404, json!({}));
        }
        if !l.valid(req.header("authToken")) {
            l.refused.fetch_add(1, Ordering::SeqCst);
            return err(10000, "权限认证失败");
        }
        if body["appId"].as_u64() != Some(VIVO_APP_ID) {
            return err(10094, "appId与鉴权信息不一致");
        }
        let Some(reg) = nonempty(body["regId"].as_str()) else {
            return err(10050, "alias和regId不能都为空");
        };
        if !matches!(body["notifyType"].as_u64(), Some(1..=4)) || !matches!(body["skipType"].as_u64(), Some(1..=4)) {
            return err(10066, "notifyType或skipType不合法");
        }
        let (Some(title), Some(content)) = (nonempty(body["title"].as_str()), nonempty(body["content"].as_str())) else {
            return err(10060, "title和content不能为空");
        };
        if title.chars().count() > 40 || content.chars().count() > 100 {
            return err(10061, "title或content超长");
        }
        let Some(request_id) = nonempty(body["requestId"].as_str()) else {
            return err(10067, "requestId不能为空");
        };
        if l.throttled() {
            return (500, json!("Internet server error!"));
        }
        if reg.starts_with("unregistered") {
            return (200, json!({"result": 10302, "desc": "regId不合法", "invalidUser": {"status": 1, "userid": reg}}));
        }
        // vivo de-duplicates on requestId: a repeated one is not delivered twice.
        if l.first_time(request_id) {
            l.record(Pushed {
                device: reg.into(),
                title: title.into(),
                body: content.into(),
                data: body.get("clientCustomMap").map(Value::to_string).unwrap_or_default(),
            });
        }
        if l.answer_lost() {
            return (500, json!("Internet server error!"));
        }
        (200, json!({"result": 0, "desc": "请求成功", "taskId": uuid::Uuid::new_v4().simple().to_string()}))
    }))
    .await;
    (addr, log)
}
