//! HAR 1.2 files (browser and proxy exports): each entry's request with its start time
//! (`startedDateTime`), body (`postData.text`) and recorded status; WebSocket entries with
//! Chrome's `_webSocketMessages` become [`DeviceSession`]s.
//!
//! Invalid JSON is an error at its line and column. An entry that cannot be used (no method,
//! a bad URL or date) is an error naming `log.entries[N]`, which `--skip-malformed` skips.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::error::{Location, ReadError};
use crate::item::{DeviceSession, Item, Recorded, Request, WsDirection, WsMessage};

#[derive(Deserialize)]
struct Har {
    log: Log,
}

#[derive(Deserialize)]
struct Log {
    entries: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    started_date_time: String,
    request: HarRequest,
    #[serde(default)]
    response: Option<HarResponse>,
    #[serde(default)]
    time: Option<f64>,
    #[serde(default, rename = "_webSocketMessages")]
    web_socket_messages: Option<Vec<HarWsMessage>>,
    #[serde(default, rename = "_resourceType")]
    resource_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HarRequest {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    post_data: Option<PostData>,
}

#[derive(Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostData {
    #[serde(default)]
    text: Option<String>,
    #[serde(default, rename = "_encoding")]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct HarResponse {
    status: i64,
}

#[derive(Deserialize)]
struct HarWsMessage {
    #[serde(rename = "type")]
    kind: String,
    time: f64,
    #[serde(default = "text_opcode")]
    opcode: u8,
    #[serde(default)]
    data: String,
}

fn text_opcode() -> u8 {
    1
}

/// Reads every entry of a HAR file, in file order. Each item is a request or a session, or
/// the error of an entry that cannot be used.
pub fn read(path: &Path, text: &[u8]) -> Result<Vec<Result<Item, ReadError>>, ReadError> {
    let har: Har = serde_json::from_slice(text).map_err(|e| ReadError::Malformed {
        path: path.to_path_buf(),
        at: Location::LineColumn(e.line() as u64, e.column() as u64),
        message: format!("invalid HAR: {e}")
            .split(" at line ")
            .next()
            .unwrap_or("invalid HAR")
            .to_string(),
    })?;
    let file: Arc<str> = Arc::from(path.display().to_string());
    Ok(har
        .log
        .entries
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            entry(v, &file, i as u64).map_err(|message| ReadError::Malformed {
                path: path.to_path_buf(),
                at: Location::Entry(i as u64),
                message,
            })
        })
        .collect())
}

fn entry(value: serde_json::Value, file: &Arc<str>, index: u64) -> Result<Item, String> {
    let e: Entry = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let started = chrono::DateTime::parse_from_rfc3339(&e.started_date_time)
        .map_err(|err| format!("startedDateTime `{}`: {err}", e.started_date_time))?;
    let ts_ns = started
        .timestamp_nanos_opt()
        .ok_or_else(|| format!("startedDateTime `{}` is out of range", e.started_date_time))?;
    let url: http_url::Url = http_url::Url::parse(&e.request.url)?;
    let method = e.request.method.trim().to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "request.method `{}` is not an HTTP method",
            e.request.method
        ));
    }
    let headers: Vec<(String, String)> = e
        .request
        .headers
        .into_iter()
        .filter(|h| !h.name.starts_with(':'))
        .map(|h| (h.name, h.value))
        .collect();
    let is_ws = url.scheme == "ws"
        || url.scheme == "wss"
        || e.resource_type.as_deref() == Some("websocket")
        || e.web_socket_messages.is_some();
    if is_ws {
        let recorded = e.web_socket_messages.unwrap_or_default();
        let offsets = message_offsets(ts_ns, &recorded)?;
        let messages = recorded
            .into_iter()
            .zip(offsets)
            .map(|(m, offset_ns)| WsMessage {
                direction: if m.kind.eq_ignore_ascii_case("send") {
                    WsDirection::Send
                } else {
                    WsDirection::Receive
                },
                offset_ns,
                opcode: m.opcode,
                data: m.data,
            })
            .collect();
        let scheme = match url.scheme.as_str() {
            "https" => "wss",
            "http" => "ws",
            s => s,
        };
        return Ok(Item::Session(DeviceSession {
            ts_ns,
            url: format!("{scheme}://{}{}", url.authority, url.path),
            headers,
            messages,
            file: file.clone(),
            number: index + 1,
        }));
    }
    let body = match e
        .request
        .post_data
        .and_then(|p| p.text.map(|t| (t, p.encoding)))
    {
        Some((t, Some(enc))) if enc.eq_ignore_ascii_case("base64") => {
            Bytes::from(base64_decode(&t).ok_or("postData.text is not valid base64")?)
        }
        Some((t, _)) => Bytes::from(t),
        None => Bytes::new(),
    };
    let recorded = e.response.and_then(|r| {
        // Chrome writes status 0 for requests that got no response.
        (100..=999).contains(&r.status).then(|| Recorded {
            status: r.status as u16,
            latency_ns: e.time.filter(|t| *t >= 0.0).map(|t| (t * 1e6) as i64),
            comparable: true,
        })
    });
    Ok(Item::Request(Request {
        ts_ns,
        method,
        host: Some(url.authority),
        path: url.path,
        headers: headers
            .into_iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
            .collect(),
        body,
        id: None,
        recorded,
        file: file.clone(),
        number: index + 1,
    }))
}

