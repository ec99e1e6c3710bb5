//! Local stand-ins for the non-Apple vendors' push APIs, over TLS on loopback. Each one checks
//! what the real service checks — credentials (signatures, client secrets, access tokens it
//! issued), content type, required fields and their ranges — and refuses otherwise with the
//! vendor's own error shape, so a router that gets a format wrong fails the test.
//!
//! Every stand-in records the pushes it accepted and the tokens it issued; `throttle(n)` makes
//! the next `n` sends answer with the vendor's "try later", `revoke_tokens()` makes every
//! issued token invalid (expired).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use testbed::pki::{tls_server_config, CertificateAuthority};

/// One accepted push as the stand-in understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub device: String,
    pub title: String,
    pub body: String,
    pub data: String,
}

/// What a stand-in saw.
#[derive(Default)]
pub struct Log {
    pub auth_calls: AtomicUsize,
    pub refused: AtomicUsize,
    pub pushes: Mutex<Vec<Pushed>>,
    tokens: Mutex<HashSet<String>>,
    throttle: AtomicUsize,
    lose_answers: AtomicUsize,
    request_ids: Mutex<HashSet<String>>,
}

impl Log {
    pub fn throttle(&self, n: usize) {
        self.throttle.store(n, Ordering::SeqCst);
    }
    pub fn revoke_tokens(&self) {
        self.tokens.lock().unwrap().clear();
    }
    pub fn pushes(&self) -> Vec<Pushed> {
        self.pushes.lock().unwrap().clone()
    }
    fn issue(&self, prefix: &str) -> String {
        self.auth_calls.fetch_add(1, Ordering::SeqCst);
        let t = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        self.tokens.lock().unwrap().insert(t.clone());
        t
    }
    fn valid(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.tokens.lock().unwrap().contains(t))
    }
    /// The next `n` accepted pushes are answered with a temporary server error, as if the
    /// answer were lost after the vendor took the push.
    pub fn lose_answers(&self, n: usize) {
        self.lose_answers.store(n, Ordering::SeqCst);
    }
    fn answer_lost(&self) -> bool {
        self.lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
    /// Whether `id` is new (vendors that de-duplicate deliver a repeated id once).
    fn first_time(&self, id: &str) -> bool {
        self.request_ids.lock().unwrap().insert(id.to_string())
    }
    fn throttled(&self) -> bool {
        self.throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
    fn record(&self, p: Pushed) {
        self.pushes.lock().unwrap().push(p);
    }
}

pub struct Req {
    pub method: http::Method,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn content_type_is(&self, ct: &str) -> bool {
        self.header("content-type").is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(ct)
        })
    }
    fn form(&self) -> Option<Vec<(String, String)>> {
        if !self.content_type_is("application/x-www-form-urlencoded") {
            return None;
        }
        let text = std::str::from_utf8(&self.body).ok()?;
        let url = reqwest::Url::parse(&format!("http://x/?{text}")).ok()?;
        Some(
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    fn json(&self) -> Option<Value> {
        if !self.content_type_is("application/json") {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }
    fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

fn get<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn nonempty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.trim().is_empty())
}

type Handler = Arc<dyn Fn(Req) -> (u16, Value) + Send + Sync>;

/// Serves `handler` over TLS (ALPN h2 and http/1.1) on a loopback port.
async fn serve(ca: &CertificateAuthority, handler: Handler) -> SocketAddr {
    let cert = ca.issue_server(&["127.0.0.1"]).unwrap();
    let tls = tls_server_config(&cert, None, &[b"h2", b"http/1.1"]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, value) = handler(Req {
                                method: parts.method,
                                path: parts.uri.path().to_string(),
                                headers: parts.headers,
                                body,
                            });
                            let res = http::Response::builder()
                                .status(status)
                                .header("content-type", "application/json;charset=UTF-8")
                                .body(Full::new(Bytes::from(value.to_string())))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    addr
}

/// Credentials the stand-ins accept.
pub const HUAWEI_APP_ID: &str = "104512345";
pub const HUAWEI_SECRET: &str = "hw-app-secret";
pub const XIAOMI_SECRET: &str = "mi-app-secret";
pub const XIAOMI_PACKAGE: &str = "com.example.app";
pub const VIVO_APP_ID: u64 = 10004;
pub const VIVO_KEY: &str = "25509283-3767-4b9e-83fe-b6e55ac6243e";
pub const VIVO_SECRET: &str = "vivo-app-secret";
pub const OPPO_KEY: &str = "oppo-app-key";
pub const OPPO_MASTER: &str = "oppo-master-secret";
pub const FCM_PROJECT: &str = "pushbench-test";
pub const FCM_EMAIL: &str = "router@pushbench-test.iam.gserviceaccount.com";

/// The five stand-ins, their CA and their logs.
pub struct StandIns {
    pub ca_pem: String,
    pub fcm: (SocketAddr, Arc<Log>),
    pub huawei: (SocketAddr, Arc<Log>),
    pub xiaomi: (SocketAddr, Arc<Log>),
    pub vivo: (SocketAddr, Arc<Log>),
    pub oppo: (SocketAddr, Arc<Log>),
}

impl StandIns {
    pub async fn start() -> StandIns {
        let ca = CertificateAuthority::new("vendor stand-ins CA").unwrap();
        let fcm = fcm(&ca).await;
        let huawei = huawei(&ca).await;
        let xiaomi = xiaomi(&ca).await;
        let vivo = vivo(&ca).await;
        let oppo = oppo(&ca).await;
        StandIns {
            ca_pem: ca.cert_pem().to_string(),
            fcm,
            huawei,
            xiaomi,
            vivo,
            oppo,
        }
    }

    /// Writes `vendor-ca.pem` and `fcm-key.json` into `dir` and returns router TOML sections
    /// for all five vendors.
    pub fn router_toml(&self, dir: &std::path::Path) -> String {
        std::fs::write(dir.join("vendor-ca.pem"), &self.ca_pem).unwrap();
        let key = json!({
            "type": "service_account",
            "project_id": FCM_PROJECT,
            "private_key_id": "0123456789abcdef",
            "private_key": FCM_KEY_PEM,
            "client_email": FCM_EMAIL,
            "client_id": "1234567890",
            "token_uri": format!("https://{}/token", self.fcm.0),
        });
        std::fs::write(dir.join("fcm-key.json"), key.to_string()).unwrap();
        format!(
            r#"
vendor_ca = "vendor-ca.pem"

[fcm]
service_account = "fcm-key.json"
base_url = "https://{fcm}"

[huawei]
app_id = "{HUAWEI_APP_ID}"
app_secret = "{HUAWEI_SECRET}"
base_url = "https://{hw}"
token_url = "https://{hw}/oauth2/v3/token"

[xiaomi]
app_secret = "{XIAOMI_SECRET}"
package_name = "{XIAOMI_PACKAGE}"
base_url = "https://{mi}"

[vivo]
app_id = {VIVO_APP_ID}
app_key = "{VIVO_KEY}"
app_secret = "{VIVO_SECRET}"
base_url = "https://{vivo}"

[oppo]
app_key = "{OPPO_KEY}"
master_secret = "{OPPO_MASTER}"
base_url = "https://{oppo}"
"#,
            fcm = self.fcm.0,
            hw = self.huawei.0,
            mi = self.xiaomi.0,
            vivo = self.vivo.0,
            oppo = self.oppo.0,
        )
    }

    pub fn log(&self, vendor: &str) -> &Arc<Log> {
        match vendor {
            "fcm" => &self.fcm.1,
            "huawei" => &self.huawei.1,
            "xiaomi" => &self.xiaomi.1,
            "vivo" => &self.vivo.1,
            "oppo" => &self.oppo.1,
            _ => panic!("no stand-in for {vendor}"),
        }
    }
}

/// A test-only RSA key for the FCM service account (generated for these tests; it signs
/// nothing but the stand-in's JWT grants).
pub const FCM_KEY_PEM: &str = include_str!("../fixtures/fcm-test-key.pem");

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

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

async fn fcm(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
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

async fn huawei(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
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

async fn xiaomi(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
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

async fn vivo(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
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

async fn oppo(ca: &CertificateAuthority) -> (SocketAddr, Arc<Log>) {
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
