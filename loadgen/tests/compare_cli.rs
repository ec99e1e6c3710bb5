//! Comparing runs from the command line — `report compare` against one run, a history (files,
//! folders, globs) or A/B rounds, `report history add`, `report noise` and its profile, the
//! scenario's `gate:` list — run as the real binary on run records made in the test.

mod common;

use common::synthetic::{run_json, run_json_at};
use common::{assert_exit_says, stderr, stdout, Dir};

#[test]
fn compare_gives_verdicts_and_exits_99_on_a_regression() {
    let d = Dir::new();
    d.write("base.json", &run_json("quick", 2_000, 100, 0));
    d.write("same.json", &run_json("quick", 2_020, 100, 0));
    d.write("slow.json", &run_json("quick", 3_000, 100, 0));
    d.write("faster.json", &run_json("quick", 1_000, 100, 0));
    d.write("other.json", &run_json("another", 2_000, 100, 0));

    let out = d.loadgen(&["report", "compare", "base.json", "same.json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("0 regressed"), "{}", stdout(&out));
    // One run a side: the report says the noise between runs was not measured.
    assert!(
        stdout(&out).contains(
            "1 baseline run against 1 new run, run-to-run noise not measured (one run a side)"
        ),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("gate passed: none of 4 gated checks regressed"),
        "{}",
        stderr(&out)
    );

    // The thresholds' metrics gate; the change is printed with its interval.
    let out = d.loadgen(&["report", "compare", "base.json", "slow.json"]);
    assert_eq!(out.status.code(), Some(99), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Regressed    http_req_duration p99: 2.01ms -> 3.01ms (+49.8%) +49.8% ["),
        "{text}"
    );
    assert!(!text.contains("http_reqs"), "not gated, not asked: {text}");
    assert!(
        stderr(&out).contains("gate failed: 3 of 4 gated checks regressed"),
        "{}",
        stderr(&out)
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
    assert_eq!(c["min_effect"], 0.05);
    assert_eq!(
        c["gated_metrics"],
        serde_json::json!(["http_req_duration", "http_req_failed"])
    );
    assert!(c["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["change"] == "Improved"));

    // A large minimum effect absorbs the slowdown (`--noise` is its old name).
    for flag in ["--min-effect", "--noise"] {
        let out = d.loadgen(&["report", "compare", "base.json", "slow.json", flag, "60%"]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", stdout(&out));
    }

    // --gate picks the metrics; --all reports the others, corrected apart, never failing.
    let out = d.loadgen(&[
        "report",
        "compare",
        "base.json",
        "slow.json",
        "--gate",
        "http_reqs",
        "--all",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Holm over 1 gated check; 7 reported checks corrected apart"),
        "{text}"
    );
    assert!(
        text.contains("Regressed    (reported) http_req_duration p99: 2.01ms -> 3.01ms"),
        "{text}"
    );
    let out = d.loadgen(&[
        "report",
        "compare",
        "base.json",
        "slow.json",
        "--gate",
        "delivery_lost",
    ]);
    assert_exit_says(
        &out,
        2,
        "error: --gate delivery_lost: no metric of slow.json matches it",
    );
    let out = d.loadgen(&[
        "report",
        "compare",
        "base.json",
        "slow.json",
        "--alpha",
        "60%",
    ]);
    assert_exit_says(
        &out,
        2,
        "expected a false-alarm rate above 0% and below 50% such as `5%`, got `60%`",
    );

    let out = d.loadgen(&["report", "compare", "base.json", "other.json"]);
    assert_exit_says(
        &out,
        2,
        "refusing to compare unlike runs (other.json: scenario `quick` vs `another`)",
    );
    let out = d.loadgen(&["report", "compare", "base.json", "other.json", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("forced: other.json: scenario"),
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

/// Too few samples for the requested confidence: every gated check is inconclusive, which
/// neither passes as unchanged nor fails the gate, and the verdict says so.
#[test]
fn too_few_samples_are_inconclusive_never_a_pass_or_a_failure() {
    let d = Dir::new();
    d.write("base.json", &run_json("quick", 2_000, 100, 0));
    d.write("few.json", &run_json("quick", 9_000, 10, 0));
    let out = d.loadgen(&["report", "compare", "base.json", "few.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Inconclusive http_req_duration p99: 2.01ms -> 9.02ms (+348.7%) too few samples: 500 vs 50 (need 100)"),
        "{text}"
    );
    assert!(
        text.contains("Inconclusive http_req_failed rate: 0.00% -> 0.00% (±0) too few samples: 500 vs 50 (need 100)"),
        "{text}"
    );
    assert!(
        !text.contains("Unchanged") && !text.contains("Regressed"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("gate inconclusive: none of 4 gated checks could be told from ±5% at the requested confidence (too few samples or runs); nothing regressed"),
        "{}",
        stderr(&out)
    );
    // The throughput fell 10× with enough seconds to tell: gated, it fails.
    let out = d.loadgen(&[
        "report",
        "compare",
        "base.json",
        "few.json",
        "--gate",
        "http_reqs",
    ]);
    assert_eq!(out.status.code(), Some(99), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("Regressed    http_reqs rate: 100.0/s -> 10.0/s (-90.0%)"),
        "{}",
        stdout(&out)
    );
}

/// A history of four runs of one build (latencies a little apart, a minute apart), as
/// `hist/run-N.json`.
fn write_history(d: &Dir) {
    for (minute, latency) in [(0, 2_000), (1, 2_030), (2, 1_980), (3, 2_010)] {
        d.write(
            &format!("hist/run-{minute}.json"),
            &run_json_at("quick", latency, 100, 0, minute),
        );
    }
}

#[test]
fn compare_takes_baselines_from_folders_and_globs() {
    let d = Dir::new();
    write_history(&d);
    d.write("same.json", &run_json_at("quick", 2_015, 100, 0, 9));
    d.write("slow.json", &run_json_at("quick", 3_000, 100, 0, 9));
    for base in ["hist", "hist/*.json", "hist/run-[0-3].json"] {
        let out = d.loadgen(&["report", "compare", base, "same.json"]);
        assert_eq!(out.status.code(), Some(0), "{base}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("4 baseline runs against 1 new run, run-to-run noise measured"),
            "{base}: {}",
            stdout(&out)
        );
    }
    // Several arguments add up; a file named twice counts once.
    let out = d.loadgen(&[
        "report",
        "compare",
        "hist/run-0.json",
        "hist/run-1.json",
        "hist/run-2.json",
        "hist/run-0.json",
        "slow.json",
    ]);
    assert_eq!(out.status.code(), Some(99), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("3 baseline runs against 1 new run")
            && text.contains("Regressed    http_req_duration p50: 2.01ms -> 3.00ms (+49.7%)"),
        "{text}"
    );
    // Run output folders (`loadgen run --out`, `loadgen ab`) are read by their run.json.
    d.write(
        "rounds/01/run.json",
        &run_json_at("quick", 2_000, 100, 0, 0),
    );
    d.write(
        "rounds/02/run.json",
        &run_json_at("quick", 2_020, 100, 0, 1),
    );
    let out = d.loadgen(&["report", "compare", "rounds", "same.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("2 baseline runs against 1 new run"));

    let cases: &[(&[&str], &str)] = &[
        (
            &["nothing/*.json", "same.json"],
            "error: nothing/*.json: no file matches (a glob of run files)",
        ),
        (
            &["hist", "hist/run-2.json"],
            "is both a baseline and a new run",
        ),
        (
            &["empty", "same.json"],
            "error: empty: no run records (*.json, or */run.json) in this folder",
        ),
        (
            &["hist", "same.json", "--noise-profile", "missing.json"],
            "error: missing.json: cannot read:",
        ),
    ];
    std::fs::create_dir(d.path().join("empty")).unwrap();
    for (args, expected) in cases {
        let mut all = vec!["report", "compare"];
        all.extend_from_slice(args);
        let out = d.loadgen(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // A history with a run of another scenario is refused, naming the file.
    d.write("hist/run-9.json", &run_json_at("another", 2_000, 100, 0, 9));
    let out = d.loadgen(&["report", "compare", "hist", "same.json"]);
    assert_exit_says(&out, 2, "error: refusing to compare unlike runs (hist/run-9.json: scenario `quick` vs `another`); pass --force to compare anyway");
}

#[test]
fn history_add_keeps_the_newest_runs_and_refuses_unlike_ones() {
    let d = Dir::new();
    for minute in 0..4 {
        d.write(
            &format!("perf/{minute}.json"),
            &run_json_at("quick", 2_000, 100, 0, minute),
        );
        let file = format!("perf/{minute}.json");
        let out = d.loadgen(&[
            "report",
            "history",
            "add",
            "perf-history",
            &file,
            "--keep",
            "3",
        ]);
        assert_exit_says(&out, 0, &format!(
                "added {file} as perf-history/run-20261125T19{:02}00.000Z.json (keeping the newest 3)",
                20 + minute
            ));
        if minute == 3 {
            assert!(
                stderr(&out).contains("pruned perf-history/run-20261125T192000.000Z.json"),
                "{}",
                stderr(&out)
            );
        }
    }
    let mut kept: Vec<String> = std::fs::read_dir(d.path().join("perf-history"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            "run-20261125T192100.000Z.json",
            "run-20261125T192200.000Z.json",
            "run-20261125T192300.000Z.json"
        ]
    );

    d.write("other.json", &run_json_at("another", 2_000, 100, 0, 5));
    let out = d.loadgen(&["report", "history", "add", "perf-history", "other.json"]);
    assert_exit_says(&out, 2, "error: perf-history: holds runs unlike the new one (perf-history/run-20261125T192100.000Z.json: scenario `another` vs `quick`;");
    let out = d.loadgen(&[
        "report",
        "history",
        "add",
        "perf-history",
        "other.json",
        "--replace-unlike",
    ]);
    assert_exit_says(
        &out,
        0,
        "removed perf-history/run-20261125T192100.000Z.json (another scenario or load shape)",
    );
    assert_eq!(
        std::fs::read_dir(d.path().join("perf-history"))
            .unwrap()
            .count(),
        1
    );

    // A run that stopped early would skew the history.
    let mut partial: serde_json::Value =
        serde_json::from_str(&run_json_at("another", 2_000, 100, 0, 6)).unwrap();
    partial["meta"]["stopped_early"] = "interrupted (SIGINT or SIGTERM)".into();
    d.write("partial.json", &partial.to_string());
    let out = d.loadgen(&["report", "history", "add", "perf-history", "partial.json"]);
    assert_exit_says(&out, 2, "error: partial.json: the run stopped early (interrupted (SIGINT or SIGTERM)); a partial run would skew the history");
    let out = d.loadgen(&[
        "report",
        "history",
        "add",
        "perf-history",
        "other.json",
        "--keep",
        "0",
    ]);
    assert_exit_says(&out, 2, "error: a history keeps at least 1 run, got 0");
}

#[test]
fn noise_report_prints_spreads_and_writes_a_profile_for_single_runs() {
    let d = Dir::new();
    write_history(&d);
    let out = d.loadgen(&["report", "noise", "hist"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("A/A noise of 4 runs of `quick`: smallest detectable change for 4 baseline runs against 1 new run(s) at a 5% false-alarm rate over 4 gated statistics and 80% power; minimum effect 5%"),
        "{text}"
    );
    // The thresholds' metrics gate: latency's three percentiles, and the failure rate, which
    // has no failure to measure.
    let gated: Vec<&str> = text.lines().filter(|l| l.starts_with("* ")).collect();
    assert_eq!(gated.len(), 4, "{text}");
    assert!(
        gated[0].starts_with("* http_req_duration") && gated[0].contains(" p50 "),
        "{text}"
    );
    assert!(
        gated[3].starts_with("* http_req_failed") && gated[3].ends_with("none in any run"),
        "{text}"
    );

    let out = d.loadgen(&[
        "report",
        "noise",
        "hist/*.json",
        "--design",
        "ab:6",
        "--format",
        "md",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("### A/A noise") && stdout(&out).contains("6 A/B rounds"),
        "{}",
        stdout(&out)
    );

    // As JSON it is a noise profile: single runs are then judged against the noise between
    // runs.
    let out = d.loadgen(&[
        "report",
        "noise",
        "hist",
        "--design",
        "single",
        "-o",
        "noise.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    d.write("new.json", &run_json_at("quick", 2_015, 100, 0, 9));
    let out = d.loadgen(&[
        "report",
        "compare",
        "hist/run-0.json",
        "new.json",
        "--noise-profile",
        "noise.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(
            "1 baseline run against 1 new run, run-to-run noise from an A/A profile of 4 runs"
        ),
        "{}",
        stdout(&out)
    );
    let out = d.loadgen(&[
        "report",
        "compare",
        "--paired",
        "hist/run-0.json",
        "new.json",
        "--noise-profile",
        "noise.json",
    ]);
    assert_exit_says(&out, 2, "--noise-profile is for unpaired comparisons");

    let cases: &[(&[&str], &str)] = &[
        (
            &["noise", "hist/run-0.json"],
            "error: expected at least 2 runs of one build, got 1",
        ),
        (
            &["noise", "hist", "--design", "pairs:3"],
            "expected a design `history:N`, `single` or `ab:N` (N at least 1), got `pairs:3`",
        ),
        (
            &["noise", "hist", "--power", "30%"],
            "expected a power of at least 50% and below 100% such as `80%`, got `30%`",
        ),
        (
            &[
                "compare",
                "hist/run-0.json",
                "new.json",
                "--noise-profile",
                "hist/run-1.json",
            ],
            "error: hist/run-1.json:",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        let out = d.loadgen(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = d.loadgen(&[
        "report",
        "compare",
        "hist/run-0.json",
        "new.json",
        "--noise-profile",
        "hist/run-1.json",
    ]);
    assert!(
        stderr(&out).contains(
            "not a noise profile (write one with `loadgen report noise RUN… -o noise.json`)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn paired_rounds_compare_round_by_round() {
    let d = Dir::new();
    for round in 0..3i64 {
        // Both arms drift together from round to round; B is 10% slower within each round.
        let drift = 100 * round as u64;
        d.write(
            &format!("ab/a/{round:02}/run.json"),
            &run_json_at("quick", 2_000 + drift, 100, 0, 2 * round),
        );
        d.write(
            &format!("ab/b/{round:02}/run.json"),
            &run_json_at("quick", 2_200 + drift, 100, 0, 2 * round + 1),
        );
    }
    let out = d.loadgen(&["report", "compare", "--paired", "ab/a", "ab/b"]);
    assert_eq!(out.status.code(), Some(99), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("3 alternating A/B rounds, run-to-run noise measured")
            && text.contains("Regressed    http_req_duration p50:"),
        "{text}"
    );
    std::fs::remove_dir_all(d.path().join("ab/b/02")).unwrap();
    let out = d.loadgen(&["report", "compare", "--paired", "ab/a", "ab/b"]);
    assert_exit_says(
        &out,
        2,
        "error: A/B rounds need as many A runs as B runs, got 3 A and 2 B",
    );
    let out = d.loadgen(&["report", "compare", "--paired", "ab/a", "ab/b", "ab/b"]);
    assert_exit_says(
        &out,
        2,
        "error: --paired takes two arguments, the A runs and the B runs, got 3",
    );
}

#[test]
fn a_scenario_gate_list_is_checked_and_carried_into_the_record() {
    let d = Dir::new();
    let scenario = GATED;
    d.write(
        "bad.yaml",
        &format!("{scenario}gate: [ http_req_duration, \"http_reqs{{journey\" ]\n"),
    );
    let out = d.loadgen(&["check", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad.yaml:13:")
            && stderr(&out).contains("gate metric `http_reqs{journey`"),
        "{}",
        stderr(&out)
    );
    d.write(
        "good.yaml",
        &format!("{scenario}gate: [ \"http_req_duration{{journey=unicast}}\", http_reqs ]\n"),
    );
    let out = d.loadgen(&["run", "good.yaml", "--out", "out", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = d.run_record().unwrap();
    assert_eq!(
        run["meta"]["gate"],
        serde_json::json!(["http_req_duration{journey=unicast}", "http_reqs"])
    );
    // The list, not every metric, gates a comparison of the run.
    let out = d.loadgen(&[
        "report",
        "compare",
        "out/run.json",
        "out/run.json",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "a run is not its own baseline");
    std::fs::copy(d.path().join("out/run.json"), d.path().join("again.json")).unwrap();
    let out = d.loadgen(&[
        "report",
        "compare",
        "out/run.json",
        "again.json",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let c: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        c["gated_metrics"],
        serde_json::json!(["http_req_duration{journey=unicast}", "http_reqs"])
    );
}

/// A short open-model run against the embedded gateway (a `gate:` list is appended).
const GATED: &str = "version: 1
name: gated
target: { embedded: gateway }
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
