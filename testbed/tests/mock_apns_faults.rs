//! The mock APNs' faults over real TLS and HTTP/2 on loopback: error rates per seed, queued
//! faults, REFUSED_STREAM, reset after read, GOAWAY and its last-stream-id, the stream limit,
//! latency, idle timeout; frame by frame as nghttp sees them.

#[allow(dead_code)] // each test binary uses part of it
mod apns_client;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use apns_client::*;
use testbed::apns::{ApnsFaults, Fault, Reason};

#[tokio::test]
async fn error_rates_are_deterministic_per_seed() {
    let (mock, key) = token_mock(|_| {}).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    let faults = ApnsFaults {
        rate_429: 0.2,
        rate_500: 0.2,
        rate_503: 0.2,
        seed: 42,
        ..ApnsFaults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        mock.set_faults(faults.clone()).unwrap();
        let mut statuses = Vec::new();
        for _ in 0..50 {
            let reply = Push::new(&jwt).send(&client).await.unwrap();
            if reply.status != 200 {
                let expected = match reply.status {
                    429 => "TooManyRequests",
                    500 => "InternalServerError",
                    503 => "ServiceUnavailable",
                    other => panic!("unexpected status {other}"),
                };
                assert_eq!(reply.reason(), expected);
            }
            statuses.push(reply.status);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "same seed, same faults");
    for status in [200, 429, 500, 503] {
        let n = runs[0].iter().filter(|s| **s == status).count();
        assert!(n >= 3, "status {status} seen {n} times in 50");
    }
    let ok = runs.iter().flatten().filter(|s| **s == 200).count();
    assert_eq!(mock.count(), ok, "only 200s are delivered");
    mock.shutdown().await;
}

#[tokio::test]
async fn queued_faults_apply_in_order_exactly() {
    let (mock, key) = token_mock(|_| {}).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    mock.push_faults([
        Fault::Reject(Reason::ServiceUnavailable),
        Fault::Reject(Reason::Shutdown),
        Fault::RefusedStream,
        Fault::ResetAfterRead,
        Fault::Pass,
    ]);
    let reply = Push::new(&jwt).send(&client).await.unwrap();
    assert_eq!(
        (reply.status, reply.reason().as_str()),
        (503, "ServiceUnavailable")
    );
    let reply = Push::new(&jwt).send(&client).await.unwrap();
    assert_eq!((reply.status, reply.reason().as_str()), (503, "Shutdown"));

    let refused = Push::new(&jwt).send(&client).await.unwrap_err();
    assert_eq!(
        refused.reason(),
        Some(h2::Reason::REFUSED_STREAM),
        "{refused}"
    );
    assert!(refused.is_reset() && refused.is_remote(), "{refused:?}");
    assert_eq!(mock.count(), 0, "a refused stream is not processed");

    let id = "00000000-0000-4000-8000-000000000001";
    let reset = Push::new(&jwt)
        .header("apns-id", id)
        .send(&client)
        .await
        .unwrap_err();
    assert_eq!(reset.reason(), Some(h2::Reason::INTERNAL_ERROR), "{reset}");
    // Reset after reading: APNs may have delivered it, and here it did.
    assert_eq!(mock.count(), 1);
    assert!(mock.notifications()[0].reset);
    // The client retries the unknown outcome: the device gets it twice.
    let retry = Push::new(&jwt)
        .header("apns-id", id)
        .send(&client)
        .await
        .unwrap();
    assert_eq!(retry.status, 200);
    assert_eq!(mock.duplicates(), vec![(id.to_owned(), 2)]);
    let stats = mock.stats();
    assert_eq!((stats.refused_streams, stats.resets_after_read), (1, 1));
    assert_eq!(stats.by_reason.get("Shutdown"), Some(&1));
    mock.shutdown().await;
}

#[tokio::test]
async fn refused_stream_rate() {
    let (mock, key) = token_mock(|c| {
        c.faults = ApnsFaults {
            refused_stream_rate: 0.5,
            seed: 3,
            ..ApnsFaults::default()
        }
    })
    .await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    let mut refused = 0;
    for _ in 0..40 {
        match Push::new(&jwt).send(&client).await {
            Ok(reply) => assert_eq!(reply.status, 200),
            Err(error) => {
                assert_eq!(error.reason(), Some(h2::Reason::REFUSED_STREAM));
                refused += 1;
            }
        }
    }
    assert!((8..=32).contains(&refused), "{refused} of 40 refused");
    assert_eq!(mock.count(), 40 - refused);
    assert_eq!(mock.stats().refused_streams, refused as u64);
    mock.shutdown().await;
}

#[tokio::test]
async fn goaway_after_n_streams_serves_up_to_last_stream_id_only() {
    // Sequential: three served, the connection then refuses new streams.
    let (mock, key) = token_mock(|c| c.faults.goaway_after = Some(3)).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    for _ in 0..3 {
        assert_eq!(Push::new(&jwt).send(&client).await.unwrap().status, 200);
    }
    // The GOAWAY left before the third answer: a new stream is not served.
    let error = Push::new(&jwt)
        .send(&client)
        .await
        .expect_err("a stream after GOAWAY must not be served");
    assert!(error.is_go_away(), "{error:?}");
    assert_eq!(mock.count(), 3);
    assert_eq!(mock.stats().goaways, 1);

    // Concurrent: streams in flight when GOAWAY is sent are served when at or below its
    // last-stream-id and not processed above it; what the client saw matches what was
    // recorded exactly.
    mock.clear();
    mock.set_faults(ApnsFaults {
        goaway_after: Some(4),
        latency_ms: 50,
        ..ApnsFaults::default()
    })
    .unwrap();
    let client = connect(&mock, None).await;
    let spawn = |i: usize| {
        let push = Push::new(&jwt).header("apns-id", &format!("00000000-0000-4000-8000-{i:012}"));
        let client = client.clone();
        tokio::spawn(async move {
            let mut stream_id = None;
            let result = push.send_tracked(&client, &mut stream_id).await;
            (i, stream_id, result)
        })
    };
    // Six at once: the fourth triggers the GOAWAY; those the server saw before its final
    // GOAWAY are served.
    let mut results = Vec::new();
    for task in (0..6).map(spawn).collect::<Vec<_>>() {
        results.push(task.await.unwrap());
    }
    // The GOAWAY was written before any answer, so the client knows it now: six more fail.
    for task in (6..12).map(spawn).collect::<Vec<_>>() {
        results.push(task.await.unwrap());
    }
    let mut served = HashSet::new();
    let mut served_ids = Vec::new();
    let mut failed_ids = Vec::new();
    let mut failed = 0;
    for (i, stream_id, result) in results {
        match result {
            Ok(reply) => {
                assert_eq!(reply.status, 200);
                served.insert(format!("00000000-0000-4000-8000-{i:012}"));
                served_ids.push(reply.stream_id);
            }
            Err(error) => {
                assert!(
                    error.is_go_away() || error.reason() == Some(h2::Reason::REFUSED_STREAM),
                    "{error:?}"
                );
                failed += 1;
                failed_ids.extend(stream_id);
            }
        }
    }
    let recorded: HashSet<String> = mock
        .notifications()
        .into_iter()
        .map(|n| n.apns_id)
        .collect();
    assert_eq!(
        recorded, served,
        "recorded exactly what the client saw served"
    );
    assert!(
        served.len() >= 4,
        "at least goaway_after streams are served"
    );
    assert!(failed >= 6, "requests after the GOAWAY are not served");
    // One cut: every served stream is at or below the GOAWAY's last-stream-id; a failed
    // request was either never opened (the client had the GOAWAY) or opened above it.
    let last_served = served_ids.iter().max().unwrap();
    assert!(
        failed_ids.iter().all(|id| id > last_served),
        "served {served_ids:?}, failed {failed_ids:?}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn max_concurrent_streams_is_advertised_and_honoured() {
    let (mock, key) = token_mock(|c| {
        c.faults.max_concurrent_streams = Some(2);
        c.faults.latency_ms = 60;
    })
    .await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    // The first request makes sure the server's SETTINGS have arrived.
    assert_eq!(Push::new(&jwt).send(&client).await.unwrap().status, 200);
    assert_eq!(client.current_max_send_streams(), 2);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let push = Push::new(&jwt);
            let client = client.clone();
            tokio::spawn(async move { push.send(&client).await.map(|r| r.status) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 200);
    }
    assert_eq!(mock.count(), 9);
    assert_eq!(mock.stats().max_concurrent_streams_seen, 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn latency_delays_answers() {
    let (mock, key) = token_mock(|c| c.faults.latency_ms = 80).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    let started = Instant::now();
    assert_eq!(Push::new(&jwt).send(&client).await.unwrap().status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(80),
        "{:?}",
        started.elapsed()
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let (mock, key) = token_mock(|c| c.faults.idle_timeout_ms = Some(100)).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    assert_eq!(Push::new(&jwt).send(&client).await.unwrap().status, 200);
    assert!(
        mock.wait_until(Duration::from_secs(5), |m| m.stats().idle_timeouts == 1)
            .await
    );
    // The client has the GOAWAY once the connection is gone; then a new stream fails.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match client.clone().ready().await {
                Err(error) => break error,
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .expect("the idle connection closes");
    assert!(closed.is_go_away() || closed.is_io(), "{closed:?}");
    let fresh = connect(&mock, None).await;
    assert_eq!(Push::new(&jwt).send(&fresh).await.unwrap().status, 200);
    assert_eq!(mock.count(), 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn frames_as_nghttp_sees_them() {
    let (mock, key) = token_mock(|c| {
        c.faults.goaway_after = Some(2);
        c.faults.max_concurrent_streams = Some(7);
        c.faults.latency_ms = 150;
    })
    .await;
    mock.push_faults([Fault::RefusedStream]);
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload.json");
    std::fs::write(&payload, r#"{"aps":{"alert":"from nghttp"}}"#).unwrap();
    let auth = format!(
        "authorization: bearer {}",
        key.provider_token_now(TEAM).unwrap()
    );
    let urls: Vec<String> = ["0a", "0b", "0c"]
        .iter()
        .map(|t| format!("{}/3/device/{t}", mock.url()))
        .collect();
    let mut args = vec![
        "-nv",
        "-H",
        &auth,
        "-H",
        "apns-topic: com.example.app",
        "-d",
    ];
    args.push(payload.to_str().unwrap());
    args.extend(urls.iter().map(String::as_str));
    let Some(frames) = nghttp(&args).await else {
        return;
    };
    // nghttp opens streams 13, 15, 17 (after its priority streams) in one flight.
    assert!(
        frames.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7]"),
        "{frames}"
    );
    let refused = "recv RST_STREAM frame <length=4, flags=0x00, stream_id=13>\n          \
                   (error_code=REFUSED_STREAM(0x07))";
    assert!(frames.contains(refused), "{frames}");
    // The two-step GOAWAY: first 2^31-1, then the last stream the server saw, all before the
    // delayed answers.
    assert!(
        frames.contains("(last_stream_id=2147483647, error_code=NO_ERROR(0x00)"),
        "{frames}"
    );
    assert!(
        frames.contains("(last_stream_id=17, error_code=NO_ERROR(0x00)"),
        "{frames}"
    );
    assert_eq!(frames.matches(":status: 200").count(), 2, "{frames}");
    assert_eq!(mock.count(), 2);
    mock.shutdown().await;
}
