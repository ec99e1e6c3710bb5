//! Local stand-ins for the non-Apple vendors' push APIs, over TLS on loopback. Each one checks
//! what the real service checks — credentials (signatures, client secrets, access tokens it
//! issued), content type, required fields and their ranges — and refuses otherwise with the
//! vendor's own error shape, so a router that gets a format wrong fails the test.
//!
//! Every stand-in records the pushes it accepted and the tokens it issued; `throttle(n)` makes
//! the next `n` sends answer with the vendor's "try later", `revoke_tokens()` makes every
//! issued token invalid (expired).

mod fcm;
mod huawei;
mod oppo;
mod vivo;
mod xiaomi;

pub use fcm::FCM_KEY_PEM;

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
        let fcm = fcm::start(&ca).await;
        let huawei = huawei::start(&ca).await;
        let xiaomi = xiaomi::start(&ca).await;
        let vivo = vivo::start(&ca).await;
        let oppo = oppo::start(&ca).await;
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

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
