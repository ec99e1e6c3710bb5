//! Malformed sender requests get APNs-style errors from the relay itself (nothing reaches
//! APNs), the relay keeps serving afterwards, and garbage on the socket is harmless.

mod common;

use common::*;
use testbed::apns::ApnsFaults;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_apns_errors_and_never_reach_apns() {
    let h = Harness::new(ApnsFaults::default()).await;
    let relay = h.start_relay("").await;
    let base = format!("http://{}", relay.relay_addr.unwrap());
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let good_dev = device(1);
    let auth = format!("bearer {SENDER_TOKEN}");
    let ok_headers =
        |r: reqwest::RequestBuilder| r.header("authorization", &auth).header("apns-topic", TOPIC);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "GET",
            client.get(format!("{base}/3/device/{good_dev}")),
            405,
            "MethodNotAllowed",
        ),
        (
            "path",
            ok_headers(client.post(format!("{base}/4/device/{good_dev}"))).body("{}"),
            404,
            "BadPath",
        ),
        (
            "token",
            ok_headers(client.post(format!("{base}/3/device/not-hex!"))).body("{}"),
            400,
            "BadDeviceToken",
        ),
        (
            "no auth",
            client
                .post(format!("{base}/3/device/{good_dev}"))
                .header("apns-topic", TOPIC)
                .body("{}"),
            403,
            "MissingProviderToken",
        ),
        (
            "bad auth",
            client
                .post(format!("{base}/3/device/{good_dev}"))
                .header("authorization", "bearer nope")
                .body("{}"),
            403,
            "InvalidProviderToken",
        ),
        (
            "apns-id",
            ok_headers(client.post(format!("{base}/3/device/{good_dev}")))
                .header("apns-id", "xyz")
                .body("{}"),
            400,
            "BadMessageId",
        ),
        (
            "priority",
            ok_headers(client.post(format!("{base}/3/device/{good_dev}")))
                .header("apns-priority", "7")
                .body("{}"),
            400,
            "BadPriority",
        ),
        (
            "expiration",
            ok_headers(client.post(format!("{base}/3/device/{good_dev}")))
                .header("apns-expiration", "soon")
                .body("{}"),
            400,
            "BadExpirationDate",
        ),
        (
            "push type",
            ok_headers(client.post(format!("{base}/3/device/{good_dev}")))
                .header("apns-push-type", "shout")
                .body("{}"),
            400,
            "InvalidPushType",
        ),
        (
            "collapse id",
            ok_headers(client.post(format!("{base}/3/device/{good_dev}")))
                .header("apns-collapse-id", "c".repeat(65))
                .body("{}"),
            400,
            "BadCollapseId",
        ),
        (
            "topic",
            client
                .post(format!("{base}/3/device/{good_dev}"))
                .header("authorization", &auth)
                .body("{}"),
            400,
            "MissingTopic",
        ),
        (
            "empty",
            ok_headers(client.post(format!("{base}/3/device/{good_dev}"))),
            400,
            "PayloadEmpty",
        ),
        (
            "large",
            ok_headers(client.post(format!("{base}/3/device/{good_dev}"))).body(vec![b'x'; 6000]),
            413,
            "PayloadTooLarge",
        ),
    ];
    for (name, req, status, reason) in cases {
        let res = req.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(res.status().as_u16(), status, "{name}");
        assert_eq!(res.headers()["apns-relay-outcome"], "rejected", "{name}");
        assert!(res.headers().contains_key("apns-id"), "{name}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["reason"], reason, "{name}");
    }
    // Garbage instead of an HTTP/2 preface, then a half-open connection: no panic, no effect.
    let mut raw = tokio::net::TcpStream::connect(relay.relay_addr.unwrap())
        .await
        .unwrap();
    raw.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    drop(raw);
    // A header list over 16 KiB is refused (431 or a reset stream), not buffered.
    let huge = ok_headers(client.post(format!("{base}/3/device/{good_dev}")))
        .header("x-padding", "p".repeat(20 << 10))
        .body("{}")
        .send()
        .await;
    if let Ok(res) = huge {
        assert_eq!(
            res.status().as_u16(),
            431,
            "an oversized header list was served"
        );
    }
    assert_eq!(h.mock.count(), 0, "nothing malformed reached APNs");
    // The relay still serves a good push, and echoes its apns-id.
    let id = uuid::Uuid::new_v4().to_string();
    let res = ok_headers(client.post(format!("{base}/3/device/{good_dev}")))
        .header("apns-id", &id)
        .body(r#"{"aps":{"alert":"hi"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["apns-id"], id.as_str());
    assert_eq!(res.headers()["apns-relay-outcome"], "accepted");
    assert_eq!(res.headers()["apns-relay-attempts"], "1");
    assert_eq!(h.mock.count(), 1);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_rejections_are_stored_and_replayed_to_retries() {
    let h = Harness::new(ApnsFaults::default()).await;
    h.mock.unregister(&device(7));
    let relay = h.start_relay("[ops]\nlisten = \"127.0.0.1:0\"\n").await;
    let router = h.router_via_relay(relay.relay_addr.unwrap());
    let note = notification(7);
    let first = router.send(&note).await.unwrap();
    assert_eq!(
        (first.status, first.outcome.as_str(), first.reason.as_str()),
        (410, "rejected", "Unregistered")
    );
    let again = router.send(&note).await.unwrap();
    assert_eq!(again.status, 410);
    assert_eq!(again.dedupe.as_deref(), Some("done"));
    // /metrics and /healthz on the ops listener.
    let ops = format!("http://{}", relay.ops_addr.unwrap());
    let metrics = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The push counts once; its replay counts as a dedupe hit; the one token the relay
    // minted counts as a refresh.
    for line in [
        r#"apns_relay_pushes_total{outcome="rejected",reason="Unregistered"} 1"#,
        r#"apns_relay_dedupe_hits_total{state="done"} 1"#,
        "apns_relay_token_refreshes_total 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(
        metrics.contains("apns_relay_leg_latency_seconds_bucket"),
        "{metrics}"
    );
    // The pool keeps all its connections open (`connections = 4`), not only the one used, and
    // /healthz reports it with the store.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let health = loop {
        let res = reqwest::get(format!("{ops}/healthz")).await.unwrap();
        assert_eq!(res.status(), 200);
        let health: serde_json::Value = res.json().await.unwrap();
        if health["pool"]["open"] == 4 {
            break health;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never opened its 4 connections: {health}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "draining": false, "store": "ok",
                           "pool": {"open": 4, "configured": 4}})
    );
    assert!(
        relay
            .metrics
            .render()
            .contains("apns_relay_pool_connections 4"),
        "{}",
        relay.metrics.render()
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_is_resent_only_with_a_collapse_id_or_the_senders_permission() {
    use testbed::apns::Fault;
    let h = Harness::new(ApnsFaults::default()).await;
    let relay = h.start_relay("").await;
    let router = h.router_via_relay(relay.relay_addr.unwrap());
    // Default: written, reset, unknown — and a retry of it gets the stored unknown.
    h.mock.push_faults([Fault::ResetAfterRead]);
    let plain = notification(1);
    let d = router.send(&plain).await.unwrap();
    assert_eq!((d.outcome.as_str(), d.attempts), ("unknown", 1), "{d:?}");
    // Answered as "retry later", the answer stock clients retry without dropping their
    // connection (see the README, "What senders see").
    assert_eq!((d.status, d.reason.as_str()), (503, "ServiceUnavailable"));
    let d = router.send(&plain).await.unwrap();
    assert_eq!(
        (d.outcome.as_str(), d.dedupe.as_deref()),
        ("unknown", Some("unknown")),
        "{d:?}"
    );
    // A collapse id makes a second copy harmless: resent, and the device shows one.
    h.mock.push_faults([Fault::ResetAfterRead]);
    let mut collapsing = notification(2);
    collapsing.collapse_id = Some("score".into());
    let d = router.send(&collapsing).await.unwrap();
    assert_eq!((d.outcome.as_str(), d.attempts), ("accepted", 2), "{d:?}");
    assert_eq!(h.mock.displayed(&device(2)).len(), 1);
    // The sender's permission: the stored unknown of push 1 is sent again.
    let mut allowed = plain.clone();
    allowed.resend_unknown = true;
    let d = router.send(&allowed).await.unwrap();
    assert_eq!(d.outcome, "accepted", "{d:?}");
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_every_refusal_whole_and_a_10_mb_body_gets_its_413_with_json() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is not installed (scripts/test.sh installs it)");
    }
    let h = Harness::new(ApnsFaults::default()).await;
    let relay = h.start_relay("").await;
    let url = format!(
        "http://{}/3/device/{}",
        relay.relay_addr.unwrap(),
        device(1)
    );
    let big = h.path("10mb.json");
    std::fs::write(&big, vec![b'x'; 10 << 20]).unwrap();
    let curl = move |args: Vec<String>| {
        let out = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--http2-prior-knowledge"])
            .args(["--write-out", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A refusal answered while the request was still open used to end in a stream reset that
    // curl reported as "stream 1 closed" (exit 92) in most tries: the relay now reads the body
    // before it answers.
    let refusals: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                let auth = if i % 2 == 0 {
                    "authorization: bearer nope"
                } else {
                    "x-none: 1"
                };
                curl(vec![
                    "-H".into(),
                    auth.into(),
                    "--data".into(),
                    r#"{"aps":{"alert":"hi"}}"#.into(),
                    url,
                ])
            })
        })
        .collect();
    for (i, r) in refusals.into_iter().enumerate() {
        let (code, out, err) = r.await.unwrap();
        assert_eq!(code, Some(0), "try {i}: {err}");
        let reason = if i % 2 == 0 {
            "InvalidProviderToken"
        } else {
            "MissingProviderToken"
        };
        assert_eq!(out, format!("{{\"reason\":\"{reason}\"}}\n403"), "try {i}");
    }
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        curl(vec![
            "-H".into(),
            format!("authorization: bearer {SENDER_TOKEN}"),
            "-H".into(),
            format!("apns-topic: {TOPIC}"),
            "--data-binary".into(),
            format!("@{}", big.display()),
            url,
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "{\"reason\":\"PayloadTooLarge\"}\n413");
    assert_eq!(h.mock.count(), 0);
    let metrics = relay.metrics.render();
    assert!(
        metrics.contains(
            r#"apns_relay_inbound_rejections_total{status="413",reason="PayloadTooLarge"} 1"#
        ),
        "{metrics}"
    );
    relay.shutdown().await;
}
