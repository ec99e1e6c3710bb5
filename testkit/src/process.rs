//! Real processes in tests: start a binary with its stdout piped, read lines as it prints them
//! (the address it announces), stop it with SIGTERM and wait with a deadline. A process is
//! killed when its handle drops, so a failing test leaves nothing running.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// A started process; killed on drop.
pub struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    name: String,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spawned({} pid {})", self.name, self.child.id())
    }
}

/// Sends every line of `from` into the returned channel, on a thread of its own.
fn line_reader(from: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

impl Spawned {
    /// Starts `cmd` with stdout piped and read as lines (stderr is inherited, so the test log
    /// shows it).
    pub fn start(mut cmd: Command) -> Spawned {
        let name = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        Spawned {
            child,
            lines: line_reader(stdout),
            seen: Vec::new(),
            name,
        }
    }

    /// Starts `cmd` with stderr piped and read as lines, for programs that announce there
    /// (loadgen prints its progress and notices on stderr); stdout is inherited.
    pub fn start_stderr(mut cmd: Command) -> Spawned {
        let name = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        Spawned {
            child,
            lines: line_reader(stderr),
            seen: Vec::new(),
            name,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines read so far.
    pub fn lines(&self) -> &[String] {
        &self.seen
    }

    /// Reads lines until `pick` returns something for one of them (lines already read count);
    /// panics after `within`, or when the process ends first, with what it printed.
    pub fn wait_for<T>(&mut self, within: Duration, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        if let Some(t) = self.seen.iter().find_map(|l| pick(l)) {
            return t;
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = pick(&line);
                    self.seen.push(line);
                    if let Some(t) = found {
                        return t;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} printed nothing expected within {within:?}; its output: {:?}",
                    self.name, self.seen
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "{} ended ({:?}) before printing what was expected; its output: {:?}",
                    self.name,
                    self.child.wait().ok(),
                    self.seen
                ),
            }
        }
    }

    /// The first word after `prefix` on a line (e.g. `"listening on "` → the URL), waiting up
    /// to 30 s for it.
    pub fn announced(&mut self, prefix: &str) -> String {
        self.wait_for(Duration::from_secs(30), |l| {
            l.split_once(prefix)
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_string)
        })
    }

    /// Sends `signal` (e.g. [`Signal::SIGINT`]).
    pub fn signal(&self, signal: Signal) {
        signal_pid(self.child.id(), signal);
    }

    /// Waits for the process to end by itself, at most `within` (then kills it and panics).
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        match self.wait_within(within) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not end within {within:?}", self.name)
            }
        }
    }

    fn wait_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits up to `within` for the process to end; panics (after SIGKILL) if
    /// it does not, since a server that ignores SIGTERM is a defect.
    pub fn stop(&mut self, within: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait(within)
    }

    /// SIGKILL and reap (a crash, as a test wants it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every line the process printed after the lines already read, until it closed the
    /// stream (call after the process ended; waits at most 5 s for each line).
    pub fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.push(l);
        }
        out
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` to process `pid` (one this test started, or a child of it).
pub fn signal_pid(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// The pids of `pid`'s child processes (from `/proc`).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the `(comm)`: state, ppid, …
                    let rest = s.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Whether `program` is on the PATH.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Panics with the fix when `program` is missing: tests that need an outside tool fail, they
/// do not skip, since `scripts/test.sh` installs every one of them.
pub fn require(program: &str) {
    assert!(
        installed(program),
        "`{program}` is not installed; scripts/test.sh installs every outside tool the tests need"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_announcements_and_stops_with_sigterm() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "trap 'exit 7' TERM; echo starting; echo 'listening on http://127.0.0.1:1234 now'; while :; do sleep 0.05; done",
        ]);
        let mut p = Spawned::start(cmd);
        assert_eq!(p.announced("listening on "), "http://127.0.0.1:1234");
        assert_eq!(p.lines().len(), 2);
        let status = p.stop(Duration::from_secs(5));
        assert_eq!(status.code(), Some(7));
    }

    #[test]
    #[should_panic(expected = "ended")]
    fn a_process_that_ends_early_is_reported() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo nothing useful"]);
        let mut p = Spawned::start(cmd);
        p.wait_for(Duration::from_secs(5), |l| {
            l.strip_prefix("addr=").map(str::to_string)
        });
    }
}
