//! One service instance in Curator ServiceDiscovery's JSON format (what Curator's
//! `JsonInstanceSerializer` writes with Jackson, and what Java senders read), and what
//! pushbench keeps in its `payload`.
//!
//! Curator writes the fields of `ServiceInstance` in declaration order, nulls included:
//!
//! ```json
//! {"name":"apns-relay","id":"5c0e…","address":"10.0.0.5","port":null,"sslPort":8443,
//!  "payload":{"@class":"java.util.LinkedHashMap","endpoints":{"relay":"https://10.0.0.5:8443"},
//!             "region":"us-west-1","weight":1},
//!  "registrationTimeUTC":1733400000000,"serviceType":"DYNAMIC",
//!  "uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false}, …]},
//!  "enabled":true}
//! ```
//!
//! - `payload` is typed by Jackson's `@JsonTypeInfo(use = CLASS)`: an object payload carries
//!   an `@class` property naming its Java class. Ours is a `java.util.LinkedHashMap`, which any
//!   Java reader can take (`JsonInstanceSerializer<Map>`), with `region`, `weight` and
//!   `endpoints` (named URLs: `relay`, `proxy`, …).
//! - `serviceType` is `DYNAMIC` (an ephemeral node), `DYNAMIC_SEQUENTIAL`, `STATIC` or
//!   `PERMANENT`.
//! - `uriSpec` is Curator's `UriSpec`: literal parts and `{variable}` parts (`scheme`, `name`,
//!   `id`, `address`, `port`, `ssl-port`, `registration-time-utc`, `service-type`); `{scheme}` is
//!   `https` when `sslPort` is set.
//! - `enabled` came with Curator 2.10 (CURATOR-275); a node without it is enabled. Readers
//!   ignore fields they do not know, as Curator does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The Java class named in the payload's `@class`, so Java readers get a `Map`.
pub const PAYLOAD_CLASS: &str = "java.util.LinkedHashMap";

/// One registered instance of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstance {
    /// The service's name (the node's parent folder).
    #[serde(default)]
    pub name: String,
    /// The instance's unique id.
    #[serde(default)]
    pub id: String,
    /// Host name or IP address.
    #[serde(default)]
    pub address: Option<String>,
    /// Plain port.
    #[serde(default)]
    pub port: Option<u16>,
    /// TLS port.
    #[serde(default)]
    pub ssl_port: Option<u16>,
    /// Free-form payload; see the module doc for pushbench's keys.
    #[serde(default)]
    pub payload: Option<Value>,
    /// When the instance registered, in Unix milliseconds.
    #[serde(default, rename = "registrationTimeUTC")]
    pub registration_time_utc: i64,
    /// How the node lives.
    #[serde(default)]
    pub service_type: ServiceType,
    /// How to build the instance's URI.
    #[serde(default)]
    pub uri_spec: Option<UriSpec>,
    /// A disabled instance is registered but takes no new work (a draining relay).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Curator's `ServiceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceType {
    /// An ephemeral node: gone when its session ends.
    #[default]
    Dynamic,
    /// An ephemeral sequential node.
    DynamicSequential,
    /// A persistent node.
    Static,
    /// A persistent node that is never removed by the registrar.
    Permanent,
}

/// Curator's `UriSpec`: a URI template of literal and `{variable}` parts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UriSpec {
    /// The parts in order.
    #[serde(default)]
    pub parts: Vec<UriPart>,
}

/// One part of a [`UriSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UriPart {
    /// A literal, or a variable's name.
    #[serde(default)]
    pub value: String,
    /// Whether `value` names a variable.
    #[serde(default)]
    pub variable: bool,
}

