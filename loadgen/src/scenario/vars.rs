//! Variables in a scenario file, filled in before it is parsed: `${NAME}` takes its value from
//! `loadgen run -e NAME=VALUE` (k6's `-e`), else from the environment; `${NAME:-default}`
//! falls back to `default` when neither sets it; `$${` is a literal `${`; comments are left
//! as they are (a `#` at the start of a line or after a blank, outside quotes). So one file
//! serves every target, rate and size (`rate: { per_second: ${RATE:-100} }`) without a copy
//! per run or a `sed` over it. A value may not hold a line break, so every line of the file
//! keeps its number; errors found in the filled-in text are moved back to the file's own
//! columns ([`Expanded::locate`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::ScenarioError;

/// Values given on the command line (`-e NAME=VALUE`), looked up before the environment.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    given: BTreeMap<String, String>,
}

impl Vars {
    /// Reads `NAME=VALUE` pairs; the message names the one that is not.
    pub fn from_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<Vars, String> {
        let mut given = BTreeMap::new();
        for pair in pairs {
            let pair = pair.as_ref();
            let Some((name, value)) = pair.split_once('=') else {
                return Err(format!("-e {pair}: expected NAME=VALUE"));
            };
            if !is_name(name) {
                return Err(format!(
                    "-e {pair}: `{name}` is not a variable name (letters, digits and _, not \
                     starting with a digit)"
                ));
            }
            given.insert(name.to_string(), value.to_string());
        }
        Ok(Vars { given })
    }

