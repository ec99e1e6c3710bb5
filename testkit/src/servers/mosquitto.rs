//! A real mosquitto (Debian's `mosquitto`, an MQTT 3.1.1 and 5 broker): MQTT over TCP on a
//! private loopback address, MQTT over WebSocket beside it, anonymous clients allowed,
//! persistence on in a private folder, so [`Mosquitto::restart`] brings back persistent
//! sessions and their queued messages. Stopped on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{require, Spawned};

/// The mosquitto binary (Debian installs it in /usr/sbin, which a test's PATH may lack).
fn binary() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    require("mosquitto");
    PathBuf::from("mosquitto")
}

/// A port free on every address: mosquitto's WebSocket listener (libwebsockets) binds all
/// addresses whatever address it is given; clients still reach it on 127.0.0.1.
fn any_address_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind 0.0.0.0:0: {e}"))
}

/// A running mosquitto.
pub struct Mosquitto {
    process: Option<Spawned>,
    addr: SocketAddr,
    ws_addr: SocketAddr,
    conf: PathBuf,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto with anonymous clients allowed and persistence on.
    pub fn start() -> Mosquitto {
        Self::start_with("")
    }

    /// Starts mosquitto with `extra` lines added to its configuration (e.g. a password file
    /// with `allow_anonymous false`). Waits until both listeners accept connections (10 s).
    pub fn start_with(extra: &str) -> Mosquitto {
        let dir = tempfile::Builder::new()
            .prefix("testkit-mosquitto-")
            .tempdir()
            .unwrap_or_else(|e| panic!("mosquitto: cannot make a temporary folder: {e}"));
        // Started as root, mosquitto drops to its own user: it must write its log and
        // persistence file here.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777));
        }
        let addr = crate::net::private_addr();
        let ws_addr = SocketAddr::from(([127, 0, 0, 1], any_address_port()));
        // Later settings of the same name win in mosquitto.conf, so `extra` can override.
        let anonymous = if extra.contains("allow_anonymous") {
            ""
        } else {
            "allow_anonymous true\n"
        };
        let conf = format!(
            "per_listener_settings false\n{anonymous}persistence true\npersistence_location {data}/\n\
             autosave_interval 1\nlog_dest file {data}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\n\
             max_queued_messages 100000\n\
             listener {port} {ip}\nlistener {ws_port}\nprotocol websockets\n{extra}\n",
            data = dir.path().display(),
            port = addr.port(),
            ip = addr.ip(),
            ws_port = ws_addr.port(),
        );
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("mosquitto.conf: {e}"));
        let mut m = Mosquitto {
            process: None,
            addr,
            ws_addr,
            conf: conf_path,
            dir,
        };
        m.launch();
        m
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.arg("-c").arg(&self.conf);
        let mut process = Spawned::start(cmd);
        let (addr, ws) = (self.addr, self.ws_addr);
        let up = crate::wait::within(Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_ok() && std::net::TcpStream::connect(ws).is_ok()
        });
        if !up {
            process.kill();
            panic!(
                "mosquitto did not listen on {addr} and {ws} within 10 s; its log:\n{}",
                self.log()
            );
        }
        self.process = Some(process);
    }

    /// MQTT over TCP: where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://ADDR`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT` (MQTT over WebSocket; mosquitto takes any path).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// Stops the broker with SIGTERM (it saves its persistence file then), within 10 s.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Stops the broker and starts it again on the same addresses, from its saved state.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// What it logged so far (errors, warnings, notices), over its restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Its folder (configuration, persistence file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
