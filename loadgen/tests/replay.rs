//! `loadgen replay`, `replay inspect` and `record` as an operator runs them: the real binary
//! against the reference gateway on loopback.

mod common;
use common::*;

use std::time::{Duration, Instant};

const SEP: &str = "\n🐵🙈🙉\n";
const T0: i64 = 1_795_600_000_000_000_000;

/// A `.gor` request (type 1) at `ms` and, when `status` is given, its recorded response.
fn gor(id: &str, ms: i64, request: &str, status: Option<u16>) -> String {
    let mut s = format!("1 {id} {} -1\n{request}{SEP}", T0 + ms * 1_000_000);
    if let Some(st) = status {
        s += &format!(
            "2 {id} {} 1000000\nHTTP/1.1 {st} X\r\nContent-Length: 0\r\n\r\n{SEP}",
            T0 + ms * 1_000_000 + 1_000_000
        );
    }
    s
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: prod.example\r\n\r\n")
}

#[test]
fn replay_fires_on_schedule_and_gates_on_status_mismatch() {
    let d = Dir::new();
    let text = gor("a", 0, &get("/healthz"), Some(200))
        + &gor("b", 100, &get("/stats"), Some(200))
        + &gor("c", 200, &get("/devices/nope"), Some(200))
        + &gor("d", 300, &get("/healthz"), None)
        + &format!("1 e {} -1\nPOST /devices HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{{\"user\":\"u1\"}}{SEP}", T0 + 400_000_000);
    d.write("r.gor", &text);
    let out = d.loadgen(&[
        "replay",
        "r.gor",
        "--target",
        "embedded",
        "--out",
        "out",
        "--quiet",
        "--threshold",
        "replay_status_mismatch: count == 0",
        "--threshold",
        "http_reqs: count == 5",
    ]);
    assert_eq!(out.status.code(), Some(99), "{}", stderr(&out));
    let run = d.run_record().expect("run.json");
    assert_eq!(metric(&run, "http_reqs")["value"], 5);
    let mismatch = metric(&run, "replay_status_mismatch");
    assert_eq!(
        (mismatch["value"].as_u64(), mismatch["total"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(
        metric(&run, "http_reqs{journey=replay,step=POST}")["value"],
        1
    );
    assert_eq!(
        metric(
            &run,
            "http_errors{cause=status 404,journey=replay,step=GET}"
        )["value"],
        1
    );
    assert!(metric(&run, "schedule_lag")["count"].as_u64() == Some(5));
    assert!(metric(&run, "pacer_lag")["count"].as_u64() == Some(5));
    assert_eq!(run["meta"]["replay"]["planned_requests"], 5);
    let verdicts = run["thresholds"].as_array().unwrap();
    assert!(verdicts.iter().any(|v| v["ok"] == false), "{verdicts:?}");
    // The schedule spans 400 ms: the run cannot be shorter.
    assert!(
        run["duration_s"].as_f64().unwrap() >= 0.4,
        "{}",
        run["duration_s"]
    );
}

#[test]
fn speed_and_filters_apply() {
    let d = Dir::new();
    let text = gor("a", 0, &get("/healthz"), None)
        + &gor("b", 1000, &get("/stats"), None)
        + &gor("c", 2000, &get("/healthz"), None);
    d.write("r.gor", &text);
    let started = Instant::now();
    let out = d.loadgen(&[
        "replay",
        "r.gor",
        "--target",
        "embedded",
        "--out",
        "out",
        "--quiet",
        "--speed",
        "4x",
        "--path",
        "^/healthz$",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    let run = d.run_record().unwrap();
    assert_eq!(metric(&run, "http_reqs")["value"], 2);
    assert_eq!(run["meta"]["replay"]["planned_length_s"], 0.5);
}

#[test]
fn malformed_recordings_exit_2_naming_the_place_or_are_skipped() {
    let d = Dir::new();
    let first = gor("a", 0, &get("/healthz"), None);
    let text = first.clone() + "1 b 1000 -1\nPOST /x HTTP/1.1\r\nContent-Length: 50\r\n\r\nabc";
    d.write("t.gor", &text);
    let out = d.loadgen(&[
        "replay", "t.gor", "--target", "embedded", "--out", "out", "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: t.gor: record 2 (byte offset {}): truncated record: Content-Length is 50 but the file ends after 3 body bytes", first.len())
    );
    assert!(
        d.run_record().is_none(),
        "nothing is sent when the recording is bad"
    );

    let out = d.loadgen(&[
        "replay",
        "t.gor",
        "--target",
        "embedded",
        "--out",
        "out",
        "--quiet",
        "--skip-malformed",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = d.run_record().unwrap();
    assert_eq!(run["meta"]["replay"]["malformed_skipped"], 1);
    assert_eq!(metric(&run, "http_reqs")["value"], 1);

    // Skipping every record leaves nothing to replay: that is an error, not a passing run.
    d.write(
        "bad.gor",
        "1 b 1000 -1\nPOST /x HTTP/1.1\r\nContent-Length: 50\r\n\r\nabc",
    );
    std::fs::remove_dir_all(d.path().join("out")).unwrap();
    let out = d.loadgen(&[
        "replay",
        "bad.gor",
        "--target",
        "embedded",
        "--out",
        "out",
        "--quiet",
        "--skip-malformed",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: bad.gor: nothing to replay: all 1 records were malformed and skipped (first: bad.gor: record 1 (byte offset 0): truncated record: Content-Length is 50 but the file ends after 3 body bytes)"
    );
    assert!(d.run_record().is_none());
    // A filter that keeps nothing, too.
    let out = d.loadgen(&[
        "replay",
        "t.gor",
        "--target",
        "embedded",
        "--out",
        "out",
        "--quiet",
        "--skip-malformed",
        "--path",
        "^/nothing$",
    ]);
    assert_exit_says(&out, 2, "t.gor: nothing to replay: the filter and window keep none of the 1 requests and 0 sessions read");

    // Times in the wrong unit make a replay of years: refused, naming the record.
    let far = gor("a", 0, &get("/healthz"), None)
        + &gor("b", 8 * 24 * 3600 * 1000, &get("/healthz"), None);
    d.write("far.gor", &far);
    let out = d.loadgen(&["replay", "far.gor", "--target", "embedded"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: far.gor: record 2: the replay would last 192h to this item (at speed 1), longer than 168h"),
        "{}",
        stderr(&out)
    );

    d.write("x.har", "{\n  \"log\": { \"entries\": [ }\n}");
    let out = d.loadgen(&["replay", "inspect", "x.har"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "error: x.har:2:25: invalid HAR: expected value"
    );

    d.write("a.log", "1.1.1.1 - - [25/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n\nthis is not a log line\n");
    let out = d.loadgen(&["replay", "inspect", "a.log"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: a.log:3: not a common or combined log line"),
        "{}",
        stderr(&out)
    );

    let out = d.loadgen(&["replay", "inspect", "missing-*.gor"]);
    assert_eq!(stderr(&out).trim(), "error: missing-*.gor: no file matches");
    let out = d.loadgen(&["replay", "t.gor", "--target", "embedded", "--speed", "fast"]);
    assert_exit_says(&out, 2, "speed: expected a positive factor such as `2x`");
    let out = d.loadgen(&["replay", "t.gor"]);
    assert_exit_says(&out, 2, "--target");
}

/// `inspect --html` writes one self-contained page: the summary and path tables and an
/// inline SVG requests-per-second chart with one point per second of the recording.
#[test]
fn inspect_html_is_one_self_contained_page_with_a_rate_chart() {
    let d = Dir::new();
    let mut text = String::new();
    // 7 seconds: 1, 2, … 7 requests in second s (28 in all).
    let mut n = 0;
    for sec in 0..7 {
        for k in 0..=sec {
            text += &gor(
                &format!("h{n}"),
                sec * 1000 + k * 100,
                &get(&format!("/devices/{n}")),
                Some(200),
            );
            n += 1;
        }
    }
    d.write("h.gor", &text);
    let out = d.loadgen(&["replay", "inspect", "h.gor", "--html", "inspect.html"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("requests  28 over"),
        "{}",
        stdout(&out)
    );
    let page = std::fs::read_to_string(d.path().join("inspect.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(
        page.contains("<svg class=\"chart\" id=\"requests-per-second\""),
        "{page}"
    );
    // One path in the chart, one vertex per second.
    let path = page
        .split("<path class=\"line\" d=\"")
        .nth(1)
        .and_then(|p| p.split('"').next())
        .expect("a chart line");
    assert_eq!(path.matches(['M', 'L']).count(), 7, "{path}");
    assert!(
        page.contains(
            "\"points\":[[0.0,1.0],[1.0,2.0],[2.0,3.0],[3.0,4.0],[4.0,5.0],[5.0,6.0],[6.0,7.0]]"
        ),
        "{page}"
    );
    // The terminal's tables.
    assert!(
        page.contains("<th>requests</th><td style=\"text-align:left\">28 over"),
        "{page}"
    );
    assert!(
        page.contains("<td>/devices/{n}</td><td>GET</td><td>28</td><td>100.0%</td>"),
        "{page}"
    );
    assert!(
        page.contains("<th>status</th><td style=\"text-align:left\">200 28 (100.0%)"),
        "{page}"
    );
    // Nothing to fetch.
    for external in ["http://", "https://", " src=", "@import", "url("] {
        assert!(!page.contains(external), "{external} in {page}");
    }
    // An unwritable page is a one-line error, exit 2.
    let out = d.loadgen(&["replay", "inspect", "h.gor", "--html", "no/such/dir/x.html"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: no/such/dir/x.html: cannot write the HTML page"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_shows_groups_rate_status_and_order() {
    let d = Dir::new();
    let mut text = String::new();
    for i in 0..30 {
        text += &gor(
            &format!("g{i}"),
            i * 100,
            &get(&format!("/devices/{}", 1000 + i)),
            Some(if i % 10 == 0 { 404 } else { 200 }),
        );
    }
    text += &gor("late", 50, &get("/stats"), Some(200));
    d.write("i.gor", &text);
    let out = d.loadgen(&["replay", "inspect", "i.gor"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text.contains("requests  31 over 2.9s"), "{text}");
    assert!(
        text.contains("status    200 28 (90.3%), 404 3 (9.7%)"),
        "{text}"
    );
    assert!(
        text.contains("      30  96.8%  GET     /devices/{n}"),
        "{text}"
    );
    assert!(
        text.contains("1 out of order in their file, 0 replayed late"),
        "{text}"
    );
    assert!(text.contains("rate      "), "{text}");
    let out = d.loadgen(&["replay", "inspect", "i.gor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requests"], 31);
    assert_eq!(v["per_second"], serde_json::json!([11, 10, 10]));
    assert_eq!(v["reader"]["out_of_order"], 1);
}

/// A HAR entry with `_webSocketMessages` as a browser writes it: wall-clock times in seconds
/// (Chrome DevTools) or, with `ms`, in milliseconds (Chromium under Playwright).
fn ws_entry(at: &str, t0: f64, url: &str, msgs: &[(&str, f64, &str)]) -> String {
    ws_entry_in(1.0, at, t0, url, msgs)
}

fn ws_entry_in(unit: f64, at: &str, t0: f64, url: &str, msgs: &[(&str, f64, &str)]) -> String {
    let msgs: Vec<String> = msgs
        .iter()
        .map(|(kind, dt, data)| {
            format!(
                r#"{{"type":"{kind}","time":{},"opcode":1,"data":{}}}"#,
                (t0 + dt) * unit,
                serde_json::Value::from(*data)
            )
        })
        .collect();
    format!(
        r#"{{"startedDateTime":"{at}","request":{{"method":"GET","url":"{url}","headers":[{{"name":"Host","value":"prod.example"}},{{"name":"Sec-WebSocket-Extensions","value":"permessage-deflate"}},{{"name":"Origin","value":"https://app.example"}}]}},"response":{{"status":101}},"_resourceType":"websocket","_webSocketMessages":[{}]}}"#,
        msgs.join(",")
    )
}

/// HAR WebSocket sessions play against the reference gateway's rooms: each opens at its
/// recorded start, sends its recorded messages (hello, ping, ack), and what the server sends
/// back is counted against the recording.
#[test]
fn har_websocket_sessions_play_against_the_gateway_rooms() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gw = testbed::gateway::spawn(testbed::gateway::GatewayConfig::default())
            .await
            .unwrap();
        let room = gw.room_addrs()[0].ws;
        let d = Dir::new();
        // 2026-11-25T10:00:00Z as Unix seconds.
        let t0 = 1_795_600_800.0;
        let one = ws_entry(
            "2026-11-25T10:00:00.100Z",
            t0 + 0.1,
            "wss://prod.example/ws",
            &[
                ("send", 0.05, r#"{"type":"hello","user":"har-1","topics":["news"]}"#),
                ("receive", 0.06, r#"{"type":"welcome","conn":"c1","room":"room-0","heartbeat_s":30}"#),
                ("send", 0.3, r#"{"type":"ping","seq":7}"#),
                ("receive", 0.31, r#"{"type":"pong","seq":7}"#),
                ("send", 0.4, r#"{"type":"ack","id":"p-1"}"#),
            ],
        );
        // Recorded by Chromium under Playwright (epoch milliseconds), with a push the gateway
        // will not send now: one session off the recording.
        let two = ws_entry_in(
            1000.0,
            "2026-11-25T10:00:00.200Z",
            t0 + 0.2,
            "ws://prod.example/ws",
            &[
                ("send", 0.0, r#"{"type":"hello","user":"har-2","topics":[]}"#),
                ("receive", 0.01, r#"{"type":"welcome","conn":"c2","room":"room-0","heartbeat_s":30}"#),
                ("receive", 0.2, r#"{"type":"push","id":"p-9","kind":"unicast","topic":null,"sent_at_ns":null,"body":{},"redelivery":false}"#),
            ],
        );
        d.write(
            "s.har",
            &format!(
                r#"{{"log":{{"entries":[
 {{"startedDateTime":"2026-11-25T10:00:00.000Z","request":{{"method":"GET","url":"http://prod.example/healthz","headers":[]}},"response":{{"status":200}}}},
 {one},
 {two}]}}}}"#
            ),
        );
        let out = d.loadgen(&["replay", "inspect", "s.har"]);
        assert!(
            stdout(&out).contains("websocket 2 device sessions, 8 messages"),
            "{}",
            stdout(&out)
        );
        let started = Instant::now();
        let out = d.loadgen(&[
            "replay",
            "s.har",
            "--target",
            &gw.base_url(),
            "--ws-target",
            &format!("ws://{room}"),
            "--out",
            "out",
            "--quiet",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        // Half a second of recording and the sessions' linger: it ends.
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
        let run = d.run_record().unwrap();
        assert!(run["meta"]["replay"]["planned_length_s"].as_f64().unwrap() < 5.0, "{run}");
        assert_eq!(run["meta"]["replay"]["recorded_responses"], 1);
        assert_eq!(metric(&run, "http_reqs")["value"], 1);
        assert_eq!(metric(&run, "replay_ws_sessions")["value"], 2);
        assert_eq!(metric(&run, "ws_connecting")["count"], 2);
        assert_eq!(metric(&run, "replay_ws_sent")["value"], 4);
        assert_eq!(metric(&run, "replay_ws_not_sent")["value"], 0);
        // welcome + pong, and the second session's welcome (its push never comes).
        assert_eq!(metric(&run, "replay_ws_received")["value"], 3);
        assert_eq!(metric(&run, "replay_ws_recorded_received")["value"], 4);
        let mismatch = metric(&run, "replay_ws_receive_mismatch");
        assert_eq!(
            (mismatch["value"].as_u64(), mismatch["total"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(run["meta"]["replay"]["ws_sessions"], 2);
        // The recorded ack reached the gateway as a well-formed frame after a valid hello.
        assert_eq!(gw.fetch_stats().await.acks, 1);
        gw.shutdown().await;
    });
}

/// A WebSocket entry whose URL is not ws/wss/http/https, and a bad `--ws-target`: one line
/// naming the entry or the flag, exit 2, nothing sent.
#[test]
fn bad_websocket_sessions_and_targets_are_one_line_errors() {
    let d = Dir::new();
    d.write(
        "s.har",
        &format!(
            r#"{{"log":{{"entries":[{}]}}}}"#,
            ws_entry(
                "2026-11-25T10:00:00.100Z",
                0.0,
                "ftp://prod.example/ws",
                &[("send", 0.1, "hi")]
            )
        ),
    );
    let out = d.loadgen(&[
        "replay",
        "s.har",
        "--target",
        "http://127.0.0.1:9",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("s.har"), "{err}");
    assert!(err.contains("log.entries[0]"), "{err}");
    assert!(
        err.contains("scheme `ftp` is not http(s) or ws(s)"),
        "{err}"
    );
    d.write("ok.har", r#"{"log":{"entries":[{"startedDateTime":"2026-11-25T10:00:00.000Z","request":{"method":"GET","url":"http://gw/healthz","headers":[]}}]}}"#);
    let out = d.loadgen(&[
        "replay",
        "ok.har",
        "--target",
        "http://127.0.0.1:9",
        "--ws-target",
        "tcp://127.0.0.1:9",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: replay.ws_target: expected a ws://, wss://, http:// or https:// URL, got `tcp://127.0.0.1:9`"
    );
}

#[test]
fn scenario_replay_section_checks_and_runs() {
    let d = Dir::new();
    d.write(
        "data/r.gor",
        &(gor("a", 0, &get("/healthz"), Some(200)) + &gor("b", 50, &get("/stats"), Some(200))),
    );
    let scenario = "version: 1
name: replayed
target: { embedded: gateway }
replay:
  files: [ data/r.gor ]
  speed: 2x
  filter: { methods: [ GET ] }
  rewrite: { set_headers: { x-replay: \"1\" } }
thresholds:
  replay_status_mismatch: [ \"count == 0\" ]
";
    d.write("s.yaml", scenario);
    let out = d.loadgen(&["check", "s.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("replay: 2 requests over 25ms"),
        "{}",
        stdout(&out)
    );
    let (out, run) = d.run(scenario);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(metric(&run.unwrap(), "http_reqs")["value"], 2);

    d.write(
        "bad.yaml",
        &scenario.replace("methods: [ GET ] }", "methods: [ GET ], path: \"(\" }"),
    );
    let out = d.loadgen(&["check", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(
            "error: bad.yaml:4:1: replay.filter.path: invalid regular expression `(`: unclosed group"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    d.write("bad2.yaml", &scenario.replace("speed: 2x", "speeed: 2x"));
    let out = d.loadgen(&["check", "bad2.yaml"]);
    assert!(
        stderr(&out).starts_with("error: bad2.yaml:6:3: replay: unknown field `speeed`"),
        "{}",
        stderr(&out)
    );
}

/// Records real client traffic through `loadgen record`, replays the recording through a
/// second recorder in front of a second gateway, and compares the two recordings: the same
/// request sequence (method, path, body) at the same offsets.
#[test]
fn record_then_replay_round_trip() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gw_a = rt
        .block_on(testbed::spawn(testbed::GatewayConfig::default()))
        .unwrap();
    let gw_b = rt
        .block_on(testbed::spawn(testbed::GatewayConfig::default()))
        .unwrap();
    let d = Dir::new();

    // Recorder A, the real binary, on a port of its own choosing.
    let mut rec_a = testkit::Spawned::start_stderr(d.command(&[
        "record",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &gw_a.base_url(),
        "--out",
        "a.gor",
    ]));
    let addr = rec_a.announced("recording http://").to_string();

    // A real HTTP client, with gaps from 0 to 300 ms and a body holding the separator text.
    let plan: Vec<(u64, &str, &str, String)> = vec![
        (
            0,
            "POST",
            "/devices",
            r#"{"user":"alice","topics":["news"]}"#.into(),
        ),
        (60, "POST", "/devices", r#"{"user":"bob"}"#.into()),
        (120, "GET", "/stats", String::new()),
        (
            420,
            "POST",
            "/push",
            format!("not json{SEP}but the .gor separator"),
        ),
        (
            470,
            "POST",
            "/broadcast",
            r#"{"topic":"news","body":"x"}"#.into(),
        ),
        (700, "GET", "/devices/nope", String::new()),
        (750, "GET", "/healthz", String::new()),
    ];
    rt.block_on(async {
        let client = reqwest::Client::new();
        let start = tokio::time::Instant::now();
        for (ms, method, path, body) in &plan {
            tokio::time::sleep_until(start + Duration::from_millis(*ms)).await;
            let url = format!("http://{addr}{path}");
            let req = match *method {
                "POST" => client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone()),
                _ => client.get(&url),
            };
            req.send().await.unwrap().bytes().await.unwrap();
        }
    });
    // SIGTERM stops the recorder and flushes the file.
    let status = rec_a.stop(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let rest = rec_a.rest();
    assert!(
        rest.iter()
            .any(|l| l.contains("recorded 7 requests and 7 responses")),
        "{rest:?}"
    );

    // Recorder B (the library) in front of gateway B; replay A's recording through it.
    let stop = loadgen::stop::Stop::new();
    let proxy_b = rt
        .block_on(loadgen::proxy::GorProxy::bind(
            loadgen::proxy::ProxyConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                upstream: gw_b.base_url(),
                out: d.path().join("b.gor"),
                timeout: Duration::from_secs(5),
                insecure: false,
            },
        ))
        .unwrap();
    let target = format!("http://{}", proxy_b.addr());
    let serving = rt.spawn(proxy_b.run(stop.clone()));
    let out = d.loadgen(&[
        "replay",
        "a.gor",
        "--target",
        &target,
        "--out",
        "out",
        "--quiet",
        "--connections",
        "4",
        "--threshold",
        "replay_status_mismatch: count == 0",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        stdout(&out)
    );
    stop.stop(loadgen::stop::StopReason::Finished);
    let summary = rt.block_on(serving).unwrap().unwrap();
    assert_eq!(summary.requests, 7);

    let read = |name: &str| -> Vec<(i64, String, String, Vec<u8>)> {
        let rec = traffic::Recording::open(
            &[d.path().join(name).display().to_string()],
            Default::default(),
        )
        .unwrap();
        let items: Vec<traffic::Request> = rec
            .stream()
            .unwrap()
            .map(|i| match i.unwrap() {
                traffic::Item::Request(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        let t0 = items[0].ts_ns;
        items
            .into_iter()
            .map(|r| (r.ts_ns - t0, r.method, r.path, r.body.to_vec()))
            .collect()
    };
    let (a, b) = (read("a.gor"), read("b.gor"));
    let seq = |v: &[(i64, String, String, Vec<u8>)]| -> Vec<(String, String, Vec<u8>)> {
        v.iter()
            .map(|(_, m, p, b)| (m.clone(), p.clone(), b.clone()))
            .collect()
    };
    assert_eq!(seq(&a), seq(&b));
    assert!(a[3].3.windows(SEP.len()).any(|w| w == SEP.as_bytes()));
    // Offsets match the recording; 60 ms of slack keeps a loaded CI machine from failing it
    // while a replay that ignored the timing (all at once) would be off by up to 750 ms.
    for ((ta, _, p, _), (tb, _, _, _)) in a.iter().zip(&b) {
        assert!(
            (ta - tb).abs() < 60_000_000,
            "{p}: recorded at +{}ms, replayed at +{}ms",
            ta / 1_000_000,
            tb / 1_000_000
        );
    }
    assert!(
        a[6].0 >= 700_000_000,
        "the client spread its requests over 750 ms: {:?}",
        a[6].0
    );
}

#[test]
fn access_logs_and_vegeta_targets_replay() {
    let d = Dir::new();
    d.write(
        "access.log",
        "127.0.0.1 - - [25/Nov/2026:10:00:00 +0000] \"GET /healthz HTTP/1.1\" 200 11 \"-\" \"curl/8\"
127.0.0.1 - - [25/Nov/2026:10:00:00 +0000] \"GET /stats HTTP/1.1\" 200 90 \"-\" \"curl/8\"
127.0.0.1 - - [25/Nov/2026:10:00:01 +0000] \"GET /healthz HTTP/1.1\" 200 11
",
    );
    let out = d.loadgen(&[
        "replay",
        "access.log",
        "--target",
        "embedded",
        "--out",
        "out",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = d.run_record().unwrap();
    assert_eq!(metric(&run, "http_reqs")["value"], 3);
    assert_eq!(run["meta"]["replay"]["files"][0]["format"], "access-log");
    assert_eq!(run["meta"]["replay"]["planned_length_s"], 1.0);
    // Access-log statuses are not compared: the log has no bodies or headers to resend.
    assert!(run["metrics"]["replay_status_mismatch"].is_null());
    assert_eq!(run["meta"]["replay"]["recorded_responses"], 0);

    // A WebSocket upgrade in a log is not replayed as a plain GET (it would hang on a
    // long-poll endpoint): skipped, counted, said by check.
    d.write(
        "ws.log",
        "127.0.0.1 - - [25/Nov/2026:10:00:00 +0000] \"GET /ws HTTP/1.1\" 101 0
127.0.0.1 - - [25/Nov/2026:10:00:00 +0000] \"GET /healthz HTTP/1.1\" 200 11
",
    );
    let out = d.loadgen(&[
        "replay", "ws.log", "--target", "embedded", "--out", "out", "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = d.run_record().unwrap();
    assert_eq!(metric(&run, "http_reqs")["value"], 1);
    assert_eq!(run["meta"]["replay"]["upgrades_skipped"], 1);
    let out = d.loadgen(&["replay", "inspect", "ws.log"]);
    assert!(
        stdout(&out).contains("1 WebSocket upgrade lines (status 101) skipped"),
        "{}",
        stdout(&out)
    );

    d.write("body.json", "{\"user\":\"v1\"}");
    d.write("targets.txt", "POST http://gw/devices\nContent-Type: application/json\n@body.json\n\nGET http://gw/devices/v1\n");
    let out = d.loadgen(&[
        "replay",
        "targets.txt",
        "--target",
        "embedded",
        "--out",
        "out",
        "--quiet",
        "--untimed-rate",
        "20",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = d.run_record().unwrap();
    assert_eq!(
        metric(&run, "http_reqs{journey=replay,step=POST}")["value"],
        1
    );
    assert_eq!(run["meta"]["replay"]["planned_length_s"], 0.05);
}

/// The shipped example replays a real `loadgen record` recording against the embedded
/// gateway with every status as recorded.
#[test]
fn shipped_replay_scenario_matches_the_recorded_statuses() {
    let d = Dir::new();
    let file =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/replay.yaml");
    let out = d.loadgen(&["run", file.to_str().unwrap(), "--out", "out", "--quiet"]);
    assert!(
        matches!(out.status.code(), Some(0) | Some(99)),
        "{}",
        stderr(&out)
    );
    let run = d.run_record().unwrap();
    assert_eq!(metric(&run, "http_reqs")["value"], 43);
    assert_eq!(metric(&run, "replay_status_mismatch")["value"], 0);
    assert_eq!(metric(&run, "http_req_failed")["value"], 0);
}

#[test]
fn record_refuses_bad_input_with_exit_2() {
    let d = Dir::new();
    let out = d.loadgen(&[
        "record",
        "--listen",
        "localhost",
        "--upstream",
        "http://127.0.0.1:9",
        "--out",
        "x.gor",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --listen localhost: expected IP:PORT"),
        "{}",
        stderr(&out)
    );
    let out = d.loadgen(&[
        "record",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9",
        "--out",
        "x.gor",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --upstream http://127.0.0.1:9 is unreachable"),
        "{}",
        stderr(&out)
    );
    let out = d.loadgen(&[
        "record",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "ftp://x",
        "--out",
        "x.gor",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A listen address already taken: refused before the output (an earlier recording) is
    // touched.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().map(|a| (a, taken)).unwrap();
    d.write("x.gor", "an earlier recording");
    let out = d.loadgen(&[
        "record",
        "--listen",
        &taken.0.to_string(),
        "--upstream",
        &format!("http://{}", upstream.local_addr().unwrap()),
        "--out",
        "x.gor",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!("error: --listen {}: ", taken.0)),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("x.gor")).unwrap(),
        "an earlier recording"
    );
}
