//! One step of a journey: an HTTP request with expectations and captures, or a `let`.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer};

use super::extract::Source;
use super::{Dur, JsonTemplate, Template};

/// HTTP methods a step may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// HEAD
    Head,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }
}

/// A journey step as written. Exactly one of `let`, `get`, `post`, `put`, `patch`, `delete`,
/// `head`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawStep {
    /// Step name, used as the `step` tag (default: method and path).
    #[serde(default)]
    name: Option<String>,
    /// Set variables for the rest of the iteration.
    #[serde(default, rename = "let")]
    let_: Option<BTreeMap<String, Template>>,
    /// GET this URL template.
    #[serde(default)]
    get: Option<Template>,
    /// POST to this URL template.
    #[serde(default)]
    post: Option<Template>,
    /// PUT to this URL template.
    #[serde(default)]
    put: Option<Template>,
    /// PATCH this URL template.
    #[serde(default)]
    patch: Option<Template>,
    /// DELETE this URL template.
    #[serde(default)]
    delete: Option<Template>,
    /// HEAD this URL template.
    #[serde(default)]
    head: Option<Template>,
    /// Request headers (values are templates).
    #[serde(default)]
    headers: BTreeMap<String, Template>,
    /// A JSON body (every string in it is a template); sets `content-type: application/json`.
    #[serde(default)]
    json: Option<JsonTemplate>,
    /// A raw body template.
    #[serde(default)]
    body: Option<Template>,
    /// What the response must be; anything else counts in `http_req_failed`.
    #[serde(default)]
    expect: Option<Expect>,
    /// Values to take from the response into variables.
    #[serde(default)]
    capture: BTreeMap<String, Source>,
    /// Pause after this step.
    #[serde(default)]
    think: Option<Think>,
    /// Devices that must then receive a push (delivery tracking; needs `devices:`).
    #[serde(default)]
    track: Option<super::device::Track>,
}

/// A journey step.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(with = "RawStep")]
pub enum Step {
    /// Set variables.
    Let(Vec<(String, Template)>),
    /// Send a request.
    Request(Box<Request>),
}

/// An HTTP request step.
#[derive(Debug, Clone)]
pub struct Request {
    /// Step name (the `step` tag).
    pub name: String,
    /// The method.
    pub method: Method,
    /// The URL template.
    pub url: Template,
    /// Headers.
    pub headers: Vec<(String, Template)>,
    /// Body.
    pub body: Body,
    /// Expectations.
    pub expect: Expect,
    /// Captures.
    pub capture: Vec<(String, Source)>,
    /// Pause after the step.
    pub think: Option<Think>,
    /// Delivery expectation registered when the step succeeds.
    pub track: Option<super::device::Track>,
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    None,
    /// JSON.
    Json(JsonTemplate),
    /// Raw text.
    Raw(Template),
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawStep::deserialize(d)?;
        let methods = [
            (Method::Get, raw.get),
            (Method::Post, raw.post),
            (Method::Put, raw.put),
            (Method::Patch, raw.patch),
            (Method::Delete, raw.delete),
            (Method::Head, raw.head),
        ];
        let mut chosen: Vec<(Method, Template)> = methods
            .into_iter()
            .filter_map(|(m, t)| t.map(|t| (m, t)))
            .collect();
        let kinds = chosen.len() + usize::from(raw.let_.is_some());
        if kinds != 1 {
            return Err(de::Error::custom(
                "a step needs exactly one of `let`, `get`, `post`, `put`, `patch`, `delete`, `head`",
            ));
        }
        if let Some(vars) = raw.let_ {
            let extra = raw.json.is_some()
                || raw.body.is_some()
                || raw.expect.is_some()
                || !raw.headers.is_empty()
                || !raw.capture.is_empty()
                || raw.think.is_some()
                || raw.track.is_some();
            if extra {
                return Err(de::Error::custom(
                    "a `let` step takes only `let` (and `name`); put headers, bodies, expectations and captures on a request step",
                ));
            }
            return Ok(Step::Let(vars.into_iter().collect()));
        }
        let (method, url) = chosen.remove(0);
        let body = match (raw.json, raw.body) {
            (Some(_), Some(_)) => {
                return Err(de::Error::custom("a step takes `json` or `body`, not both"))
            }
            (Some(j), None) => Body::Json(j),
            (None, Some(b)) => Body::Raw(b),
            (None, None) => Body::None,
        };
        for (header, value) in &raw.headers {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(de::Error::custom(format!(
                    "header name `{}` is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)",
                    common::printable::printable(header, 60)
                )));
            }
            if value.source().contains(['\r', '\n']) {
                return Err(de::Error::custom(format!(
                    "header `{header}`: a value may not hold a line break (CR or LF)"
                )));
            }
        }
        let name = raw.name.unwrap_or_else(|| default_step_name(method, &url));
        Ok(Step::Request(Box::new(Request {
            name,
            method,
            url,
            headers: raw.headers.into_iter().collect(),
            body,
            expect: raw.expect.unwrap_or_default(),
            capture: raw.capture.into_iter().collect(),
            think: raw.think,
            track: raw.track,
        })))
    }
}