impl UriSpec {
    /// Parses a template such as `{scheme}://{address}:{ssl-port}` as Curator does (`{[}` and
    /// `{]}` stand for literal braces).
    pub fn parse(raw: &str) -> Result<UriSpec, String> {
        let mut parts = Vec::new();
        let mut inside = false;
        let mut token = String::new();
        let mut flush = |token: &mut String, variable: bool| {
            if !token.is_empty() {
                let value = if variable {
                    token.trim().to_string()
                } else {
                    token.clone()
                };
                parts.push(UriPart { value, variable });
                token.clear();
            }
        };
        for c in raw.chars() {
            match c {
                '{' if inside => return Err(format!("`{raw}`: `{{` inside a variable")),
                '}' if !inside => return Err(format!("`{raw}`: `}}` without `{{`")),
                '{' | '}' => {
                    flush(&mut token, inside);
                    inside = c == '{';
                }
                _ => token.push(c),
            }
        }
        if inside {
            return Err(format!(
                "`{raw}`: the last variable is not closed with `}}`"
            ));
        }
        flush(&mut token, false);
        Ok(UriSpec { parts })
    }

    /// The URI for `instance`, with Curator's variables; unknown variables are left out, as
    /// Curator leaves them.
    pub fn build(&self, instance: &ServiceInstance) -> String {
        let opt = |v: Option<u16>| v.map(|p| p.to_string()).unwrap_or_default();
        let mut out = String::new();
        for p in &self.parts {
            if !p.variable {
                out.push_str(&p.value);
                continue;
            }
            let value = match p.value.as_str() {
                "[" => "{".to_string(),
                "]" => "}".to_string(),
                "scheme" if instance.ssl_port.is_some() => "https".to_string(),
                "scheme" => "http".to_string(),
                "name" => instance.name.clone(),
                "id" => instance.id.clone(),
                "address" => instance.address.clone().unwrap_or_default(),
                "port" => opt(instance.port),
                "ssl-port" => opt(instance.ssl_port),
                "registration-time-utc" => instance.registration_time_utc.to_string(),
                "service-type" => service_type_name(instance.service_type).to_ascii_lowercase(),
                _ => String::new(),
            };
            out.push_str(&value);
        }
        out
    }
}

fn service_type_name(t: ServiceType) -> &'static str {
    match t {
        ServiceType::Dynamic => "DYNAMIC",
        ServiceType::DynamicSequential => "DYNAMIC_SEQUENTIAL",
        ServiceType::Static => "STATIC",
        ServiceType::Permanent => "PERMANENT",
    }
}

impl ServiceInstance {
    /// A new enabled, dynamic instance of `service` at `address`: a random id, registered now,
    /// an empty `java.util.LinkedHashMap` payload, weight 1.
    pub fn new(service: &str, address: &str) -> ServiceInstance {
        let mut payload = Map::new();
        payload.insert("@class".into(), Value::from(PAYLOAD_CLASS));
        ServiceInstance {
            name: service.to_string(),
            id: uuid::Uuid::new_v4().hyphenated().to_string(),
            address: Some(address.to_string()),
            port: None,
            ssl_port: None,
            payload: Some(Value::Object(payload)),
            registration_time_utc: i64::try_from(common::clock::unix_ms()).unwrap_or(i64::MAX),
            service_type: ServiceType::Dynamic,
            uri_spec: None,
            enabled: true,
        }
    }

    /// The payload object, made one if it is absent or not an object.
    fn payload_mut(&mut self) -> &mut Map<String, Value> {
        if !matches!(self.payload, Some(Value::Object(_))) {
            let mut m = Map::new();
            m.insert("@class".into(), Value::from(PAYLOAD_CLASS));
            self.payload = Some(Value::Object(m));
        }
        match self.payload.as_mut() {
            Some(Value::Object(m)) => m,
            _ => unreachable!("the payload was just made an object"),
        }
    }

    fn payload_get(&self, key: &str) -> Option<&Value> {
        self.payload.as_ref()?.as_object()?.get(key)
    }

    /// Sets the named endpoint URL in the payload (`relay`, `proxy`, …).
    pub fn with_endpoint(mut self, name: &str, url: &str) -> ServiceInstance {
        let payload = self.payload_mut();
        let endpoints = payload
            .entry("endpoints")
            .or_insert_with(|| Value::Object(Map::new()));
        if !endpoints.is_object() {
            *endpoints = Value::Object(Map::new());
        }
        if let Value::Object(m) = endpoints {
            m.insert(name.to_string(), Value::from(url));
        }
        self
    }

