//! The Markdown report, made for a PR comment: a headline verdict, summary tables (plain
//! metric names up front, per-tag keys folded away), threshold verdicts and the deltas
//! against a baseline with their direction. Every string from the run is escaped.

use std::fmt::Write as _;

use crate::compare::{display, Change, Check, Comparison};
use crate::run::{Metric, Run};
use crate::summary::{observed_text, ordered};
use crate::text;
use crate::text::human_us;

/// Renders `run` (and its comparison with a baseline, when given) as GitHub-flavoured
/// Markdown.
pub fn render(run: &Run, comparison: Option<&Comparison>) -> String {
    let mut out = String::new();
    headline(&mut out, run, comparison);

    let (plain, tagged): (Vec<_>, Vec<_>) = ordered(run)
        .into_iter()
        .partition(|(k, _)| k.tags.is_empty());
    metric_tables(&mut out, run, &plain);
    if !tagged.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>Per-tag metrics ({})</summary>\n",
            tagged.len()
        );
        metric_tables(&mut out, run, &tagged);
        out.push_str("</details>\n\n");
    }

    if !run.thresholds.is_empty() {
        out.push_str(
            "### Thresholds\n\n| | metric | threshold | observed |\n| --- | --- | --- | --: |\n",
        );
        for v in &run.thresholds {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                if v.ok { "✅" } else { "❌" },
                text::md(&v.metric),
                text::md(&v.expr),
                text::md(&observed_text(run, v)),
            );
        }
        out.push('\n');
    }
    if let Some(c) = comparison {
        baseline(&mut out, c);
    }
    out
}

fn headline(out: &mut String, run: &Run, comparison: Option<&Comparison>) {
    let failed = run.thresholds.iter().filter(|v| !v.ok).count();
    let regressed = comparison.map_or(0, Comparison::regressions);
    let mark = if failed + regressed == 0 {
        "✅"
    } else {
        "❌"
    };
    let mut why = Vec::new();
    if failed > 0 {
        why.push(format!(
            "{failed} of {} thresholds failed",
            run.thresholds.len()
        ));
    }
    if regressed > 0 {
        why.push(format!("{regressed} gated baseline checks regressed"));
    }
    let verdict = if why.is_empty() {
        "passed".to_string()
    } else {
        format!("failed: {}", why.join(", "))
    };
    let _ = writeln!(
        out,
        "## {mark} pushbench: {} {verdict}\n",
        text::md(&run.scenario)
    );
    if let Some(note) = crate::saturation::note(run) {
        let _ = writeln!(out, "> ⚠️ {note}\n");
    }
    let target = run
        .meta
        .as_ref()
        .and_then(|m| m.get("target"))
        .and_then(|t| t.as_str());
    let _ = write!(
        out,
        "Started {} · {}",
        run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        run.length_text()
    );
    if let Some(t) = target {
        let _ = write!(out, " · target {}", text::md(t));
    }
    if let Some(why) = run
        .meta
        .as_ref()
        .and_then(|m| m.get("stopped_early"))
        .and_then(|t| t.as_str())
    {
        let _ = write!(out, " · **stopped early**: {}", text::md(why));
    }
    out.push_str("\n\n");
    if let Some(line) = crate::summary::delivery_line(run) {
        let _ = writeln!(out, "{}\n", text::md(&line));
    }
}

