//! Line charts drawn as inline SVG for the HTML report: axes with "nice" ticks, a time axis
//! or the HdrHistogram percentile axis (`1/(1-p)` on a log scale), and lines thinned to the
//! plot's pixel width (each pixel keeps its lowest and highest point, so spikes survive).
//! Deterministic output, nothing to download.

use std::fmt::Write as _;

use serde::Serialize;

use crate::text::human_us;
use crate::text::xml;

/// Plot size in SVG user units.
const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 34.0;

/// Line colours, in order.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// What the x axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XAxis {
    /// Seconds since the run's start.
    Time,
    /// `log10(1/(1-p))`: 0 is 0%, 1 is 90%, 2 is 99%, 3 is 99.9%...
    Percentile,
}

/// What the y values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum YUnit {
    /// Microseconds.
    Micros,
    /// Events per second.
    Rate,
    /// A plain level or count.
    Count,
}

/// One line of a chart.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Its legend name.
    pub name: String,
    /// Points `(x, y)` in increasing x.
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// Element id (letters, digits, `-`).
    pub id: String,
    /// Caption.
    pub title: String,
    /// The x axis.
    pub x: XAxis,
    /// Where the x axis ends when it is fixed (every time chart of one run spans the whole
    /// run); `None`: at the largest x. A point beyond it widens the axis.
    pub x_end: Option<f64>,
    /// The y unit.
    pub y: YUnit,
    /// Its lines.
    pub lines: Vec<Line>,
}

impl Chart {
    /// Whether any line has a point.
    pub fn has_points(&self) -> bool {
        self.lines.iter().any(|l| !l.points.is_empty())
    }

    /// The chart as a `<figure>`: SVG, legend, and its (thinned) data for the hover script.
    pub fn render(mut self) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        for line in &mut self.lines {
            line.points = thin(&line.points, plot_w as usize);
        }
        let (x_max, y_max) = self.extent();
        let sx = |x: f64| LEFT + x / x_max * plot_w;
        let sy = |y: f64| TOP + (1.0 - y / y_max) * (HEIGHT - TOP - BOTTOM);

        let mut svg = String::new();
        let _ = write!(
            svg,
            "<svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{t}\" data-x-max=\"{x_max}\" data-left=\"{LEFT}\" data-plot-width=\"{plot_w}\">",
            id = self.id,
            t = xml(&self.title)
        );
        // Grid and y ticks.
        for tick in ticks(y_max) {
            let y = sy(tick);
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"ytick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                xml(&y_label(self.y, tick))
            );
        }
        // X ticks.
        for tick in self.x_ticks(x_max) {
            let x = sx(tick);
            // The last label ends at its tick, so it stays inside the picture.
            let anchor = if tick >= x_max {
                " style=\"text-anchor:end\""
            } else {
                ""
            };
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/><text class=\"xtick\"{anchor} x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 16.0,
                xml(&x_label(self.x, tick))
            );
        }
        let _ = write!(
            svg,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{b:.1}\"/><line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{b:.1}\" y2=\"{b:.1}\"/>",
            WIDTH - RIGHT,
            b = HEIGHT - BOTTOM
        );
        for (i, line) in self.lines.iter().enumerate() {
            if line.points.is_empty() {
                continue;
            }
            let mut d = String::with_capacity(line.points.len() * 14);
            for (j, (x, y)) in line.points.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if j == 0 { "M" } else { "L" },
                    sx(*x),
                    sy(*y)
                );
            }
            if line.points.len() == 1 {
                // A lone point still shows as a short tick.
                let _ = write!(d, "h2");
            }
            let _ = write!(
                svg,
                "<path class=\"line\" d=\"{d}\" stroke=\"{}\"><title>{}</title></path>",
                PALETTE[i % PALETTE.len()],
                xml(&line.name)
            );
        }
        svg.push_str("<line class=\"cursor\" x1=\"0\" x2=\"0\" y1=\"12\" y2=\"226\" visibility=\"hidden\"/></svg>");

        let mut legend = String::from("<div class=\"legend\">");
        for (i, line) in self.lines.iter().enumerate() {
            let _ = write!(
                legend,
                "<span><i style=\"background:{}\"></i>{}</span>",
                PALETTE[i % PALETTE.len()],
                xml(&line.name)
            );
        }
        legend.push_str("</div>");
        let data = serde_json::to_string(&self)
            .unwrap_or_else(|_| "null".to_string())
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026");
        format!(
            "<figure class=\"fig\" data-chart=\"{id}\"><figcaption>{title}</figcaption>{svg}{legend}<div class=\"tip\" hidden></div><script type=\"application/json\" class=\"chart-data\">{data}</script></figure>\n",
            id = self.id,
            title = xml(&self.title)
        )
    }

    /// The x and y maxima of the domain (never 0).
    fn extent(&self) -> (f64, f64) {
        let all = || self.lines.iter().flat_map(|l| l.points.iter());
        let x = all().map(|p| p.0).fold(self.x_end.unwrap_or(0.0), f64::max);
        let y = all().map(|p| p.1).fold(0.0_f64, f64::max);
        let x_max = match self.x {
            XAxis::Percentile => x.ceil().max(1.0),
            XAxis::Time => x.max(1.0),
        };
        (x_max, nice_ceiling(y))
    }

    fn x_ticks(&self, x_max: f64) -> Vec<f64> {
        match self.x {
            XAxis::Percentile => (0..=x_max as u32).map(f64::from).collect(),
            XAxis::Time => {
                let step = [
                    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
                    3600.0, 7200.0, 21600.0, 43200.0, 86400.0,
                ]
                .into_iter()
                .find(|s| x_max / s <= 10.0)
                .unwrap_or((x_max / 10.0).ceil());
                let mut t = Vec::new();
                let mut x = 0.0;
                while x <= x_max + 1e-9 {
                    t.push(x);
                    x += step;
                }
                t
            }
        }
    }
}