    /// Sets the region in the payload.
    pub fn with_region(mut self, region: &str) -> ServiceInstance {
        self.payload_mut()
            .insert("region".into(), Value::from(region));
        self
    }

    /// Sets the balancing weight in the payload (0: registered, takes no work).
    pub fn with_weight(mut self, weight: u32) -> ServiceInstance {
        self.payload_mut()
            .insert("weight".into(), Value::from(weight));
        self
    }

    /// The payload's region.
    pub fn region(&self) -> Option<&str> {
        self.payload_get("region")?.as_str()
    }

    /// The payload's weight (1 when absent).
    pub fn weight(&self) -> u32 {
        self.payload_get("weight")
            .and_then(Value::as_u64)
            .map_or(1, |w| u32::try_from(w).unwrap_or(u32::MAX))
    }

    /// A named endpoint URL from the payload.
    pub fn endpoint(&self, name: &str) -> Option<&str> {
        self.payload_get("endpoints")?
            .as_object()?
            .get(name)?
            .as_str()
    }

    /// The named endpoints.
    pub fn endpoints(&self) -> BTreeMap<&str, &str> {
        self.payload_get("endpoints")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The instance's URI: its `uriSpec` built as Curator builds it, or
    /// `{scheme}://{address}:{ssl-port or port}` without one.
    pub fn uri(&self) -> String {
        match &self.uri_spec {
            Some(spec) => spec.build(self),
            None => {
                let (scheme, port) = match (self.ssl_port, self.port) {
                    (Some(p), _) => ("https", Some(p)),
                    (None, p) => ("http", p),
                };
                let host = self.address.as_deref().unwrap_or_default();
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                match port {
                    Some(p) => format!("{scheme}://{host}:{p}"),
                    None => format!("{scheme}://{host}"),
                }
            }
        }
    }

    /// The node data: Curator's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data (strings, numbers, a JSON value) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads node data written by Curator (or by [`ServiceInstance::to_json`]) and checks what
    /// balancing relies on. The error is one line: the JSON error with its line and column, or
    /// the field that is wrong.
    pub fn from_json(data: &[u8]) -> Result<ServiceInstance, String> {
        let instance: ServiceInstance = serde_json::from_slice(data).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Eof => "truncated JSON",
                serde_json::error::Category::Syntax => "not JSON",
                _ => "not a Curator service instance",
            };
            format!("{what}: {e}")
        })?;
        instance.check()?;
        Ok(instance)
    }

    /// What discovery needs of an instance: an id, an address, and (when present) a payload
    /// whose weight is a whole number and whose endpoints are strings.
    fn check(&self) -> Result<(), String> {
        if self.id.is_empty() {
            return Err("`id` is missing or empty".into());
        }
        if self.address.as_deref().unwrap_or_default().is_empty() {
            return Err("`address` is missing or empty".into());
        }
        if let Some(w) = self.payload_get("weight") {
            if w.as_u64().is_none_or(|w| w > u64::from(u32::MAX)) {
                return Err(format!(
                    "`payload.weight` must be a whole number from 0 to {}, got {w}",
                    u32::MAX
                ));
            }
        }
        if let Some(e) = self.payload_get("endpoints") {
            let Some(m) = e.as_object() else {
                return Err(format!("`payload.endpoints` must be an object, got {e}"));
            };
            if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string()) {
                return Err(format!(
                    "`payload.endpoints.{k}` must be a URL string, got {v}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Curator 5's JsonInstanceSerializer writes for a Map payload (Jackson, field order
    /// of ServiceInstance's declarations, `@class` on the payload; the map's keys in the order
    /// the map has them, here sorted).
    const CURATOR: &str = r#"{"name":"relay","id":"id-1","address":"10.0.0.5","port":null,"sslPort":8443,"payload":{"@class":"java.util.LinkedHashMap","endpoints":{"relay":"https://10.0.0.5:8443"},"region":"us-west-1","weight":3},"registrationTimeUTC":1733400000000,"serviceType":"DYNAMIC","uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"ssl-port","variable":true}]},"enabled":true}"#;

    #[test]
    fn writes_curators_bytes_and_reads_them_back() {
        let mut i = ServiceInstance::new("relay", "10.0.0.5")
            .with_region("us-west-1")
            .with_weight(3)
            .with_endpoint("relay", "https://10.0.0.5:8443");
        i.id = "id-1".into();
        i.ssl_port = Some(8443);
        i.registration_time_utc = 1_733_400_000_000;
        i.uri_spec = Some(UriSpec::parse("{scheme}://{address}:{ssl-port}").unwrap());
        assert_eq!(String::from_utf8(i.to_json()).unwrap(), CURATOR);
        let back = ServiceInstance::from_json(CURATOR.as_bytes()).unwrap();
        assert_eq!(back, i);
        assert_eq!(back.uri(), "https://10.0.0.5:8443");
        assert_eq!(back.weight(), 3);
        assert_eq!(back.region(), Some("us-west-1"));
        assert_eq!(back.endpoint("relay"), Some("https://10.0.0.5:8443"));
    }

    #[test]
    fn reads_old_and_foreign_instances() {
        // Before CURATOR-275 (no `enabled`), a String payload, an unknown field: all taken.
        let old = r#"{"name":"s","id":"x","address":"h","port":80,"sslPort":null,"payload":"p","registrationTimeUTC":0,"serviceType":"STATIC","uriSpec":null,"future":1}"#;
        let i = ServiceInstance::from_json(old.as_bytes()).unwrap();
        assert!(i.enabled);
        assert_eq!(i.service_type, ServiceType::Static);
        assert_eq!(i.uri(), "http://h:80");
        assert_eq!(i.weight(), 1);
    }

    #[test]
    fn uri_spec_parses_like_curator() {
        let s = UriSpec::parse("{scheme}://foo.com:{ port }/{[}x{]}").unwrap();
        let vars: Vec<_> = s
            .parts
            .iter()
            .map(|p| (p.value.as_str(), p.variable))
            .collect();
        assert_eq!(
            vars,
            [
                ("scheme", true),
                ("://foo.com:", false),
                ("port", true),
                ("/", false),
                ("[", true),
                ("x", false),
                ("]", true)
            ]
        );
        let mut i = ServiceInstance::new("s", "h");
        i.port = Some(1);
        assert_eq!(s.build(&i), "http://foo.com:1/{x}");
        assert_eq!(
            UriSpec::parse("{a").unwrap_err(),
            "`{a`: the last variable is not closed with `}`"
        );
        assert_eq!(UriSpec::parse("a}").unwrap_err(), "`a}`: `}` without `{`");
    }

    #[test]
    fn malformed_nodes_are_named_in_one_line() {
        let cases: [(&str, &str); 6] = [
            ("hello", "not JSON: expected value at line 1 column 1"),
            (r#"{"id":"x","#, "truncated JSON: EOF while parsing a value at line 1 column 10"),
            (
                r#"{"id":"x","address":"h","port":70000}"#,
                "not a Curator service instance: invalid value: integer `70000`, expected u16 at line 1 column 36",
            ),
            (r#"{"id":"","address":"h"}"#, "`id` is missing or empty"),
            (
                r#"{"id":"x","address":"h","payload":{"weight":"heavy"}}"#,
                r#"`payload.weight` must be a whole number from 0 to 4294967295, got "heavy""#,
            ),
            (
                r#"{"id":"x","address":"h","payload":{"endpoints":{"relay":5}}}"#,
                "`payload.endpoints.relay` must be a URL string, got 5",
            ),
        ];
        for (data, want) in cases {
            assert_eq!(
                ServiceInstance::from_json(data.as_bytes()).unwrap_err(),
                want,
                "{data}"
            );
        }
    }
}
