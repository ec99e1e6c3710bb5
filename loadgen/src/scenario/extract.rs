//! Where a value is in a message or response ([`Source`]) and what a message must be
//! ([`Match`]), as scenario files write them. The types only: `journey::extract` holds the one
//! set of rules every engine applies them with (HTTP captures and expectations, dispatch
//! calls, device messages, push recognition).

use std::fmt;

use regex::bytes::Regex;
use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer};

/// Compiles a regular expression from a scenario file; the error is one line.
pub fn regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| regex_error(pattern, &e))
}

/// The regex crate's error as one line (its own message spans several, with a caret
/// diagram): `invalid regular expression `PATTERN`: WHY`.
pub fn regex_error(pattern: &str, e: &regex::Error) -> String {
    let text = e.to_string();
    let why = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error:"))
        .map_or_else(|| text.lines().last().unwrap_or("").trim(), str::trim)
        .to_string();
    format!("invalid regular expression `{pattern}`: {why}")
}

fn pointer(p: String, example: &str) -> Result<String, String> {
    if p.is_empty() || p.starts_with('/') {
        Ok(p)
    } else {
        Err(format!(
            "`json` takes a JSON pointer such as `{example}`, got `{p}`"
        ))
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawSource {
    /// A JSON pointer into the body or message, e.g. `/device_id`.
    #[serde(default)]
    json: Option<String>,
    /// A regular expression over the body or message; the first capture group (or `group`) is
    /// taken.
    #[serde(default)]
    regex: Option<String>,
    /// The regex group to take (default 1, or 0 when the regex has no group).
    #[serde(default)]
    group: Option<usize>,
    /// A response header (HTTP answers only).
    #[serde(default)]
    header: Option<String>,
}

/// Where a value is: `{ json: /pointer }`, `{ regex: '…', group: N }` or `{ header: name }`.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(with = "RawSource")]
pub enum Source {
    /// A JSON pointer into the body or message.
    Json(String),
    /// A regular expression over the bytes, with the group to take.
    Regex(Regex, usize),
    /// A response header (lower case).
    Header(String),
}

impl Source {
    /// A regex source taking group 1, or the whole match when the regex has no group.
    pub fn regex_first_group(re: Regex) -> Source {
        let group = usize::from(re.captures_len() > 1);
        Source::Regex(re, group)
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawSource::deserialize(d)?;
        match (raw.json, raw.regex, raw.header) {
            (Some(p), None, None) if raw.group.is_none() => pointer(p, "/device_id")
                .map(Source::Json)
                .map_err(de::Error::custom),
            (None, Some(r), None) => {
                let re = regex(&r).map_err(de::Error::custom)?;
                let groups = re.captures_len() - 1;
                let group = raw.group.unwrap_or(usize::from(groups > 0));
                if group > groups {
                    return Err(de::Error::custom(format!(
                        "capture group {group} does not exist in `{r}` ({groups} groups)"
                    )));
                }
                Ok(Source::Regex(re, group))
            }
            (None, None, Some(h)) if raw.group.is_none() => {
                Ok(Source::Header(h.to_ascii_lowercase()))
            }
            _ => Err(de::Error::custom(
                "a capture takes exactly one of `json` (a JSON pointer), `regex` (with optional `group`) or `header`",
            )),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Json(p) => write!(f, "json {p}"),
            Source::Regex(r, g) => write!(f, "regex `{r}` group {g}"),
            Source::Header(h) => write!(f, "header {h}"),
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    /// A JSON pointer; with `equals` the value there must equal it, alone it must exist.
    #[serde(default)]
    json: Option<String>,
    /// The value at `json` (a string, number, boolean or null).
    #[serde(default)]
    equals: Option<serde_json::Value>,
    /// The message must contain this text.
    #[serde(default)]
    contains: Option<String>,
    /// The message must match this regular expression.
    #[serde(default)]
    regex: Option<String>,
}

/// A test on a message: `{ json: /type, equals: push }`, `{ contains: … }` or `{ regex: … }`.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(with = "RawMatch")]
pub enum Match {
    /// The JSON value at the pointer equals this (or exists, for `None`).
    Json(String, Option<serde_json::Value>),
    /// The bytes contain this.
    Contains(String),
    /// The bytes match.
    Regex(Regex),
}

impl<'de> Deserialize<'de> for Match {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawMatch::deserialize(d)?;
        match (raw.json, raw.contains, raw.regex) {
            (Some(p), None, None) => pointer(p, "/type")
                .map(|p| Match::Json(p, raw.equals))
                .map_err(de::Error::custom),
            (None, Some(s), None) if raw.equals.is_none() => Ok(Match::Contains(s)),
            (None, None, Some(r)) if raw.equals.is_none() => {
                regex(&r).map(Match::Regex).map_err(de::Error::custom)
            }
            _ => Err(de::Error::custom(
                "a match takes exactly one of `json` (with optional `equals`), `contains` or `regex`",
            )),
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Json(p, Some(v)) => write!(f, "{p} == {v}"),
            Match::Json(p, None) => write!(f, "{p} present"),
            Match::Contains(s) => write!(f, "contains `{s}`"),
            Match::Regex(r) => write!(f, "matches `{r}`"),
        }
    }
}

/// Deserialises an optional regex field with [`regex`]'s one-line error.
pub(super) fn opt_regex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
    let s = String::deserialize(d)?;
    regex(&s).map(Some).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_errors_are_one_line() {
        let e = regex("^PUSH(").unwrap_err();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.starts_with("invalid regular expression `^PUSH(`: "),
            "{e}"
        );
        assert!(e.contains("unclosed group"), "{e}");
    }

    #[test]
    fn sources_say_what_they_take() {
        let e = serde_norway::from_str::<Source>("{ json: device_id }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("JSON pointer such as `/device_id`"), "{e}");
        let e = serde_norway::from_str::<Source>("{ regex: 'a(b)', group: 2 }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("capture group 2 does not exist"), "{e}");
        let e = serde_norway::from_str::<Source>("{ json: /a, header: b }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one of"), "{e}");
    }
}