/// The unit of `_webSocketMessages[].time`, told from the first message: Chrome DevTools
/// writes wall-clock seconds since the epoch, Chromium driven by Playwright wall-clock
/// milliseconds, some tools seconds from the entry's start. A value above 1e11 is
/// milliseconds (1e11 s is the year 5138), above 1e8 seconds since the epoch (1973 on),
/// below that seconds from the start. Returns each message's offset from the entry's start;
/// a message more than a day before the start is an error (the unit guess is wrong).
fn message_offsets(start_ns: i64, messages: &[HarWsMessage]) -> Result<Vec<i64>, String> {
    let Some(first) = messages.first() else {
        return Ok(Vec::new());
    };
    let (scale_ns, origin_ns) = if first.time > 1e11 {
        (1e6, start_ns as f64)
    } else if first.time > 1e8 {
        (1e9, start_ns as f64)
    } else {
        (1e9, 0.0)
    };
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let offset = m.time * scale_ns - origin_ns;
            if !offset.is_finite() || offset < -86_400e9 || offset > i64::MAX as f64 {
                return Err(format!(
                    "_webSocketMessages[{i}].time {} is not a time near the entry's \
                     startedDateTime (read as {} like the first message)",
                    m.time,
                    match (scale_ns == 1e6, origin_ns != 0.0) {
                        (true, _) => "milliseconds since the epoch",
                        (false, true) => "seconds since the epoch",
                        (false, false) => "seconds from the start",
                    }
                ));
            }
            // A message stamped just before the entry started (clocks of the recording
            // tool) is sent at the start.
            Ok(offset.max(0.0) as i64)
        })
        .collect()
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Just enough URL parsing for recorded requests: scheme, authority, path with query.
mod http_url {
    pub struct Url {
        pub scheme: String,
        pub authority: String,
        pub path: String,
    }

    impl Url {
        pub fn parse(url: &str) -> Result<Url, String> {
            let (scheme, rest) = url
                .split_once("://")
                .ok_or_else(|| format!("request.url `{url}` is not an absolute URL"))?;
            let scheme = scheme.to_ascii_lowercase();
            if !matches!(scheme.as_str(), "http" | "https" | "ws" | "wss") {
                return Err(format!(
                    "request.url `{url}`: scheme `{scheme}` is not http(s) or ws(s)"
                ));
            }
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if authority.is_empty() {
                return Err(format!("request.url `{url}` has no host"));
            }
            let path = path.split('#').next().unwrap_or("/");
            let path = if path.starts_with('?') {
                format!("/{path}")
            } else {
                path.to_string()
            };
            Ok(Url {
                scheme,
                authority: authority.to_string(),
                path,
            })
        }
    }
}
