//! An APNs request from arbitrary bytes: path, header lines, body. The mock's rules must
//! answer every one with a device token or a reason, never panic.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

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
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let _ = testbed::apns::check_request(&method, path, &headers, body);
});
