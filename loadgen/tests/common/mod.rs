//! Test helpers: run the real `loadgen` binary in a temp folder (ripgrep's harness style).
#![allow(dead_code)]

pub mod synthetic;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_loadgen"));
        c.args(args).current_dir(self.tmp.path());
        c
    }

    pub fn loadgen(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `scenario` (written as s.yaml) with --out out, returns (output, run.json if any).
    pub fn run(&self, scenario: &str) -> (Output, Option<serde_json::Value>) {
        self.write("s.yaml", scenario);
        let out = self.loadgen(&["run", "s.yaml", "--out", "out", "--quiet"]);
        let run = self.run_record();
        (out, run)
    }
}

impl Dir {
    /// The run record written under `out/`, if there is one.
    pub fn run_record(&self) -> Option<serde_json::Value> {
        std::fs::read_to_string(self.tmp.path().join("out/run.json"))
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap())
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that `out` ended with exit code `code` and that its standard error holds `text`;
/// shows what it printed otherwise.
pub fn assert_exit_says(out: &Output, code: i32, text: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(text), "{err}");
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn metric<'a>(run: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    let m = &run["metrics"][key];
    assert!(
        !m.is_null(),
        "no metric {key} in {}",
        run["metrics"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    );
    m
}
