//! String templates: `{{name}}` variables and a few generators, compiled once at load time so
//! a typo is an error with a line and column rather than a request with `{{` in its URL.
//!
//! | form | value |
//! | --- | --- |
//! | `{{name}}`, `{{data.users.email}}` | a variable (`let`, `capture`, CSV feeder, `base_url`) |
//! | `{{uuid}}` | a random UUID v4 |
//! | `{{now_ns}}`, `{{now_ms}}` | wall-clock Unix time |
//! | `{{bytes N}}` | N random alphanumeric characters |
//! | `{{random_int A B}}` | a uniform integer in A..=B |
//! | `{{iteration}}`, `{{user.id}}` | the iteration number of this user / worker, and its id |
//!
//! In a JSON body a string that is one numeric generator alone (`"{{now_ns}}"`) becomes a JSON
//! number, so gateways that want numeric timestamps get them.

use std::fmt;

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer};

/// What a template needs from the running journey to render.
pub trait Scope {
    /// The value of a variable, if it is set.
    fn var(&self, name: &str) -> Option<&str>;
    /// The iteration number of the running user or worker.
    fn iteration(&self) -> u64;
    /// The id of the running user or worker.
    fn user_id(&self) -> u64;
}

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// A variable by name.
    Var(String),
    /// `{{uuid}}`.
    Uuid,
    /// `{{now_ns}}`.
    NowNs,
    /// `{{now_ms}}`.
    NowMs,
    /// `{{bytes N}}`.
    Bytes(usize),
    /// `{{random_int A B}}`.
    RandomInt(i64, i64),
    /// `{{iteration}}`.
    Iteration,
    /// `{{user.id}}`.
    UserId,
}

impl Part {
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Part::NowNs | Part::NowMs | Part::RandomInt(..) | Part::Iteration | Part::UserId
        )
    }
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// An unset variable met while rendering.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("variable `{0}` is not set (define it with `let`, `capture` or a `data` feeder before this step)")]
pub struct Unset(pub String);

const GENERATORS: &str = "uuid, now_ns, now_ms, bytes N, random_int A B, iteration, user.id";

impl Template {
    /// Compiles `source`.
    pub fn compile(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in template `{source}`"))?;
            parts.push(Self::expr(after[..close].trim(), source)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    fn expr(expr: &str, source: &str) -> Result<Part, String> {
        let words: Vec<&str> = expr.split_whitespace().collect();
        let bad_args =
            |usage: &str| format!("`{{{{{expr}}}}}` in `{source}`: expected `{{{{{usage}}}}}`");
        match words.as_slice() {
            [] => Err(format!("empty `{{{{}}}}` in template `{source}`")),
            ["uuid"] => Ok(Part::Uuid),
            ["now_ns"] => Ok(Part::NowNs),
            ["now_ms"] => Ok(Part::NowMs),
            ["iteration"] => Ok(Part::Iteration),
            ["user.id"] => Ok(Part::UserId),
            ["bytes", n] => n
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= 16 << 20)
                .map(Part::Bytes)
                .ok_or_else(|| bad_args("bytes N (0 to 16777216)")),
            ["bytes", ..] => Err(bad_args("bytes N")),
            ["random_int", a, b] => match (a.parse::<i64>(), b.parse::<i64>()) {
                (Ok(a), Ok(b)) if a <= b => Ok(Part::RandomInt(a, b)),
                _ => Err(bad_args("random_int A B with A <= B")),
            },
            ["random_int", ..] => Err(bad_args("random_int A B")),
            ["random_device", quoted] => quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .filter(|name| !name.is_empty())
                .map(|name| Part::Var(random_device_var(name)))
                .ok_or_else(|| bad_args("random_device \"JOURNEY\"")),
            ["random_device", _, ..] => Err(bad_args("random_device \"JOURNEY\"")),
            [name] if is_var_name(name) => Ok(Part::Var(name.to_string())),
            _ => Err(format!(
                "unknown template expression `{{{{{expr}}}}}` in `{source}`; expected a variable name or one of: {GENERATORS}"
            )),
        }
    }

    /// The text the template was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Variables the template reads.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// True when the template is one numeric generator alone.
    pub fn is_numeric(&self) -> bool {
        matches!(self.parts.as_slice(), [p] if p.is_numeric())
    }

    /// True when the template has no expression.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Renders into `out`.
    pub fn render_into(&self, scope: &dyn Scope, out: &mut String) -> Result<(), Unset> {
        use std::fmt::Write;
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => {
                    out.push_str(scope.var(name).ok_or_else(|| Unset(name.clone()))?)
                }
                Part::Uuid => {
                    let _ = write!(out, "{}", uuid::Uuid::new_v4());
                }
                Part::NowNs => {
                    let _ = write!(out, "{}", common::clock::unix_ns());
                }
                Part::NowMs => {
                    let _ = write!(out, "{}", common::clock::unix_ms());
                }
                Part::Bytes(n) => {
                    out.reserve(*n);
                    for _ in 0..*n {
                        out.push(fastrand::alphanumeric());
                    }
                }
                Part::RandomInt(a, b) => {
                    let _ = write!(out, "{}", fastrand::i64(*a..=*b));
                }
                Part::Iteration => {
                    let _ = write!(out, "{}", scope.iteration());
                }
                Part::UserId => {
                    let _ = write!(out, "{}", scope.user_id());
                }
            }
        }
        Ok(())
    }

    /// Renders to a new string.
    pub fn render(&self, scope: &dyn Scope) -> Result<String, Unset> {
        let mut out = String::with_capacity(self.source.len() + 16);
        self.render_into(scope, &mut out)?;
        Ok(out)
    }
}

