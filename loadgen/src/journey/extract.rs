//! Value extraction and matching: the one set of rules by which every engine reads a value
//! out of an answer or a message ([`Source`]: JSON pointer, regex group, header) and tests it
//! ([`Match`]: JSON pointer with a value, substring, regex) — HTTP captures and expectations,
//! dispatch calls, device messages and push recognition all go through [`Message`].
//!
//! | found at a JSON pointer | the value |
//! | --- | --- |
//! | a string | the string, escapes decoded |
//! | a number | its JSON text in serde_json's form: `7`, `-1500.0` for `-1.5e3` |
//! | `true` / `false` | `true` / `false` |
//! | `null` | nothing: the capture fails, as for a missing pointer |
//! | an object or array | its compact JSON text |
//! | nothing (missing pointer, or the body is not JSON) | nothing |
//!
//! Regexes and `contains` run over the bytes, so a body that is not UTF-8 can still match; a
//! regex group or a header value that is not UTF-8 gives nothing (no lossy U+FFFD
//! replacement sneaks into an id). `equals` compares JSON values, numbers by value (`1` equals
//! `1.0`).
//!
//! A message's JSON is parsed at most once, on the first rule that needs it, and only its top
//! level is parsed into fields ([`Doc`]); strings borrow from the message unless they hold
//! escapes, so a typical push costs one small allocation instead of a full
//! `serde_json::Value` tree. Lookups follow RFC 6901 JSON pointers and give the same answers
//! as `Value::pointer` on the whole message.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};

use crate::scenario::{Match, Source};

/// Named values beside a message's bytes, read by `{ header: NAME }`.
#[derive(Clone, Copy)]
enum Headers<'a> {
    /// An HTTP answer's headers.
    Http(&'a http::HeaderMap),
    /// An MQTT 5 PUBLISH's user properties: names compared without case; of a repeated
    /// name, the last one.
    Pairs(&'a [(String, String)]),
}

/// One answer or message being read: its bytes, its headers when it is an HTTP answer (or
/// its user properties when it is an MQTT 5 message), and its JSON, parsed on first use.
pub struct Message<'a> {
    bytes: &'a [u8],
    headers: Option<Headers<'a>>,
    doc: OnceCell<Option<Doc<'a>>>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({} bytes)", self.bytes.len())
    }
}

impl<'a> Message<'a> {
    /// A message (a device frame, a body) without headers.
    pub fn new(bytes: &'a [u8]) -> Message<'a> {
        Message {
            bytes,
            headers: None,
            doc: OnceCell::new(),
        }
    }

    /// An HTTP answer: its body and headers.
    pub fn http(body: &'a [u8], headers: &'a http::HeaderMap) -> Message<'a> {
        Message {
            headers: Some(Headers::Http(headers)),
            ..Message::new(body)
        }
    }

    /// A message with named values beside it (an MQTT 5 PUBLISH's user properties), read
    /// by `{ header: NAME }` as an HTTP answer's headers are.
    pub fn with_properties(bytes: &'a [u8], properties: &'a [(String, String)]) -> Message<'a> {
        Message {
            headers: Some(Headers::Pairs(properties)),
            ..Message::new(bytes)
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn doc(&self) -> Option<&Doc<'a>> {
        self.doc.get_or_init(|| Doc::parse(self.bytes)).as_ref()
    }

    /// The value `source` names, by the rules in the module docs; `None` when there is none.
    pub fn extract(&self, source: &Source) -> Option<Cow<'_, str>> {
        match source {
            Source::Json(p) => self.doc().and_then(|d| d.get(p)).and_then(Lookup::text),
            Source::Regex(re, group) => re
                .captures(self.bytes)
                .and_then(|c| c.get(*group))
                .and_then(|m| std::str::from_utf8(m.as_bytes()).ok())
                .map(Cow::Borrowed),
            Source::Header(h) => match self.headers? {
                Headers::Http(hs) => hs
                    .get(h.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(Cow::Borrowed),
                Headers::Pairs(pairs) => pairs
                    .iter()
                    .rev()
                    .find(|(n, _)| n.eq_ignore_ascii_case(h))
                    .map(|(_, v)| Cow::Borrowed(v.as_str())),
            },
        }
    }

