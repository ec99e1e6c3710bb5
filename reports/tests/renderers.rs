//! The renderers against fixed runs: golden files for Markdown, JUnit and JSON (rewrite them
//! with `UPDATE_GOLDEN=1`), escaping of hostile names, the `.hlog` round trip through the
//! hdrhistogram crate's reader and through HdrHistogram's Python `HistogramLogReader`.

mod common;

use std::path::PathBuf;

use common::{counts, fixture_run};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use reports::run::{Metric, Series};
use reports::{compare, render, CompareOptions, Format, Run};

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or(expected.lines().count().min(actual.lines().count()), |i| i);
        panic!(
            "{} differs from the rendering at line {} (UPDATE_GOLDEN=1 rewrites it):\n- {}\n+ {}",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>")
        );
    }
}

fn text(format: Format, run: &Run, c: Option<&reports::Comparison>) -> String {
    String::from_utf8(render(format, run, c).unwrap()).unwrap()
}

/// A baseline and a new run 30% slower: latency regresses, throughput holds.
fn pair() -> (Run, Run, reports::Comparison) {
    let base = fixture_run("push-fanout", 1, 1.0, 20);
    let new = fixture_run("push-fanout", 2, 1.3, 20);
    let c = compare(&base, &new, &CompareOptions::default()).unwrap();
    (base, new, c)
}

#[test]
fn markdown_matches_golden() {
    let (_, new, c) = pair();
    golden("report.md", &text(Format::Markdown, &new, Some(&c)));
    golden("report-no-baseline.md", &text(Format::Markdown, &new, None));
}

#[test]
fn junit_matches_golden() {
    let (_, new, c) = pair();
    golden("report.xml", &text(Format::Junit, &new, Some(&c)));
}

#[test]
fn json_matches_golden_and_reads_back() {
    let run = fixture_run("push-fanout", 1, 1.0, 3);
    let json = text(Format::Json, &run, None);
    golden("run.json", &json);
    // Read back and written again, the text is the same.
    let back = Run::from_json_str(&json).unwrap();
    assert_eq!(text(Format::Json, &back, None), json);
    assert_eq!(back, run);
}

#[test]
fn junit_has_one_case_per_gate_and_failures_carry_numbers() {
    let (_, new, c) = pair();
    let xml = text(Format::Junit, &new, Some(&c));
    let cases = xml.matches("<testcase ").count();
    assert_eq!(cases, new.thresholds.len() + c.checks.len());
    let failures = xml.matches("<failure ").count();
    let failed_thresholds = new.thresholds.iter().filter(|v| !v.ok).count();
    assert!(c.regressed());
    assert_eq!(
        failures,
        failed_thresholds + c.count(reports::Change::Regressed)
    );
    assert!(
        xml.contains("http_req_duration p99: baseline ") && xml.contains("regressed"),
        "{xml}"
    );
    assert!(
        xml.contains("delivery_lost count == 0: observed 2"),
        "{xml}"
    );
}

#[test]
fn markdown_shows_deltas_with_direction() {
    let (_, new, c) = pair();
    let md = text(Format::Markdown, &new, Some(&c));
    let row = md
        .lines()
        .find(|l| l.starts_with("| http\\_req\\_duration | p99 |"))
        .expect("a p99 row for http_req_duration");
    assert!(
        row.contains("▲ +") && row.contains("Regressed (worse)"),
        "{row}"
    );
    assert!(
        md.starts_with("## ❌ pushbench: push-fanout failed"),
        "{md}"
    );
}

/// Names, tags and meta carrying markup must come out as text in every format.
fn hostile_run() -> Run {
    let mut run = fixture_run("<script>alert('x')</script>", 3, 1.0, 3);
    let evil = "http_req_duration{journey=<img src=x onerror=alert(1)>|`*_}"
        .parse()
        .unwrap();
    let m = run
        .metrics
        .values()
        .find(|m| matches!(m, Metric::Histogram(_)))
        .unwrap()
        .clone();
    run.metrics.insert(evil, m);
    run.meta =
        Some(serde_json::json!({"host": "</td><script>alert(2)</script>", "note": "a & b \"q\""}));
    run
}

