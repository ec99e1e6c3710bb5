//! Network namespaces a test makes for itself (as root): the place for traffic that must not
//! run over loopback, such as a link with real delay and loss (`testbed link` between two
//! namespaces). Each [`Netns`] has a name of its own (`pbns-PID-N-TAG`), its loopback up, and
//! is deleted when the handle drops, also while a failing test unwinds; namespaces left by a
//! test process that was killed are deleted by the next one that makes a namespace.
//!
//! - [`unavailable`] says why namespaces cannot be made here (not root), so a test can skip
//!   with that reason; as root a failure to make one fails the test.
//! - [`Netns::command`] runs a program inside (`ip netns exec`); [`Netns::run`] runs a
//!   closure on a thread inside, and [`Netns::enterer`] puts a runtime's threads inside, so
//!   in-process servers and clients can live in a namespace (sockets belong to the namespace
//!   of the thread that made them).
//! - [`veth`] joins two namespaces with a fast virtual Ethernet pair.
//!
//! Addresses inside test namespaces come from 198.18.0.0/15 (RFC 2544, set aside for
//! benchmarking): private to the namespaces, routed nowhere else.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{setns, CloneFlags};

const PREFIX: &str = "pbns-";
const NETNS_DIR: &str = "/run/netns";

/// Why this process cannot make network namespaces, or `None` when it can (it runs as root).
pub fn unavailable() -> Option<String> {
    if nix::unistd::geteuid().is_root() {
        return None;
    }
    Some("not root: network namespaces, veth pairs and TUN devices need CAP_SYS_ADMIN and CAP_NET_ADMIN (CI runs as root)".into())
}

/// Prints `skipped: TEST: REASON` and returns true when namespaces cannot be made here; a
/// test that needs them starts with `if testkit::netns::skip("name") { return; }`.
pub fn skip(test: &str) -> bool {
    match unavailable() {
        Some(reason) => {
            eprintln!("skipped: {test}: {reason}");
            true
        }
        None => false,
    }
}

/// A network namespace made for a test; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes a namespace named after `tag` (letters, digits and `-`), with `lo` up and IPv6
    /// off (no router solicitations or other chatter on the test's links). Panics with the
    /// cause when it cannot, since as root it should.
    pub fn new(tag: &str) -> Netns {
        sweep_stale();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{tag}", std::process::id());
        run_ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
        ns
    }

    /// The name (`ip netns` lists it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Runs `ip -n NAME ARGS…` and returns what it printed; panics with its stderr when it
    /// fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Sets a sysctl inside the namespace (`ip netns exec NAME sysctl -qw KEY=VALUE` without
    /// needing `sysctl`: the /proc/sys file is written from a thread inside).
    pub fn sysctl(&self, key: &str, value: &str) {
        let file = Path::new("/proc/sys").join(key.replace('.', "/"));
        self.run(|| std::fs::write(&file, value))
            .unwrap_or_else(|e| panic!("{}: cannot set {key}={value}: {e}", self.name));
    }

    /// A command that runs `program` inside the namespace (through `ip netns exec`, which
    /// execs it: the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(ip_binary());
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Moves the calling thread into the namespace (sockets it makes from now on are inside).
    pub fn enter(&self) -> io::Result<()> {
        enter(&self.path())
    }

    /// Runs `f` on a thread inside the namespace and returns its result (a panic in `f` is
    /// passed on).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            let thread = s.spawn(move || {
                enter(&path).unwrap_or_else(|e| panic!("cannot enter {}: {e}", path.display()));
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// A function that moves the calling thread into the namespace, for
    /// `tokio::runtime::Builder::on_thread_start`: every thread of that runtime (workers and
    /// the blocking pool) then makes its sockets inside.
    pub fn enterer(&self) -> impl Fn() + Send + Sync + 'static {
        let path = self.path();
        move || enter(&path).unwrap_or_else(|e| panic!("cannot enter {}: {e}", path.display()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside keep it alive unnamed; their handles kill them.
        let out = Command::new(ip_binary())
            .args(["netns", "delete", &self.name])
            .output();
        if let Ok(out) = out {
            if !out.status.success() {
                eprintln!(
                    "testkit: ip netns delete {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}

fn enter(path: &Path) -> io::Result<()> {
    let ns = File::open(path)?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// iproute2's `ip` (Debian installs it in /usr/sbin and /sbin, which a test's PATH may lack).
fn ip_binary() -> PathBuf {
    for p in ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    crate::process::require("ip");
    PathBuf::from("ip")
}

fn run_ip(args: &[&str]) -> String {
    let out = Command::new(ip_binary())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes namespaces of ours whose process is gone (a test killed before its drops ran).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = Command::new(ip_binary())
                .args(["netns", "delete", &name])
                .output();
        }
    }
}

/// Joins `a` and `b` with a veth pair named `dev` on both sides, addressed `a_addr` and
/// `b_addr` (`198.18.1.1/24`) and up: a fast link (no delay, no loss) between them.
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str, dev: &str) {
    a.ip(&[
        "link",
        "add",
        dev,
        "type",
        "veth",
        "peer",
        "name",
        dev,
        "netns",
        b.name(),
    ]);
    for (ns, addr) in [(a, a_addr), (b, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn namespaces_are_joined_by_veth_and_removed_on_drop_even_after_a_panic() {
        if skip("namespaces_are_joined_by_veth_and_removed_on_drop_even_after_a_panic") {
            return;
        }
        let flag = "/proc/sys/net/ipv6/conf/all/disable_ipv6";
        let root_flag = std::fs::read_to_string(flag).unwrap();
        let (a, b) = (Netns::new("ta"), Netns::new("tb"));
        // The sysctl is set inside, and only there.
        let inside = a.command("cat").arg(flag).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&inside.stdout).trim(), "1");
        assert_eq!(std::fs::read_to_string(flag).unwrap(), root_flag);
        veth(&a, "198.18.1.1/24", &b, "198.18.1.2/24", "pbv");
        let server = b.run(|| UdpSocket::bind("198.18.1.2:0").unwrap());
        let client = a.run(|| UdpSocket::bind("198.18.1.1:0").unwrap());
        client
            .send_to(b"hello", server.local_addr().unwrap())
            .unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"hello"[..], client.local_addr().unwrap())
        );
        // The root namespace has no route into the test subnet.
        assert!(UdpSocket::bind("198.18.1.1:0").is_err());
        // A command runs inside: it sees the veth, not the root namespace's devices.
        let out = a.command("cat").arg("/proc/net/dev").output().unwrap();
        let devices = String::from_utf8_lossy(&out.stdout);
        assert!(devices.contains("pbv:"), "{devices}");
        assert!(a.ip(&["-o", "link"]).contains("pbv@"));

        let path = a.path();
        let unwound = std::panic::catch_unwind(move || {
            let _a = a;
            panic!("a failing test");
        });
        assert!(unwound.is_err());
        assert!(!path.exists(), "{} left behind", path.display());
        let path = b.path();
        drop(b);
        assert!(!path.exists());
    }
}
