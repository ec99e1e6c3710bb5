//! The terminal table: one row per metric (plain names first, then tagged keys, sorted),
//! then the threshold verdicts; and the plain-text view of a baseline comparison. Plain
//! aligned text; colour only when asked for.

use std::fmt::Write as _;

use crate::compare::{display, Change, Check, Comparison};
use crate::key::MetricKey;
use crate::run::{Metric, Run};
use crate::text::human_us;
use crate::threshold::{Agg, Expr, Verdict};

/// How [`render_table`] draws.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// Colour the verdict marks with ANSI escapes.
    pub colour: bool,
}

/// Rows of cells; the first column left-aligned, the others right-aligned.
fn push_table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[c] - cell.chars().count());
            if c == 0 {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str("  ");
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Keys in table order: plain names first, then tagged keys, each sorted.
pub(crate) fn ordered(run: &Run) -> Vec<(&MetricKey, &Metric)> {
    let mut keys: Vec<_> = run.metrics.iter().collect();
    keys.sort_by_key(|(k, _)| (!k.tags.is_empty(), *k));
    keys
}

/// Whether the rate of `metric` is a fraction (a hit/miss counter) rather than per second.
fn rate_is_fraction(run: &Run, metric: &str) -> bool {
    let Ok(filter) = metric.parse::<MetricKey>() else {
        return false;
    };
    run.metrics
        .iter()
        .find(|(k, _)| k.matches(&filter))
        .is_some_and(|(_, m)| matches!(m, Metric::Counter(c) if c.total.is_some()))
}

pub(crate) fn observed_text(run: &Run, v: &Verdict) -> String {
    let Some(observed) = v.observed else {
        return v.message.clone().unwrap_or_default();
    };
    match v.expr.parse::<Expr>().map(|e| e.agg) {
        Ok(a) if a.is_latency() => human_us(observed),
        Ok(Agg::Count) => format!("{observed}"),
        Ok(Agg::Rate) if rate_is_fraction(run, &v.metric) => {
            format!("{:.2}%", observed * 100.0)
        }
        Ok(Agg::Rate) => format!("{observed:.1}/s"),
        _ => format!("{observed}"),
    }
}

/// A metric key as the terminal shows it: tag values come from scenario files (step names),
/// so control characters are escaped and long ones cut.
fn shown(key: &MetricKey) -> String {
    common::printable::printable(&key.human(), 200).into_owned()
}

/// The delivery outcome of every tracked (push, device) pair in one line, when the run tracked
/// pushes: received and lost out of expected, and beside them the pairs that could not be
/// verified (the device was away and the gateway's promise did not cover it), duplicates and
/// pushes nobody tracked.
pub fn delivery_line(run: &Run) -> Option<String> {
    let counter = |name: &str| match run.metrics.get(&MetricKey::new(name)) {
        Some(Metric::Counter(c)) => Some(c.value),
        _ => None,
    };
    let expected = counter("delivery_expected")?;
    let lost = counter("delivery_lost").unwrap_or(0);
    Some(format!(
        "delivery: {} received of {expected} expected, {lost} lost ({}), {} not verifiable, {} duplicates, {} unexpected",
        counter("delivery_received").unwrap_or(0),
        if expected > 0 {
            format!("{:.3}%", lost as f64 * 100.0 / expected as f64)
        } else {
            "–".into()
        },
        counter("delivery_unverifiable").unwrap_or(0),
        counter("delivery_duplicates").unwrap_or(0),
        counter("delivery_unexpected").unwrap_or(0),
    ))
}

/// Renders `run` as a plain-text table.
pub fn render_table(run: &Run, opts: &TableOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — started {} — {}",
        common::printable::printable(&run.scenario, 200),
        run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        run.length_text()
    );
    if let Some(note) = crate::saturation::note(run) {
        let _ = writeln!(out, "{note}");
    }
    if let Some(line) = delivery_line(run) {
        let _ = writeln!(out, "{line}");
    }
    let keys = ordered(run);

    let mut hist_rows = vec![[
        "metric", "count", "min", "avg", "p50", "p90", "p95", "p99", "max",
    ]
    .map(String::from)
    .to_vec()];
    let mut counter_rows = vec![["metric", "value", "rate"].map(String::from).to_vec()];
    let mut gauge_rows = vec![["gauge", "last", "min", "max"].map(String::from).to_vec()];
    for (key, metric) in keys {
        match metric {
            Metric::Histogram(h) => {
                let s = &h.summary;
                let mut row = vec![shown(key), s.count.to_string()];
                for v in [
                    s.min as f64,
                    s.mean,
                    s.p50 as f64,
                    s.p90 as f64,
                    s.p95 as f64,
                    s.p99 as f64,
                    s.max as f64,
                ] {
                    row.push(human_us(v));
                }
                hist_rows.push(row);
            }
            Metric::Counter(c) => {
                let rate = match c.total {
                    Some(0) => "0.00%".to_string(),
                    Some(total) => format!("{:.2}%", c.value as f64 * 100.0 / total as f64),
                    None if run.load_s() > 0.0 => {
                        format!("{:.1}/s", c.value as f64 / run.load_s())
                    }
                    None => String::new(),
                };
                let value = match c.total {
                    Some(total) => format!("{} / {}", c.value, total),
                    None => c.value.to_string(),
                };
                counter_rows.push(vec![shown(key), value, rate]);
            }
            Metric::Gauge(g) => gauge_rows.push(vec![
                shown(key),
                g.value.to_string(),
                g.min.to_string(),
                g.max.to_string(),
            ]),
        }
    }
    if hist_rows.len() > 1 {
        out.push('\n');
        push_table(&mut out, &hist_rows);
    }
    if counter_rows.len() > 1 {
        out.push('\n');
        push_table(&mut out, &counter_rows);
    }
    if gauge_rows.len() > 1 {
        out.push('\n');
        push_table(&mut out, &gauge_rows);
    }
    if !run.thresholds.is_empty() {
        out.push_str("\nthresholds\n");
        let rows: Vec<Vec<String>> = run
            .thresholds
            .iter()
            .map(|v| {
                let mark = match (v.ok, opts.colour) {
                    (true, false) => "✓".to_string(),
                    (false, false) => "✗".to_string(),
                    (true, true) => "\x1b[32m✓\x1b[0m".to_string(),
                    (false, true) => "\x1b[31m✗\x1b[0m".to_string(),
                };
                vec![
                    format!("{mark} {} {}", v.metric, v.expr),
                    observed_text(run, v),
                ]
            })
            .collect();
        push_table(&mut out, &rows);
    }
    out
}