    /// Whether `rule` holds for this message.
    pub fn matches(&self, rule: &Match) -> bool {
        match rule {
            Match::Json(pointer, want) => match self.doc().and_then(|d| d.get(pointer)) {
                Some(found) => want.as_ref().is_none_or(|w| found.equals(w)),
                None => false,
            },
            Match::Contains(s) => contains(self.bytes, s.as_bytes()),
            Match::Regex(re) => re.is_match(self.bytes),
        }
    }
}

/// Whether `hay` contains `needle` (empty needles are everywhere).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || memchr::memmem::find(hay, needle).is_some()
}

/// Two JSON numbers are equal by value: integers exactly, otherwise as `f64`.
fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
        (Some(x), Some(y), _, _) => x == y,
        (_, _, Some(x), Some(y)) => x == y,
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// JSON equality with numbers compared by value.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

/// A message that parsed as one JSON object (or as another JSON value, kept whole).
#[derive(Debug)]
pub enum Doc<'a> {
    /// A top-level object: its fields in order (a repeated key: the last one counts).
    Object(Vec<(Cow<'a, str>, Field<'a>)>),
    /// Any other JSON value.
    Other(Value),
}

/// One top-level field's value.
#[derive(Debug)]
pub enum Field<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// A number.
    Num(Number),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An object or array.
    Nested(Value),
}

impl<'a> Doc<'a> {
    /// Parses `text`; `None` when it is not JSON.
    pub fn parse(text: &'a [u8]) -> Option<Doc<'a>> {
        serde_json::from_slice(text).ok()
    }

    /// The value at JSON pointer `pointer` (`""` is the whole document).
    pub fn get(&self, pointer: &str) -> Option<Lookup<'_, 'a>> {
        if pointer.is_empty() {
            return Some(Lookup::Doc(self));
        }
        let rest = pointer.strip_prefix('/')?;
        let (first, deeper) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        match self {
            Doc::Other(v) => v.pointer(pointer).map(Lookup::Value),
            Doc::Object(fields) => {
                let name = unescape(first);
                let field = fields.iter().rev().find(|(k, _)| *k == name)?;
                match (deeper, &field.1) {
                    (None, f) => Some(Lookup::Field(f)),
                    (Some(deeper), Field::Nested(v)) => v.pointer(deeper).map(Lookup::Value),
                    (Some(_), _) => None,
                }
            }
        }
    }
}

fn unescape(segment: &str) -> Cow<'_, str> {
    if segment.contains('~') {
        Cow::Owned(segment.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(segment)
    }
}

/// What a pointer found.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'d, 'a> {
    /// The whole document.
    Doc(&'d Doc<'a>),
    /// A top-level field.
    Field(&'d Field<'a>),
    /// A value inside a nested one.
    Value(&'d Value),
}

impl<'d> Lookup<'d, '_> {
    /// Whether the value found equals `want` (JSON equality, numbers by value).
    pub fn equals(&self, want: &Value) -> bool {
        match (self, want) {
            (Lookup::Value(v), w) => values_equal(v, w),
            (Lookup::Field(Field::Str(s)), Value::String(w)) => s == w,
            (Lookup::Field(Field::Num(n)), Value::Number(w)) => numbers_equal(n, w),
            (Lookup::Field(Field::Bool(b)), Value::Bool(w)) => b == w,
            (Lookup::Field(Field::Null), Value::Null) => true,
            (Lookup::Field(Field::Nested(v)), w) => values_equal(v, w),
            (Lookup::Doc(d), w) => values_equal(&d.to_value(), w),
            _ => false,
        }
    }

    /// The value as text: a string as is, `null` as `None`, anything else as its JSON.
    pub fn text(self) -> Option<Cow<'d, str>> {
        match self {
            Lookup::Field(Field::Str(s)) => Some(Cow::Borrowed(s.as_ref())),
            Lookup::Field(Field::Null) | Lookup::Value(Value::Null) => None,
            Lookup::Field(Field::Num(n)) => Some(Cow::Owned(n.to_string())),
            Lookup::Field(Field::Bool(b)) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Lookup::Field(Field::Nested(v)) => Some(Cow::Owned(v.to_string())),
            Lookup::Value(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
            Lookup::Value(v) => Some(Cow::Owned(v.to_string())),
            Lookup::Doc(d) => match d.to_value() {
                Value::String(s) => Some(Cow::Owned(s)),
                Value::Null => None,
                v => Some(Cow::Owned(v.to_string())),
            },
        }
    }
}