#[test]
fn every_string_from_the_run_is_escaped() {
    let run = hostile_run();
    let html = text(Format::Html, &run, None);
    // The only script element is the report's own, at the end.
    assert_eq!(html.matches("<script>").count(), 1, "{html}");
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;"));
    for chunk in html
        .split("<script type=\"application/json\" class=\"chart-data\">")
        .skip(1)
    {
        let data = &chunk[..chunk.find("</script>").unwrap()];
        assert!(
            !data.contains('<'),
            "chart data must not hold a raw `<`: {data}"
        );
    }
    let md = text(Format::Markdown, &run, None);
    assert!(!md.contains("<script>") && !md.contains("<img"), "{md}");
    assert!(md.contains("\\|\\`\\*\\_"), "{md}");
    let xml = text(Format::Junit, &run, None);
    assert!(!xml.contains("<script>"), "{xml}");
    assert!(xml.contains("&lt;script&gt;"));
}

#[test]
fn html_has_every_chart_for_a_device_run() {
    let (_, new, c) = pair();
    let html = text(Format::Html, &new, Some(&c));
    for id in [
        "chart-rate",
        "chart-latency-0",
        "chart-percentiles",
        "chart-errors",
        "chart-connections",
        "chart-delivery",
    ] {
        assert!(
            html.contains(&format!("<svg class=\"chart\" id=\"{id}\"")),
            "{id} missing"
        );
    }
    assert!(html.contains("id=\"baseline\"") && html.contains("id=\"thresholds\""));
    assert!(html.contains("ci-runner-7"), "meta shown");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing to fetch"
    );
    assert!(html.contains(">99.9%<"), "percentile axis labels");
    // Every time chart spans the whole run, whichever second its data ends in, so the
    // charts line up: here the run went on 5 s after its last data (seconds 0..=24).
    let mut drained = new.clone();
    drained.duration_s = 25.0;
    let html = text(Format::Html, &drained, Some(&c));
    let spans: Vec<&str> = html
        .split("<svg class=\"chart\" id=\"")
        .skip(1)
        .filter(|svg| !svg.starts_with("chart-percentiles"))
        .map(|svg| {
            let at = svg.find("data-x-max=\"").unwrap() + "data-x-max=\"".len();
            &svg[at..at + svg[at..].find('"').unwrap()]
        })
        .collect();
    assert!(spans.len() >= 5, "{spans:?}");
    assert!(spans.iter().all(|s| *s == "24"), "{spans:?}");
    // The delivery table shows the pairs that could not be verified beside the lost ones.
    assert!(html.contains("<th>lost</th><th>loss</th><th>not verifiable</th>"));
}

/// Tag values reach the page as the scenario wrote them: a step named after its template
/// (`POST /push/{{to}}`) is not shown with the run file's escapes.
#[test]
fn html_and_markdown_show_step_names_as_written() {
    let mut run = fixture_run("push-fanout", 1, 1.0, 3);
    let key: reports::MetricKey = "http_reqs{journey=unicast,step=POST /push/\\{\\{to\\}\\}}"
        .parse()
        .unwrap();
    assert_eq!(key.tags["step"], "POST /push/{{to}}");
    let any = run
        .metrics
        .values()
        .find(|m| matches!(m, Metric::Counter(_)))
        .cloned()
        .unwrap();
    run.metrics.insert(key, any);
    for format in [Format::Html, Format::Markdown] {
        let page = text(format, &run, None);
        assert!(page.contains("step=POST /push/{{to}}"), "{format:?}");
        assert!(!page.contains("\\{"), "{format:?}");
    }
}

