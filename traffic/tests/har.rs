//! HAR 1.2: requests with their start times, bodies and statuses; Chrome WebSocket frames as
//! device sessions; invalid JSON and unusable entries with their place.

use traffic::{Item, ReadOptions, Recording, WsDirection};

const HAR: &str = r#"{
  "log": {
    "version": "1.2",
    "creator": { "name": "WebInspector", "version": "537.36" },
    "entries": [
      {
        "startedDateTime": "2026-11-25T10:00:00.000Z",
        "time": 12.5,
        "request": {
          "method": "POST", "url": "https://gw.example/push?x=1", "httpVersion": "HTTP/1.1",
          "headers": [ { "name": "Content-Type", "value": "application/json" }, { "name": "Host", "value": "gw.example" } ],
          "postData": { "mimeType": "application/json", "text": "{\"user\":\"u1\"}" }
        },
        "response": { "status": 202, "statusText": "Accepted", "headers": [] }
      },
      {
        "startedDateTime": "2026-11-25T10:00:00.250Z",
        "request": { "method": "GET", "url": "https://gw.example/devices/7", "headers": [ { "name": ":authority", "value": "gw.example" } ] },
        "response": { "status": 0 }
      },
      {
        "startedDateTime": "2026-11-25T10:00:01.000Z",
        "_resourceType": "websocket",
        "request": { "method": "GET", "url": "wss://gw.example/ws?user=u1", "headers": [] },
        "response": { "status": 101 },
        "_webSocketMessages": [
          { "type": "send", "time": 1795600801.5, "opcode": 1, "data": "{\"op\":\"hello\"}" },
          { "type": "receive", "time": 1795600802.0, "opcode": 1, "data": "{\"op\":\"push\"}" }
        ]
      }
    ]
  }
}"#;

fn open(text: &str, skip: bool) -> (tempfile::TempDir, Recording) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.har");
    std::fs::write(&p, text).unwrap();
    let r = Recording::open(
        &[p.display().to_string()],
        ReadOptions {
            skip_malformed: skip,
            ..Default::default()
        },
    )
    .unwrap();
    (d, r)
}

#[test]
fn entries_become_requests_and_sessions() {
    let (_d, rec) = open(HAR, false);
    assert_eq!(rec.files()[0].1, traffic::Format::Har);
    let items: Vec<Item> = rec.stream().unwrap().map(|i| i.unwrap()).collect();
    assert_eq!(items.len(), 3);
    let Item::Request(post) = &items[0] else {
        panic!()
    };
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/push?x=1")
    );
    assert_eq!(post.host.as_deref(), Some("gw.example"));
    assert_eq!(&post.body[..], b"{\"user\":\"u1\"}");
    assert_eq!(
        post.headers,
        vec![("Content-Type".to_string(), "application/json".to_string())]
    );
    assert_eq!(
        post.recorded.map(|r| (r.status, r.latency_ns)),
        Some((202, Some(12_500_000)))
    );
    let Item::Request(get) = &items[1] else {
        panic!()
    };
    assert_eq!(get.ts_ns - post.ts_ns, 250_000_000);
    assert!(get.headers.is_empty(), "HTTP/2 pseudo-headers are dropped");
    assert_eq!(get.recorded, None, "status 0 means no response");
    let Item::Session(ws) = &items[2] else {
        panic!()
    };
    assert_eq!(ws.url, "wss://gw.example/ws?user=u1");
    assert_eq!(ws.messages.len(), 2);
    assert_eq!(ws.messages[0].direction, WsDirection::Send);
    assert_eq!(ws.messages[0].offset_ns, 500_000_000);
    assert_eq!(ws.messages[1].offset_ns, 1_000_000_000);
}

#[test]
fn invalid_json_names_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.har");
    std::fs::write(&p, "{\n  \"log\": { \"entries\": [ }\n}").unwrap();
    let rec = Recording::open(
        &[p.display().to_string()],
        ReadOptions {
            format: Some(traffic::Format::Har),
            ..Default::default()
        },
    )
    .unwrap();
    let e = rec.stream().err().expect("an error").to_string();
    assert!(
        e.ends_with("bad.har:2:25: invalid HAR: expected value"),
        "{e}"
    );
}

#[test]
fn a_bad_entry_is_named_or_skipped() {
    let bad = HAR.replace("\"2026-11-25T10:00:00.250Z\"", "\"yesterday\"");
    let (_d, rec) = open(&bad, false);
    let e = rec
        .stream()
        .unwrap()
        .find_map(|r| r.err())
        .unwrap()
        .to_string();
    assert!(
        e.contains("t.har: log.entries[1]: startedDateTime `yesterday`"),
        "{e}"
    );
    let (_d, rec) = open(&bad, true);
    let mut s = rec.stream().unwrap();
    assert_eq!(s.by_ref().filter(|r| r.is_ok()).count(), 2);
    assert_eq!(s.stats().malformed, 1);
    let bad = HAR.replace(
        "\"url\": \"https://gw.example/devices/7\"",
        "\"url\": \"devices/7\"",
    );
    let (_d, rec) = open(&bad, false);
    let e = rec
        .stream()
        .unwrap()
        .find_map(|r| r.err())
        .unwrap()
        .to_string();
    assert!(
        e.contains("log.entries[1]: request.url `devices/7` is not an absolute URL"),
        "{e}"
    );
}

/// The session's message offsets when its times are written as `a` and `b`.
fn ws_offsets(a: &str, b: &str) -> Result<Vec<i64>, String> {
    let text = HAR
        .replace("\"time\": 1795600801.5", &format!("\"time\": {a}"))
        .replace("\"time\": 1795600802.0", &format!("\"time\": {b}"));
    let (_d, rec) = open(&text, false);
    let items: Result<Vec<Item>, _> = rec.stream().unwrap().collect();
    match items.map_err(|e| e.to_string())?.pop() {
        Some(Item::Session(s)) => Ok(s.messages.iter().map(|m| m.offset_ns).collect()),
        other => panic!("{other:?}"),
    }
}

/// Chrome DevTools writes epoch seconds, Chromium under Playwright epoch milliseconds, other
/// tools seconds from the entry's start: each gives the same offsets. A time that fits none
/// (here milliseconds from the start, read as seconds: a day early is impossible) is named.
#[test]
fn websocket_message_times_in_each_unit() {
    let want = vec![500_000_000, 1_000_000_000];
    assert_eq!(ws_offsets("1795600801.5", "1795600802.0").unwrap(), want);
    assert_eq!(
        ws_offsets("1795600801500", "1795600802000.0").unwrap(),
        want
    );
    assert_eq!(ws_offsets("0.5", "1").unwrap(), want);
    let e = ws_offsets("1795600801500", "1795600.5").unwrap_err();
    assert!(
        e.contains("t.har: log.entries[2]: _webSocketMessages[1].time 1795600.5 is not a time near the entry's startedDateTime (read as milliseconds since the epoch like the first message)"),
        "{e}"
    );
}
