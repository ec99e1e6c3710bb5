//! Text from files and the network, made safe to print on one terminal line: control
//! characters (an escape sequence in a scenario name, a NUL in a recording) are shown as
//! `\u{1b}` instead of acting on the terminal, and a long value is cut with a note of what was
//! left out, so a 1 MB name cannot make a 2 MB error line.

use std::borrow::Cow;

/// `s` with control characters escaped (`\n` included: the result is one line) and cut after
/// `max` characters.
pub fn printable(s: &str, max: usize) -> Cow<'_, str> {
    let clean = s.chars().take(max).all(|c| !c.is_control()) && s.chars().nth(max).is_none();
    if clean {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max + 32));
    for (shown, (at, c)) in s.char_indices().enumerate() {
        if shown == max {
            out.push_str(&format!("… ({} more bytes)", s.len() - at));
            return Cow::Owned(out);
        }
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escapes_controls_and_cuts_long_text() {
        assert_eq!(printable("plain name", 100), "plain name");
        assert!(matches!(
            printable("plain", 100),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("a\u{1b}[31mred\nx", 100),
            "a\\u{1b}[31mred\\u{a}x"
        );
        let long = "x".repeat(1_000_000);
        let p = printable(&long, 50);
        assert_eq!(p, format!("{}… (999950 more bytes)", "x".repeat(50)));
        assert_eq!(printable("héllo", 2), "hé… (3 more bytes)");
    }
}