#[test]
fn hlog_round_trips_through_the_crate_reader() {
    let run = fixture_run("push-fanout", 1, 1.0, 5);
    let log = render(Format::Hlog, &run, None).unwrap();
    let mut start = None;
    let mut per_tag: std::collections::BTreeMap<String, hdrhistogram::Histogram<u64>> =
        Default::default();
    let mut intervals = 0;
    for entry in IntervalLogIterator::new(&log) {
        match entry.unwrap() {
            LogEntry::StartTime(t) => start = Some(t),
            LogEntry::BaseTime(_) => {}
            LogEntry::Interval(i) => {
                intervals += 1;
                assert_eq!(i.duration(), std::time::Duration::from_secs(1));
                let bytes = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    i.encoded_histogram(),
                )
                .unwrap();
                let h: hdrhistogram::Histogram<u64> = Deserializer::new()
                    .deserialize(&mut bytes.as_slice())
                    .unwrap();
                assert!(
                    (i.max() - h.max() as f64 / 1000.0).abs() < 0.01,
                    "max column in ms"
                );
                let tag = i.tag().unwrap().as_str().to_string();
                let acc = per_tag
                    .entry(tag)
                    .or_insert_with(|| hdrhistogram::Histogram::new(3).unwrap());
                acc.add(&h).unwrap();
            }
        }
    }
    let expected_start = run.started_at.timestamp_millis() as f64 / 1e3;
    assert!((start.unwrap().as_secs_f64() - expected_start).abs() < 0.001);
    let series: usize = run
        .series
        .values()
        .map(|s| {
            if let Series::Histogram(p) = s {
                p.len()
            } else {
                0
            }
        })
        .sum();
    assert_eq!(intervals, series);
    for (key, metric) in &run.metrics {
        if let Metric::Histogram(_) = metric {
            let whole = run.histogram(key).unwrap().unwrap();
            let tag = reports::hlog::tag_for(key);
            assert_eq!(counts(&per_tag[&tag]), counts(&whole), "{key}");
        }
    }
}

/// HdrHistogram's own Python reader (PyPI `hdrhistogram`, installed by scripts/test.sh) reads
/// the log: the total count per tag and the p99 of the whole must match.
#[test]
fn hlog_is_read_by_hdrhistogram_python() {
    let run = fixture_run("push-fanout", 1, 1.0, 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.hlog");
    std::fs::write(&path, render(Format::Hlog, &run, None).unwrap()).unwrap();
    let script = r#"
import sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
ref = HdrHistogram(1, 3600 * 1000 * 1000, 3)
reader = HistogramLogReader(sys.argv[1], ref)
totals = {}
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    tag = h.get_tag()
    acc = totals.setdefault(tag, HdrHistogram(1, 3600 * 1000 * 1000, 3))
    acc.add(h)
for tag in sorted(totals):
    print(tag, totals[tag].get_total_count(), totals[tag].get_value_at_percentile(99))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs (scripts/test.sh installs it and PyPI hdrhistogram)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut seen = 0;
    for line in stdout.lines() {
        let mut parts = line.split(' ');
        let (tag, count, p99) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let key = run
            .metrics
            .keys()
            .find(|k| reports::hlog::tag_for(k) == tag)
            .unwrap_or_else(|| panic!("unknown tag {tag}"));
        let h = run.histogram(key).unwrap().unwrap();
        assert_eq!(count.parse::<u64>().unwrap(), h.len(), "{tag}");
        let p99: u64 = p99.parse().unwrap();
        assert!(
            h.equivalent(p99, h.value_at_quantile(0.99)),
            "{tag}: {p99} vs {}",
            h.value_at_quantile(0.99)
        );
        seen += 1;
    }
    let hist_metrics = run
        .metrics
        .values()
        .filter(|m| matches!(m, Metric::Histogram(_)))
        .count();
    assert_eq!(seen, hist_metrics, "{stdout}");
}

/// Interval lines are byte for byte what the crate's own `IntervalLogWriter` writes.
#[test]
fn hlog_lines_match_the_crate_writer() {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    let run = fixture_run("push-fanout", 4, 1.0, 3);
    let ours = String::from_utf8(render(Format::Hlog, &run, None).unwrap()).unwrap();
    let mut points = Vec::new();
    for (key, s) in &run.series {
        if let Series::Histogram(ps) = s {
            points.extend(ps.iter().map(|p| (p.t, key.clone(), p.hist.clone())));
        }
    }
    points.sort();
    let mut buf = Vec::new();
    let mut ser = hdrhistogram::serialization::V2DeflateSerializer::new();
    let mut w = IntervalLogWriterBuilder::new()
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut buf, &mut ser)
        .unwrap();
    for (t, key, text) in &points {
        let h = reports::hist::decode(text).unwrap();
        let tag = reports::hlog::tag_for(key);
        w.write_histogram(
            &h,
            std::time::Duration::from_secs(u64::from(*t)),
            std::time::Duration::from_secs(1),
            Tag::new(&tag),
        )
        .unwrap();
    }
    drop(w);
    let theirs = String::from_utf8(buf).unwrap();
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&ours), strip(&theirs));
    assert_eq!(strip(&ours).len(), points.len());
}

