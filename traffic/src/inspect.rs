//! What a recording holds, before anything is sent: requests per method and path template
//! (ids and numbers collapsed), requests per second over time, sizes, the recorded status mix,
//! the time span, gaps, and out-of-order records.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::Serialize;

use crate::error::ReadError;
use crate::item::Item;
use crate::source::{ReadStats, Recording};

/// Gaps at least this long are listed.
const GAP_NOTE_NS: i64 = 1_000_000_000;

/// The summary of a recording.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Files and formats.
    pub files: Vec<(String, String)>,
    /// Requests.
    pub requests: u64,
    /// WebSocket device sessions.
    pub sessions: u64,
    /// Messages in those sessions.
    pub session_messages: u64,
    /// First and last request time (ns since the epoch).
    pub first_ns: Option<i64>,
    /// Last request time.
    pub last_ns: Option<i64>,
    /// Requests per (method, path template), most first.
    pub groups: Vec<Group>,
    /// Requests in each second from the first.
    pub per_second: Vec<u64>,
    /// Request body sizes: min, p50, p99, max and total bytes.
    pub body_sizes: Sizes,
    /// Recorded response status → count.
    pub statuses: BTreeMap<u16, u64>,
    /// The longest gaps between consecutive requests: (offset from the start in ns, length ns).
    pub longest_gaps: Vec<(i64, i64)>,
    /// Gaps of a second or longer.
    pub gaps_over_1s: u64,
    /// Reader counts: out-of-order and late records, responses, malformed skipped.
    #[serde(skip)]
    pub stats: ReadStats,
}

/// Requests of one method and path template.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Method.
    pub method: String,
    /// Path with ids and numbers collapsed (`/devices/{id}`).
    pub template: String,
    /// Requests.
    pub count: u64,
    /// Body bytes.
    pub bytes: u64,
}

/// Size figures in bytes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sizes {
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Sum.
    pub total: u64,
}

/// Collapses ids and numbers in a path into templates: `/devices/8f14e45f…/push?x=1` →
/// `/devices/{id}/push`. Query strings are dropped.
pub fn path_template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment_template(seg));
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn segment_template(seg: &str) -> &str {
    if seg.is_empty() {
        return seg;
    }
    if seg.bytes().all(|b| b.is_ascii_digit()) {
        return "{n}";
    }
    let hexish = seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let digits = seg.bytes().filter(u8::is_ascii_digit).count();
    let alnum = seg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if (hexish && seg.len() >= 8 && digits > 0)
        || (alnum && seg.len() >= 16 && digits >= 2)
        || (alnum && digits * 2 > seg.len() && seg.len() >= 4)
    {
        return "{id}";
    }
    seg
}

