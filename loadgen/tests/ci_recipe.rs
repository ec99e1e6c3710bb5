//! README's CI recipe as CI runs it: the shell of its steps, read from the README's YAML, run
//! by bash in a temp folder where `target/release/loadgen` is the binary under test and
//! `scenarios/` the shipped scenarios; the services under test are real reference gateways on
//! loopback (the recipe's `127.0.0.1:808x` swapped for their addresses), and each run lasts
//! `DURATION=3s` instead of the scenario's 10 s. Main-branch jobs build a history and its
//! noise report; a pull request that slows the gateway down fails the history gate; the A/B
//! job flags a gateway with 1 ms more latency than its baseline build. Then `loadgen ab`'s
//! bad input, and its interrupt.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{assert_exit_says, stderr, stdout, Dir};
use testbed::gateway::{FaultConfig, GatewayConfig, GatewayHandle};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The recipe: the first ```yaml block after README's `### CI recipe` heading.
fn recipe() -> serde_norway::Value {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme
        .find("### CI recipe")
        .expect("README has a CI recipe")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + section[start..].find("\n```").unwrap();
    serde_norway::from_str(&section[start..end]).expect("the recipe is valid YAML")
}

/// The `run:` shell of the step named `name` in job `job`.
fn step(recipe: &serde_norway::Value, job: &str, name: &str) -> String {
    let steps = recipe["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("no job {job} in the recipe"));
    steps
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .and_then(|s| s["run"].as_str())
        .unwrap_or_else(|| panic!("no step `{name}` with a `run:` in job {job}"))
        .to_string()
}

/// A temp folder laid out as the recipe's checkout after its build step.
fn workspace() -> Dir {
    let d = Dir::new();
    std::fs::create_dir_all(d.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_loadgen"),
        d.path().join("target/release/loadgen"),
    )
    .unwrap();
    std::fs::create_dir_all(d.path().join("scenarios")).unwrap();
    std::fs::copy(
        repo().join("scenarios/ci-gate-service.yaml"),
        d.path().join("scenarios/ci-gate-service.yaml"),
    )
    .unwrap();
    d
}

/// Runs `script` with bash as a GitHub step would (the recipe's addresses swapped for
/// `targets`); returns its output and what it wrote to `$GITHUB_OUTPUT`.
fn run_step(d: &Dir, script: &str, targets: &[(&str, &str)]) -> (Output, BTreeMap<String, String>) {
    let mut script = script.to_string();
    for (from, to) in targets {
        assert!(script.contains(from), "the step uses {from}: {script}");
        script = script.replace(from, to);
    }
    let outputs = d.path().join("github-output");
    std::fs::write(&outputs, "").unwrap();
    let out = Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(d.path())
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", d.path().join("step-summary.md"))
        .env("DURATION", "3s")
        .output()
        .unwrap();
    let values = std::fs::read_to_string(&outputs)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (out, values)
}

fn gateway(rt: &tokio::runtime::Runtime, latency_ms: f64) -> GatewayHandle {
    rt.block_on(testbed::gateway::spawn(GatewayConfig {
        faults: FaultConfig {
            latency_ms,
            ..FaultConfig::default()
        },
        ..GatewayConfig::default()
    }))
    .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const SERVICE: &str = "http://127.0.0.1:8080";
const RUN_STEP: &str = "Run the scenario (gates on thresholds and the history)";
const KEEP_STEP: &str = "Keep main's run in the history; print the A/A noise of the history";
const AB_STEP: &str = "A/B rounds (A = base, B = this PR)";

#[test]
fn the_readme_ci_recipe_gates_on_history_and_on_ab_rounds() {
    let recipe = recipe();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = gateway(&rt, 2.0);
    let plus_1ms = gateway(&rt, 3.0);
    let much_slower = gateway(&rt, 10.0);
    let d = workspace();

    // Four pushes to main: each run joins the history, and the job summary gets its noise.
    for push in 1..=4 {
        let (out, values) = run_step(
            &d,
            &step(&recipe, "gate", RUN_STEP),
            &[(SERVICE, base.base_url().as_str())],
        );
        let code = values.get("code").cloned().unwrap_or_default();
        assert!(
            code == "0" || code == "99",
            "main push {push}: code {code}: {}",
            stderr(&out)
        );
        let compared = stderr(&out).contains("baseline `ci-gate-service`");
        assert_eq!(
            compared,
            push > 1,
            "history from push 2 on: {}",
            stderr(&out)
        );
        let (out, _) = run_step(&d, &step(&recipe, "gate", KEEP_STEP), &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let kept = std::fs::read_dir(d.path().join("perf-history"))
        .unwrap()
        .count();
    assert_eq!(kept, 4);
    let summary = read(&d.path().join("step-summary.md"));
    assert!(
        summary.contains("A/A noise of 2 runs of \\`ci-gate-service\\`")
            && summary.contains("A/A noise of 4 runs of \\`ci-gate-service\\`")
            && !summary.contains("A/A noise of 1 run")
            && summary.contains("| http\\_req\\_duration | p50 | yes |"),
        "{summary}"
    );

    // A pull request whose gateway is 8 ms slower: judged against the history, it fails.
    let (out, values) = run_step(
        &d,
        &step(&recipe, "gate", RUN_STEP),
        &[(SERVICE, much_slower.base_url().as_str())],
    );
    assert_eq!(values["code"], "99", "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("4 baseline runs against 1 new run, run-to-run noise measured")
            && err.contains("Regressed    http_req_duration p50:")
            && err.contains("gate failed:"),
        "{err}"
    );
    // The scenario's `gate:` list decides what gates.
    let md = read(&d.path().join("perf/summary.md"));
    assert!(md.contains("🔴 Regressed (worse)"), "{md}");
    assert!(md.contains("Holm over"), "{md}");
    assert!(d.path().join("perf/report.html").exists());
    assert!(read(&d.path().join("perf/junit.xml")).contains("type=\"baseline\""));

    // The A/B job: the candidate build answers 1 ms later than its base, round after round.
    let script = step(&recipe, "ab", AB_STEP);
    let (out, values) = run_step(
        &d,
        &script,
        &[
            ("http://127.0.0.1:8081", base.base_url().as_str()),
            ("http://127.0.0.1:8082", plus_1ms.base_url().as_str()),
        ],
    );
    assert_eq!(values["code"], "99", "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("6 alternating A/B rounds, run-to-run noise measured")
            && text.contains("Regressed    http_req_duration p50:"),
        "{text}"
    );
    let c: serde_json::Value =
        serde_json::from_str(&read(&d.path().join("perf-ab/comparison.json"))).unwrap();
    assert_eq!(
        c["gated_metrics"],
        serde_json::json!(["http_req_duration", "http_req_failed", "iterations"]),
        "the scenario's gate: list"
    );
    assert_eq!(c["design"], serde_json::json!({"paired": {"pairs": 6}}));
    let p50 = c["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["metric"] == "http_req_duration" && k["stat"] == "p50")
        .unwrap();
    // 1 ms on a ~2.3 ms median: the interval holds about +40%, and excludes no change.
    let e = &p50["estimate"];
    assert!(
        e["low"].as_f64().unwrap() > 0.15 && e["high"].as_f64().unwrap() < 0.8,
        "{p50}"
    );
    let md = read(&d.path().join("perf-ab/summary.md"));
    assert!(
        md.contains("6 alternating A/B rounds") && md.contains("🔴 Regressed (worse)"),
        "{md}"
    );
    // Rounds alternate which arm goes first, and every run is kept for judging again (with
    // the recipe's --alpha).
    let err = stderr(&out);
    let order: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("round "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|arm| arm.trim_end_matches(':'))
        .collect();
    assert_eq!(
        order,
        ["A", "B", "B", "A", "A", "B", "B", "A", "A", "B", "B", "A"]
    );
    let again = d.loadgen(&[
        "report",
        "compare",
        "--paired",
        "perf-ab/a",
        "perf-ab/b",
        "--alpha",
        "1%",
        "--format",
        "json",
    ]);
    assert_eq!(again.status.code(), Some(99), "{}", stderr(&again));
    let again: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(
        again["checks"], c["checks"],
        "the same verdicts from the kept runs"
    );
}

const QUICK: &str = "version: 1
name: quick
target: { embedded: gateway, faults: { latency: ${LATENCY:-1ms} } }
duration: ${DURATION:-3s}
senders:
  - name: unicast
    rate: { per_second: 50 }
    pool: { connections: 4 }
    steps:
      - post: \"{{base_url}}/broadcast\"
        json: { body: x }
        expect: { status: 202 }
";

#[test]
fn ab_refuses_bad_input_before_sending_anything() {
    let d = Dir::new();
    d.write("s.yaml", QUICK);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--b", "DURATION=4s"],
            "error: --a and --b make unlike runs (A vs B: load shape `planned_duration_s`: 3.0 vs 4.0; load shape `senders`:",
        ),
        (
            &["--a", "1X=2"],
            "error: arm A: -e 1X=2: `1X` is not a variable name",
        ),
        (
            &["--noise-profile", "noise.json"],
            "error: --noise-profile is for unpaired comparisons: A/B rounds measure their own noise",
        ),
        (&["--rounds", "0"], "--rounds <N>"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["ab", "s.yaml", "--out", "ab"];
        args.extend_from_slice(extra);
        let out = d.loadgen(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{extra:?}: {}",
            stderr(&out)
        );
        assert!(!d.path().join("ab").exists(), "{extra:?}: nothing ran");
    }
    d.write("busy/old.txt", "x");
    let out = d.loadgen(&["ab", "s.yaml", "--out", "busy"]);
    assert_exit_says(
        &out,
        2,
        "error: busy: already holds files; an A/B job needs a folder of its own",
    );
}

/// Ctrl-C during round 2: the run in progress gets the interrupt once and writes its record,
/// the complete round is compared, and `ab` exits 105.
#[test]
fn ab_passes_an_interrupt_to_the_run_and_compares_the_complete_rounds() {
    let d = Dir::new();
    d.write("s.yaml", QUICK);
    let mut ab = testkit::Spawned::start_stderr(d.command(&[
        "ab",
        "s.yaml",
        "--b",
        "LATENCY=2ms",
        "--rounds",
        "2",
        "--out",
        "ab",
    ]));
    // Round 2 starts with B; interrupt it once it runs (its banner follows its handler).
    ab.wait_for(Duration::from_secs(60), |l| {
        l.starts_with("round 1/2 B:").then_some(())
    });
    let log = d.path().join("ab/b/02/loadgen.log");
    testkit::wait::until(Duration::from_secs(30), "round 2's B run under way", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("running `quick`"))
    });
    ab.signal(testkit::process::Signal::SIGINT);
    let status = ab.wait(Duration::from_secs(30));
    let rest = ab.rest().join("\n");
    assert_eq!(status.code(), Some(105), "{rest}");
    assert!(
        rest.contains("round 2/2 B: ab/b/02/run.json") && rest.contains(", interrupted)"),
        "{rest}"
    );
    assert!(
        rest.contains("interrupted: compared the 1 complete round(s); the runs are in ab"),
        "{rest}"
    );
    // The interrupted run wrote its record, and says it stopped early.
    let run: serde_json::Value =
        serde_json::from_str(&read(&d.path().join("ab/b/02/run.json"))).unwrap();
    assert!(run["meta"]["stopped_early"].is_string(), "{}", run["meta"]);
    assert!(
        !d.path().join("ab/a/02").exists(),
        "round 2's A never started"
    );
    let c: serde_json::Value =
        serde_json::from_str(&read(&d.path().join("ab/comparison.json"))).unwrap();
    assert_eq!(c["design"], serde_json::json!({"paired": {"pairs": 1}}));
}

/// A `--gate` key that selects no metric is a typo, not a passing gate: after the first round
/// (the runs name the metrics), exit 2 naming the key, the runs kept, no more rounds run.
#[test]
fn ab_refuses_a_gate_key_that_selects_nothing() {
    let d = Dir::new();
    d.write("s.yaml", QUICK);
    let out = d.loadgen(&[
        "ab",
        "s.yaml",
        "-e",
        "DURATION=1s",
        "--rounds",
        "3",
        "--gate",
        "http_req_durations",
        "--out",
        "ab",
    ]);
    assert_exit_says(&out, 2, "error: --gate http_req_durations: no metric of ab/b/01/run.json matches it; stopped after round 1 of 3");
    assert!(d.path().join("ab/a/01/run.json").exists());
    assert!(d.path().join("ab/b/01/run.json").exists());
    assert!(!d.path().join("ab/a/02").exists());
    assert!(!d.path().join("ab/comparison.json").exists());
}