/// Every renderer shows the statistical verdicts: the change with its interval, the
/// confidence, the p-value, the correction (Holm over the gated checks), the design, and the
/// checks only reported apart from the gated ones.
#[test]
fn comparisons_render_intervals_confidence_and_the_correction() {
    use reports::{compare_runs, GateOptions, Labeled, Scope};
    let runs: Vec<Run> = (1..=3)
        .map(|seed| fixture_run("push-fanout", seed, 1.0, 10))
        .collect();
    let new = fixture_run("push-fanout", 9, 1.3, 10);
    let base: Vec<Labeled<'_>> = runs.iter().map(|r| Labeled::new("", r)).collect();
    let opts = GateOptions {
        scope: Scope::AskedAndRest(Vec::new()),
        ..GateOptions::default()
    };
    let c = compare_runs(&base, &[Labeled::new("", &new)], &opts).unwrap();
    assert!(c.run_to_run && c.regressed());
    let gated = c.tests(true);
    let method = format!(
        "3 baseline runs against 1 new run, run-to-run noise measured; false-alarm rate 5% for the whole comparison (Holm over {gated} gated checks; {} reported checks corrected apart)",
        c.tests(false)
    );
    let p99 = c
        .checks
        .iter()
        .find(|k| k.metric == "http_req_duration" && k.stat == "p99")
        .unwrap();
    let interval = reports::compare::display::interval(p99);
    assert!(
        interval.starts_with('+') && interval.contains(" ["),
        "{interval}"
    );

    let md = text(Format::Markdown, &new, Some(&c));
    assert!(md.contains(&reports::text::md(&method)), "{md}");
    assert!(!md.contains("one run a side"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with("| http\\_req\\_duration | p99 |"))
        .unwrap();
    assert!(
        row.contains(&interval) && row.contains("Regressed"),
        "{row}"
    );
    assert!(md.contains("<summary>Reported, not gated ("), "{md}");

    let html = text(Format::Html, &new, Some(&c));
    assert!(html.contains("<th>change [interval]</th><th>confidence</th><th>p</th>"));
    assert!(html.contains(&reports::text::xml(&method)), "method shown");
    assert!(html.contains("<td>reported</td>"), "reported checks marked");

    let xml = text(Format::Junit, &new, Some(&c));
    assert!(
        xml.contains("<testsuite name=\"baseline-reported\""),
        "{xml}"
    );
    let reported_failures = xml
        .split("<testsuite name=\"baseline-reported\"")
        .nth(1)
        .unwrap()
        .matches("<failure ")
        .count();
    assert_eq!(reported_failures, 0, "reported checks never fail");
    assert!(xml.contains(&format!("{interval} at ")), "{xml}");

    let plain = text(Format::Text, &new, Some(&c));
    assert!(plain.contains(&method), "{plain}");
    assert!(
        plain.contains("Regressed    http_req_duration p99: "),
        "{plain}"
    );
}