impl Inspection {
    /// Reads the whole recording.
    pub fn of(recording: &Recording) -> Result<Inspection, ReadError> {
        let mut stream = recording.stream()?;
        let mut groups: HashMap<(String, String), (u64, u64)> = HashMap::new();
        let mut per_second: Vec<u64> = Vec::new();
        let mut sizes: Vec<u64> = Vec::new();
        let mut statuses = BTreeMap::new();
        let mut gaps: Vec<(i64, i64)> = Vec::new();
        let (mut first, mut last, mut prev) = (None::<i64>, None::<i64>, None::<i64>);
        let (mut sessions, mut session_messages, mut gaps_over_1s) = (0, 0, 0);
        for item in stream.by_ref() {
            let item = item?;
            let ts = item.ts_ns();
            let f = *first.get_or_insert(ts);
            last = Some(last.map_or(ts, |l: i64| l.max(ts)));
            let r = match item {
                Item::Session(s) => {
                    sessions += 1;
                    session_messages += s.messages.len() as u64;
                    continue;
                }
                Item::Request(r) => r,
            };
            if let Some(p) = prev {
                let gap = ts - p;
                if gap >= GAP_NOTE_NS {
                    gaps_over_1s += 1;
                }
                if gap > 0 {
                    gaps.push((p - f, gap));
                    if gaps.len() > 64 {
                        gaps.sort_by_key(|g| std::cmp::Reverse(g.1));
                        gaps.truncate(5);
                    }
                }
            }
            prev = Some(prev.map_or(ts, |p| p.max(ts)));
            let sec = ((ts - f).max(0) / 1_000_000_000) as usize;
            if per_second.len() <= sec {
                per_second.resize(sec + 1, 0);
            }
            per_second[sec] += 1;
            let size = r.body.len() as u64;
            sizes.push(size);
            let e = groups
                .entry((r.method.clone(), path_template(&r.path)))
                .or_default();
            e.0 += 1;
            e.1 += size;
            if let Some(rec) = r.recorded {
                *statuses.entry(rec.status).or_insert(0) += 1;
            }
        }
        gaps.sort_by_key(|g| std::cmp::Reverse(g.1));
        gaps.truncate(5);
        sizes.sort_unstable();
        let pick = |q: f64| {
            sizes
                .get(((sizes.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        let body_sizes = Sizes {
            min: pick(0.0),
            p50: pick(0.5),
            p99: pick(0.99),
            max: sizes.last().copied().unwrap_or(0),
            total: sizes.iter().sum(),
        };
        let mut groups: Vec<Group> = groups
            .into_iter()
            .map(|((method, template), (count, bytes))| Group {
                method,
                template,
                count,
                bytes,
            })
            .collect();
        groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| (&a.method, &a.template).cmp(&(&b.method, &b.template)))
        });
        Ok(Inspection {
            files: recording
                .files()
                .iter()
                .map(|(p, f)| (p.display().to_string(), f.name().to_string()))
                .collect(),
            requests: sizes.len() as u64,
            sessions,
            session_messages,
            first_ns: first,
            last_ns: last,
            groups,
            per_second,
            body_sizes,
            statuses,
            longest_gaps: gaps,
            gaps_over_1s,
            stats: stream.stats().clone(),
        })
    }

    /// The span from the first to the last item, seconds.
    pub fn span_s(&self) -> f64 {
        match (self.first_ns, self.last_ns) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => 0.0,
        }
    }

