//! [`Doc`]: a received message's JSON, parsed once per message and shared by every rule that
//! reads it (error match, expected answers, heartbeat, push match, id, send time,
//! redelivery). Only the top level is parsed into fields; strings borrow from the message
//! unless they hold escapes, so a typical push costs one small allocation instead of a full
//! `serde_json::Value` tree. Nested objects and arrays are kept as `Value`s. Lookups follow
//! RFC 6901 JSON pointers and give the same answers as `Value::pointer` on the whole message.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};

use crate::scenario::device::Match;
use crate::scenario::CaptureSource;

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

    /// Whether `rule` holds for this message (`text` is its bytes).
    pub fn test(rule: &Match, text: &[u8], doc: Option<&Doc<'_>>) -> bool {
        match rule {
            Match::Json(pointer, want) => match doc.and_then(|d| d.get(pointer)) {
                Some(found) => want.as_ref().is_none_or(|w| found.equals(w)),
                None => false,
            },
            other => other.test(text, None),
        }
    }

    /// Takes a value out of a message by a capture rule (JSON pointer or regex): a string as
    /// is, `null` as nothing, anything else as its JSON text.
    pub fn extract<'d>(
        source: &CaptureSource,
        text: &'d [u8],
        doc: Option<&'d Doc<'_>>,
    ) -> Option<Cow<'d, str>> {
        match source {
            CaptureSource::Json(p) => doc.and_then(|d| d.get(p)).and_then(Lookup::text),
            CaptureSource::Regex(re, group) => std::str::from_utf8(text)
                .ok()
                .and_then(|t| re.captures(t))
                .and_then(|c| c.get(*group))
                .map(|m| Cow::Borrowed(m.as_str())),
            CaptureSource::Header(_) => None,
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
    /// Whether the value found equals `want` (as `serde_json::Value` equality).
    pub fn equals(&self, want: &Value) -> bool {
        match (self, want) {
            (Lookup::Value(v), w) => *v == w,
            (Lookup::Field(Field::Str(s)), Value::String(w)) => s == w,
            (Lookup::Field(Field::Num(n)), Value::Number(w)) => n == w,
            (Lookup::Field(Field::Bool(b)), Value::Bool(w)) => b == w,
            (Lookup::Field(Field::Null), Value::Null) => true,
            (Lookup::Field(Field::Nested(v)), w) => v == w,
            (Lookup::Doc(d), w) => d.to_value() == *w,
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
            let doc = Doc::parse(m.as_bytes()).unwrap();
            for p in pointers {
                let expect = full.pointer(p);
                let got = doc.get(p);
                assert_eq!(expect.is_some(), got.is_some(), "{m} {p}");
                let rule = CaptureSource::Json(p.to_string());
                let old = expect.and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                });
                let new = Doc::extract(&rule, m.as_bytes(), Some(&doc)).map(|c| c.into_owned());
                assert_eq!(old, new, "{m} {p}");
                for w in &wants {
                    let rule = Match::Json(p.to_string(), Some(w.clone()));
                    assert_eq!(
                        rule.test(m.as_bytes(), Some(&full)),
                        Doc::test(&rule, m.as_bytes(), Some(&doc)),
                        "{m} {p} == {w}"
                    );
                }
                let exists = Match::Json(p.to_string(), None);
                assert_eq!(
                    exists.test(m.as_bytes(), Some(&full)),
                    Doc::test(&exists, m.as_bytes(), Some(&doc))
                );
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
