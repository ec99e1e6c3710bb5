//! `loadgen replay inspect FILE...`: what a recording holds (paths, rate over time, sizes,
//! status mix, gaps, out-of-order records) as text, JSON, or a self-contained HTML page.
//! Sends nothing.

use std::fmt::Write as _;

use reports::chart::{Chart, Line, XAxis, YUnit};
use reports::text::xml;
use traffic::Inspection;

use super::{exit, fail};
use crate::cli::{InspectArgs, ReadArgs};

/// Runs `loadgen replay inspect …`; returns the exit code.
pub fn main(args: InspectArgs) -> i32 {
    let opts = match read_options(&args.read) {
        Ok(o) => o,
        Err(e) => return fail(exit::BAD_INPUT, &e),
    };
    let result =
        traffic::Recording::open(&args.files, opts).and_then(|r| traffic::Inspection::of(&r));
    if let (Ok(i), Some(path)) = (&result, &args.html) {
        if let Err(e) = std::fs::write(path, html(i)) {
            return fail(
                exit::BAD_INPUT,
                &format!("{}: cannot write the HTML page: {e}", path.display()),
            );
        }
    }
    match result {
        Ok(i) if args.json => {
            let mut v = serde_json::to_value(&i).unwrap_or_default();
            v["reader"] = serde_json::json!({
                "out_of_order": i.stats.out_of_order,
                "late": i.stats.late,
                "responses": i.stats.responses,
                "responses_matched": i.stats.responses_matched,
                "replayed_responses": i.stats.replayed_responses,
                "malformed_skipped": i.stats.malformed,
                "separator_framed": i.stats.separator_framed,
                "upgrades_skipped": i.stats.upgrades_skipped,
            });
            println!("{v:#}");
            exit::OK
        }
        Ok(i) => {
            print!("{}", i.render_text());
            exit::OK
        }
        Err(e) => fail(exit::BAD_INPUT, &e.to_string()),
    }
}

/// The reader options the flags give.
pub fn read_options(r: &ReadArgs) -> Result<traffic::ReadOptions, String> {
    let defaults = traffic::ReadOptions::default();
    Ok(traffic::ReadOptions {
        format: r
            .format
            .as_deref()
            .map(|f| f.parse().map_err(|e| format!("--format: {e}")))
            .transpose()?,
        skip_malformed: r.skip_malformed,
        reorder_window: r.reorder_window.unwrap_or(defaults.reorder_window),
        untimed_rate: r.untimed_rate.unwrap_or(defaults.untimed_rate),
    })
}

/// The page for `inspection`.
fn html(inspection: &Inspection) -> String {
    let mut body = String::with_capacity(16 * 1024);
    let title = match inspection.files.as_slice() {
        [(one, _)] => format!("recording {one}"),
        files => format!("recording of {} files", files.len()),
    };
    let _ = writeln!(body, "<h1>{}</h1>", xml(&title));
    body.push_str("<h2>Summary</h2>\n<table>\n");
    for (label, value) in inspection.summary() {
        let _ = writeln!(
            body,
            "<tr><th>{}</th><td style=\"text-align:left\">{}</td></tr>",
            xml(label),
            xml(&value)
        );
    }
    body.push_str("</table>\n<h2>Requests per second</h2>\n");
    let chart = Chart {
        id: "requests-per-second".into(),
        title: "requests per second, from the recording's first item".into(),
        x: XAxis::Time,
        x_end: None,
        y: YUnit::Rate,
        lines: vec![Line {
            name: "requests/s".into(),
            points: inspection
                .per_second
                .iter()
                .enumerate()
                .map(|(s, n)| (s as f64, *n as f64))
                .collect(),
        }],
    };
    if chart.has_points() {
        body.push_str(&chart.render());
    } else {
        body.push_str("<p class=\"note\">No requests with times.</p>\n");
    }
    let (top, more) = inspection.top_groups();
    body.push_str("<h2>Requests per method and path</h2>\n<table>\n<tr><th>path</th><th>method</th><th>requests</th><th>%</th><th>body bytes</th></tr>\n");
    for g in top {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td></tr>",
            xml(&g.template),
            xml(&g.method),
            g.count,
            g.count as f64 * 100.0 / inspection.requests.max(1) as f64,
            g.bytes
        );
    }
    body.push_str("</table>\n");
    if more > 0 {
        let _ = writeln!(body, "<p class=\"note\">… {more} more groups</p>");
    }
    reports::html::page(&format!("pushbench: {title}"), &body)
}
