//! Metric keys: a metric name plus sorted tags, written k6-style as `name{a=1,b=x}`.
//!
//! The text form is used everywhere a key is shown or stored (run files, thresholds in
//! scenario files, the terminal table). The characters `\ , = { }` inside a tag key or value
//! are written with a backslash escape so any key survives the round trip through text.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A metric name with tags, e.g. `http_req_duration{journey=unicast,step=push}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MetricKey {
    /// The metric name, e.g. `http_req_duration`.
    pub name: String,
    /// Tags, sorted by key.
    pub tags: BTreeMap<String, String>,
}

/// Why a metric key's text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing before the tags.
    #[error("expected a metric name such as `http_req_duration{{journey=unicast}}`, got `{0}`")]
    EmptyName(String),
    /// `{` without its `}` or the reverse, or text after the closing brace.
    #[error("unbalanced braces in metric key `{0}`: expected `name{{tag=value,...}}`")]
    UnbalancedBraces(String),
    /// A tag written without `=`.
    #[error("tag `{tag}` in metric key `{key}` has no `=`: expected `tag=value` such as `journey=unicast`")]
    TagWithoutEquals {
        /// The whole key as written.
        key: String,
        /// The offending tag.
        tag: String,
    },
    /// A tag with nothing before `=`.
    #[error("a tag in metric key `{0}` has an empty name: expected `tag=value` such as `journey=unicast`")]
    EmptyTagName(String),
}

impl MetricKey {
    /// The key as reports show it to people: `name{tag=value,…}` with no escapes, so a step
    /// named `POST /users/{{to}}` reads as written. (The [`Display`](fmt::Display) form, with
    /// escapes, is the one that parses back.)
    pub fn human(&self) -> String {
        let mut out = self.name.clone();
        if !self.tags.is_empty() {
            out.push('{');
            for (i, (k, v)) in self.tags.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push('=');
                out.push_str(v);
            }
            out.push('}');
        }
        out
    }

    /// A key without tags.
    pub fn new(name: impl Into<String>) -> MetricKey {
        MetricKey {
            name: name.into(),
            tags: BTreeMap::new(),
        }
    }

    /// This key with tag `key=value` added (or replaced).
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> MetricKey {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// The key without its tags.
    pub fn plain(&self) -> MetricKey {
        MetricKey::new(self.name.clone())
    }

    /// Whether this key is selected by `filter`: same name, and every tag of the filter is
    /// present here with the same value (k6 submetric semantics).
    pub fn matches(&self, filter: &MetricKey) -> bool {
        self.name == filter.name
            && filter
                .tags
                .iter()
                .all(|(k, v)| self.tags.get(k).is_some_and(|mine| mine == v))
    }
}

/// A metric key interned once, so that recording a sample costs an index, not the hashing of a
/// name and its tags: engines make the ids of their keys when a journey is compiled and record
/// through them ([`Recorder`](crate::Recorder) stores samples by id). Ids are local to the
/// process; everything that leaves it (deltas, run records) carries keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(u32);

/// The process's interned keys.
#[derive(Debug, Default)]
struct Registry {
    keys: Vec<Arc<MetricKey>>,
    ids: HashMap<Arc<MetricKey>, MetricId>,
}

fn registry() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl MetricId {
    /// The id of `key`, interning it the first time.
    pub fn of(key: &MetricKey) -> MetricId {
        if let Some(id) = common::sync::read(registry()).ids.get(key) {
            return *id;
        }
        let mut r = common::sync::write(registry());
        if let Some(id) = r.ids.get(key) {
            return *id;
        }
        let id = MetricId(u32::try_from(r.keys.len()).unwrap_or(u32::MAX));
        let key = Arc::new(key.clone());
        r.keys.push(key.clone());
        r.ids.insert(key, id);
        id
    }

    /// The key this id stands for.
    pub fn key(self) -> Arc<MetricKey> {
        common::sync::read(registry()).keys[self.0 as usize].clone()
    }

    /// The id's index (dense from 0 in the order keys were interned).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id at `index` (an index a recorder got from an id).
    pub(crate) fn at(index: usize) -> MetricId {
        MetricId(u32::try_from(index).unwrap_or(u32::MAX))
    }
}

impl From<&MetricKey> for MetricId {
    fn from(key: &MetricKey) -> MetricId {
        MetricId::of(key)
    }
}

impl From<MetricKey> for MetricId {
    fn from(key: MetricKey) -> MetricId {
        MetricId::of(&key)
    }
}

impl From<&MetricId> for MetricId {
    fn from(id: &MetricId) -> MetricId {
        *id
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=' | '{' | '}') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    Ok(())
}

impl fmt::Display for MetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if self.tags.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.tags.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write_escaped(f, k)?;
            f.write_str("=")?;
            write_escaped(f, v)?;
        }
        f.write_str("}")
    }
}

/// One tag's text split at its first unescaped `=` (`value` is `None` without one), with
/// escapes resolved.
struct RawTag {
    key: String,
    value: Option<String>,
}

