//! What the discovery tests share: kazoo as a second client ([`kazoo`]), and a TCP proxy in
//! front of ZooKeeper that loses the answer to one create ([`LossyProxy`]).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use discovery::ZkConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One node as kazoo read it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct KazooNode {
    pub name: String,
    pub data: String,
    /// The top-level JSON keys in written order (None: not a JSON object).
    pub keys: Option<Vec<String>>,
    #[serde(rename = "ephemeralOwner")]
    pub ephemeral_owner: i64,
    pub czxid: i64,
}

/// Runs `kazoo_tool.py HOSTS ARGS…` (python3 with kazoo from PyPI) and parses its JSON line.
pub fn kazoo<T: serde::de::DeserializeOwned>(hosts: &str, args: &[&str]) -> T {
    testkit::process::require("python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/kazoo_tool.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(hosts)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    assert!(
        out.status.success(),
        "kazoo {args:?} failed (scripts/test.sh installs kazoo): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kazoo {args:?} printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The children of `path` as kazoo sees them (`None`: no such path).
pub fn children(hosts: &str, path: &str) -> Option<Vec<KazooNode>> {
    kazoo(hosts, &["children", path])
}

/// A config for tests: short session (the server's tick is 200 ms) and connect bounds.
pub fn config(ensemble: &str, session: Duration) -> ZkConfig {
    ZkConfig {
        ensemble: ensemble.to_string(),
        session_timeout: session,
        connect_timeout: Duration::from_secs(5),
    }
}

/// Logs to the test's output (`RUST_LOG` filters; info by default).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// ZooKeeper request types that create a node: create, create2, createContainer, createTTL.
const CREATES: [i32; 4] = [1, 15, 19, 21];

/// A TCP proxy in front of a ZooKeeper server that, once armed, forwards the next create
/// request whose frame contains a byte pattern, reads the server's answer, and when the
/// create succeeded drops that answer and cuts the client's connection: the node exists, the
/// client only sees a lost connection. Other traffic (and the reconnection) passes through.
#[derive(Debug)]
pub struct LossyProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    pattern: Mutex<Option<Vec<u8>>>,
    dropped: AtomicU32,
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LossyProxy {
    /// Listens on 127.0.0.1 (port 0) in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState::default());
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, Arc::clone(&shared)));
            }
        });
        LossyProxy { addr, state, task }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Loses the answer to the next successful create whose request contains `pattern`.
    pub fn arm(&self, pattern: &[u8]) {
        *self.state.pattern.lock().unwrap() = Some(pattern.to_vec());
    }

    /// How many answers were lost.
    pub fn dropped(&self) -> u32 {
        self.state.dropped.load(Ordering::SeqCst)
    }
}

async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let len = r.read_u32().await.ok()? as usize;
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn write_frame(w: &mut (impl AsyncWriteExt + Unpin), body: &[u8]) -> Option<()> {
    w.write_u32(body.len() as u32).await.ok()?;
    w.write_all(body).await.ok()
}

fn int_at(body: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?))
}

/// One client connection: frames both ways (the first each way is the session handshake).
async fn relay(client: TcpStream, server: TcpStream, state: Arc<ProxyState>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let doomed: Arc<Mutex<Option<i32>>> = Arc::default();
    let doomed_up = Arc::clone(&doomed);
    let state_up = Arc::clone(&state);
    let up = tokio::spawn(async move {
        let mut first = true;
        while let Some(body) = read_frame(&mut cr).await {
            let (xid, op) = (int_at(&body, 0), int_at(&body, 4));
            if !first && op.is_some_and(|op| CREATES.contains(&op)) {
                let pattern = state_up.pattern.lock().unwrap().clone();
                if pattern.is_some_and(|p| body.windows(p.len()).any(|w| w == p)) {
                    *doomed_up.lock().unwrap() = xid;
                }
            }
            first = false;
            if write_frame(&mut sw, &body).await.is_none() {
                return;
            }
        }
    });
    let mut first = true;
    while let Some(body) = read_frame(&mut sr).await {
        // Answers: xid, zxid (8 bytes), err.
        let xid = int_at(&body, 0);
        let is_doomed = !first && xid.is_some() && *doomed.lock().unwrap() == xid;
        first = false;
        if is_doomed {
            *doomed.lock().unwrap() = None;
            if int_at(&body, 12) == Some(0) && state.pattern.lock().unwrap().take().is_some() {
                state.dropped.fetch_add(1, Ordering::SeqCst);
                // Cut: the client sees its connection close with the create unanswered.
                up.abort();
                return;
            }
        }
        if write_frame(&mut cw, &body).await.is_none() {
            break;
        }
    }
    up.abort();
}