/// At most about `2 * width` points: each pixel column keeps its lowest and highest point, in
/// x order.
fn thin(points: &[(f64, f64)], width: usize) -> Vec<(f64, f64)> {
    if points.len() <= 2 * width || width == 0 {
        return points.to_vec();
    }
    let (x0, x1) = (points[0].0, points[points.len() - 1].0);
    let span = (x1 - x0).max(f64::MIN_POSITIVE);
    let column_of = |x: f64| ((((x - x0) / span) * width as f64) as usize).min(width - 1);
    let mut out = Vec::with_capacity(2 * width + 2);
    let mut i = 0;
    while i < points.len() {
        let column = column_of(points[i].0);
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < points.len() && column_of(points[j].0) == column {
            if points[j].1 < points[lo].1 {
                lo = j;
            }
            if points[j].1 > points[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let (a, b) = (lo.min(hi), lo.max(hi));
        out.push(points[a]);
        if b != a {
            out.push(points[b]);
        }
        i = j;
    }
    out
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for 0).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// Five steps from 0 to `max`.
fn ticks(max: f64) -> Vec<f64> {
    (0..=5).map(|i| max * f64::from(i) / 5.0).collect()
}

fn y_label(unit: YUnit, v: f64) -> String {
    match unit {
        YUnit::Micros if v == 0.0 => "0".to_string(),
        YUnit::Micros => human_us(v),
        YUnit::Rate => format!("{}/s", compact(v)),
        YUnit::Count => compact(v),
    }
}

fn x_label(axis: XAxis, v: f64) -> String {
    match axis {
        XAxis::Percentile => percentile_label(v),
        XAxis::Time => {
            let s = v.round() as u64;
            if s >= 3600 {
                format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
            } else {
                format!("{}:{:02}", s / 60, s % 60)
            }
        }
    }
}

/// The percentile at `x = log10(1/(1-p))`: 0%, 90%, 99%, 99.9%, ...
pub fn percentile_label(x: f64) -> String {
    let n = x.round() as usize;
    match n {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        n => format!("99.{}%", "9".repeat(n - 2)),
    }
}

/// A number in a short form: 950, 1.2k, 3.4M.
fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        trim(format!("{:.2}", v / 1e9)) + "G"
    } else if a >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e3 {
        trim(format!("{:.2}", v / 1e3)) + "k"
    } else {
        trim(format!("{v:.2}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_follow_the_hdr_axis() {
        let labels: Vec<String> = (0..5).map(|x| percentile_label(f64::from(x))).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn thinning_keeps_extremes_and_order() {
        let points: Vec<(f64, f64)> = (0..10_000)
            .map(|i| {
                (
                    f64::from(i),
                    if i == 5_000 { 1e6 } else { f64::from(i % 7) },
                )
            })
            .collect();
        let thin = thin(&points, 100);
        assert!(thin.len() <= 200, "{}", thin.len());
        assert!(thin.iter().any(|p| p.1 == 1e6));
        assert!(thin.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1_234.0), 2_000.0);
        assert_eq!(compact(1_500.0), "1.5k");
    }
}