/// The verdicts of a comparison as plain text: a headline with the counts, how the comparison
/// was made, then one line per check — only the ones that moved (and gated inconclusive ones)
/// when `brief` — with the change, its interval, the confidence and the p-value.
pub fn comparison_text(c: &Comparison, brief: bool) -> String {
    let mut out = format!(
        "baseline `{}` ({}): {} regressed, {} improved, {} unchanged, {} inconclusive\n  {}\n",
        c.base_scenario,
        c.base_started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        c.count(Change::Regressed),
        c.count(Change::Improved),
        c.count(Change::Unchanged),
        c.count(Change::Inconclusive),
        display::method(c)
    );
    if !c.run_to_run {
        let _ = writeln!(out, "  warning: {}", display::SINGLE_RUN_WARNING);
    }
    for m in &c.mismatches {
        let _ = writeln!(out, "  forced: {m}");
    }
    let shown = |k: &&Check| {
        !brief
            || matches!(k.change, Change::Regressed | Change::Improved)
            || (k.gated && k.change == Change::Inconclusive)
    };
    for k in c.checks.iter().filter(shown) {
        let _ = writeln!(
            out,
            "  {:<12} {}{} {}: {} -> {} ({}) {}{}",
            k.change.to_string(),
            if k.gated { "" } else { "(reported) " },
            k.metric,
            k.stat,
            display::value(k.unit, k.base),
            display::value(k.unit, k.new),
            display::delta(k),
            display::tested(k),
            match (&k.estimate, &k.note) {
                (Some(_), Some(n)) => format!(" — {n}"),
                _ => String::new(),
            }
        );
    }
    if !c.unmatched.is_empty() {
        let _ = writeln!(out, "  not compared: {}", c.unmatched.join(", "));
    }
    out
}
