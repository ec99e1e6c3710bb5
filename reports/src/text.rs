//! Text helpers shared by the renderers: escaping for XML/HTML and Markdown, and the
//! human-readable forms of compared values.

use std::fmt::Write as _;

use crate::compare::{Check, Unit};
use crate::summary::human_us;

/// `s` escaped for XML and HTML text and attribute values; control characters XML 1.0
/// cannot carry are replaced by U+FFFD.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` safe inside a Markdown table cell: pipes, backticks, emphasis marks and HTML escaped,
/// line breaks flattened.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '`' | '*' | '_' | '[' | ']' | '\\' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A compared value in its unit: `12.3ms`, `1520.4/s`, `0.12%`, `3000`.
pub fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Micros => human_us(v),
        Unit::PerSecond => format!("{v:.1}/s"),
        Unit::Fraction => format!("{:.2}%", v * 100.0),
        Unit::Level => format!("{v:.0}"),
    }
}

/// The delta of a check with its sign and, when it moved, which way: `+12.3% (worse)`.
pub fn delta(c: &Check) -> String {
    let mut out = String::new();
    match c.delta {
        Some(0.0) => out.push_str("±0.0%"),
        Some(d) => {
            let _ = write!(out, "{:+.1}%", d * 100.0);
        }
        None if c.new == c.base => out.push_str("±0"),
        None => out.push_str("new"),
    }
    out
}