fn metric_tables(out: &mut String, run: &Run, keys: &[(&crate::MetricKey, &Metric)]) {
    let mut hist = String::new();
    let mut counters = String::new();
    let mut gauges = String::new();
    for (key, metric) in keys {
        let name = text::md(&key.human());
        match metric {
            Metric::Histogram(h) => {
                let s = &h.summary;
                let _ = writeln!(
                    hist,
                    "| {name} | {} | {} | {} | {} | {} | {} |",
                    s.count,
                    human_us(s.mean),
                    human_us(s.p50 as f64),
                    human_us(s.p95 as f64),
                    human_us(s.p99 as f64),
                    human_us(s.max as f64)
                );
            }
            Metric::Counter(c) => {
                let (value, rate) = match c.total {
                    Some(t) => (
                        format!("{} / {t}", c.value),
                        if t == 0 {
                            "0.00%".to_string()
                        } else {
                            format!("{:.2}%", c.value as f64 * 100.0 / t as f64)
                        },
                    ),
                    None if run.load_s() > 0.0 => (
                        c.value.to_string(),
                        format!("{:.1}/s", c.value as f64 / run.load_s()),
                    ),
                    None => (c.value.to_string(), String::new()),
                };
                let _ = writeln!(counters, "| {name} | {value} | {rate} |");
            }
            Metric::Gauge(g) => {
                let _ = writeln!(gauges, "| {name} | {} | {} | {} |", g.value, g.min, g.max);
            }
        }
    }
    if !hist.is_empty() {
        out.push_str("| metric | count | avg | p50 | p95 | p99 | max |\n| --- | --: | --: | --: | --: | --: | --: |\n");
        out.push_str(&hist);
        out.push('\n');
    }
    if !counters.is_empty() {
        out.push_str("| counter | value | rate |\n| --- | --: | --: |\n");
        out.push_str(&counters);
        out.push('\n');
    }
    if !gauges.is_empty() {
        out.push_str("| gauge | last | min | max |\n| --- | --: | --: | --: |\n");
        out.push_str(&gauges);
        out.push('\n');
    }
}

fn baseline(out: &mut String, c: &Comparison) {
    let _ = writeln!(
        out,
        "### Baseline\n\nAgainst {} (latest started {}): {} regressed, {} improved, {} unchanged, {} inconclusive.\n\n{}.\n",
        text::md(&c.base_scenario),
        c.base_started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        c.count(Change::Regressed),
        c.count(Change::Improved),
        c.count(Change::Unchanged),
        c.count(Change::Inconclusive),
        text::md(&display::method(c)),
    );
    if !c.run_to_run {
        let _ = writeln!(out, "> ⚠️ {}\n", text::md(display::SINGLE_RUN_WARNING));
    }
    for m in &c.mismatches {
        let _ = writeln!(
            out,
            "> ⚠️ forced comparison of unlike runs: {}",
            text::md(m)
        );
    }
    if !c.mismatches.is_empty() {
        out.push('\n');
    }
    let (gated, reported): (Vec<&Check>, Vec<&Check>) = c.checks.iter().partition(|k| k.gated);
    let (moved, still): (Vec<&Check>, Vec<&Check>) = gated
        .into_iter()
        .partition(|k| k.change != Change::Unchanged);
    if !moved.is_empty() {
        check_table(out, &moved);
    }
    if !still.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>Unchanged ({})</summary>\n",
            still.len()
        );
        check_table(out, &still);
        out.push_str("</details>\n\n");
    }
    if !reported.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>Reported, not gated ({}; corrected for their own number)</summary>\n",
            reported.len()
        );
        check_table(out, &reported);
        out.push_str("</details>\n\n");
    }
    if !c.unmatched.is_empty() {
        let _ = writeln!(
            out,
            "Not compared: {}\n",
            c.unmatched
                .iter()
                .map(|u| text::md(u))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn check_table(out: &mut String, checks: &[&Check]) {
    out.push_str(
        "| metric | stat | baseline | new | Δ | change [interval] | confidence | p | verdict |\n| --- | --- | --: | --: | --: | --: | --: | --: | --- |\n",
    );
    for k in checks {
        let arrow = if k.new > k.base {
            "▲"
        } else if k.new < k.base {
            "▼"
        } else {
            "="
        };
        let verdict = match k.change {
            Change::Improved => "🟢 Improved (better)",
            Change::Regressed => "🔴 Regressed (worse)",
            Change::Unchanged => "⚪ Unchanged",
            Change::Inconclusive => "🟡 Inconclusive",
        };
        let note = k
            .note
            .as_deref()
            .map(|n| format!(": {}", text::md(n)))
            .unwrap_or_default();
        let (confidence, p) = k.estimate.map_or_else(
            || ("–".to_string(), "–".to_string()),
            |e| (display::percent(e.confidence), display::p_value(e.p)),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {arrow} {} | {} | {confidence} | {} | {verdict}{note} |",
            text::md(&k.metric),
            k.stat,
            display::value(k.unit, k.base),
            display::value(k.unit, k.new),
            display::delta(k),
            display::interval(k),
            p.trim_start_matches("p=").replace("p<", "<"),
        );
    }
    out.push('\n');
}