/// Splits the text between the braces into tags at unescaped commas.
fn split_tags(inner: &str, whole: &str) -> Result<Vec<RawTag>, KeyError> {
    let mut tags = Vec::new();
    let (mut key, mut value) = (String::new(), None::<String>);
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => chars.next().unwrap_or('\\'),
            '{' | '}' => return Err(KeyError::UnbalancedBraces(whole.to_string())),
            '=' if value.is_none() => {
                value = Some(String::new());
                continue;
            }
            ',' => {
                tags.push(RawTag {
                    key: std::mem::take(&mut key),
                    value: value.take(),
                });
                continue;
            }
            c => c,
        };
        value.as_mut().unwrap_or(&mut key).push(c);
    }
    tags.push(RawTag { key, value });
    Ok(tags)
}

impl FromStr for MetricKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<MetricKey, KeyError> {
        let text = s.trim();
        let (name, inner) = match text.find('{') {
            None if text.contains('}') => return Err(KeyError::UnbalancedBraces(s.to_string())),
            None => (text, None),
            Some(open) => match text.strip_suffix('}') {
                Some(body) => (&text[..open], Some(&body[open + 1..])),
                None => return Err(KeyError::UnbalancedBraces(s.to_string())),
            },
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(KeyError::EmptyName(s.to_string()));
        }
        if name.contains('}') {
            return Err(KeyError::UnbalancedBraces(s.to_string()));
        }
        let mut key = MetricKey::new(name);
        let Some(inner) = inner.filter(|i| !i.trim().is_empty()) else {
            return Ok(key);
        };
        for raw in split_tags(inner, s)? {
            let tag_name = raw.key.trim();
            let Some(value) = raw.value else {
                return Err(KeyError::TagWithoutEquals {
                    key: s.to_string(),
                    tag: tag_name.to_string(),
                });
            };
            if tag_name.is_empty() {
                return Err(KeyError::EmptyTagName(s.to_string()));
            }
            key.tags
                .insert(tag_name.to_string(), value.trim().to_string());
        }
        Ok(key)
    }
}

impl Serialize for MetricKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MetricKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> MetricKey {
        s.parse().unwrap()
    }

    #[test]
    fn display_is_k6_style_with_sorted_tags() {
        assert_eq!(MetricKey::new("http_reqs").to_string(), "http_reqs");
        let k = MetricKey::new("http_req_duration")
            .with_tag("step", "push")
            .with_tag("journey", "unicast");
        assert_eq!(
            k.to_string(),
            "http_req_duration{journey=unicast,step=push}"
        );
    }

    #[test]
    fn parse_round_trips_and_tolerates_whitespace() {
        for text in [
            "http_reqs",
            "a{journey=unicast}",
            "a{journey=unicast,step=push}",
        ] {
            assert_eq!(key(text).to_string(), text);
        }
        let k = key("  a { step = push ,  journey= unicast } ");
        assert_eq!(
            k,
            MetricKey::new("a")
                .with_tag("journey", "unicast")
                .with_tag("step", "push")
        );
        assert_eq!(key("a{}"), MetricKey::new("a"));
    }

    #[test]
    fn awkward_tag_values_round_trip_through_escapes() {
        let k = MetricKey::new("http_errors")
            .with_tag("cause", "status 500, {body} a=b \\ x")
            .with_tag("step", "push");
        let text = k.to_string();
        assert_eq!(key(&text), k);
        // An `=` inside a value needs no escape when read.
        assert_eq!(key("a{q=x=y}").tags["q"], "x=y");
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        let err = |s: &str| s.parse::<MetricKey>().unwrap_err().to_string();
        assert_eq!(
            err("  "),
            "expected a metric name such as `http_req_duration{journey=unicast}`, got `  `"
        );
        assert_eq!(
            err("{journey=a}"),
            "expected a metric name such as `http_req_duration{journey=unicast}`, got `{journey=a}`"
        );
        assert_eq!(
            err("a{journey=x"),
            "unbalanced braces in metric key `a{journey=x`: expected `name{tag=value,...}`"
        );
        assert_eq!(
            err("a}"),
            "unbalanced braces in metric key `a}`: expected `name{tag=value,...}`"
        );
        assert_eq!(
            err("a{b={c}}"),
            "unbalanced braces in metric key `a{b={c}}`: expected `name{tag=value,...}`"
        );
        assert_eq!(
            err("a{journey}"),
            "tag `journey` in metric key `a{journey}` has no `=`: expected `tag=value` such as `journey=unicast`"
        );
        assert_eq!(
            err("a{=x}"),
            "a tag in metric key `a{=x}` has an empty name: expected `tag=value` such as `journey=unicast`"
        );
    }

    #[test]
    fn matches_is_same_name_and_tag_superset() {
        let k = key("d{journey=u,step=push}");
        assert!(k.matches(&key("d")));
        assert!(k.matches(&key("d{journey=u}")));
        assert!(k.matches(&k));
        assert!(!k.matches(&key("d{journey=v}")));
        assert!(!k.matches(&key("d{region=eu}")));
        assert!(!k.matches(&key("e")));
        assert!(!key("d").matches(&key("d{journey=u}")));
    }
}
