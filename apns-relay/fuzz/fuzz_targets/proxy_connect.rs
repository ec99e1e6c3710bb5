//! A proxy request head from arbitrary bytes, parsed with httparse (hyper's HTTP/1 parser),
//! then decided by the proxy. It must never panic, and never allow anything but CONNECT to an
//! allowlisted host and port by a client with valid credentials or an allowlisted source.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use apns_relay::config::{ProxyConfig, SenderConfig};
use apns_relay::metrics::Metrics;
use apns_relay::proxy::Proxy;
use http::{Method, Request};
use libfuzzer_sys::fuzz_target;

/// `cn-app:pw`, base64.
const GOOD_B64: &str = "Y24tYXBwOnB3";
const ALLOWED: [(&str, u16); 3] = [
    ("api.push.apple.com", 443),
    ("api.push.apple.com", 2197),
    ("api.sandbox.push.apple.com", 443),
];

fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        let config: ProxyConfig = toml::from_str(
            r#"
listen = "127.0.0.1:0"
allow = [ { host = "api.push.apple.com", ports = [443, 2197] },
          { host = "api.sandbox.push.apple.com", ports = [443] } ]
"#,
        )
        .expect("proxy config");
        let senders: Vec<SenderConfig> = toml::from_str::<toml::Table>(
            r#"
[[s]]
name = "cn-app"
proxy_password = "pw"
[[s]]
name = "legacy"
proxy_source_cidrs = ["10.9.0.0/16"]
"#,
        )
        .ok()
        .and_then(|t| t.get("s").cloned())
        .and_then(|v| v.try_into().ok())
        .expect("senders");
        Proxy::new(&config, &senders, Arc::new(Metrics::new()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, head)) = data.split_first() else { return };
    // The first byte picks the client's address: inside or outside the legacy sender's CIDR.
    let peer = if first & 1 == 1 {
        IpAddr::V4(Ipv4Addr::new(10, 9, first, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, first))
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(head) else { return };
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else { return };
    let mut builder = Request::builder().method(method).uri(target);
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let Ok(req) = builder.body(()) else { return };
    let auth = req
        .headers()
        .get(http::header::PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .map(str::to_string);
    if let Ok((host, port)) = proxy().check(&req, peer) {
        assert_eq!(req.method(), Method::CONNECT);
        assert!(ALLOWED.contains(&(host.as_str(), port)), "{host}:{port}");
        let source_ok = first & 1 == 1;
        // The proxy takes `Basic`/`basic`, then the base64 of `cn-app:pw`, spaces trimmed.
        let creds_ok = auth
            .as_deref()
            .and_then(|a| {
                a.get(..6)
                    .filter(|p| p.eq_ignore_ascii_case("basic "))
                    .map(|_| a[6..].trim())
            })
            == Some(GOOD_B64);
        assert!(source_ok || creds_ok, "allowed without credentials: {auth:?}");
    }
});
