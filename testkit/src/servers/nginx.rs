//! A real nginx (a push gateway nobody here wrote, with nchan; the calibration target with the
//! echo module): the caller gives the `http { … }` block's contents with `{listen}` where the
//! server's address goes; nginx runs in the foreground from a private prefix folder, on a
//! private loopback address, and is stopped on drop, its workers with it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{require, signal_pid, Signal, Spawned};

/// The nginx binary (Debian installs it in /usr/sbin, which a test's PATH may lack).
fn binary() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    require("nginx");
    PathBuf::from("nginx")
}

/// A running nginx.
pub struct Nginx {
    process: Spawned,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `http_block` (its `{listen}` replaced by the address) inside
    /// `http { }`; `modules` are `load_module` paths (e.g. Debian's
    /// `/usr/lib/nginx/modules/ngx_nchan_module.so`), loaded when present. Waits until the
    /// address accepts connections (10 s).
    pub fn start(http_block: &str, modules: &[&str]) -> Nginx {
        let nginx = binary();
        let dir = tempfile::Builder::new()
            .prefix("testkit-nginx-")
            .tempdir()
            .unwrap_or_else(|e| panic!("nginx: cannot make a temporary folder: {e}"));
        for sub in ["logs", "tmp"] {
            let _ = std::fs::create_dir_all(dir.path().join(sub));
        }
        let addr = crate::net::private_addr();
        let loads: String = modules
            .iter()
            .filter(|m| Path::new(m).is_file())
            .map(|m| format!("load_module {m};\n"))
            .collect();
        let tmp = dir.path().join("tmp");
        let conf = format!(
            "{loads}daemon off;\nmaster_process on;\nworker_processes 1;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 16384; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  \
             fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n{block}\n}}\n",
            pid = dir.path().join("nginx.pid").display(),
            err = dir.path().join("logs/error.log").display(),
            tmp = tmp.display(),
            block = http_block.replace("{listen}", &addr.to_string()),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("nginx.conf: {e}"));
        let mut cmd = Command::new(&nginx);
        cmd.arg("-p").arg(dir.path()).arg("-c").arg(&conf_path);
        let mut process = Spawned::start(cmd);
        let up = crate::wait::within(Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        if !up {
            process.kill();
            let log =
                std::fs::read_to_string(dir.path().join("logs/error.log")).unwrap_or_default();
            panic!("nginx did not listen on {addr} within 10 s; error.log:\n{log}");
        }
        Nginx { process, addr, dir }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The master process.
    pub fn process(&mut self) -> &mut Spawned {
        &mut self.process
    }

    /// The worker processes' pids (children of the master), e.g. to SIGSTOP or SIGKILL one.
    pub fn workers(&self) -> Vec<u32> {
        crate::process::children_of(self.process.pid())
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// Fast shutdown (SIGTERM: the master stops its workers), then SIGKILL for workers still
    /// running after 5 s. Killing only the master, as dropping its process does, would leave
    /// the workers running (nchan's keep their subscribers).
    fn drop(&mut self) {
        let workers = self.workers();
        self.process.signal(Signal::SIGTERM);
        let alive = |w: &u32| {
            std::fs::read(format!("/proc/{w}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"nginx: worker"))
        };
        if !crate::wait::within(Duration::from_secs(5), || !workers.iter().any(alive)) {
            for w in workers.iter().filter(|w| alive(w)) {
                signal_pid(*w, Signal::SIGKILL);
            }
        }
    }
}
