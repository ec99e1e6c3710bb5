//! A real `redis-server` for tests that need Redis (the relay's shared dedupe store): started
//! on a Unix socket in a private temporary directory, with persistence off, and killed when
//! the handle drops. `scripts/test.sh` installs `redis-server`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a redis-server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    /// The temporary directory or the process could not be created.
    #[error("redis-server: {0} (scripts/test.sh installs it)")]
    Spawn(#[from] std::io::Error),
    /// The server did not open its socket in time.
    #[error("redis-server did not open {0} within 10 s")]
    NotReady(PathBuf),
}

/// A running redis-server, killed (and its directory removed) on drop.
pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl RedisServer {
    /// Starts a redis-server and waits until its socket exists.
    pub async fn start() -> Result<RedisServer, RedisServerError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "testbed-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let sock = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--unixsocket")
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()?;
        let server = RedisServer {
            child,
            url: format!("redis+unix://{}", sock.display()),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            if Instant::now() >= deadline {
                return Err(RedisServerError::NotReady(sock));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(server)
    }

    /// The `redis+unix://` URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
