//! `loadgen report` (render, compare, merge) and `run --report/--baseline`, run as the real
//! binary in a temp folder.

mod common;

use std::time::{Duration, Instant};

use common::{stderr, stdout, Dir};
use reports::{MetricKey, Recorder, Run, RunBuilder};

/// A run of `scenario`: `n` requests a second for 5 s at `latency_us`, `failed` of them failing.
fn run_json(scenario: &str, latency_us: u64, n: u32, failed: u32) -> String {
    let origin = Instant::now();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-25T19:20:00Z".parse().unwrap();
    let mut rec = Recorder::new(origin);
    let lat: MetricKey = "http_req_duration{journey=unicast}".parse().unwrap();
    let reqs: MetricKey = "http_reqs{journey=unicast}".parse().unwrap();
    let fail: MetricKey = "http_req_failed{journey=unicast}".parse().unwrap();
    for s in 0..5u32 {
        for i in 0..n {
            let at = origin + Duration::from_secs_f64(f64::from(s) + f64::from(i) / f64::from(n));
            rec.record(&lat, at, latency_us + u64::from(i % 10));
            rec.add(&reqs, at, 1);
            rec.count(&fail, at, i < failed);
        }
    }
    let mut b = RunBuilder::new(scenario, start, origin);
    b.absorb(rec);
    let mut run = b.finish(Duration::from_secs(5));
    run.meta = Some(serde_json::json!({"planned_duration_s": 5.0, "target": "embedded:gateway"}));
    let gate = reports::Threshold::parse("http_req_failed", "rate < 1%").unwrap();
    run.thresholds = reports::evaluate(&run, &[gate]);
    run.to_json_pretty().unwrap()
}

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
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.json:3:"), "{}", stderr(&out));
    let out = d.loadgen(&["report", "missing.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("missing.json: cannot read"),
        "{}",
        stderr(&out)
    );
    let out = d.loadgen(&["report", "bad.json", "--report", "pdf=x.pdf"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects it");
    assert!(stderr(&out).contains("`pdf`"), "{}", stderr(&out));
}

#[test]
fn compare_gives_verdicts_and_exits_99_on_a_regression() {
    let d = Dir::new();
    d.write("base.json", &run_json("quick", 2_000, 100, 0));
    d.write("same.json", &run_json("quick", 2_020, 100, 0));
    d.write("slow.json", &run_json("quick", 3_000, 100, 0));
    d.write("faster.json", &run_json("quick", 1_000, 100, 0));
    d.write("other.json", &run_json("another", 2_000, 100, 0));
    d.write("few.json", &run_json("quick", 9_000, 10, 0));

    let out = d.loadgen(&["report", "compare", "base.json", "same.json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("0 regressed"), "{}", stdout(&out));

    let out = d.loadgen(&["report", "compare", "base.json", "slow.json"]);
    assert_eq!(out.status.code(), Some(99), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Regressed    http_req_duration p99: 2.01ms -> 3.01ms (+49.8%)"),
        "{text}"
    );

    let out = d.loadgen(&[
        "report",
        "compare",
        "base.json",
        "faster.json",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let c: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(c["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["change"] == "Improved"));

    // A wide noise band absorbs the slowdown.
    let out = d.loadgen(&[
        "report",
        "compare",
        "base.json",
        "slow.json",
        "--noise",
        "60%",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // 50 samples: latency is inconclusive (not a regression); the throughput fell 10×.
    let out = d.loadgen(&["report", "compare", "base.json", "few.json"]);
    assert_eq!(out.status.code(), Some(99));
    let text = stdout(&out);
    assert!(text.contains("Inconclusive http_req_duration p99: 2.01ms -> 9.02ms (+348.7%) — too few samples: 500 vs 50 (need 100)"), "{text}");
    assert!(
        text.contains("Regressed    http_reqs rate: 100.0/s -> 10.0/s (-90.0%)"),
        "{text}"
    );

    let out = d.loadgen(&["report", "compare", "base.json", "other.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("refusing to compare unlike runs (scenario `quick` vs `another`)"),
        "{}",
        stderr(&out)
    );
    let out = d.loadgen(&["report", "compare", "base.json", "other.json", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("forced: scenario"),
        "{}",
        stdout(&out)
    );

    // Markdown and JUnit with the comparison.
    let out = d.loadgen(&[
        "report",
        "slow.json",
        "--baseline",
        "base.json",
        "--report",
        "md=c.md",
        "--report",
        "junit=c.xml",
    ]);
    assert_eq!(out.status.code(), Some(99), "{}", stderr(&out));
    let md = std::fs::read_to_string(d.path().join("c.md")).unwrap();
    assert!(md.contains("🔴 Regressed (worse)"), "{md}");
    let xml = std::fs::read_to_string(d.path().join("c.xml")).unwrap();
    assert!(xml.contains("type=\"baseline\""), "{xml}");
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
    assert_eq!(all.thresholds.len(), 1);
    assert!(
        !all.thresholds[0].ok,
        "255 of 750 failed: {:?}",
        all.thresholds[0]
    );

    d.write("other.json", &run_json("another", 2_000, 100, 0));
    let out = d.loadgen(&["report", "merge", "a.json", "other.json", "-o", "x.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("other.json: runs of different scenarios"),
        "{}",
        stderr(&out)
    );
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
    assert_eq!(out.status.code(), Some(99), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("baseline regressed"),
        "{}",
        stderr(&out)
    );
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
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nope.json: cannot read"),
        "{}",
        stderr(&out)
    );
    assert!(!d.path().join("never/run.json").exists());
}
