//! Stock APNs clients from the registries, run as a sender runs them: @parse/node-apn (npm)
//! and aioapns (PyPI), installed by `scripts/test.sh` into `target/stock-clients/` (or
//! `$PUSHBENCH_STOCK_CLIENTS`). Each is driven by a small script in `tests/stock/` that prints
//! one JSON line per push saying what the client reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::apns::MockApnsHandle;

/// What a stock client said about one push.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sent {
    /// The `apns-id` the client sent.
    pub id: String,
    /// The device token.
    pub device: String,
    /// The status the client reported (200: sent), if any.
    pub status: Option<u16>,
    /// The APNs reason the client reported, if any.
    pub reason: Option<String>,
    /// The client's error, if it reported one instead of a status.
    pub error: Option<String>,
}

/// Where the stock clients are installed.
pub struct StockClients {
    root: PathBuf,
}

impl StockClients {
    /// Finds the installed clients; panics, saying how to install them, when they are missing
    /// (these tests are the relay's contract with stock clients: they do not skip).
    pub fn find() -> StockClients {
        let root = std::env::var_os("PUSHBENCH_STOCK_CLIENTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/stock-clients")
            });
        let node = root.join("node/node_modules/@parse/node-apn");
        let py = root.join("py/aioapns");
        assert!(
            node.is_dir() && py.is_dir(),
            "the stock APNs clients are not installed in {} (looked for {} and {}): run \
             scripts/test.sh, which installs them, or set PUSHBENCH_STOCK_CLIENTS",
            root.display(),
            node.display(),
            py.display()
        );
        StockClients { root }
    }

    fn script(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/stock")
            .join(name)
    }

    /// Runs `node_apn_send.js` with `config` (see the script), with `extra_ca` as
    /// `NODE_EXTRA_CA_CERTS` when given.
    pub fn node_apn(&self, config: &serde_json::Value, extra_ca: Option<&Path>) -> Vec<Sent> {
        let mut cmd = Command::new("node");
        cmd.arg(Self::script("node_apn_send.js"))
            .arg(config.to_string())
            .env("NODE_PATH", self.root.join("node/node_modules"));
        if let Some(ca) = extra_ca {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        run(cmd, "node-apn")
    }

    /// Runs `aioapns_send.py` with `config` (see the script).
    pub fn aioapns(&self, config: &serde_json::Value) -> Vec<Sent> {
        let mut cmd = Command::new("python3");
        cmd.arg(Self::script("aioapns_send.py"))
            .arg(config.to_string())
            .env("PYTHONPATH", self.root.join("py"));
        run(cmd, "aioapns")
    }
}

/// Runs a client script to its end (at most two minutes) and parses its lines.
fn run(mut cmd: Command, name: &str) -> Vec<Sent> {
    let started = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} failed ({}): {stderr}",
        out.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{name} took {:?}",
        started.elapsed()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name} printed `{l}`: {e}")))
        .collect()
}

/// Checks that the client sent `n` pushes and was told each was sent, and that the mock's
/// record holds exactly those (apns-id, device token) pairs, none twice.
pub fn assert_mock_holds_exactly(sent: &[Sent], n: usize, mock: &MockApnsHandle) {
    assert_eq!(sent.len(), n, "the client reported on every push");
    let failed: BTreeMap<String, usize> =
        sent.iter()
            .filter(|s| s.status != Some(200))
            .fold(BTreeMap::new(), |mut by, s| {
                let what = format!("{:?} {:?} {:?}", s.status, s.reason, s.error);
                *by.entry(what).or_default() += 1;
                by
            });
    assert!(failed.is_empty(), "pushes the client saw fail: {failed:?}");
    let said: BTreeSet<(String, String)> = sent
        .iter()
        .map(|s| (s.id.to_ascii_lowercase(), s.device.to_ascii_lowercase()))
        .collect();
    assert_eq!(said.len(), n, "the client used every apns-id once");
    let recorded = mock.notifications();
    let held: BTreeSet<(String, String)> = recorded
        .iter()
        .map(|r| {
            (
                r.apns_id.to_ascii_lowercase(),
                r.device_token.to_ascii_lowercase(),
            )
        })
        .collect();
    assert_eq!(recorded.len(), n, "the mock accepted each push once");
    assert!(mock.duplicates().is_empty(), "{:?}", mock.duplicates());
    assert!(
        said == held,
        "the mock's record differs from what the client sent: {} only at the client, {} only \
         at the mock",
        said.difference(&held).count(),
        held.difference(&said).count()
    );
}
