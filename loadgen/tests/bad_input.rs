//! Every class of bad input: one clear line naming the file (line and column where the input
//! has them) and exit code 2.

mod common;
use common::*;

const BASE: &str = "version: 1
name: t
target: { embedded: gateway }
duration: 2s
users: 2
senders:
  - name: a
    steps:
      - get: \"{{base_url}}/stats\"
        expect: { status: 200 }
";

fn check_fails(scenario: &str, expect_prefix: &str, expect_text: &str) {
    let d = Dir::new();
    d.write("s.yaml", scenario);
    for args in [&["check", "s.yaml"][..], &["run", "s.yaml", "--quiet"][..]] {
        let cmd = args[0];
        let out = d.loadgen(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.starts_with(&format!("error: {expect_prefix}")),
            "{cmd}: {err}"
        );
        assert!(err.contains(expect_text), "{cmd}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn unknown_field() {
    check_fails(
        &BASE.replace("      - get:", "      - gett:"),
        "s.yaml:9:9: ",
        "unknown field `gett`, expected one of",
    );
}

#[test]
fn unknown_top_level_field() {
    check_fails(
        &format!("{BASE}treshold: {{}}\n"),
        "s.yaml:11:1: ",
        "unknown field `treshold`",
    );
}

#[test]
fn wrong_type() {
    check_fails(
        &BASE.replace("  - name: a\n", "  - name: a\n    weight: heavy\n"),
        "s.yaml:8:13: ",
        "invalid type: string \"heavy\", expected u32",
    );
}

#[test]
fn bad_duration() {
    check_fails(
        &BASE.replace("duration: 2s", "duration: 20"),
        "s.yaml:4:11: ",
        "duration: expected a duration such as `500us`, `250ms` or `1m30s` (a number and a unit: ns, us, ms, s, m, h), got `20`",
    );
    check_fails(
        &BASE.replace("duration: 2s", "duration: 2 secs"),
        "s.yaml:4:11: ",
        "duration: expected a duration such as `500us`, `250ms` or `1m30s` (a number and a unit: ns, us, ms, s, m, h), got `2 secs`",
    );
}

#[test]
fn bad_threshold_expression() {
    check_fails(
        &format!("{BASE}thresholds:\n  http_req_duration: [\"p99 < 5\"]\n"),
        "s.yaml:12:",
        "threshold `p99 < 5`: expected",
    );
}

#[test]
fn bad_template() {
    check_fails(
        &BASE.replace("/stats", "/{{bytes x}}"),
        "s.yaml:9:",
        "expected `{{bytes N",
    );
}

#[test]
fn variable_used_before_set() {
    check_fails(
        &BASE.replace("/stats", "/devices/{{device}}"),
        "s.yaml:9:",
        "variable `device` is used before it is set",
    );
}

#[test]
fn missing_file() {
    let d = Dir::new();
    for cmd in ["check", "run"] {
        let out = d.loadgen(&[cmd, "nope.yaml"]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(
            err.starts_with("error: nope.yaml: cannot read scenario file: "),
            "{err}"
        );
    }
}

#[test]
fn yaml_syntax_error() {
    check_fails(
        &BASE.replace("name: a", "name: \"a"),
        "s.yaml:",
        "did not find expected key",
    );
}

#[test]
fn unreachable_target() {
    let d = Dir::new();
    let scenario = BASE.replace(
        "{ embedded: gateway }",
        "{ base_url: \"http://127.0.0.1:9\" }",
    );
    let (out, run) = d.run(&scenario);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: target http://127.0.0.1:9 is unreachable: "),
        "{err}"
    );
    assert!(run.is_none());
}

#[test]
fn malformed_csv() {
    let d = Dir::new();
    d.write("users.csv", "user,topic\nalice,news\nbob,news,extra\n");
    let scenario = BASE
        .replace(
            "users: 2\n",
            "users: 2\ndata:\n  people: { csv: users.csv }\n",
        )
        .replace("/stats", "/stats?u={{data.people.user}}");
    d.write("s.yaml", &scenario);
    let out = d.loadgen(&["check", "s.yaml"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "users.csv:3: feeder `people`: expected 2 fields like the header row, found 3"
        ),
        "{err}"
    );
}

#[test]
fn csv_column_that_does_not_exist() {
    let d = Dir::new();
    d.write("users.csv", "user,topic\nalice,news\n");
    let scenario = BASE
        .replace(
            "users: 2\n",
            "users: 2\ndata:\n  people: { csv: users.csv }\n",
        )
        .replace("/stats", "/stats?u={{data.people.email}}");
    d.write("s.yaml", &scenario);
    let out = d.loadgen(&["check", "s.yaml"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("s.yaml:11:"), "{err}");
    assert!(
        err.contains("`data.people.email`: the feeder has no such column"),
        "{err}"
    );
}

#[test]
fn constant_load_without_duration() {
    check_fails(
        &BASE.replace("duration: 2s\n", ""),
        "s.yaml:",
        "needs a `duration` to bound the run",
    );
}

#[test]
fn bad_flag_exits_2() {
    let d = Dir::new();
    let out = d.loadgen(&["run", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}
