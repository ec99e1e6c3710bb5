//! A real ZooKeeper server (Debian's `zookeeper` package, 3.8): standalone, on a private
//! loopback address, with its data in a private folder. [`ZooKeeper::stop`] and
//! [`ZooKeeper::start_again`] restart the same server (same address, same data), so a test can
//! keep it down past a client's session timeout and see the session expire.
//!
//! The server is the Java class `QuorumPeerMain` run with `java` straight from the jars Debian
//! installs (`/usr/share/java/zookeeper.jar` names its dependencies in its manifest), from a
//! zoo.cfg written here: `tickTime` 200 ms (so the server accepts session timeouts from 400 ms),
//! the four-letter words `ruok` and `stat` (ready is `stat` answering with the server's version:
//! `ruok` says `imok` before the server takes sessions), no admin HTTP server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{require, Spawned};

/// The jar Debian's `zookeeper` package installs (its manifest lists every dependency).
const JAR: &str = "/usr/share/java/zookeeper.jar";

/// The server's tick (ms): session timeouts are bounded to 2–20 ticks by default.
pub const TICK_MS: u64 = 200;

/// A running (or stopped, to be started again) ZooKeeper server; killed on drop.
pub struct ZooKeeper {
    process: Option<Spawned>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl std::fmt::Debug for ZooKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ZooKeeper({}, up: {})",
            self.addr,
            self.process.is_some()
        )
    }
}

impl ZooKeeper {
    /// Starts a standalone server and waits (15 s at most) until it serves requests.
    pub fn start() -> ZooKeeper {
        require("java");
        assert!(
            Path::new(JAR).is_file(),
            "{JAR} is missing: install Debian's `zookeeper` package (scripts/test.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("testkit-zookeeper-")
            .tempdir()
            .unwrap_or_else(|e| panic!("zookeeper: cannot make a temporary folder: {e}"));
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("zookeeper data folder: {e}"));
        let addr = crate::net::private_addr();
        let cfg = format!(
            "tickTime={TICK_MS}\ndataDir={data}\nclientPort={port}\nclientPortAddress={ip}\n\
             admin.enableServer=false\n4lw.commands.whitelist=ruok,stat\n",
            data = data.display(),
            port = addr.port(),
            ip = addr.ip(),
        );
        std::fs::write(dir.path().join("zoo.cfg"), cfg)
            .unwrap_or_else(|e| panic!("zookeeper zoo.cfg: {e}"));
        let mut zk = ZooKeeper {
            process: None,
            dir,
            addr,
        };
        zk.start_again();
        zk
    }

    /// Starts the server again after [`ZooKeeper::stop`] or [`ZooKeeper::kill`]: same address,
    /// same data (sessions and persistent nodes survive as ZooKeeper keeps them). Waits until it
    /// serves requests (15 s at most).
    pub fn start_again(&mut self) {
        assert!(
            self.process.is_none(),
            "zookeeper {} is already running",
            self.addr
        );
        let mut cmd = Command::new("java");
        cmd.args([
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Xms16m",
            "-Xmx128m",
            "-Dzookeeper.admin.enableServer=false",
        ])
        .arg("-cp")
        .arg(format!("/etc/zookeeper/conf:{JAR}"))
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(self.dir.path().join("zoo.cfg"))
        .stderr(Stdio::null());
        let mut process = Spawned::start(cmd);
        let addr = self.addr;
        if !crate::wait::within(Duration::from_secs(15), || serving(addr)) {
            process.kill();
            panic!("zookeeper did not serve requests on {addr} within 15 s");
        }
        self.process = Some(process);
    }

    /// Stops the server (SIGTERM, 10 s at most), keeping its data for [`ZooKeeper::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Kills the server (SIGKILL), keeping its data for [`ZooKeeper::start_again`].
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connect string (`ip:port`) clients take.
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    /// The server's folder (zoo.cfg and `data/`).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// A four-letter word's answer (empty when the server does not answer).
fn four_letters(addr: SocketAddr, word: &[u8; 4]) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return Vec::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(word).is_err() {
        return Vec::new();
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

/// Whether a server on `addr` answers the four-letter word `ruok` with `imok` (it is up, but
/// may not take sessions yet).
pub fn ruok(addr: SocketAddr) -> bool {
    four_letters(addr, b"ruok") == b"imok"
}

/// Whether a server on `addr` serves requests: `stat` answers with its version (rather than
/// "This ZooKeeper instance is not currently serving requests").
pub fn serving(addr: SocketAddr) -> bool {
    four_letters(addr, b"stat").starts_with(b"Zookeeper version:")
}