impl Doc<'_> {
    /// The whole document as a `Value` (slow path: only a `""` pointer needs it).
    fn to_value(&self) -> Value {
        match self {
            Doc::Other(v) => v.clone(),
            Doc::Object(fields) => {
                let mut map = serde_json::Map::new();
                for (k, f) in fields {
                    let v = match f {
                        Field::Str(s) => Value::String(s.to_string()),
                        Field::Num(n) => Value::Number(n.clone()),
                        Field::Bool(b) => Value::Bool(*b),
                        Field::Null => Value::Null,
                        Field::Nested(v) => v.clone(),
                    };
                    map.insert(k.to_string(), v);
                }
                Value::Object(map)
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Doc<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DocVisitor;
        impl<'de> Visitor<'de> for DocVisitor {
            type Value = Doc<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Doc<'de>, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    fields.push((key.0, map.next_value::<Field<'de>>()?));
                }
                Ok(Doc::Object(fields))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Doc<'de>, S::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Doc::Other)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Doc<'de>, E> {
                Ok(Doc::Other(Value::String(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Doc<'de>, E> {
                Ok(Doc::Other(Value::Number(v.into())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Doc<'de>, E> {
                Ok(Doc::Other(Value::Number(v.into())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Doc<'de>, E> {
                Ok(Doc::Other(
                    Number::from_f64(v).map_or(Value::Null, Value::Number),
                ))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Doc<'de>, E> {
                Ok(Doc::Other(Value::Bool(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Doc<'de>, E> {
                Ok(Doc::Other(Value::Null))
            }
        }
        d.deserialize_any(DocVisitor)
    }
}

/// A string that borrows from the message when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field<'de>, E> {
                Ok(Field::Num(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field::Num(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field<'de>, E> {
                Ok(Number::from_f64(v).map_or(Field::Null, Field::Num))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field<'de>, E> {
                Ok(Field::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Field<'de>, M::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Field::Nested)
            }
            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Field<'de>, S::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Field::Nested)
            }
        }
        d.deserialize_any(FieldVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(p: &str) -> Source {
        Source::Json(p.into())
    }

    fn re(r: &str) -> Source {
        Source::regex_first_group(regex::bytes::Regex::new(r).unwrap())
    }

    /// The rules of the module docs, one row each: (message, source, value).
    #[test]
    fn the_documented_rules() {
        let m = br#"{"s":"a\"b","n":7,"f":-1.5e3,"t":true,"z":null,"o":{"k":[1,2]},"a":[1,"x"]}"#;
        let rows: &[(&[u8], Source, Option<&str>)] = &[
            (m, json("/s"), Some("a\"b")),
            (m, json("/n"), Some("7")),
            (m, json("/f"), Some("-1500.0")),
            (m, json("/t"), Some("true")),
            (m, json("/z"), None),
            (m, json("/o"), Some(r#"{"k":[1,2]}"#)),
            (m, json("/o/k/1"), Some("2")),
            (m, json("/a"), Some(r#"[1,"x"]"#)),
            (m, json("/missing"), None),
            (b"not json", json("/s"), None),
            (b"id=m-1 rest", re(r"id=(\S+)"), Some("m-1")),
            (b"no group here", re("group"), Some("group")),
            (b"id=\xff\xfe", re(r"id=(.+)"), None),
            (b"\xff id=ok", re(r"id=(\w+)"), Some("ok")),
            (m, Source::Header("x-id".into()), None),
        ];
        for (i, (bytes, source, want)) in rows.iter().enumerate() {
            let msg = Message::new(bytes);
            assert_eq!(msg.extract(source).as_deref(), *want, "row {i}: {source}");
        }
        let mut headers = http::HeaderMap::new();
        headers.insert("x-id", "h-1".parse().unwrap());
        headers.insert("x-bin", http::HeaderValue::from_bytes(b"\xff").unwrap());
        let answer = Message::http(b"{}", &headers);
        assert_eq!(
            answer.extract(&Source::Header("x-id".into())).as_deref(),
            Some("h-1")
        );
        assert_eq!(answer.extract(&Source::Header("x-bin".into())), None);
        let props = vec![
            ("Msg-Id".to_string(), "p-1".to_string()),
            ("msg-id".to_string(), "p-2".to_string()),
        ];
        let mqtt = Message::with_properties(b"{}", &props);
        assert_eq!(
            mqtt.extract(&Source::Header("msg-id".into())).as_deref(),
            Some("p-2"),
            "user properties: any case, the last one"
        );
        assert_eq!(mqtt.extract(&Source::Header("x-id".into())), None);
    }

    #[test]
    fn matches_compare_json_values_and_bytes() {
        let m = Message::new(br#"{"type":"push","n":1.0,"o":{"v":[2]},"z":null}"#);
        let eq = |p: &str, v: Value| Match::Json(p.into(), Some(v));
        assert!(m.matches(&eq("/type", "push".into())));
        assert!(!m.matches(&eq("/type", "pong".into())));
        assert!(m.matches(&eq("/n", 1.into())), "1 equals 1.0");
        assert!(m.matches(&eq("/o", serde_json::json!({"v": [2.0]}))));
        assert!(m.matches(&eq("/z", Value::Null)));
        assert!(
            m.matches(&Match::Json("/z".into(), None)),
            "null is present"
        );
        assert!(!m.matches(&Match::Json("/missing".into(), None)));
        let binary = Message::new(b"\x00\xffPUSH id=1");
        assert!(binary.matches(&Match::Contains("PUSH".into())));
        assert!(binary.matches(&Match::Regex(
            regex::bytes::Regex::new("PUSH id=\\d").unwrap()
        )));
        assert!(binary.matches(&Match::Contains(String::new())));
        assert!(!binary.matches(&Match::Json("".into(), None)), "not JSON");
    }

    /// Every pointer gives what `Value::pointer` gives on the fully parsed message.
    #[test]
    fn lookups_agree_with_a_full_parse() {
        let messages = [
            r#"{"type":"push","id":"m-1","kind":"broadcast","topic":null,"sent_at_ns":1795658152000000000,"body":{"a":[1,{"b":"c"}]},"redelivery":false}"#,
            r#"{"type":"p\"u\u0073h","id":7,"f":-1.5e3,"a~b":1,"c/d":2,"dup":1,"dup":"two","t":true}"#,
            r#"[1,"x",{"y":null}]"#,
            r#""just a string""#,
            r#"42"#,
        ];
        let pointers = [
            "",
            "/type",
            "/id",
            "/kind",
            "/topic",
            "/sent_at_ns",
            "/body",
            "/body/a",
            "/body/a/1/b",
            "/body/a/9",
            "/redelivery",
            "/f",
            "/a~0b",
            "/c~1d",
            "/dup",
            "/t",
            "/missing",
            "/type/x",
            "/0",
            "/2/y",
            "/1",
        ];
        let wants = [
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            serde_json::json!("push"),
            serde_json::json!("p\"ush"),
            serde_json::json!(7),
            serde_json::json!(-1500.0),
            serde_json::json!(1795658152000000000u64),
            serde_json::json!("two"),
            serde_json::json!({"a":[1,{"b":"c"}]}),
            serde_json::json!([1, {"b": "c"}]),
        ];
        for m in messages {
            let full: Value = serde_json::from_str(m).unwrap();
            let msg = Message::new(m.as_bytes());
            for p in pointers {
                let expect = full.pointer(p);
                let reference = expect.and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                });
                let got = msg.extract(&json(p)).map(|c| c.into_owned());
                assert_eq!(reference, got, "{m} {p}");
                for w in &wants {
                    let rule = Match::Json(p.to_string(), Some(w.clone()));
                    let reference = expect.is_some_and(|v| values_equal(v, w));
                    assert_eq!(reference, msg.matches(&rule), "{m} {p} == {w}");
                }
                let exists = Match::Json(p.to_string(), None);
                assert_eq!(expect.is_some(), msg.matches(&exists), "{m} {p}");
            }
        }
    }

    #[test]
    fn strings_without_escapes_borrow_from_the_message() {
        let m = br#"{"type":"push","id":"abc","body":"xxxx"}"#;
        let doc = Doc::parse(m).unwrap();
        let Doc::Object(fields) = &doc else {
            panic!("not an object")
        };
        assert!(fields.iter().all(
            |(k, f)| matches!(k, Cow::Borrowed(_)) && matches!(f, Field::Str(Cow::Borrowed(_)))
        ));
        assert!(Doc::parse(b"not json").is_none());
        assert!(Doc::parse(br#"{"a":1"#).is_none());
    }
}
