//! The mock APNs over real TLS and HTTP/2 on loopback, driven by the `h2` client (and curl
//! where installed): success and `apns-id`, every validation reason, provider tokens,
//! certificate auth, ALPN, and each fault.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;
use rustls::pki_types::ServerName;
use testbed::apns::{
    self, ApnsFaults, Auth, CertificateAuth, Environment, Fault, MockApnsConfig, MockApnsHandle,
    Reason,
};
use testbed::pki::{self, CertificateAuthority, IssuedCert, ProviderKey};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const TEAM: &str = "TEAM123456";
const TOPIC: &str = "com.example.app";
const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// A mock with token auth for one key, and that key.
async fn token_mock(configure: impl FnOnce(&mut MockApnsConfig)) -> (MockApnsHandle, ProviderKey) {
    let key = ProviderKey::generate("KEY1234567").unwrap();
    let mut config = MockApnsConfig::with_token_key(TEAM, &key);
    config.topics = vec![TOPIC.into()];
    configure(&mut config);
    (apns::spawn(config).await.unwrap(), key)
}

/// An HTTP/2 connection over TLS (ALPN h2) to the mock.
async fn connect(mock: &MockApnsHandle, identity: Option<&IssuedCert>) -> SendRequest<Bytes> {
    let config = pki::h2_client_config(mock.ca_pem(), identity).unwrap();
    let tcp = TcpStream::connect(mock.addr()).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

/// What came back for one request.
#[derive(Debug)]
struct Reply {
    status: u16,
    apns_id: Option<String>,
    unique_id: Option<String>,
    body: Bytes,
    stream_id: u32,
}

impl Reply {
    fn reason(&self) -> String {
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        body["reason"].as_str().unwrap().to_owned()
    }
}

/// A push: path, headers, body.
struct Push {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Push {
    /// A valid alert push to `DEVICE` with the given bearer token.
    fn new(jwt: &str) -> Self {
        Self {
            method: "POST",
            path: format!("/3/device/{DEVICE}"),
            headers: vec![
                ("authorization".into(), format!("bearer {jwt}")),
                ("apns-topic".into(), TOPIC.into()),
                ("apns-push-type".into(), "alert".into()),
            ],
            body: br#"{"aps":{"alert":"hello"}}"#.to_vec(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.into()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    async fn send(&self, client: &SendRequest<Bytes>) -> Result<Reply, h2::Error> {
        let mut stream_id = None;
        self.send_tracked(client, &mut stream_id).await
    }

    /// [`send`](Self::send), noting the stream id once the stream is opened.
    async fn send_tracked(
        &self,
        client: &SendRequest<Bytes>,
        opened: &mut Option<u32>,
    ) -> Result<Reply, h2::Error> {
        let mut request = Request::builder()
            .method(self.method)
            .uri(format!("https://localhost{}", self.path));
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(()).unwrap();
        let mut client = client.clone().ready().await?;
        let (response, mut stream) = client.send_request(request, self.body.is_empty())?;
        let stream_id = u32::from(response.stream_id());
        *opened = Some(stream_id);
        if !self.body.is_empty() {
            stream.send_data(Bytes::from(self.body.clone()), true)?;
        }
        let response = response.await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (status, apns_id, unique_id) = (
            response.status().as_u16(),
            header("apns-id"),
            header("apns-unique-id"),
        );
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            apns_id,
            unique_id,
            body: bytes.into(),
            stream_id,
        })
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn is_uuid(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok() && id.len() == 36
}

#[tokio::test]
async fn accepts_echoes_or_generates_apns_id_and_records() {
    let (mock, key) = token_mock(|_| {}).await;
    assert!(
        mock.url().starts_with("https://127.0.0.1:"),
        "{}",
        mock.url()
    );
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;

    let id = "123e4567-e89b-12d3-a456-4266554400a0";
    let echoed = Push::new(&jwt)
        .header("apns-id", id)
        .header("apns-collapse-id", "score")
        .header("apns-priority", "5")
        .header("apns-expiration", "0")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.apns_id.as_deref(), Some(id));
    assert!(echoed.body.is_empty());
    assert_eq!(echoed.unique_id, None, "production has no apns-unique-id");

    let generated = Push::new(&jwt).send(&client).await.unwrap();
    assert_eq!(generated.status, 200);
    let generated_id = generated.apns_id.unwrap();
    assert!(is_uuid(&generated_id), "{generated_id}");

    let notifications = mock.notifications();
    assert_eq!(mock.count(), 2);
    let first = &notifications[0];
    assert_eq!(first.apns_id, id);
    assert_eq!(first.device_token, DEVICE);
    assert_eq!(first.topic.as_deref(), Some(TOPIC));
    assert_eq!(first.collapse_id.as_deref(), Some("score"));
    assert_eq!(first.push_type.as_deref(), Some("alert"));
    assert_eq!(first.priority, Some(5));
    assert_eq!(first.expiration, Some(0));
    assert_eq!(&first.payload[..], br#"{"aps":{"alert":"hello"}}"#);
    assert!(!first.reset);
    assert_eq!(first.key_id.as_deref(), Some("KEY1234567"));
    let iat = first.token_issued_at.unwrap();
    assert!(iat.abs_diff(now_secs()) < 60, "{iat}");
    assert_eq!(first.connection, 1);
    assert_eq!(notifications[1].apns_id, generated_id);
    // The second notification has no collapse id: the device shows both.
    assert_eq!(mock.displayed(DEVICE).len(), 2);
    // A second connection is numbered 2.
    let second = connect(&mock, None).await;
    assert_eq!(Push::new(&jwt).send(&second).await.unwrap().status, 200);
    assert_eq!(mock.notifications()[2].connection, 2);
    assert_eq!(mock.stats().connections, 2);
    assert!(mock.duplicates().is_empty());
    assert_eq!(mock.stats().by_status.get(&200), Some(&3));
    mock.shutdown().await;
}

#[tokio::test]
async fn sandbox_adds_unique_id_and_collapse_replaces() {
    let (mock, key) = token_mock(|c| c.environment = Environment::Sandbox).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    for text in ["1-0", "2-0"] {
        let body = format!(r#"{{"aps":{{"alert":"{text}"}}}}"#);
        let mut push = Push::new(&jwt).header("apns-collapse-id", "score");
        push.body = body.into_bytes();
        let reply = push.send(&client).await.unwrap();
        assert_eq!(reply.status, 200);
        assert!(is_uuid(reply.unique_id.as_deref().unwrap()));
    }
    let shown = mock.displayed(DEVICE);
    assert_eq!(shown.len(), 1, "same collapse id: one notification shown");
    assert!(std::str::from_utf8(&shown[0].payload)
        .unwrap()
        .contains("2-0"));
    mock.shutdown().await;
}

#[tokio::test]
async fn every_validation_reason() {
    let (mock, key) = token_mock(|_| {}).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    let base = || Push::new(&jwt);
    let with_body = |body: &[u8]| {
        let mut push = Push::new(&jwt);
        push.body = body.to_vec();
        push
    };
    let with_path = |path: &str| {
        let mut push = Push::new(&jwt);
        push.path = path.into();
        push
    };
    let mut get = base();
    get.method = "GET";
    let mut duplicate = base();
    duplicate.headers.push(("apns-topic".into(), TOPIC.into()));
    let cases: Vec<(Push, u16, &str)> = vec![
        (with_path("/3/device/abc"), 400, "BadDeviceToken"),
        (with_path("/3/device/zz11"), 400, "BadDeviceToken"),
        (with_path("/3/device/"), 400, "MissingDeviceToken"),
        (with_path("/2/device/ab"), 404, "BadPath"),
        (with_path("/3/device/ab/cd"), 404, "BadPath"),
        (get, 405, "MethodNotAllowed"),
        (base().without("apns-topic"), 400, "MissingTopic"),
        (
            base().header("apns-topic", "com.other.app"),
            400,
            "TopicDisallowed",
        ),
        (
            base().header("apns-collapse-id", &"c".repeat(65)),
            400,
            "BadCollapseId",
        ),
        (base().header("apns-priority", "11"), 400, "BadPriority"),
        (
            base().header("apns-expiration", "tomorrow"),
            400,
            "BadExpirationDate",
        ),
        (
            base().header("apns-push-type", "telegram"),
            400,
            "InvalidPushType",
        ),
        (base().header("apns-id", "42"), 400, "BadMessageId"),
        (duplicate, 400, "DuplicateHeaders"),
        (with_body(b""), 400, "PayloadEmpty"),
        (with_body(b"not json"), 400, "BadPayload"),
        (with_body(b"[\"an array\"]"), 400, "BadPayload"),
    ];
    for (push, status, reason) in cases {
        let reply = push.send(&client).await.unwrap();
        assert_eq!(
            (reply.status, reply.reason().as_str()),
            (status, reason),
            "{}",
            push.path
        );
        assert!(reply.apns_id.is_some(), "errors carry an apns-id too");
    }
    // Valid edge cases: a short even-length token, a 64-byte collapse id, the voip topic.
    for push in [
        with_path("/3/device/AB"),
        base().header("apns-collapse-id", &"c".repeat(64)),
        base()
            .header("apns-topic", "com.example.app.voip")
            .header("apns-push-type", "voip"),
        base().without("apns-push-type").without("apns-id"),
    ] {
        assert_eq!(
            push.send(&client).await.unwrap().status,
            200,
            "{}",
            push.path
        );
    }
    assert_eq!(mock.count(), 4, "refused requests are not recorded");
    mock.shutdown().await;
}

#[tokio::test]
async fn provider_tokens_missing_invalid_expired_and_updated_too_often() {
    let (mock, key) = token_mock(|_| {}).await;
    let client = connect(&mock, None).await;
    let reason = |reply: Reply| (reply.status, reply.reason());
    let now = now_secs();

    let missing = Push::new("x")
        .without("authorization")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(reason(missing), (403, "MissingProviderToken".into()));
    let garbage = Push::new("not.a.jwt").send(&client).await.unwrap();
    assert_eq!(reason(garbage), (403, "InvalidProviderToken".into()));
    let wrong_team = key.provider_token("OTHERTEAM1", now).unwrap();
    let reply = Push::new(&wrong_team).send(&client).await.unwrap();
    assert_eq!(reason(reply), (403, "InvalidProviderToken".into()));
    let impostor = ProviderKey::generate(key.key_id()).unwrap();
    let forged = impostor.provider_token(TEAM, now).unwrap();
    let reply = Push::new(&forged).send(&client).await.unwrap();
    assert_eq!(
        reason(reply),
        (403, "InvalidProviderToken".into()),
        "bad signature"
    );
    let unknown = ProviderKey::generate("UNKNOWNKID").unwrap();
    let reply = Push::new(&unknown.provider_token(TEAM, now).unwrap())
        .send(&client)
        .await
        .unwrap();
    assert_eq!(
        reason(reply),
        (403, "InvalidProviderToken".into()),
        "unknown kid"
    );
    let old = key.provider_token(TEAM, now - 3601).unwrap();
    let reply = Push::new(&old).send(&client).await.unwrap();
    assert_eq!(reason(reply), (403, "ExpiredProviderToken".into()));

    let first = key.provider_token(TEAM, now - 10).unwrap();
    assert_eq!(Push::new(&first).send(&client).await.unwrap().status, 200);
    // The same token again is fine; a new one a few seconds later is an update too soon.
    assert_eq!(Push::new(&first).send(&client).await.unwrap().status, 200);
    let second = key.provider_token(TEAM, now).unwrap();
    let reply = Push::new(&second).send(&client).await.unwrap();
    assert_eq!(reason(reply), (429, "TooManyProviderTokenUpdates".into()));
    assert_eq!(mock.count(), 2);
    mock.shutdown().await;

    // With the check off, tokens may change at will.
    let (mock, key) = token_mock(|c| {
        if let Auth::Token(auth) = &mut c.auth {
            auth.min_update_interval = None;
        }
    })
    .await;
    let client = connect(&mock, None).await;
    for iat in [now - 20, now - 10, now] {
        let jwt = key.provider_token(TEAM, iat).unwrap();
        assert_eq!(Push::new(&jwt).send(&client).await.unwrap().status, 200);
    }
    mock.shutdown().await;
}

#[tokio::test]
async fn unregistered_tokens_get_410_with_timestamp() {
    let configured = "00ff".to_owned();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (mock, key) = token_mock(|c| {
        c.unregistered = HashSet::from([configured.clone()]);
    })
    .await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    let mut push = Push::new(&jwt);
    push.path = "/3/device/00FF".into();
    let reply = push.send(&client).await.unwrap();
    assert_eq!(reply.status, 410);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["reason"], "Unregistered");
    let timestamp = body["timestamp"].as_u64().expect("a numeric timestamp");
    assert!(timestamp >= before, "{timestamp} < {before}");

    assert_eq!(Push::new(&jwt).send(&client).await.unwrap().status, 200);
    mock.unregister(DEVICE);
    let reply = Push::new(&jwt).send(&client).await.unwrap();
    assert_eq!(
        (reply.status, reply.reason().as_str()),
        (410, "Unregistered")
    );
    assert_eq!(mock.count(), 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn payload_limits_4096_and_voip_5120() {
    let (mock, key) = token_mock(|_| {}).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    // A JSON object of exactly `size` bytes.
    let object = |size: usize| format!(r#"{{"a":"{}"}}"#, "x".repeat(size - 8)).into_bytes();
    let push = |size: usize, voip: bool| {
        let mut push = Push::new(&jwt);
        if voip {
            push = push
                .header("apns-push-type", "voip")
                .header("apns-topic", "com.example.app.voip");
        }
        push.body = object(size);
        push
    };
    assert_eq!(object(4096).len(), 4096);
    let cases = [
        (4096, false, 200),
        (4097, false, 413),
        (5120, true, 200),
        (5121, true, 413),
        (5120, false, 413),
        (100_000, false, 413),
    ];
    for (size, voip, status) in cases {
        let reply = push(size, voip).send(&client).await.unwrap();
        assert_eq!(reply.status, status, "{size} bytes, voip {voip}");
        if status == 413 {
            assert_eq!(reply.reason(), "PayloadTooLarge");
        }
    }
    assert_eq!(mock.count(), 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn certificate_auth_accepts_issued_certs_and_refuses_others() {
    let provider_ca = CertificateAuthority::new("provider CA").unwrap();
    let config = MockApnsConfig {
        auth: Auth::Certificate(CertificateAuth {
            client_ca_pem: provider_ca.cert_pem().to_owned(),
        }),
        topics: vec![TOPIC.into()],
        ..MockApnsConfig::default()
    };
    let mock = apns::spawn(config).await.unwrap();
    let good = provider_ca.issue_client(TOPIC).unwrap();
    let client = connect(&mock, Some(&good)).await;
    // One topic in the certificate: apns-topic may be left out.
    let reply = Push::new("ignored")
        .without("authorization")
        .without("apns-topic")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(mock.notifications()[0].topic.as_deref(), Some(TOPIC));
    assert_eq!(
        mock.notifications()[0].key_id,
        None,
        "no token under certificate auth"
    );

    let stranger = CertificateAuthority::new("someone else")
        .unwrap()
        .issue_client(TOPIC)
        .unwrap();
    let client = connect(&mock, Some(&stranger)).await;
    let reply = Push::new("x")
        .without("authorization")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.reason().as_str()),
        (403, "BadCertificate")
    );

    let client = connect(&mock, None).await;
    let reply = Push::new("x")
        .without("authorization")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.reason().as_str()),
        (403, "MissingProviderToken")
    );
    assert_eq!(mock.count(), 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn alpn_h2_only() {
    let (mock, _key) = token_mock(|_| {}).await;
    let handshake = |alpn: Vec<Vec<u8>>| {
        let mut config = pki::h2_client_config(mock.ca_pem(), None).unwrap();
        config.alpn_protocols = alpn;
        let addr = mock.addr();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
        }
    };
    let http1 = handshake(vec![b"http/1.1".to_vec()]).await;
    let error = http1.expect_err("an http/1.1-only client must fail the handshake");
    assert!(
        error.to_string().contains("NoApplicationProtocol"),
        "{error}"
    );
    // Without ALPN the handshake completes but the mock closes at once: no HTTP/2.
    let plain = handshake(Vec::new()).await.unwrap();
    let refused = match h2::client::handshake(plain).await {
        Err(_) => true,
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Push::new("x").send(&client).await.is_err()
        }
    };
    assert!(refused, "a client without ALPN h2 must not be served");
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.stats().handshake_failures < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(mock.stats().handshake_failures, 2);
    assert_eq!(mock.stats().connections, 0);
    mock.shutdown().await;
}

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
async fn curl_http2_client() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: curl is not installed (scripts/test.sh installs it)");
        return;
    }
    let (mock, key) = token_mock(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, mock.ca_pem()).unwrap();
    let jwt = key.provider_token_now(TEAM).unwrap();
    let url = format!("{}/3/device/{DEVICE}", mock.url());
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--http2", "--cacert"])
        .arg(&ca)
        .args(["--write-out", "\n%{http_version} %{http_code}", "--include"])
        .args(["-H", &format!("authorization: bearer {jwt}")])
        .args([
            "-H",
            &format!("apns-topic: {TOPIC}"),
            "-H",
            "apns-push-type: alert",
        ])
        .args(["-H", "apns-id: 5a2b0c3d-1111-4222-8333-944455556666"])
        .args(["--data", r#"{"aps":{"alert":"from curl"}}"#, &url])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.trim_end().ends_with("2 200"), "{stdout}");
    assert!(
        stdout.contains("apns-id: 5a2b0c3d-1111-4222-8333-944455556666"),
        "{stdout}"
    );
    assert_eq!(mock.count(), 1);

    // An error as curl sees it.
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--http2", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("apns-topic: {TOPIC}"), "--data", "{}", &url])
        .output()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["reason"], "MissingProviderToken");
    // curl forced to HTTP/1.1 cannot talk to it.
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--http1.1", "--cacert"])
        .arg(&ca)
        .args(["--data", "{}", &url])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "HTTP/1.1 must fail");
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_config_is_refused() {
    let config = MockApnsConfig {
        faults: ApnsFaults {
            rate_503: 2.0,
            ..ApnsFaults::default()
        },
        ..MockApnsConfig::default()
    };
    let error = apns::spawn(config).await.unwrap_err();
    assert_eq!(error.to_string(), "rate_503 must be between 0 and 1, got 2");
    let config = MockApnsConfig {
        auth: Auth::Certificate(CertificateAuth {
            client_ca_pem: "not a pem".into(),
        }),
        ..MockApnsConfig::default()
    };
    let error = apns::spawn(config).await.unwrap_err();
    assert!(error.to_string().contains("CA"), "{error}");
}

#[tokio::test]
async fn device_bound_to_another_topic() {
    let (mock, key) = token_mock(|c| c.topics.push("com.example.other".into())).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    mock.set_device_topic(DEVICE, "com.example.other");
    let reply = Push::new(&jwt).send(&client).await.unwrap();
    assert_eq!(
        (reply.status, reply.reason().as_str()),
        (400, "DeviceTokenNotForTopic")
    );
    let reply = Push::new(&jwt)
        .header("apns-topic", "com.example.other.voip")
        .header("apns-push-type", "voip")
        .send(&client)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    mock.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_streams_then_closes() {
    let (mock, key) = token_mock(|c| c.faults.latency_ms = 150).await;
    let jwt = key.provider_token_now(TEAM).unwrap();
    let client = connect(&mock, None).await;
    let addr = mock.addr();
    let in_flight = tokio::spawn({
        let push = Push::new(&jwt);
        let client = client.clone();
        async move { push.send(&client).await }
    });
    assert!(
        mock.wait_until(Duration::from_secs(5), |m| m.stats().streams == 1)
            .await,
        "the request reached the mock"
    );
    let started = Instant::now();
    mock.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let reply = in_flight.await.unwrap().expect("answered before closing");
    assert_eq!(reply.status, 200);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
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

/// Runs nghttp (nghttp2's client) verbosely: it prints every HTTP/2 frame it receives.
async fn nghttp(args: &[&str]) -> Option<String> {
    if std::process::Command::new("nghttp")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: nghttp is not installed (scripts/test.sh installs nghttp2-client)");
        return None;
    }
    let output = tokio::process::Command::new("nghttp")
        .args(args)
        .output()
        .await
        .unwrap();
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
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
