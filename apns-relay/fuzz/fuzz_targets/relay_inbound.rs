//! An inbound APNs-style request from arbitrary bytes: method, path, header lines, body. The
//! relay's checks must answer each one with a push or an APNs-style rejection, never panic,
//! and never pass a request that breaks an APNs rule.
#![no_main]

use std::sync::OnceLock;

use apns_relay::config::{Credentials, SenderConfig};
use apns_relay::relay::auth::Senders;
use apns_relay::relay::inbound::check_request;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

const MAX_PAYLOAD: usize = 4096;

fn senders() -> &'static Senders {
    static SENDERS: OnceLock<Senders> = OnceLock::new();
    SENDERS.get_or_init(|| {
        let sender = |name: &str, token: &str, credentials| SenderConfig {
            name: name.into(),
            bearer_token: Some(token.into()),
            team_id: None,
            keys: Vec::new(),
            client_cert_sha256: None,
            credentials,
            proxy_password: None,
            proxy_source_cidrs: Vec::new(),
        };
        Senders::load(&[
            sender("relay-signs", "t0k", Credentials::Relay),
            sender("passes-through", "p4ss", Credentials::Passthrough),
        ])
        .expect("no key files to read")
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: method line, path line, `name: value` lines, an empty line, then the body.
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, &[][..]),
    };
    let Ok(method) = Method::from_bytes(method) else { return };
    let Ok(path) = std::str::from_utf8(path) else { return };
    let mut builder = Request::builder().method(method.clone()).uri(path);
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        builder = builder.header(name, value);
    }
    let Ok(req) = builder.body(Full::new(Bytes::copy_from_slice(body))) else { return };
    let uri_path = req.uri().path().to_string();
    match futures::executor::block_on(check_request(senders(), MAX_PAYLOAD, req)) {
        Ok(push) => {
            // What passes is a POST to /3/device/{hex token} with a payload within the limit.
            assert_eq!(method, Method::POST);
            let token = uri_path.strip_prefix("/3/device/").expect("path checked");
            assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(!push.body.is_empty() && push.body.len() <= MAX_PAYLOAD);
            assert!(push.headers.contains_key("apns-id"));
        }
        Err((status, reason)) => {
            assert!(status.is_client_error(), "{status} {reason}");
            assert!(!reason.is_empty());
        }
    }
});
