//! What the mock APNs tests share: a mock with token auth, an HTTP/2 client over TLS (the `h2`
//! crate on tokio-rustls, ALPN h2) and a push builder, and nghttp for frame-level checks.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;
use rustls::pki_types::ServerName;
use testbed::apns::{self, MockApnsConfig, MockApnsHandle};
use testbed::pki::{self, IssuedCert, ProviderKey};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const TEAM: &str = "TEAM123456";
pub const TOPIC: &str = "com.example.app";
pub const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// A mock with token auth for one key, and that key.
pub async fn token_mock(
    configure: impl FnOnce(&mut MockApnsConfig),
) -> (MockApnsHandle, ProviderKey) {
    let key = ProviderKey::generate("KEY1234567").unwrap();
    let mut config = MockApnsConfig::with_token_key(TEAM, &key);
    config.topics = vec![TOPIC.into()];
    configure(&mut config);
    (apns::spawn(config).await.unwrap(), key)
}

/// An HTTP/2 connection over TLS (ALPN h2) to the mock.
pub async fn connect(mock: &MockApnsHandle, identity: Option<&IssuedCert>) -> SendRequest<Bytes> {
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
pub struct Reply {
    pub status: u16,
    pub apns_id: Option<String>,
    pub unique_id: Option<String>,
    pub body: Bytes,
    pub stream_id: u32,
}

impl Reply {
    pub fn reason(&self) -> String {
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        body["reason"].as_str().unwrap().to_owned()
    }
}

/// A push: path, headers, body.
pub struct Push {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Push {
    /// A valid alert push to `DEVICE` with the given bearer token.
    pub fn new(jwt: &str) -> Self {
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

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    pub async fn send(&self, client: &SendRequest<Bytes>) -> Result<Reply, h2::Error> {
        let mut stream_id = None;
        self.send_tracked(client, &mut stream_id).await
    }

    /// [`send`](Self::send), noting the stream id once the stream is opened.
    pub async fn send_tracked(
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

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn is_uuid(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok() && id.len() == 36
}

/// Runs nghttp (nghttp2's client) verbosely: it prints every HTTP/2 frame it receives.
pub async fn nghttp(args: &[&str]) -> Option<String> {
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
