//! The terminal table.

mod common;

use std::time::{Duration, Instant};

use common::{key, started_at};
use reports::summary::{render_table, TableOptions};
use reports::text::human_us;
use reports::threshold::{evaluate, Threshold};
use reports::{Recorder, RunBuilder};

#[test]
fn human_units() {
    assert_eq!(human_us(850.0), "850µs");
    assert_eq!(human_us(0.0), "0µs");
    assert_eq!(human_us(12_345.0), "12.3ms");
    assert_eq!(human_us(1_234.0), "1.23ms");
    assert_eq!(human_us(123_456.0), "123ms");
    assert_eq!(human_us(1_200_000.0), "1.20s");
    assert_eq!(human_us(999_999.0), "1.00s");
    assert_eq!(human_us(75_300_000.0), "75.3s");
}

#[test]
fn table_has_a_row_per_metric_and_the_verdicts() {
    let origin = Instant::now();
    let mut rec = Recorder::new(origin);
    for v in [850u64, 12_300, 1_200_000] {
        rec.record(
            key("http_req_duration{journey=unicast,step=push}"),
            origin,
            v,
        );
        rec.add(key("http_reqs{journey=unicast,step=push}"), origin, 1);
        rec.count(
            key("http_req_failed{journey=unicast,step=push}"),
            origin,
            v > 1_000_000,
        );
    }
    let mut b = RunBuilder::new("quickstart", started_at(), origin);
    b.absorb(rec.take());
    let mut run = b.finish(Duration::from_secs(3));
    run.thresholds = evaluate(
        &run,
        &[
            Threshold::parse("http_req_duration", "p(99) < 500ms").unwrap(),
            Threshold::parse("http_req_failed", "rate < 50%").unwrap(),
            Threshold::parse("missing", "count == 0").unwrap(),
            Threshold::parse("http_reqs{journey=unicast}", "rate > 0.5").unwrap(),
        ],
    );
    let table = render_table(&run, &TableOptions::default());
    println!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    let row = |start: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row `{start}` in\n{table}"))
    };
    assert_eq!(
        lines[0],
        "quickstart — started 2026-11-25 19:20:00 UTC — 3.0 s"
    );
    let header = row("metric ");
    assert!(header.contains("count") && header.trim_end().ends_with("max"));
    let plain = row("http_req_duration ");
    for cell in ["3", "850µs", "12.3ms", "1.20s"] {
        assert!(plain.contains(cell), "{plain}");
    }
    row("http_req_duration{journey=unicast} ");
    row("http_req_duration{journey=unicast,step=push} ");
    assert!(row("http_reqs ").ends_with("1.0/s"));
    assert!(row("http_req_failed ").contains("1 / 3"));
    assert!(row("http_req_failed ").ends_with("33.33%"));
    assert!(row("✗ http_req_duration p(99) < 500ms").ends_with("1.20s"));
    assert!(row("✓ http_req_failed rate < 50%").ends_with("33.33%"));
    assert!(row("✗ missing count == 0").ends_with("unknown metric `missing`"));
    assert!(row("✓ http_reqs{journey=unicast} rate > 0.5").ends_with("1.0/s"));

    // Plain names come before tagged keys; columns are aligned.
    let pos = |s: &str| lines.iter().position(|l| l.starts_with(s)).unwrap();
    assert!(pos("http_req_duration ") < pos("http_req_duration{"));
    let width = |l: &str| l.chars().count();
    assert_eq!(width(header), width(plain));

    let coloured = render_table(&run, &TableOptions { colour: true });
    assert!(coloured.contains("\x1b[31m✗\x1b[0m"));
    assert!(!table.contains('\x1b'));

    // Load applied for 1.5 s of the 3 (the rest drained work in flight): rates, in the table
    // and in thresholds, are over the 1.5 s, and the heading says so.
    run.meta = Some(serde_json::json!({ "load_s": 1.5 }));
    run.thresholds = evaluate(&run, &[Threshold::parse("http_reqs", "rate == 2").unwrap()]);
    assert!(run.thresholds[0].ok, "{:?}", run.thresholds);
    let table = render_table(&run, &TableOptions::default());
    let first = table.lines().next().unwrap();
    assert_eq!(
        first,
        "quickstart — started 2026-11-25 19:20:00 UTC — 3.0 s (load applied 1.5 s, rates are over it)"
    );
    let reqs = table.lines().find(|l| l.starts_with("http_reqs ")).unwrap();
    assert!(reqs.ends_with("2.0/s"), "{reqs}");
}