    fn get(&self, name: &str) -> Option<String> {
        self.given
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A scenario's text with its variables filled in, and where each one stood.
#[derive(Debug, Clone)]
pub struct Expanded {
    /// The text to parse.
    pub text: String,
    /// Per filled-in reference: its line (1-based), its byte column in the filled-in line
    /// (1-based) where the value ends, and how many bytes longer the reference was than the
    /// value (negative when the value is longer).
    shifts: Vec<(usize, usize, isize)>,
}

impl Expanded {
    /// Moves a location in the filled-in text back to the file's own line and column.
    pub fn locate(&self, (line, col): (usize, usize)) -> (usize, usize) {
        let shift: isize = self
            .shifts
            .iter()
            .filter(|(l, end, _)| *l == line && *end <= col)
            .map(|(_, _, d)| d)
            .sum();
        (line, (col as isize + shift).max(1) as usize)
    }

    /// The same error, located in the file rather than in the filled-in text.
    pub fn relocate(&self, e: ScenarioError) -> ScenarioError {
        match e {
            ScenarioError::Invalid {
                path,
                at: Some(at),
                message,
            } => ScenarioError::Invalid {
                path,
                at: Some(self.locate(at)),
                message,
            },
            other => other,
        }
    }
}

/// Fills in the variables of `text` (the file at `path`, named in errors).
pub fn expand(path: &Path, text: &str, vars: &Vars) -> Result<Expanded, ScenarioError> {
    let mut out = String::with_capacity(text.len());
    let mut shifts = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        let err = |col: usize, message: String| ScenarioError::Invalid {
            path: path.to_path_buf(),
            at: Some((line_no, col)),
            message,
        };
        let start = out.len();
        let (code, comment) = line.split_at(comment_start(line));
        let mut rest = code;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let col = code.len() - rest.len() + at + 1;
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                shifts.push((line_no, out.len() - start + 1, 1));
                rest = after;
                continue;
            }
            let Some(body) = tail.strip_prefix("${") else {
                out.push('$');
                rest = &tail[1..];
                continue;
            };
            let Some(close) = body.find('}') else {
                return Err(err(
                    col,
                    "`${` without a closing `}` (write `$${` for a literal `${`)".into(),
                ));
            };
            let inner = &body[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !is_name(name) {
                return Err(err(
                    col,
                    format!(
                        "`${{{inner}}}`: `{name}` is not a variable name (letters, digits and _, \
                         not starting with a digit; `${{NAME:-default}}` for a default)"
                    ),
                ));
            }
            let value = match (vars.get(name), default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.to_string(),
                (None, None) => {
                    return Err(err(
                        col,
                        format!(
                            "`${{{name}}}` is not set: give it with `-e {name}=VALUE` or in the \
                             environment, or write `${{{name}:-default}}`"
                        ),
                    ))
                }
            };
            if value.contains(['\n', '\r']) {
                return Err(err(
                    col,
                    format!("`${{{name}}}`: its value holds a line break, which a value may not"),
                ));
            }
            let reference = close + 3; // `${` + inner + `}`
            out.push_str(&value);
            shifts.push((
                line_no,
                out.len() - start + 1,
                reference as isize - value.len() as isize,
            ));
            rest = &body[close + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok(Expanded { text: out, shifts })
}

/// Where a line's comment starts (its length when it has none): a `#` at the start of the
/// line or after a blank, outside a quoted scalar. A quote opens a scalar only where a
/// scalar can start (after `: `, `- `, `[`, `{`, `,` or at the start of the line), so the
/// apostrophe in `it's` does not.
fn comment_start(line: &str) -> usize {
    let b = line.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(b'"') if c == b'\\' => i += 1,
            Some(b'"') if c == b'"' => quote = None,
            Some(b'\'') if c == b'\'' => {
                if b.get(i + 1) == Some(&b'\'') {
                    i += 1; // '' is a quote inside a single-quoted scalar
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None if c == b'#' && (i == 0 || matches!(b[i - 1], b' ' | b'\t')) => return i,
            None if matches!(c, b'"' | b'\'') => {
                let before = b[..i].iter().rev().find(|p| !matches!(p, b' ' | b'\t'));
                if before.is_none_or(|p| matches!(p, b':' | b'-' | b'[' | b'{' | b',' | b'?')) {
                    quote = Some(c);
                }
            }
            None => {}
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[&str]) -> Vars {
        Vars::from_pairs(pairs).unwrap()
    }

    fn run(text: &str, pairs: &[&str]) -> Result<String, String> {
        expand(Path::new("s.yaml"), text, &vars(pairs))
            .map(|e| e.text)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn given_values_defaults_and_literals() {
        let text = "rate: ${RATE}\nn: ${N:-10}\nempty: '${E:-}'\nkeep: $${RATE} and $5 and $\n";
        assert_eq!(
            run(text, &["RATE=250"]).unwrap(),
            "rate: 250\nn: 10\nempty: ''\nkeep: ${RATE} and $5 and $\n"
        );
        assert_eq!(run("n: ${N:-10}", &["N=3"]).unwrap(), "n: 3");
        assert_eq!(run("u: ${A}${B}", &["A=x", "B=="]).unwrap(), "u: x=");
    }

    #[test]
    fn the_command_line_wins_over_the_environment() {
        // PATH is set in every test process.
        assert_ne!(run("p: ${PATH}", &[]).unwrap(), "p: ${PATH}");
        assert_eq!(run("p: ${PATH}", &["PATH=mine"]).unwrap(), "p: mine");
    }

    #[test]
    fn bad_references_name_the_line_and_column() {
        let unset = "PUSHBENCH_SURELY_UNSET_VAR";
        let e = run(&format!("a: 1\nb: x ${{{unset}}}\n"), &[]).unwrap_err();
        assert!(
            e.starts_with(&format!("s.yaml:2:6: `${{{unset}}}` is not set")),
            "{e}"
        );
        assert!(e.contains(&format!("-e {unset}=VALUE")), "{e}");
        let e = run("a: ${RATE\n", &[]).unwrap_err();
        assert!(
            e.starts_with("s.yaml:1:4: `${` without a closing `}`"),
            "{e}"
        );
        let e = run("a: ${1X}\n", &[]).unwrap_err();
        assert!(
            e.starts_with("s.yaml:1:4: `${1X}`: `1X` is not a variable name"),
            "{e}"
        );
        let e = run("a: ${V}\n", &["V=two\nlines"]).unwrap_err();
        assert!(
            e.starts_with("s.yaml:1:4: `${V}`: its value holds a line break"),
            "{e}"
        );
    }

    #[test]
    fn comments_are_left_as_they_are() {
        let text = "# ${UNSET_1}\n  # ${UNSET_2}\nn: ${N} # ${UNSET_3}\n\
                    s: \"a #${N}\" # ${UNSET_4}\nq: 'it''s #${N}'\nu: x/#${N} it's #${UNSET_5}\n";
        assert_eq!(
            run(text, &["N=7"]).unwrap(),
            "# ${UNSET_1}\n  # ${UNSET_2}\nn: 7 # ${UNSET_3}\n\
             s: \"a #7\" # ${UNSET_4}\nq: 'it''s #7'\nu: x/#7 it's #${UNSET_5}\n"
        );
    }

    #[test]
    fn bad_pairs_are_refused() {
        assert!(Vars::from_pairs(&["RATE"])
            .unwrap_err()
            .contains("NAME=VALUE"));
        assert!(Vars::from_pairs(&["9A=1"])
            .unwrap_err()
            .contains("not a variable name"));
    }

    #[test]
    fn columns_after_a_value_are_moved_back_to_the_file() {
        // `${RATE}` (7 bytes) became `12345` (5): a column after it moves right by 2.
        let x = expand(
            Path::new("s.yaml"),
            "a: ${RATE} bad\n",
            &vars(&["RATE=12345"]),
        )
        .unwrap();
        assert_eq!(x.text, "a: 12345 bad\n");
        assert_eq!(
            x.locate((1, 10)),
            (1, 12),
            "`bad` stands at column 12 in the file"
        );
        assert_eq!(x.locate((1, 2)), (1, 2), "before the value nothing moves");
        assert_eq!(x.locate((2, 10)), (2, 10), "other lines do not move");
    }
}
