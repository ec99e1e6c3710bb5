//! A real `redis-server` (the relay's shared dedupe store): on a Unix socket in a private
//! temporary directory, so no port is involved, with persistence off.

use std::process::Command;
use std::time::Duration;

use crate::process::{require, Spawned};

/// A running redis-server, stopped and its directory removed on drop.
pub struct Redis {
    process: Spawned,
    dir: tempfile::TempDir,
    url: String,
}

impl Redis {
    /// Starts a redis-server and waits (10 s at most) until its socket exists.
    pub fn start() -> Redis {
        require("redis-server");
        let dir = tempfile::Builder::new()
            .prefix("testkit-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("redis-server: cannot make a temporary folder: {e}"));
        let sock = dir.path().join("redis.sock");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--unixsocket")
            .arg(&sock);
        let process = Spawned::start(cmd);
        crate::wait::until(Duration::from_secs(10), "redis-server's socket", || {
            sock.exists()
        });
        Redis {
            process,
            url: format!("redis+unix://{}", sock.display()),
            dir,
        }
    }

    /// The `redis+unix://` URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process (to kill or signal it).
    pub fn process(&mut self) -> &mut Spawned {
        &mut self.process
    }

    /// The data folder.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
