//! `loadgen report` (render, merge) and `run --report/--baseline`, run as the real
//! binary in a temp folder.

mod common;

use common::synthetic::run_json;
use common::{assert_exit_says, stderr, stdout, Dir};
use reports::{MetricKey, Run};

#[test]
fn report_renders_every_format() {
    let d = Dir::new();
    d.write("run.json", &run_json("quick", 2_000, 100, 0));
    let out = d.loadgen(&["report", "run.json", "--format", "md", "-o", "out/r.md"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let md = std::fs::read_to_string(d.path().join("out/r.md")).unwrap();
    assert!(md.starts_with("## ✅ pushbench: quick passed"), "{md}");

    let out = d.loadgen(&[
        "report",
        "run.json",
        "--report",
        "html=r.html",
        "--report",
        "junit=r.xml",
        "--report",
        "hlog=r.hlog",
        "--report",
        "json=r.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html = std::fs::read_to_string(d.path().join("r.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("chart-percentiles"));
    let xml = std::fs::read_to_string(d.path().join("r.xml")).unwrap();
    assert!(
        xml.contains("<testcase name=\"http_req_failed rate &lt; 1%\""),
        "{xml}"
    );
    let hlog = std::fs::read_to_string(d.path().join("r.hlog")).unwrap();
    assert!(
        hlog.contains("#[StartTime: ") && hlog.contains("Tag=http_req_duration{journey=unicast},"),
        "{hlog}"
    );
    let json = std::fs::read_to_string(d.path().join("r.json")).unwrap();
    Run::from_json_str(&json).unwrap();

    // The format follows -o's extension; without -o the terminal table goes to stdout.
    let out = d.loadgen(&["report", "run.json", "-o", "x.html"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(std::fs::read_to_string(d.path().join("x.html"))
        .unwrap()
        .starts_with("<!DOCTYPE html>"));
    let out = d.loadgen(&["report", "run.json"]);
    assert!(
        stdout(&out).contains("http_req_duration"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_run_files_name_file_line_and_column() {
    let d = Dir::new();
    d.write(
        "bad.json",
        "{\n  \"version\": 1,\n  \"scenario\": oops\n}\n",
    );
    let out = d.loadgen(&["report", "bad.json", "--format", "md"]);
    assert_exit_says(&out, 2, "bad.json:3:");
    let out = d.loadgen(&["report", "missing.json"]);
    assert_exit_says(&out, 2, "missing.json: cannot read");
    let out = d.loadgen(&["report", "bad.json", "--report", "pdf=x.pdf"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects it");
    assert!(stderr(&out).contains("`pdf`"), "{}", stderr(&out));
}

#[test]
fn merge_adds_runs_exactly() {
    let d = Dir::new();
    d.write("a.json", &run_json("quick", 2_000, 100, 1));
    d.write("b.json", &run_json("quick", 4_000, 50, 50));
    let out = d.loadgen(&["report", "merge", "a.json", "b.json", "-o", "all.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all =
        Run::from_json_str(&std::fs::read_to_string(d.path().join("all.json")).unwrap()).unwrap();
    let key: MetricKey = "http_req_duration{journey=unicast}".parse().unwrap();
    let h = all.histogram(&key).unwrap().unwrap();
    assert_eq!(h.len(), 750);
    assert_eq!(h.count_between(2_000, 2_009), 500);
    assert_eq!(h.count_between(4_000, 4_009), 250);
    // The thresholds the inputs carried are evaluated again on the merged numbers.
    assert_eq!(all.thresholds.len(), 2);
    let failed = &all.thresholds[0];
    assert_eq!(failed.metric, "http_req_failed");
    assert!(!failed.ok, "255 of 750 failed: {failed:?}");

    d.write("other.json", &run_json("another", 2_000, 100, 0));
    let out = d.loadgen(&["report", "merge", "a.json", "other.json", "-o", "x.json"]);
    assert_exit_says(&out, 2, "other.json: runs of different scenarios");
}

const QUICK: &str = "version: 1
name: quick
target: { embedded: gateway, faults: { latency: LATENCY } }
duration: 2s
senders:
  - name: unicast
    rate: { per_second: 100 }
    pool: { connections: 8 }
    steps:
      - post: \"{{base_url}}/broadcast\"
        json: { body: x }
        expect: { status: 202 }
";

#[test]
fn run_writes_reports_and_gates_on_the_baseline() {
    let d = Dir::new();
    d.write("fast.yaml", &QUICK.replace("LATENCY", "1ms"));
    d.write("slow.yaml", &QUICK.replace("LATENCY", "30ms"));
    let out = d.loadgen(&["run", "fast.yaml", "--out", "base", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The record carries the exact load shape that baselines compare.
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("base/run.json")).unwrap())
            .unwrap();
    assert_eq!(
        base["meta"]["load_shape"],
        serde_json::json!({"users": null, "rates": [{"sender": "unicast", "segments": [[0.0, 2.0, 100.0, 100.0]]}]})
    );

    let out = d.loadgen(&[
        "run",
        "slow.yaml",
        "--out",
        "new",
        "--quiet",
        "--baseline",
        "base/run.json",
        "--report",
        "html=new/report.html",
        "--report",
        "md=new/summary.md",
    ]);
    assert_exit_says(&out, 99, "baseline regressed");
    assert!(
        d.path().join("new/run.json").exists(),
        "the record is written first"
    );
    let md = std::fs::read_to_string(d.path().join("new/summary.md")).unwrap();
    assert!(
        md.contains("| http\\_req\\_duration | p50 |") && md.contains("Regressed"),
        "{md}"
    );
    assert!(std::fs::read_to_string(d.path().join("new/report.html"))
        .unwrap()
        .contains("id=\"baseline\""));

    // A baseline that cannot be read stops the run before any load is sent.
    let out = d.loadgen(&[
        "run",
        "fast.yaml",
        "--out",
        "never",
        "--quiet",
        "--baseline",
        "nope.json",
    ]);
    assert_exit_says(&out, 2, "nope.json: cannot read");
    assert!(!d.path().join("never/run.json").exists());

    // A --gate key that selects no metric is a typo, not a passing gate: exit 2, after the
    // record is written.
    let out = d.loadgen(&[
        "run",
        "fast.yaml",
        "--out",
        "typo",
        "--quiet",
        "--baseline",
        "base/run.json",
        "--gate",
        "http_req_durations",
    ]);
    assert_exit_says(
        &out,
        2,
        "error: --gate http_req_durations: no metric of this run matches it",
    );
    assert!(d.path().join("typo/run.json").exists());
}