/// The variable `{{random_device "JOURNEY"}}` reads: the user of a connected device of that
/// device journey, set per iteration (no `let` can set a name with a space and quotes).
pub fn random_device_var(journey: &str) -> String {
    format!("random_device \"{journey}\"")
}

/// The device journey a `{{random_device "JOURNEY"}}` variable names.
pub fn random_device_journey(var: &str) -> Option<&str> {
    var.strip_prefix("random_device \"")?.strip_suffix('"')
}

fn is_var_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Template;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (a template such as `{{base_url}}/push`)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Template, E> {
                Template::compile(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Template, E> {
                Template::compile(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Template, E> {
                Template::compile(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Template, E> {
                Template::compile(&v.to_string()).map_err(E::custom)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Template, E> {
                Template::compile(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Template {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Template".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "number", "boolean"],
            "description": "Text with `{{variable}}` or generator expressions: uuid, now_ns, now_ms, bytes N, random_int A B, iteration, user.id."
        })
    }
}

/// A JSON body whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    /// null, booleans and numbers, kept as they are.
    Fixed(serde_json::Value),
    /// A templated string.
    Str(Template),
    /// An array.
    Array(Vec<JsonTemplate>),
    /// An object, in the file's key order.
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Compiles a JSON value.
    pub fn compile(value: &serde_json::Value) -> Result<JsonTemplate, String> {
        use serde_json::Value;
        Ok(match value {
            Value::String(s) => JsonTemplate::Str(Template::compile(s)?),
            Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(JsonTemplate::compile)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), JsonTemplate::compile(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Fixed(other.clone()),
        })
    }

    /// Variables read anywhere in the body.
    pub fn vars(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_vars(&mut out);
        out
    }

    fn collect_vars<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            JsonTemplate::Fixed(_) => {}
            JsonTemplate::Str(t) => out.extend(t.vars()),
            JsonTemplate::Array(items) => items.iter().for_each(|i| i.collect_vars(out)),
            JsonTemplate::Object(fields) => fields.iter().for_each(|(_, v)| v.collect_vars(out)),
        }
    }

    /// Renders the body as JSON text into `out`.
    pub fn render_into(&self, scope: &dyn Scope, out: &mut String) -> Result<(), Unset> {
        match self {
            JsonTemplate::Fixed(v) => out.push_str(&v.to_string()),
            JsonTemplate::Str(t) if t.is_numeric() => t.render_into(scope, out)?,
            JsonTemplate::Str(t) => {
                let s = t.render(scope)?;
                out.push_str(&serde_json::Value::String(s).to_string());
            }
            JsonTemplate::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render_into(scope, out)?;
                }
                out.push(']');
            }
            JsonTemplate::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    v.render_into(scope, out)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for JsonTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        JsonTemplate::compile(&value).map_err(de::Error::custom)
    }
}

impl JsonSchema for JsonTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JsonBody".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A JSON body; every string in it is a template."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct S(HashMap<String, String>);
    impl Scope for S {
        fn var(&self, name: &str) -> Option<&str> {
            self.0.get(name).map(String::as_str)
        }
        fn iteration(&self) -> u64 {
            7
        }
        fn user_id(&self) -> u64 {
            3
        }
    }

    fn scope() -> S {
        S(HashMap::from([(
            "base_url".to_string(),
            "http://h".to_string(),
        )]))
    }

    #[test]
    fn renders_vars_and_generators() {
        let t = Template::compile("{{base_url}}/push/{{ iteration }}?u={{user.id}}").unwrap();
        assert_eq!(t.render(&scope()).unwrap(), "http://h/push/7?u=3");
        let t = Template::compile("{{bytes 5}}").unwrap();
        assert_eq!(t.render(&scope()).unwrap().len(), 5);
        let t = Template::compile("{{uuid}}").unwrap();
        assert_eq!(t.render(&scope()).unwrap().len(), 36);
    }

    #[test]
    fn compile_errors_say_what_was_expected() {
        let e = Template::compile("{{base_url").unwrap_err();
        assert!(e.contains("unclosed"), "{e}");
        let e = Template::compile("{{bytes x}}").unwrap_err();
        assert!(e.contains("expected `{{bytes N"), "{e}");
        let e = Template::compile("{{foo bar}}").unwrap_err();
        assert!(
            e.contains("unknown template expression `{{foo bar}}`"),
            "{e}"
        );
    }

    #[test]
    fn unset_variable_is_an_error() {
        let t = Template::compile("{{nope}}").unwrap();
        assert_eq!(t.render(&scope()).unwrap_err(), Unset("nope".into()));
    }

    #[test]
    fn json_numeric_generators_become_numbers() {
        let v =
            serde_json::json!({"a": "{{iteration}}", "b": "x{{iteration}}", "c": [1, true, null]});
        let t = JsonTemplate::compile(&v).unwrap();
        let mut out = String::new();
        t.render_into(&scope(), &mut out).unwrap();
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"a": 7, "b": "x7", "c": [1, true, null]})
        );
    }
}
