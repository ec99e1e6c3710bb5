//! Text helpers shared by the renderers: escaping for XML/HTML and Markdown, and durations in
//! µs as people read them.

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

/// A duration in µs in a short human unit: `850µs`, `12.3ms`, `1.20s`.
pub fn human_us(us: f64) -> String {
    if us < 999.5 {
        format!("{}µs", us.round())
    } else if us < 999_500.0 {
        three_digits(us / 1e3, "ms")
    } else {
        three_digits(us / 1e6, "s")
    }
}

/// `x` with three significant digits (more for large integers) and `unit`.
fn three_digits(x: f64, unit: &str) -> String {
    if x >= 99.95 {
        format!("{x:.0}{unit}")
    } else if x >= 9.995 {
        format!("{x:.1}{unit}")
    } else {
        format!("{x:.2}{unit}")
    }
}
