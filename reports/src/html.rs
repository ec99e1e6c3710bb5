//! The HTML report: one self-contained file (inline CSS, inline SVG charts, a few lines of
//! inline script for hover read-outs; nothing fetched, so it opens offline).
//!
//! It shows the verdicts first (thresholds, baseline), then charts — throughput, latency
//! percentiles (p50, p90, p99) over time per latency metric (the max would flatten them; the
//! tail up to the max is in the percentile plot), the latency distribution as an HdrHistogram
//! percentile plot, errors, active connections and end-to-end delivery when present — then
//! every metric's summary and the scenario and environment metadata. Every string from the
//! run is escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::chart::{Chart, Line, XAxis, YUnit};
use crate::compare::{self, display, Change, Comparison, Direction};
use crate::key::MetricKey;
use crate::run::{Metric, Run, Series};
use crate::summary::{observed_text, ordered};
use crate::text::human_us;
use crate::text::xml;

/// The highest percentile axis position drawn: 99.9999%.
const MAX_NINES: f64 = 6.0;

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:960px;padding:16px;color:#222}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.pass{color:#1a7f37}.fail{color:#cf222e}.warn{color:#9a6700}
table{border-collapse:collapse;margin:6px 0;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left;white-space:normal}th{background:#f6f8fa}
.fig{margin:12px 0;position:relative}figcaption{font-weight:600;margin-bottom:2px}
svg.chart{width:100%;height:auto;background:#fff;border:1px solid #eee}
.grid{stroke:#eee;stroke-width:1}.axis{stroke:#888;stroke-width:1}
.ytick{font-size:11px;text-anchor:end;fill:#555}.xtick{font-size:11px;text-anchor:middle;fill:#555}
.line{fill:none;stroke-width:1.6}.cursor{stroke:#999;stroke-dasharray:3 3}
.legend span{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
.tip{position:absolute;top:24px;right:24px;background:rgba(255,255,255,.95);border:1px solid #ccc;padding:4px 8px;font-size:12px;white-space:pre;pointer-events:none}
.note{color:#666}code{background:#f6f8fa;padding:0 3px}
"#;

const SCRIPT: &str = r#"
(function(){
function us(v){if(v<999.5)return Math.round(v)+'\u00b5s';if(v<999500)return (v/1e3).toPrecision(3)+'ms';return (v/1e6).toPrecision(3)+'s';}
function fy(u,v){if(u==='micros')return us(v);if(u==='rate')return v.toFixed(1)+'/s';return String(Math.round(v*100)/100);}
function fx(a,x){if(a==='time'){var s=Math.round(x);return Math.floor(s/60)+':'+('0'+s%60).slice(-2);}return (100*(1-Math.pow(10,-x))).toFixed(4)+'%';}
function near(p,x){var lo=0,hi=p.length-1;if(hi<0)return null;while(lo<hi){var m=(lo+hi)>>1;if(p[m][0]<x)lo=m+1;else hi=m;}
if(lo>0&&Math.abs(p[lo-1][0]-x)<Math.abs(p[lo][0]-x))lo--;return p[lo];}
var figs=document.querySelectorAll('figure.fig');
for(var i=0;i<figs.length;i++)(function(fig){
var svg=fig.querySelector('svg'),tip=fig.querySelector('.tip'),cur=svg.querySelector('.cursor');
var d=JSON.parse(fig.querySelector('.chart-data').textContent);
var xm=+svg.getAttribute('data-x-max'),left=+svg.getAttribute('data-left'),pw=+svg.getAttribute('data-plot-width'),vw=svg.viewBox.baseVal.width;
function hide(){tip.hidden=true;cur.setAttribute('visibility','hidden');}
svg.addEventListener('mousemove',function(e){var r=svg.getBoundingClientRect(),ux=(e.clientX-r.left)/r.width*vw;
if(ux<left||ux>left+pw){hide();return;}var x=(ux-left)/pw*xm,rows=[fx(d.x,x)];
d.lines.forEach(function(l){var p=near(l.points,x);if(p)rows.push(l.name+': '+fy(d.y,p[1]));});
cur.setAttribute('x1',ux);cur.setAttribute('x2',ux);cur.setAttribute('visibility','visible');tip.textContent=rows.join('\n');tip.hidden=false;});
svg.addEventListener('mouseleave',hide);})(figs[i]);
})();
"#;

/// A self-contained page around `body` (HTML, already escaped) with the report's style and
/// the chart hover script, for other pages built from [`crate::chart::Chart`]s (such as a
/// recording's inspection).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\"><title>{}</title><style>{STYLE}</style></head><body>\n{body}<script>{SCRIPT}</script>\n</body></html>\n",
        xml(title)
    )
}

/// Renders `run` (and its comparison with a baseline, when given) as one HTML page.
pub fn render(run: &Run, comparison: Option<&Comparison>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\"><title>pushbench: {}</title><style>{STYLE}</style></head><body>\n",
        xml(&run.scenario)
    );
    header(&mut out, run, comparison);
    thresholds(&mut out, run);
    if let Some(c) = comparison {
        baseline(&mut out, c);
    }
    out.push_str("<h2>Charts</h2>\n");
    for chart in charts(run) {
        if chart.has_points() {
            out.push_str(&chart.render());
        } else {
            let _ = writeln!(
                out,
                "<p class=\"note\" data-empty-chart=\"{}\">{}: nothing recorded.</p>",
                chart.id,
                xml(&chart.title)
            );
        }
    }
    delivery_summary(&mut out, run);
    metric_tables(&mut out, run);
    meta(&mut out, run);
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

fn header(out: &mut String, run: &Run, comparison: Option<&Comparison>) {
    let failed = run.thresholds.iter().filter(|v| !v.ok).count();
    let regressed = comparison.map_or(0, Comparison::regressions);
    let (class, verdict) = if failed + regressed == 0 {
        ("pass", "passed".to_string())
    } else {
        (
            "fail",
            format!("failed: {failed} thresholds, {regressed} baseline regressions"),
        )
    };
    let _ = writeln!(
        out,
        "<h1>{}</h1>\n<p class=\"verdict {class}\" id=\"verdict\"><strong>{verdict}</strong></p>\n<p>Started {} · {}</p>",
        xml(&run.scenario),
        run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        xml(&run.length_text())
    );
    if let Some(note) = crate::saturation::note(run) {
        let _ = writeln!(
            out,
            "<p class=\"verdict fail\" id=\"saturated\">{}</p>",
            xml(&note)
        );
    }
}

fn thresholds(out: &mut String, run: &Run) {
    if run.thresholds.is_empty() {
        return;
    }
    out.push_str("<h2>Thresholds</h2>\n<table id=\"thresholds\"><tr><th>metric</th><th>threshold</th><th>observed</th><th>verdict</th></tr>\n");
    for v in &run.thresholds {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            xml(&v.metric),
            xml(&v.expr),
            xml(&observed_text(run, v)),
            if v.ok { "pass" } else { "fail" },
            if v.ok { "✓ pass" } else { "✗ fail" }
        );
    }
    out.push_str("</table>\n");
}

fn baseline(out: &mut String, c: &Comparison) {
    let _ = writeln!(
        out,
        "<h2>Baseline</h2>\n<p>Against <code>{}</code> (latest started {}): {} regressed, {} improved, {} unchanged, {} inconclusive.</p>\n<p class=\"note\" id=\"method\">{}.</p>",
        xml(&c.base_scenario),
        c.base_started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        c.count(Change::Regressed),
        c.count(Change::Improved),
        c.count(Change::Unchanged),
        c.count(Change::Inconclusive),
        xml(&display::method(c)),
    );
    if !c.run_to_run {
        let _ = writeln!(
            out,
            "<p class=\"warn\">{}</p>",
            xml(display::SINGLE_RUN_WARNING)
        );
    }
    for m in &c.mismatches {
        let _ = writeln!(
            out,
            "<p class=\"warn\">Forced comparison of unlike runs: {}</p>",
            xml(m)
        );
    }
    out.push_str("<table id=\"baseline\"><tr><th>metric</th><th>stat</th><th>baseline</th><th>new</th><th>Δ</th><th>change [interval]</th><th>confidence</th><th>p</th><th>gates</th><th>verdict</th></tr>\n");
    for k in &c.checks {
        let class = match k.change {
            Change::Improved => "pass",
            Change::Regressed => "fail",
            Change::Inconclusive => "warn",
            Change::Unchanged => "",
        };
        let better = match k.direction {
            Direction::LowerIsBetter => "lower is better",
            Direction::HigherIsBetter => "higher is better",
        };
        let (confidence, p) = k.estimate.map_or_else(
            || ("–".to_string(), "–".to_string()),
            |e| (display::percent(e.confidence), display::p_value(e.p)),
        );
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td title=\"{better}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}{}</td></tr>",
            xml(&k.metric),
            xml(&k.stat),
            xml(&display::value(k.unit, k.base)),
            xml(&display::value(k.unit, k.new)),
            xml(&display::delta(k)),
            xml(&display::interval(k)),
            xml(&confidence),
            xml(&p),
            if k.gated { "yes" } else { "reported" },
            k.change,
            k.note.as_deref().map(|n| format!(" ({})", xml(n))).unwrap_or_default()
        );
    }
    out.push_str("</table>\n");
}

/// Every chart the run has data for, in page order.
fn charts(run: &Run) -> Vec<Chart> {
    // Every time chart spans the whole run, so their x axes line up.
    let end = Some(f64::from(last_second(run)));
    let plain: Vec<(&MetricKey, &Metric)> = run
        .metrics
        .iter()
        .filter(|(k, _)| k.tags.is_empty())
        .collect();
    let mut charts = Vec::new();

    let mut rate = Vec::new();
    for (key, metric) in &plain {
        if let Metric::Counter(c) = metric {
            let good = compare::direction(key, metric) == Direction::HigherIsBetter;
            if good && c.total.is_none() && !key.name.starts_with("delivery_") {
                rate.push(counter_line(run, key, key.human()));
            }
        }
    }
    if rate.is_empty() {
        for (key, metric) in &plain {
            if let (Metric::Histogram(_), Some(Series::Histogram(points))) =
                (metric, run.series.get(key))
            {
                rate.push(Line {
                    name: format!("{} samples", key.human()),
                    points: points
                        .iter()
                        .map(|p| (f64::from(p.t), p.count as f64))
                        .collect(),
                });
            }
        }
    }
    charts.push(Chart {
        id: "chart-rate".into(),
        title: "Throughput (per second)".into(),
        x: XAxis::Time,
        x_end: end,
        y: YUnit::Rate,
        lines: rate,
    });

    for (i, (key, _)) in plain
        .iter()
        .filter(|(_, m)| matches!(m, Metric::Histogram(_)))
        .enumerate()
    {
        let Some(Series::Histogram(points)) = run.series.get(key) else {
            continue;
        };
        let pick = |f: fn(&crate::run::HistPoint) -> f64| {
            points.iter().map(|p| (f64::from(p.t), f(p))).collect()
        };
        charts.push(Chart {
            id: format!("chart-latency-{i}"),
            title: format!("{}: percentiles over time", key.human()),
            x: XAxis::Time,
            x_end: end,
            y: YUnit::Micros,
            lines: vec![
                Line {
                    name: "p50".into(),
                    points: pick(|p| p.p50 as f64),
                },
                Line {
                    name: "p90".into(),
                    points: pick(|p| p.p90 as f64),
                },
                Line {
                    name: "p99".into(),
                    points: pick(|p| p.p99 as f64),
                },
            ],
        });
    }

    let distribution = plain
        .iter()
        .filter_map(|(key, m)| match m {
            Metric::Histogram(h) if h.summary.count > 0 => {
                crate::hist::decode(&h.hist).ok().map(|h| Line {
                    name: key.human(),
                    points: percentile_points(&h),
                })
            }
            _ => None,
        })
        .collect();
    charts.push(Chart {
        id: "chart-percentiles".into(),
        title: "Latency by percentile (HdrHistogram)".into(),
        x: XAxis::Percentile,
        x_end: None,
        y: YUnit::Micros,
        lines: distribution,
    });

    let errors = run
        .metrics
        .iter()
        .filter(|(k, m)| {
            matches!(m, Metric::Counter(_))
                && compare::direction(k, m) == Direction::LowerIsBetter
                && !k.name.starts_with("delivery_")
                && (k.tags.is_empty() || k.tags.keys().eq(["cause"]))
        })
        .map(|(k, _)| counter_line(run, k, k.human()))
        .collect();
    charts.push(Chart {
        id: "chart-errors".into(),
        title: "Errors (per second)".into(),
        x: XAxis::Time,
        x_end: end,
        y: YUnit::Rate,
        lines: errors,
    });

    let gauges: Vec<&MetricKey> = run
        .metrics
        .iter()
        .filter(|(_, m)| matches!(m, Metric::Gauge(_)))
        .map(|(k, _)| k)
        .collect();
    let plain_gauges: Vec<&MetricKey> = gauges
        .iter()
        .copied()
        .filter(|k| k.tags.is_empty())
        .collect();
    let shown = if plain_gauges.is_empty() {
        gauges
    } else {
        plain_gauges
    };
    if !shown.is_empty() {
        charts.push(Chart {
            id: "chart-connections".into(),
            title: "Active connections".into(),
            x: XAxis::Time,
            x_end: end,
            y: YUnit::Count,
            lines: shown
                .into_iter()
                .map(|k| Line {
                    name: k.human(),
                    points: match run.series.get(k) {
                        Some(Series::Gauge(p)) => {
                            p.iter().map(|p| (f64::from(p.t), p.gauge as f64)).collect()
                        }
                        _ => Vec::new(),
                    },
                })
                .collect(),
        });
    }

    let delivery: Vec<Line> = plain
        .iter()
        .filter(|(k, m)| matches!(m, Metric::Counter(_)) && k.name.starts_with("delivery_"))
        .map(|(k, _)| counter_line(run, k, k.human()))
        .collect();
    if !delivery.is_empty() {
        charts.push(Chart {
            id: "chart-delivery".into(),
            title: "Delivery: received, lost, not verifiable, duplicates (per second)".into(),
            x: XAxis::Time,
            x_end: end,
            y: YUnit::Rate,
            lines: delivery,
        });
    }
    charts
}

/// The last whole or partial second of the run (seconds are numbered from 0).
fn last_second(run: &Run) -> u32 {
    (run.duration_s.ceil() as u32).saturating_sub(1)
}

/// A counter's per-second values, with the seconds without data as 0, up to the run's end.
fn counter_line(run: &Run, key: &MetricKey, name: String) -> Line {
    let Some(Series::Counter(points)) = run.series.get(key) else {
        return Line {
            name,
            points: Vec::new(),
        };
    };
    let last = points.iter().map(|p| p.t).max().unwrap_or(0);
    let end = last.max(last_second(run));
    let mut values = vec![0.0; end as usize + 1];
    for p in points {
        values[p.t as usize] += p.value as f64;
    }
    Line {
        name,
        points: values
            .into_iter()
            .enumerate()
            .map(|(t, v)| (t as f64, v))
            .collect(),
    }
}

/// The percentile distribution of `h` on the `log10(1/(1-p))` axis (HdrHistogram's plot).
fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let top = (h.len() as f64).log10().min(MAX_NINES);
    let mut points: Vec<(f64, f64)> = Vec::new();
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            top
        } else {
            (-(1.0 - q).log10()).min(top)
        };
        let y = h.highest_equivalent(v.value_iterated_to()) as f64;
        if points.last().is_some_and(|p| p.0 >= x) {
            if let Some(p) = points.last_mut() {
                p.1 = p.1.max(y);
            }
            continue;
        }
        points.push((x, y));
    }
    points
}

fn delivery_summary(out: &mut String, run: &Run) {
    let counter = |name: &str| match run.metrics.get(&MetricKey::new(name)) {
        Some(Metric::Counter(c)) => Some(c.value),
        _ => None,
    };
    let (Some(received), expected) = (counter("delivery_received"), counter("delivery_expected"))
    else {
        return;
    };
    let lost = counter("delivery_lost").unwrap_or(0);
    let _ = write!(
        out,
        "<h2>Delivery</h2>\n<table id=\"delivery\"><tr><th>received</th><th>expected</th><th>lost</th><th>loss</th><th>not verifiable</th><th>duplicates</th><th>unexpected</th><th>redelivered</th></tr><tr><td>{received}</td><td>{}</td><td>{lost}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>\n",
        expected.map_or("–".into(), |e| e.to_string()),
        match expected {
            Some(e) if e > 0 => format!("{:.3}%", lost as f64 * 100.0 / e as f64),
            _ => "–".into(),
        },
        counter("delivery_unverifiable").unwrap_or(0),
        counter("delivery_duplicates").unwrap_or(0),
        counter("delivery_unexpected").unwrap_or(0),
        counter("delivery_redelivered").unwrap_or(0),
    );
}

fn metric_tables(out: &mut String, run: &Run) {
    out.push_str("<h2>Metrics</h2>\n");
    let mut hist = String::new();
    let mut counters = String::new();
    let mut gauges = String::new();
    for (key, metric) in ordered(run) {
        let name = xml(&key.human());
        match metric {
            Metric::Histogram(h) => {
                let s = &h.summary;
                let _ = write!(hist, "<tr><td>{name}</td><td>{}</td>", s.count);
                for v in [
                    s.min as f64,
                    s.mean,
                    s.p50 as f64,
                    s.p90 as f64,
                    s.p95 as f64,
                    s.p99 as f64,
                    s.p999 as f64,
                    s.max as f64,
                ] {
                    let _ = write!(hist, "<td>{}</td>", xml(&human_us(v)));
                }
                hist.push_str("</tr>\n");
            }
            Metric::Counter(c) => {
                let rate = match c.total {
                    Some(0) => "0.00%".to_string(),
                    Some(t) => format!("{:.2}%", c.value as f64 * 100.0 / t as f64),
                    None if run.load_s() > 0.0 => {
                        format!("{:.1}/s", c.value as f64 / run.load_s())
                    }
                    None => String::new(),
                };
                let total = c.total.map(|t| t.to_string()).unwrap_or_default();
                let _ = writeln!(
                    counters,
                    "<tr><td>{name}</td><td>{}</td><td>{total}</td><td>{rate}</td></tr>",
                    c.value
                );
            }
            Metric::Gauge(g) => {
                let _ = writeln!(
                    gauges,
                    "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    g.value, g.min, g.max
                );
            }
        }
    }
    if !hist.is_empty() {
        let _ = write!(out, "<table id=\"histograms\"><tr><th>metric</th><th>count</th><th>min</th><th>avg</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n{hist}</table>\n");
    }
    if !counters.is_empty() {
        let _ = write!(out, "<table id=\"counters\"><tr><th>counter</th><th>value</th><th>of</th><th>rate</th></tr>\n{counters}</table>\n");
    }
    if !gauges.is_empty() {
        let _ = write!(out, "<table id=\"gauges\"><tr><th>gauge</th><th>last</th><th>min</th><th>max</th></tr>\n{gauges}</table>\n");
    }
}

fn meta(out: &mut String, run: &Run) {
    out.push_str("<h2>Scenario and environment</h2>\n<table id=\"meta\">");
    let mut rows = BTreeMap::new();
    rows.insert("scenario".to_string(), run.scenario.clone());
    rows.insert("started_at".to_string(), run.started_at.to_rfc3339());
    rows.insert("duration_s".to_string(), format!("{:.3}", run.duration_s));
    if let Some(m) = &run.meta {
        flatten("", m, &mut rows);
    }
    for (k, v) in rows {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", xml(&k), xml(&v));
    }
    out.push_str("</table>\n");
}

/// `value` as `path → text` rows (`senders.0.name`).
fn flatten(path: &str, value: &serde_json::Value, rows: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match value {
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| flatten(&join(k), v, rows)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&join(&i.to_string()), v, rows)),
        serde_json::Value::String(s) => {
            rows.insert(path.to_string(), s.clone());
        }
        serde_json::Value::Null => {}
        other => {
            rows.insert(path.to_string(), other.to_string());
        }
    }
}
