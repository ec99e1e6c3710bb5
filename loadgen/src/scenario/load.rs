//! Reading a scenario file: YAML syntax and type errors from serde with their line and
//! column, then the checks that span several fields, located by searching the source.

use std::path::{Path, PathBuf};

use super::check::Checker;
use super::Scenario;

/// A scenario that cannot be used. Every variant renders as one line naming the file (and the
/// line and column where the input has them); the CLI exits 2 on all of them.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read scenario file: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{}:{}", path.display(), at.as_ref().map_or_else(|| format!(" {message}"), |(l, c)| format!("{l}:{c}: {message}")))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line and column, 1-based, when known.
        at: Option<(usize, usize)>,
        /// What is wrong and what was expected.
        message: String,
    },
}

impl ScenarioError {
    /// The message without the location.
    pub fn message(&self) -> String {
        match self {
            ScenarioError::Io { source, .. } => source.to_string(),
            ScenarioError::Invalid { message, .. } => message.clone(),
        }
    }
}

/// Parses and validates scenario text; `path` is used in messages.
pub fn load_str(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    // An editor's byte-order mark is not part of the YAML.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(err) = control_character(path, text) {
        return Err(err);
    }
    let scenario: Scenario = serde_norway::from_str(text).map_err(|e| {
        let at = e.location().map(|l| (l.line(), l.column()));
        let message = strip_marks(&e.to_string());
        ScenarioError::Invalid {
            path: path.to_path_buf(),
            at,
            message,
        }
    })?;
    Checker { path, text }.validate(&scenario)?;
    Ok(scenario)
}

/// An error in `text` (the file at `path`) located at the first occurrence of `needle`.
pub fn located(path: &Path, text: &str, needle: &str, message: String) -> ScenarioError {
    Checker { path, text }.err(None, needle, message)
}

/// An error located at the first occurrence of `needle` after `anchor` (when given).
pub fn located_after(
    path: &Path,
    text: &str,
    anchor: Option<&str>,
    needle: &str,
    message: String,
) -> ScenarioError {
    Checker { path, text }.err(anchor, needle, message)
}

/// The first control character YAML does not allow (a NUL from a bad copy, say), located at
/// its own line and column (the YAML parser reports a byte position on line 1).
fn control_character(path: &Path, text: &str) -> Option<ScenarioError> {
    let (offset, c) = text
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))?;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |n| before[n + 1..].chars().count())
        + 1;
    Some(ScenarioError::Invalid {
        path: path.to_path_buf(),
        at: Some((line, col)),
        message: format!(
            "control character U+{:04X} is not allowed in a scenario file",
            c as u32
        ),
    })
}

/// Removes libyaml's " at line N column M" (the location is already in front).
fn strip_marks(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " at line ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n = digits(tail);
        match tail[n..].strip_prefix(" column ") {
            Some(col) if n > 0 => rest = &col[digits(col)..],
            _ => {
                out.push_str(" at line ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        load_str(Path::new("s.yaml"), text).unwrap_err().to_string()
    }

    const GOOD: &str = "version: 1\nname: t\ntarget: { embedded: gateway }\nduration: 5s\nusers: 2\nsenders:\n  - name: a\n    steps:\n      - get: \"{{base_url}}/stats\"\n";

    #[test]
    fn good_file_loads() {
        load_str(Path::new("s.yaml"), GOOD).unwrap();
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let e = err(&GOOD.replace("      - get:", "      - gett:"));
        assert!(e.starts_with("s.yaml:9:9: "), "{e}");
        assert!(e.contains("unknown field `gett`"), "{e}");
    }

    #[test]
    fn unset_variable_is_located() {
        let e = err(&GOOD.replace("/stats", "/x/{{dev}}"));
        assert!(e.starts_with("s.yaml:9:"), "{e}");
        assert!(e.contains("variable `dev` is used before it is set"), "{e}");
    }
}