/// `POST /push` from `post: "{{base_url}}/push?x=1"`: the path after the origin, without the
/// query, with template expressions kept as written.
fn default_step_name(method: Method, url: &Template) -> String {
    let src = url.source();
    let path = src.strip_prefix("{{base_url}}").unwrap_or(src);
    let path = match path.find("://") {
        Some(i) => path[i + 3..].find('/').map_or("/", |j| &path[i + 3 + j..]),
        None => path,
    };
    let path = path.split('?').next().unwrap_or(path);
    format!(
        "{} {}",
        method.as_str(),
        if path.is_empty() { "/" } else { path }
    )
}

/// What a response must be.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The status, or a list of acceptable statuses (default: any 2xx or 3xx).
    #[serde(default)]
    pub status: Option<StatusSet>,
    /// The body must contain this text (a template).
    #[serde(default)]
    pub body_contains: Option<Template>,
    /// The body must match this regular expression.
    #[serde(default, deserialize_with = "super::extract::opt_regex")]
    #[schemars(with = "Option<String>")]
    pub body_matches: Option<regex::bytes::Regex>,
}

/// One status or several.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum StatusSet {
    /// One status.
    One(u16),
    /// Any of these.
    Any(Vec<u16>),
}

/// An HTTP status from a file: 100 to 599.
fn status(v: i128) -> Result<u16, String> {
    u16::try_from(v)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| format!("expected an HTTP status from 100 to 599, got {v}"))
}

impl<'de> Deserialize<'de> for StatusSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = StatusSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status such as `200`, or a list such as `[200, 201]`")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusSet, E> {
                status(v.into()).map(StatusSet::One).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusSet, E> {
                status(v.into()).map(StatusSet::One).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StatusSet, A::Error> {
                let mut all = Vec::new();
                while let Some(v) = seq.next_element::<i64>()? {
                    all.push(status(v.into()).map_err(de::Error::custom)?);
                }
                if all.is_empty() {
                    return Err(de::Error::custom(
                        "expected at least one HTTP status in the list",
                    ));
                }
                Ok(StatusSet::Any(all))
            }
        }
        d.deserialize_any(V)
    }
}

impl StatusSet {
    /// True when `status` is acceptable.
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            StatusSet::One(s) => *s == status,
            StatusSet::Any(v) => v.contains(&status),
        }
    }
}

/// A pause: `think: 100ms`, `{constant: 100ms}`, `{uniform: [50ms, 150ms]}` or
/// `{exponential: 100ms}` (the mean).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(with = "ThinkSchema")]
pub enum Think {
    /// Always this long.
    Constant(Dur),
    /// Uniform between the two.
    Uniform(Dur, Dur),
    /// Exponentially distributed with this mean (a Poisson process of iterations).
    Exponential(Dur),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(dead_code)]
enum ThinkMap {
    Constant(Dur),
    Uniform([Dur; 2]),
    Exponential(Dur),
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ThinkSchema {
    Constant(Dur),
    Map(ThinkMap),
}

impl Think {
    /// Draws one pause.
    pub fn sample(&self) -> std::time::Duration {
        use std::time::Duration;
        match self {
            Think::Constant(d) => d.0,
            Think::Uniform(a, b) => {
                let (lo, hi) = (a.0.as_secs_f64(), b.0.as_secs_f64());
                Duration::from_secs_f64(lo + (hi - lo) * fastrand::f64())
            }
            Think::Exponential(mean) => {
                let u = 1.0 - fastrand::f64(); // (0, 1]
                Duration::from_secs_f64((-u.ln() * mean.0.as_secs_f64()).min(3600.0))
            }
        }
    }

    /// The mean pause.
    pub fn mean(&self) -> std::time::Duration {
        match self {
            Think::Constant(d) | Think::Exponential(d) => d.0,
            Think::Uniform(a, b) => (a.0 + b.0) / 2,
        }
    }
}

impl<'de> Deserialize<'de> for Think {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Think;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration (`100ms`) or one of `{constant: 100ms}`, `{uniform: [50ms, 150ms]}`, `{exponential: 100ms}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Think, E> {
                common::duration::parse(v)
                    .map(|d| Think::Constant(Dur(d)))
                    .map_err(E::custom)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Think, A::Error> {
                let m = ThinkMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(match m {
                    ThinkMap::Constant(d) => Think::Constant(d),
                    ThinkMap::Uniform([a, b]) if a <= b => Think::Uniform(a, b),
                    ThinkMap::Uniform(_) => {
                        return Err(de::Error::custom("`uniform: [MIN, MAX]` needs MIN <= MAX"))
                    }
                    ThinkMap::Exponential(d) => Think::Exponential(d),
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_method_and_path() {
        let t = Template::compile("{{base_url}}/push?x=1").unwrap();
        assert_eq!(default_step_name(Method::Post, &t), "POST /push");
        let t = Template::compile("http://h:1/a/{{id}}").unwrap();
        assert_eq!(default_step_name(Method::Get, &t), "GET /a/{{id}}");
    }

    #[test]
    fn exponential_think_has_its_mean() {
        let t = Think::Exponential(Dur(std::time::Duration::from_millis(10)));
        fastrand::seed(7);
        let n = 20_000;
        let total: f64 = (0..n).map(|_| t.sample().as_secs_f64()).sum();
        let mean = total / n as f64;
        assert!((mean - 0.010).abs() < 0.0005, "{mean}");
    }
}
