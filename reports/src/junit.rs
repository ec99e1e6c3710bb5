//! The JUnit XML report for CI test tabs: one test case per threshold (suite `thresholds`)
//! and one per gated baseline check (suite `baseline`), checks only reported in suite
//! `baseline-reported` (never failing); a failure carries the numbers: the change with its
//! interval, the confidence, the p-value and the correction. An inconclusive baseline check
//! is reported as skipped, with its reason.

use std::fmt::Write as _;

use crate::compare::{display, Change, Check, Comparison};
use crate::run::Run;
use crate::summary::observed_text;
use crate::text::xml;

/// Renders the gates of `run` (and of its comparison, when given) as JUnit XML.
pub fn render(run: &Run, comparison: Option<&Comparison>) -> String {
    let stamp = run.started_at.format("%Y-%m-%dT%H:%M:%S");
    let class = |suite: &str| xml(&format!("pushbench.{}.{suite}", run.scenario));
    let threshold_failures = run.thresholds.iter().filter(|v| !v.ok).count();
    let (checks, regressions, skipped) = comparison.map_or((0, 0, 0), |c| {
        (
            c.checks.len(),
            c.regressions(),
            c.count(Change::Inconclusive),
        )
    });

    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\">",
        xml(&format!("pushbench {}", run.scenario)),
        run.thresholds.len() + checks,
        threshold_failures + regressions,
        run.duration_s
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"thresholds\" tests=\"{}\" failures=\"{threshold_failures}\" errors=\"0\" skipped=\"0\" timestamp=\"{stamp}\" time=\"{:.3}\">",
        run.thresholds.len(),
        run.duration_s
    );
    for v in &run.thresholds {
        let name = xml(&format!("{} {}", v.metric, v.expr));
        let observed = observed_text(run, v);
        if v.ok {
            let _ = writeln!(
                out,
                "    <testcase name=\"{name}\" classname=\"{}\" time=\"0\">\n      <system-out>observed {}</system-out>\n    </testcase>",
                class("thresholds"),
                xml(&observed)
            );
        } else {
            let message = match v.observed {
                Some(raw) if raw.to_string() != observed => format!(
                    "{} {}: observed {observed} (raw {raw}), which does not hold",
                    v.metric, v.expr
                ),
                Some(_) => format!(
                    "{} {}: observed {observed}, which does not hold",
                    v.metric, v.expr
                ),
                None => format!("{} {}: {observed}", v.metric, v.expr),
            };
            let _ = writeln!(
                out,
                "    <testcase name=\"{name}\" classname=\"{}\" time=\"0\">\n      <failure message=\"{}\" type=\"threshold\">{}</failure>\n    </testcase>",
                class("thresholds"),
                xml(&message),
                xml(&message)
            );
        }
    }
    if let Some(note) = crate::saturation::note(run) {
        let _ = writeln!(out, "    <system-out>{}</system-out>", xml(&note));
    }
    out.push_str("  </testsuite>\n");

    if let Some(c) = comparison {
        let method = display::method(c);
        for gated in [true, false] {
            let cases: Vec<&Check> = c.checks.iter().filter(|k| k.gated == gated).collect();
            if cases.is_empty() {
                continue;
            }
            let suite = if gated {
                "baseline"
            } else {
                "baseline-reported"
            };
            let failures = cases
                .iter()
                .filter(|k| gated && k.change == Change::Regressed)
                .count();
            let skipped = cases
                .iter()
                .filter(|k| k.change == Change::Inconclusive)
                .count();
            let _ = writeln!(
                out,
                "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" timestamp=\"{stamp}\" time=\"0\">",
                cases.len()
            );
            let mut properties = vec![("method", method.clone())];
            if !c.mismatches.is_empty() {
                properties.push(("forced", c.mismatches.join("; ")));
            }
            out.push_str("    <properties>\n");
            for (name, value) in properties {
                let _ = writeln!(
                    out,
                    "      <property name=\"{name}\" value=\"{}\"/>",
                    xml(&value)
                );
            }
            out.push_str("    </properties>\n");
            for k in cases {
                case(&mut out, k, &class(suite), gated);
            }
            out.push_str("  </testsuite>\n");
        }
    }
    out.push_str("</testsuites>\n");
    out
}

/// One baseline check as a test case.
fn case(out: &mut String, k: &Check, class: &str, gated: bool) {
    let name = xml(&format!("{} {}", k.metric, k.stat));
    let numbers = format!(
        "{} {}: baseline {}, new {}, delta {}; {} (minimum effect ±{})",
        k.metric,
        k.stat,
        display::value(k.unit, k.base),
        display::value(k.unit, k.new),
        display::delta(k),
        display::tested(k),
        display::percent(k.min_effect)
    );
    let _ = write!(
        out,
        "    <testcase name=\"{name}\" classname=\"{class}\" time=\"0\">"
    );
    let body = match k.change {
        Change::Regressed if gated => format!(
            "\n      <failure message=\"{} regressed\" type=\"baseline\">{}</failure>\n    ",
            xml(&numbers),
            xml(&numbers)
        ),
        Change::Inconclusive => format!(
            "\n      <skipped message=\"{}\"/>\n    ",
            xml(&match &k.estimate {
                Some(_) => format!("{numbers}; {}", k.note.as_deref().unwrap_or("inconclusive")),
                None => numbers,
            })
        ),
        change => format!(
            "\n      <system-out>{change}: {}</system-out>\n    ",
            xml(&numbers)
        ),
    };
    out.push_str(&body);
    out.push_str("</testcase>\n");
}
