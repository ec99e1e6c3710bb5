//! The JUnit XML report for CI test tabs: one test case per threshold (suite `thresholds`)
//! and one per baseline check (suite `baseline`); a failure carries the observed numbers.
//! An inconclusive baseline check is reported as skipped, with its reason.

use std::fmt::Write as _;

use crate::compare::{Change, Comparison};
use crate::run::Run;
use crate::summary::observed_text;
use crate::text::{self, xml};

/// Renders the gates of `run` (and of its comparison, when given) as JUnit XML.
pub fn render(run: &Run, comparison: Option<&Comparison>) -> String {
    let stamp = run.started_at.format("%Y-%m-%dT%H:%M:%S");
    let class = |suite: &str| xml(&format!("pushbench.{}.{suite}", run.scenario));
    let threshold_failures = run.thresholds.iter().filter(|v| !v.ok).count();
    let (checks, regressions, skipped) = comparison.map_or((0, 0, 0), |c| {
        (
            c.checks.len(),
            c.count(Change::Regressed),
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
        let _ = writeln!(
            out,
            "  <testsuite name=\"baseline\" tests=\"{checks}\" failures=\"{regressions}\" errors=\"0\" skipped=\"{skipped}\" timestamp=\"{stamp}\" time=\"0\">"
        );
        if !c.mismatches.is_empty() {
            let _ = writeln!(
                out,
                "    <properties>\n      <property name=\"forced\" value=\"{}\"/>\n    </properties>",
                xml(&c.mismatches.join("; "))
            );
        }
        for k in &c.checks {
            let name = xml(&format!("{} {}", k.metric, k.stat));
            let numbers = format!(
                "{} {}: baseline {}, new {}, delta {} (noise band ±{}%)",
                k.metric,
                k.stat,
                text::value(k.unit, k.base),
                text::value(k.unit, k.new),
                text::delta(k),
                c.noise * 100.0
            );
            let _ = write!(
                out,
                "    <testcase name=\"{name}\" classname=\"{}\" time=\"0\">",
                class("baseline")
            );
            let body = match k.change {
                Change::Regressed => format!(
                    "\n      <failure message=\"{} regressed\" type=\"baseline\">{}</failure>\n    ",
                    xml(&numbers),
                    xml(&numbers)
                ),
                Change::Inconclusive => format!(
                    "\n      <skipped message=\"{}\"/>\n    ",
                    xml(&format!(
                        "{numbers}; {}",
                        k.note.as_deref().unwrap_or("inconclusive")
                    ))
                ),
                Change::Improved | Change::Unchanged => format!(
                    "\n      <system-out>{}: {}</system-out>\n    ",
                    k.change,
                    xml(&numbers)
                ),
            };
            out.push_str(&body);
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