    /// The summary rows the terminal and the HTML page show, in order: `(label, value)`.
    /// The `rate` row holds the peak; the terminal adds its sparkline, the page its chart.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let mut rows = Vec::new();
        for (f, fmt) in &self.files {
            rows.push(("file", format!("{f} ({fmt})")));
        }
        let s = &self.stats;
        let span = self.span_s();
        rows.push((
            "requests",
            format!(
                "{}{}",
                self.requests,
                if span > 0.0 {
                    format!(
                        " over {}, mean {:.1}/s",
                        human_s(span),
                        self.requests as f64 / span
                    )
                } else {
                    String::new()
                }
            ),
        ));
        if let (Some(a), Some(b)) = (self.first_ns, self.last_ns) {
            rows.push(("span", format!("{} – {}", utc(a), utc(b))));
        }
        if !self.per_second.is_empty() {
            let peak = self.per_second.iter().max().copied().unwrap_or(0);
            rows.push(("rate", format!("peak {peak}/s")));
        }
        let b = &self.body_sizes;
        rows.push((
            "bodies",
            format!(
                "min {} B, p50 {} B, p99 {} B, max {} B, total {}",
                b.min,
                b.p50,
                b.p99,
                b.max,
                human_bytes(b.total)
            ),
        ));
        if self.statuses.is_empty() {
            rows.push(("status", "(no recorded responses)".into()));
        } else {
            let total: u64 = self.statuses.values().sum();
            let mix: Vec<String> = self
                .statuses
                .iter()
                .map(|(s, n)| format!("{s} {n} ({:.1}%)", *n as f64 * 100.0 / total as f64))
                .collect();
            rows.push(("status", mix.join(", ")));
        }
        let gaps: Vec<String> = self
            .longest_gaps
            .iter()
            .take(3)
            .map(|(at, len)| {
                format!(
                    "{} at +{}",
                    human_s(*len as f64 / 1e9),
                    human_s(*at as f64 / 1e9)
                )
            })
            .collect();
        rows.push((
            "gaps",
            format!(
                "{} of 1s or more{}",
                self.gaps_over_1s,
                if gaps.is_empty() {
                    String::new()
                } else {
                    format!("; longest {}", gaps.join(", "))
                }
            ),
        ));
        rows.push((
            "order",
            format!(
                "{} out of order in their file, {} replayed late (beyond the reorder window or across files)",
                s.out_of_order, s.late
            ),
        ));
        if s.responses > 0 || s.replayed_responses > 0 {
            rows.push((
                "responses",
                format!(
                    "{} recorded ({} matched to their request), {} replayed (type 3, ignored)",
                    s.responses, s.responses_matched, s.replayed_responses
                ),
            ));
        }
        if s.separator_framed > 0 {
            rows.push((
                "framing",
                format!(
                    "{} records ended at the separator, not their HTTP length",
                    s.separator_framed
                ),
            ));
        }
        if s.malformed > 0 {
            rows.push((
                "malformed",
                format!(
                    "{} skipped, e.g. {}",
                    s.malformed,
                    s.malformed_examples.first().map_or("", String::as_str)
                ),
            ));
        }
        if s.upgrades_skipped > 0 {
            rows.push((
                "upgrades",
                format!(
                    "{} WebSocket upgrade lines (status 101) skipped: a log holds no frames to replay",
                    s.upgrades_skipped
                ),
            ));
        }
        if self.sessions > 0 {
            rows.push((
                "websocket",
                format!(
                    "{} device sessions, {} messages",
                    self.sessions, self.session_messages
                ),
            ));
        }
        rows
    }

    /// The path groups the reports list (the most requested first), and how many more there
    /// are.
    pub fn top_groups(&self) -> (&[Group], usize) {
        let n = self.groups.len().min(TOP_GROUPS);
        (&self.groups[..n], self.groups.len() - n)
    }

    /// The report for a terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for (label, value) in self.summary() {
            if label == "rate" {
                let _ = writeln!(
                    out,
                    "rate      {}  {value} ({} per column)",
                    sparkline(&self.per_second, 60),
                    human_s(self.per_second.len().div_ceil(60).max(1) as f64)
                );
            } else {
                let _ = writeln!(out, "{label:<9} {value}");
            }
        }
        let _ = writeln!(out, "\n{:>8} {:>6}  {:<7} path", "requests", "%", "method");
        let (top, more) = self.top_groups();
        for g in top {
            let _ = writeln!(
                out,
                "{:>8} {:>5.1}%  {:<7} {}",
                g.count,
                g.count as f64 * 100.0 / self.requests.max(1) as f64,
                g.method,
                g.template
            );
        }
        if more > 0 {
            let _ = writeln!(out, "   … {more} more groups");
        }
        out
    }
}

/// Path groups listed by the reports.
const TOP_GROUPS: usize = 40;

/// A sparkline of `values` in at most `width` columns (each the sum of its buckets).
pub fn sparkline(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let per = values.len().div_ceil(width.max(1)).max(1);
    let cols: Vec<u64> = values.chunks(per).map(|c| c.iter().sum()).collect();
    let max = cols.iter().copied().max().unwrap_or(0).max(1);
    cols.iter()
        .map(|&v| {
            if v == 0 {
                ' '
            } else {
                BARS[((v * 7 + max / 2) / max).min(7) as usize]
            }
        })
        .collect()
}

fn human_s(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1}h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1}m", s / 60.0)
    } else if s >= 1.0 {
        format!("{s:.1}s")
    } else {
        format!("{:.0}ms", s * 1e3)
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn utc(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S%.3f UTC")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_collapse_ids_and_numbers() {
        assert_eq!(path_template("/devices/42/push?x=1"), "/devices/{n}/push");
        assert_eq!(
            path_template("/devices/8f14e45f-ceea-467f-a0e6-1b1f0a2b3c4d"),
            "/devices/{id}"
        );
        assert_eq!(path_template("/users/u123456"), "/users/{id}");
        assert_eq!(path_template("/push"), "/push");
        assert_eq!(path_template("/"), "/");
        assert_eq!(path_template("/v1/healthz"), "/v1/healthz");
    }

    #[test]
    fn sparkline_scales_to_the_peak() {
        assert_eq!(sparkline(&[0, 1, 2, 4], 4), " ▃▅█");
        assert_eq!(sparkline(&[1; 120], 60).chars().count(), 60);
    }
}
