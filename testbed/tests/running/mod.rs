//! The `testbed` binary started for real by the CLI tests: its first stdout lines are read
//! (10 s at most), and the process is killed when the test lets go of it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `testbed`, killed on drop.
pub struct Running {
    pub child: Child,
    /// Its first stdout lines.
    pub lines: Vec<String>,
}

impl Running {
    /// The URL of its `listening on URL` first line.
    pub fn url(&self) -> String {
        let line = &self.lines[0];
        line.strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `testbed ARGS…` and waits (10 s at most) for its first `lines` lines.
pub fn start(args: &[&str], lines: usize) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("testbed starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let lines = (0..lines)
        .map(|_| {
            receive
                .recv_timeout(Duration::from_secs(10))
                .expect("a line within 10 s")
                .expect("readable stdout")
        })
        .collect();
    Running { child, lines }
}
