//! The reference gateway's HTTP API over real loopback connections: every route's happy path,
//! every error status with its JSON body, HTTP/1.1 and h2c, and the injected faults.

mod http_client;
use http_client::http_client;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reqwest::{header::HeaderMap, Method};
use serde_json::{json, Value};
use testbed::{FaultConfig, GatewayConfig, GatewayHandle, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(faults: FaultConfig) -> GatewayHandle {
    testbed::spawn(GatewayConfig {
        faults,
        ..GatewayConfig::default()
    })
    .await
    .expect("gateway starts on 127.0.0.1:0")
}

/// One answer: status, headers and the JSON body (`Null` when empty).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

async fn call(
    client: &reqwest::Client,
    gateway: &GatewayHandle,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Answer {
    let mut request = client.request(method, format!("{}{path}", gateway.base_url()));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("request answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body read");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn error(code: &str, message: &str) -> Value {
    json!({ "error": code, "message": message })
}

#[tokio::test]
async fn health_and_stats() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    let health = call(&client, &gateway, Method::GET, "/healthz", None).await;
    assert_eq!((health.status, health.body), (200, json!({ "ok": true })));
    assert_eq!(health.headers["content-type"], "application/json");
    let stats = call(&client, &gateway, Method::GET, "/stats", None).await;
    assert_eq!(stats.status, 200);
    assert_eq!(
        stats.body,
        json!({
            "devices": 0, "users": 0, "pushes": 0, "broadcasts": 0, "requests": 2, "injected_errors": 0,
            "connections": 0, "joined": 0, "pushes_delivered": 0, "acks": 0, "redelivered": 0,
            "injected_push_drops": 0, "injected_push_duplicates": 0, "injected_resets": 0,
            "injected_refusals": 0, "slow_consumer_closed": 0, "rooms": 1
        })
    );
    assert_eq!(gateway.stats().requests, 2);
}

#[tokio::test]
async fn device_lifecycle() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    let created = call(
        &client,
        &gateway,
        Method::POST,
        "/devices",
        Some(r#"{"user": "u1", "topics": ["news", "sport"], "platform": "ios", "token": "t-1"}"#),
    )
    .await;
    assert_eq!(created.status, 201);
    let id = created.body["device_id"]
        .as_str()
        .expect("device_id")
        .to_owned();
    assert!(!id.is_empty());
    assert_eq!(
        created.body,
        json!({ "device_id": id, "user": "u1", "topics": ["news", "sport"], "platform": "ios", "token": "t-1" })
    );
    assert_eq!(
        created.headers["location"],
        format!("/devices/{id}").as_str()
    );

    let read = call(
        &client,
        &gateway,
        Method::GET,
        &format!("/devices/{id}"),
        None,
    )
    .await;
    assert_eq!((read.status, &read.body), (200, &created.body));

    let minimal = call(
        &client,
        &gateway,
        Method::POST,
        "/devices",
        Some(r#"{"user": "u2"}"#),
    )
    .await;
    assert_eq!(minimal.status, 201);
    assert_eq!(minimal.body["topics"], json!([]));
    assert_eq!(minimal.body.get("platform"), None);

    let deleted = call(
        &client,
        &gateway,
        Method::DELETE,
        &format!("/devices/{id}"),
        None,
    )
    .await;
    assert_eq!((deleted.status, deleted.body), (204, Value::Null));
    let missing = error("not_found", &format!("no device with id `{id}`"));
    let read = call(
        &client,
        &gateway,
        Method::GET,
        &format!("/devices/{id}"),
        None,
    )
    .await;
    assert_eq!((read.status, &read.body), (404, &missing));
    let deleted = call(
        &client,
        &gateway,
        Method::DELETE,
        &format!("/devices/{id}"),
        None,
    )
    .await;
    assert_eq!((deleted.status, &deleted.body), (404, &missing));

    let stats = gateway.stats();
    assert_eq!((stats.devices, stats.users), (1, 1));
}

#[tokio::test]
async fn push_to_a_users_devices() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    let unknown = call(
        &client,
        &gateway,
        Method::POST,
        "/push",
        Some(r#"{"user": "u1", "id": "m-0"}"#),
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.body),
        (
            404,
            error(
                "unknown_user",
                "user `u1` has no registered device and no connection"
            )
        )
    );
    for _ in 0..2 {
        call(
            &client,
            &gateway,
            Method::POST,
            "/devices",
            Some(r#"{"user": "u1"}"#),
        )
        .await;
    }
    let pushed = call(
        &client,
        &gateway,
        Method::POST,
        "/push",
        Some(r#"{"user": "u1", "id": "m-1", "body": {"text": "hi"}, "sent_at_ns": 1700000000000000000}"#),
    )
    .await;
    assert_eq!(
        (pushed.status, pushed.body),
        (202, json!({ "id": "m-1", "user": "u1", "devices": 2 }))
    );
    let generated = call(
        &client,
        &gateway,
        Method::POST,
        "/push",
        Some(r#"{"user": "u1"}"#),
    )
    .await;
    assert_eq!(generated.status, 202);
    let id = generated.body["id"].as_str().expect("generated id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "generated id {id}");
    assert_eq!(gateway.stats().pushes, 2);
}

#[tokio::test]
async fn broadcast_to_a_topic_or_everyone() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    for body in [
        r#"{"user": "a", "topics": ["news"]}"#,
        r#"{"user": "b", "topics": ["news", "sport"]}"#,
        r#"{"user": "c"}"#,
    ] {
        assert_eq!(
            call(&client, &gateway, Method::POST, "/devices", Some(body))
                .await
                .status,
            201
        );
    }
    let news = call(
        &client,
        &gateway,
        Method::POST,
        "/broadcast",
        Some(r#"{"topic": "news", "id": "b-1", "body": "x"}"#),
    )
    .await;
    assert_eq!(
        (news.status, news.body),
        (202, json!({ "id": "b-1", "recipients": 2 }))
    );
    let nobody = call(
        &client,
        &gateway,
        Method::POST,
        "/broadcast",
        Some(r#"{"topic": "weather", "id": "b-2"}"#),
    )
    .await;
    assert_eq!(nobody.body, json!({ "id": "b-2", "recipients": 0 }));
    let everyone = call(
        &client,
        &gateway,
        Method::POST,
        "/broadcast",
        Some(r#"{"id": "b-3"}"#),
    )
    .await;
    assert_eq!(
        (everyone.status, everyone.body),
        (202, json!({ "id": "b-3", "recipients": 3 }))
    );
    let empty_body = call(&client, &gateway, Method::POST, "/broadcast", Some("")).await;
    assert_eq!(
        (empty_body.status, &empty_body.body["recipients"]),
        (202, &json!(3))
    );
    assert!(empty_body.body["id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(
        gateway.stats(),
        Stats {
            devices: 3,
            users: 3,
            pushes: 0,
            broadcasts: 4,
            requests: 7,
            injected_errors: 0,
            rooms: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn bad_bodies_are_400_with_the_reason() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    let cases = [
        ("/devices", "{", "invalid JSON body: EOF while parsing an object at line 1 column 1"),
        ("/devices", r#"{"topics": []}"#, "invalid JSON body: missing field `user` at line 1 column 14"),
        ("/devices", "", "invalid JSON body: missing field `user` at line 1 column 2"),
        ("/devices", r#"{"user": ""}"#, "field `user` must be a non-empty string"),
        ("/devices", r#"{"user": 5}"#, "invalid JSON body: invalid type: integer `5`, expected a string at line 1 column 10"),
        ("/push", r#"{"id": "m"}"#, "invalid JSON body: missing field `user` at line 1 column 11"),
        ("/push", r#"{"user": "u", "sent_at_ns": -1}"#, "invalid JSON body: invalid value: integer `-1`, expected u64 at line 1 column 30"),
        ("/broadcast", "5", "invalid JSON body: invalid type: integer `5`, expected a JSON object at line 1 column 1"),
    ];
    for (path, body, message) in cases {
        let answer = call(&client, &gateway, Method::POST, path, Some(body)).await;
        assert_eq!(
            (answer.status, answer.body),
            (400, error("bad_request", message)),
            "{path} {body}"
        );
    }
    assert_eq!(gateway.stats().devices, 0);
}

#[tokio::test]
async fn content_type_must_be_json_when_present() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    let url = format!("{}/devices", gateway.base_url());
    let plain = client
        .post(&url)
        .header("content-type", "text/plain")
        .body(r#"{"user": "u"}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(plain.status().as_u16(), 415);
    let body: Value = plain.json().await.expect("JSON");
    assert_eq!(
        body,
        error(
            "unsupported_media_type",
            "content type `text/plain` is not JSON; send application/json"
        )
    );
    for content_type in [
        None,
        Some("application/json; charset=utf-8"),
        Some("application/merge-patch+json"),
    ] {
        let mut request = client.post(&url).body(r#"{"user": "u"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        assert_eq!(
            request.send().await.expect("answer").status().as_u16(),
            201,
            "{content_type:?}"
        );
    }
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_413() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    let expected = error(
        "payload_too_large",
        "request body exceeds the limit of 1048576 bytes",
    );
    let big = format!(r#"{{"user": "u", "body": "{}"}}"#, "x".repeat(1 << 20));
    let answer = call(&client, &gateway, Method::POST, "/push", Some(&big)).await;
    assert_eq!((answer.status, &answer.body), (413, &expected));

    // Without a Content-Length the limit is enforced while reading.
    let mut stream = tokio::net::TcpStream::connect(gateway.addr())
        .await
        .expect("connect");
    let chunk = vec![b' '; (1 << 20) + 1];
    let head = format!(
        "POST /push HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
        chunk.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer and close before reading everything; that is fine.
    let _ = stream.write_all(&chunk).await;
    let _ = stream.write_all(b"\r\n0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#"{"error":"payload_too_large","message":"request body exceeds the limit of 1048576 bytes"}"#), "{text}");
}

#[tokio::test]
async fn unknown_paths_404_and_wrong_methods_405_with_allow() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    for path in ["/", "/nope", "/devices/", "/devices/a/b", "/admin"] {
        let answer = call(&client, &gateway, Method::GET, path, None).await;
        assert_eq!(
            (answer.status, answer.body),
            (404, error("not_found", &format!("no route for {path}")))
        );
    }
    let cases = [
        (Method::GET, "/push", "POST"),
        (Method::DELETE, "/devices", "POST"),
        (Method::PUT, "/devices/abc", "GET, DELETE"),
        (Method::POST, "/stats", "GET"),
        (Method::POST, "/healthz", "GET"),
        (Method::DELETE, "/admin/faults", "GET, POST"),
    ];
    for (method, path, allow) in cases {
        let answer = call(&client, &gateway, method.clone(), path, None).await;
        let message = format!("method {method} is not allowed on {path}; allowed: {allow}");
        assert_eq!(
            (answer.status, answer.body),
            (405, error("method_not_allowed", &message))
        );
        assert_eq!(answer.headers["allow"], allow);
    }
}

#[tokio::test]
async fn admin_faults_read_replace_and_reject() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    let defaults = json!({ "latency_ms": 0.0, "jitter_ms": 0.0, "error_rate": 0.0, "error_status": 503, "stall_ms": 0, "push_drop_rate": 0.0, "push_duplicate_rate": 0.0, "push_delay_rate": 0.0, "push_delay_ms": 0.0, "conn_reset_rate": 0.0, "refuse_rate": 0.0 });
    let read = call(&client, &gateway, Method::GET, "/admin/faults", None).await;
    assert_eq!((read.status, read.body), (200, defaults));

    let set = r#"{"latency_ms": 1.5, "jitter_ms": 0.5, "error_rate": 0.0, "error_status": 500}"#;
    let expected = json!({ "latency_ms": 1.5, "jitter_ms": 0.5, "error_rate": 0.0, "error_status": 500, "stall_ms": 0, "push_drop_rate": 0.0, "push_duplicate_rate": 0.0, "push_delay_rate": 0.0, "push_delay_ms": 0.0, "conn_reset_rate": 0.0, "refuse_rate": 0.0 });
    let answer = call(&client, &gateway, Method::POST, "/admin/faults", Some(set)).await;
    assert_eq!((answer.status, &answer.body), (200, &expected));
    let read = call(&client, &gateway, Method::GET, "/admin/faults", None).await;
    assert_eq!(read.body, expected);
    assert_eq!(gateway.faults().latency_ms, 1.5);

    let rejected = [
        (r#"{"error_rate": 2}"#, "error_rate must be between 0 and 1, got 2"),
        (r#"{"error_status": 200}"#, "error_status must be an HTTP error status between 400 and 599, got 200"),
        (r#"{"latency_ms": -1}"#, "latency_ms must be between 0 and 3600000 milliseconds, got -1"),
        (r#"{"stall_ms": 3600001}"#, "stall_ms must be at most 3600000 milliseconds, got 3600001"),
        (r#"{"push_drop_rate": 1.5}"#, "push_drop_rate must be between 0 and 1, got 1.5"),
        (r#"{"push_delay_ms": -2}"#, "push_delay_ms must be between 0 and 3600000 milliseconds, got -2"),
        (
            r#"{"latency": 5}"#,
            "invalid JSON body: unknown field `latency`, expected one of `latency_ms`, `jitter_ms`, `error_rate`, `error_status`, `stall_ms`, `push_drop_rate`, `push_duplicate_rate`, `push_delay_rate`, `push_delay_ms`, `conn_reset_rate`, `refuse_rate` at line 1 column 10",
        ),
    ];
    for (body, message) in rejected {
        let answer = call(&client, &gateway, Method::POST, "/admin/faults", Some(body)).await;
        assert_eq!(
            (answer.status, answer.body),
            (400, error("bad_request", message)),
            "{body}"
        );
    }
    assert_eq!(
        gateway.faults().latency_ms,
        1.5,
        "a rejected config changes nothing"
    );
}

#[tokio::test]
async fn h2c_with_prior_knowledge() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let gateway = start(FaultConfig::default()).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let send = |method: &str, path: &str, body: &'static str| {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", gateway.base_url()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("valid request");
        let client = client.clone();
        async move {
            let response = client.request(request).await.expect("h2c answer");
            assert_eq!(response.version(), http::Version::HTTP_2);
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).expect("JSON"),
            )
        }
    };
    assert_eq!(
        send("GET", "/healthz", "").await,
        (200, json!({ "ok": true }))
    );
    let (status, device) = send("POST", "/devices", r#"{"user": "h2"}"#).await;
    assert_eq!((status, &device["user"]), (201, &json!("h2")));
    assert_eq!(
        send("POST", "/push", r#"{"user": "h2", "id": "m"}"#).await,
        (202, json!({ "id": "m", "user": "h2", "devices": 1 }))
    );
    assert_eq!(
        send("GET", "/nope", "").await,
        (404, error("not_found", "no route for /nope"))
    );
}

#[tokio::test]
async fn injected_error_rate_is_respected() {
    const REQUESTS: usize = 2000;
    let gateway = start(FaultConfig {
        error_rate: 0.1,
        ..FaultConfig::default()
    })
    .await;
    let client = http_client();
    let url = format!("{}/stats", gateway.base_url());
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut injected = 0;
                for _ in 0..REQUESTS / 8 {
                    let response = client.get(&url).send().await.expect("answer");
                    match response.status().as_u16() {
                        200 => {}
                        503 => {
                            let body: Value = response.json().await.expect("JSON");
                            assert_eq!(body["error"], "injected");
                            assert_eq!(
                                body["message"],
                                "injected fault: answering 503 Service Unavailable on purpose"
                            );
                            injected += 1;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
                injected
            })
        })
        .collect();
    let mut injected = 0;
    for worker in workers {
        injected += worker.await.expect("worker");
    }
    // Binomial(2000, 0.1): mean 200, sd 13.4; ±6 sd.
    assert!(
        (120..=280).contains(&injected),
        "{injected} injected errors in {REQUESTS}"
    );
    let stats = gateway.stats();
    assert_eq!(
        (stats.injected_errors, stats.requests),
        (injected, REQUESTS as u64)
    );
}

#[tokio::test]
async fn injected_errors_skip_the_action_and_spare_health_and_admin() {
    let gateway = start(FaultConfig {
        error_rate: 1.0,
        error_status: 429,
        ..FaultConfig::default()
    })
    .await;
    let client = http_client();
    let answer = call(
        &client,
        &gateway,
        Method::POST,
        "/devices",
        Some(r#"{"user": "u"}"#),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body),
        (
            429,
            error(
                "injected",
                "injected fault: answering 429 Too Many Requests on purpose"
            )
        )
    );
    assert_eq!(
        call(&client, &gateway, Method::GET, "/nope", None)
            .await
            .status,
        429
    );
    assert_eq!(
        call(&client, &gateway, Method::GET, "/healthz", None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&client, &gateway, Method::GET, "/admin/faults", None)
            .await
            .status,
        200
    );
    let stats = gateway.stats();
    assert_eq!(
        (stats.devices, stats.injected_errors, stats.requests),
        (0, 2, 4)
    );
}

/// Times `count` sequential GET /stats requests.
async fn time_requests(
    client: &reqwest::Client,
    gateway: &GatewayHandle,
    count: usize,
) -> Vec<Duration> {
    let url = format!("{}/stats", gateway.base_url());
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let response = client.get(&url).send().await.expect("answer");
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.expect("body");
        times.push(start.elapsed());
    }
    times
}

#[tokio::test]
async fn jitter_spreads_latency_above_the_fixed_part() {
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    time_requests(&client, &gateway, 5).await;
    gateway.set_faults(FaultConfig {
        latency_ms: 2.0,
        jitter_ms: 4.0,
        ..FaultConfig::default()
    });
    let times = time_requests(&client, &gateway, 100).await;
    let min = times.iter().min().copied().unwrap_or_default();
    let max = times.iter().max().copied().unwrap_or_default();
    assert!(
        min >= Duration::from_millis(2),
        "fastest {min:?} is under the fixed 2 ms"
    );
    assert!(
        max - min > Duration::from_millis(1),
        "no spread: {min:?}..{max:?}"
    );
    // 2 ms + up to 4 ms of jitter, plus a round trip that may be slow after idling.
    let under_7ms = times
        .iter()
        .filter(|t| **t < Duration::from_millis(7))
        .count();
    assert!(
        under_7ms >= 95,
        "only {under_7ms}/100 under 2 ms + 4 ms jitter + 1 ms"
    );
}

#[tokio::test]
async fn stall_holds_requests_until_the_window_ends() {
    const STALL: Duration = Duration::from_millis(500);
    let gateway = start(FaultConfig::default()).await;
    let client = http_client();
    let before_set = Instant::now();
    let answer = call(
        &client,
        &gateway,
        Method::POST,
        "/admin/faults",
        Some(r#"{"stall_ms": 500}"#),
    )
    .await;
    assert_eq!(
        (answer.status, &answer.body["stall_ms"]),
        (200, &json!(500))
    );
    let stall_ends_no_earlier_than = before_set + STALL;

    let held: Vec<_> = (0..5)
        .map(|i| {
            let (client, base) = (client.clone(), gateway.base_url());
            tokio::spawn(async move {
                let body = format!(r#"{{"user": "u{i}"}}"#);
                let response = client
                    .post(format!("{base}/devices"))
                    .body(body)
                    .send()
                    .await
                    .expect("answer");
                (response.status().as_u16(), Instant::now())
            })
        })
        .collect();
    // Health and admin are not held.
    assert_eq!(
        call(&client, &gateway, Method::GET, "/healthz", None)
            .await
            .status,
        200
    );
    assert!(
        Instant::now() < stall_ends_no_earlier_than,
        "healthz was held by the stall"
    );
    for request in held {
        let (status, answered_at) = request.await.expect("request task");
        assert_eq!(status, 201);
        assert!(
            answered_at >= stall_ends_no_earlier_than,
            "answered during the stall"
        );
        assert!(
            answered_at < stall_ends_no_earlier_than + Duration::from_secs(5),
            "never released"
        );
    }
    assert_eq!(gateway.stats().devices, 5);

    // The window is over: stall reads 0 again and requests go through at once.
    let faults = call(&client, &gateway, Method::GET, "/admin/faults", None).await;
    assert_eq!(faults.body["stall_ms"], 0);
    let start = Instant::now();
    assert_eq!(
        call(&client, &gateway, Method::GET, "/stats", None)
            .await
            .status,
        200
    );
    assert!(start.elapsed() < STALL, "still stalled after the window");
}

#[tokio::test]
async fn shutdown_and_drop_close_the_listener() {
    let gateway = start(FaultConfig::default()).await;
    let addr = gateway.addr();
    let client = http_client();
    assert_eq!(
        call(&client, &gateway, Method::GET, "/healthz", None)
            .await
            .status,
        200
    );
    gateway.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );

    let dropped = start(FaultConfig::default()).await;
    let addr = dropped.addr();
    drop(dropped);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting 5 s after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn spawn_rejects_invalid_faults() {
    let error = testbed::spawn(GatewayConfig {
        faults: FaultConfig {
            error_rate: -0.5,
            ..FaultConfig::default()
        },
        ..GatewayConfig::default()
    })
    .await
    .expect_err("invalid faults");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(
        error.to_string(),
        "error_rate must be between 0 and 1, got -0.5"
    );
}
