//! `loadgen replay inspect --html FILE`: the inspection as one self-contained HTML page — the
//! summary and path-group tables the terminal shows, and the requests-per-second chart drawn
//! by the reports crate's SVG chart (one point per second of the recording).

use std::fmt::Write as _;

use ::replay::Inspection;
use reports::chart::{Chart, Line, XAxis, YUnit};
use reports::text::xml;

/// The page for `inspection`.
pub fn render(inspection: &Inspection) -> String {
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
