//! The `testbed` binary started for real by the CLI tests (on the test kit's [`Spawned`]): its
//! first stdout lines are read (10 s at most), and the process is killed when the test lets go
//! of it.
#![allow(dead_code)] // each test binary uses part of it

use std::process::Command;
use std::time::Duration;

use testkit::Spawned;

/// A running `testbed`.
pub struct Running {
    pub process: Spawned,
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

/// Starts `testbed ARGS…` and waits (10 s at most) for its first `lines` lines.
pub fn start(args: &[&str], lines: usize) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_testbed"));
    cmd.args(args);
    let mut process = Spawned::start(cmd);
    let mut read = 0;
    process.wait_for(Duration::from_secs(10), |_| {
        read += 1;
        (read >= lines).then_some(())
    });
    let lines = process.lines().to_vec();
    Running { process, lines }
}
