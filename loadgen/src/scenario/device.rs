//! Device journeys (`devices:`): long-lived WebSocket or raw TCP connections that connect
//! (optionally through a dispatch call that yields the address), say hello, heartbeat, receive
//! pushes and acknowledge them, and churn or reconnect. Also the sender side of delivery
//! tracking (`track:` on a request step) and the swarm's process options (`swarm:`).
//!
//! Nothing here knows a gateway's protocol: every message is a template and every reply is
//! recognised by a [`Match`] (JSON pointer + value, substring or regex), so a gateway with its
//! own JSON or text protocol is driven from the file alone.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer};

use super::step::{Capture, CaptureSource};
use super::{Dur, Shape, Template, Think};

/// A device journey: a population of long-lived connections.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Name, used as the `journey` tag of connection metrics.
    pub name: String,
    /// Closed model: connections held over time (`count: 5000` or `count: { stages: [...] }`).
    #[serde(default)]
    pub count: Option<Shape>,
    /// Open model: new devices per second, up to `max` devices in all.
    #[serde(default)]
    pub arrival: Option<Arrival>,
    /// The device's user id (default `{{device.journey}}-{{device.index}}`); `{{user}}` in
    /// every other template of the journey.
    #[serde(default)]
    pub user: Option<Template>,
    /// Topics the device subscribes to (by its own messages): broadcasts tracked with a topic
    /// are expected only on devices that list it.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Where and how to connect.
    pub connect: Connect,
    /// Messages sent once connected, in order, each optionally awaiting its answer (a hello
    /// and its welcome, a subscribe and its ack).
    #[serde(default)]
    pub send_on_connect: Vec<Exchange>,
    /// Application-level heartbeat.
    #[serde(default)]
    pub heartbeat: Option<Heartbeat>,
    /// How pushes are recognised, identified, timed and acknowledged.
    #[serde(default)]
    pub push: Option<Push>,
    /// A server message announcing an error before it closes (e.g. `{"type":"error",
    /// "code":"refused"}`): the connection's failure is counted under the extracted cause.
    #[serde(default)]
    pub error: Option<ServerError>,
    /// How long a connection is held before the device closes it (default: until the end).
    #[serde(default)]
    pub think: Option<Think>,
    /// A message sent before a clean close.
    #[serde(default)]
    pub close: Option<Template>,
    /// Reconnect after a failure, a clean close or churn, with exponential backoff.
    #[serde(default)]
    pub reconnect: Option<Reconnect>,
    /// Devices dropping their connection at random (then reconnecting).
    #[serde(default)]
    pub churn: Option<Churn>,
}

/// Open-model device arrivals.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    /// New devices per second.
    pub per_second: f64,
    /// Devices in all; arrivals stop there.
    pub max: u64,
}

/// Where and how a device connects.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// `ws://host:port/path`, `wss://…`, or `tcp://host:port` (a template; default
    /// `{{address}}` after a dispatch).
    #[serde(default)]
    pub url: Option<Template>,
    /// An HTTP GET that yields the address to connect to, as `{{address}}`.
    #[serde(default)]
    pub dispatch: Option<Dispatch>,
    /// Raw TCP framing: `length-prefixed-u32` (4-byte big-endian length, the default) or
    /// `newline` (text lines).
    #[serde(default)]
    pub framing: Option<Framing>,
    /// Extra headers of the WebSocket upgrade request (templates).
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    /// Bound on connecting, including the dispatch call and the WebSocket upgrade (default 10s).
    #[serde(default)]
    pub timeout: Option<Dur>,
}

/// The dispatch step: `GET` a URL, take the address from the answer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    /// The URL (a template, e.g. `{{base_url}}/dispatch?user={{user}}`).
    pub get: Template,
    /// Where the address is in the answer (`{ json: /ws }`, `{ regex: ... }`, `{ header: ... }`).
    pub address: Capture,
}

/// Raw TCP framings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// 4-byte big-endian length, then the payload.
    LengthPrefixedU32,
    /// One message per line (`\n`, a trailing `\r` is dropped).
    Newline,
}

/// A message to send, with the answer to wait for.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// The message (a template).
    pub send: Template,
    /// The answer that must come back; anything else first is a refusal.
    #[serde(default)]
    pub expect: Option<Match>,
    /// How long to wait for the answer (default 10s).
    #[serde(default)]
    pub within: Option<Dur>,
    /// Values to take from the answer into variables for later templates.
    #[serde(default)]
    pub capture: BTreeMap<String, Capture>,
}

/// Application-level heartbeat.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Interval between heartbeats.
    pub every: Dur,
    /// Uniform random extra delay, 0 to this, added to each interval.
    #[serde(default)]
    pub jitter: Option<Dur>,
    /// The heartbeat message (a template).
    pub send: Template,
    /// The pong; when set, it must arrive `within` or the connection fails (`heartbeat`).
    #[serde(default)]
    pub expect: Option<Match>,
    /// Deadline for the pong (default 10s).
    #[serde(default)]
    pub within: Option<Dur>,
}

/// How pushes are handled.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// Which messages are pushes.
    #[serde(rename = "match")]
    pub match_: Match,
    /// The message id (tracking joins receipts to sends on it).
    pub id: Capture,
    /// The send timestamp carried in the push; `delivery_latency` is measured from it (else
    /// from the time the tracked send was made).
    #[serde(default)]
    pub sent_at: Option<SentAt>,
    /// The acknowledgement to send back (template; `{{msg.id}}` is the push id).
    #[serde(default)]
    pub ack: Option<Template>,
    /// Marks a redelivery (counted in `delivery_redelivered`, never as a duplicate).
    #[serde(default)]
    pub redelivery: Option<Match>,
}

/// A server's error announcement.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerError {
    /// Which messages are errors.
    #[serde(rename = "match")]
    pub match_: Match,
    /// The cause tag to count under (e.g. `{ json: /code }`); default `refused`.
    #[serde(default)]
    pub cause: Option<Capture>,
}

/// Reconnection.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconnect {
    /// Backoff between attempts.
    #[serde(default)]
    pub backoff: Backoff,
}

/// Exponential backoff with full jitter: attempt n waits uniform(0, min(max, initial × 2ⁿ)).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// First delay bound (default 100ms).
    #[serde(default = "default_initial")]
    pub initial: Dur,
    /// Largest delay bound (default 10s).
    #[serde(default = "default_max")]
    pub max: Dur,
}

fn default_initial() -> Dur {
    Dur(std::time::Duration::from_millis(100))
}
fn default_max() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: default_initial(),
            max: default_max(),
        }
    }
}

/// Churn: each connected device drops its connection at this rate (a Poisson process per
/// device), so about `per_second` × devices reconnect each second.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Fraction of devices per second (e.g. 0.001).
    pub per_second: f64,
}

/// The unit of a timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Nanoseconds since the Unix epoch (default).
    #[default]
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

impl TimeUnit {
    /// Nanoseconds in one unit.
    pub fn nanos(self) -> u64 {
        match self {
            TimeUnit::Ns => 1,
            TimeUnit::Us => 1_000,
            TimeUnit::Ms => 1_000_000,
            TimeUnit::S => 1_000_000_000,
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawSentAt {
    /// A JSON pointer, e.g. `/sent_at_ns`.
    #[serde(default)]
    json: Option<String>,
    /// A regular expression; group 1 (or the whole match) is the number.
    #[serde(default)]
    regex: Option<String>,
    /// `ns` (default), `us`, `ms` or `s`.
    #[serde(default)]
    unit: TimeUnit,
}

/// Where a push carries its send time.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(with = "RawSentAt")]
pub struct SentAt {
    /// Where the number is.
    pub source: CaptureSource,
    /// Its unit.
    pub unit: TimeUnit,
}

impl<'de> Deserialize<'de> for SentAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawSentAt::deserialize(d)?;
        let source = match (raw.json, raw.regex) {
            (Some(p), None) if p.is_empty() || p.starts_with('/') => CaptureSource::Json(p),
            (Some(p), None) => {
                return Err(de::Error::custom(format!(
                    "`json` takes a JSON pointer such as `/sent_at_ns`, got `{p}`"
                )))
            }
            (None, Some(r)) => {
                let re = regex::Regex::new(&r).map_err(|e| {
                    de::Error::custom(format!("invalid regular expression `{r}`: {e}"))
                })?;
                let group = usize::from(re.captures_len() > 1);
                CaptureSource::Regex(re, group)
            }
            _ => {
                return Err(de::Error::custom(
                    "`sent_at` takes exactly one of `json` (a JSON pointer) or `regex`",
                ))
            }
        };
        Ok(SentAt {
            source,
            unit: raw.unit,
        })
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

/// A test on one received message.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(with = "RawMatch")]
pub enum Match {
    /// The JSON value at the pointer equals this (or exists, for `None`).
    Json(String, Option<serde_json::Value>),
    /// The text contains this.
    Contains(String),
    /// The text matches.
    Regex(regex::Regex),
}

impl Match {
    /// True when it needs the message parsed as JSON.
    pub fn needs_json(&self) -> bool {
        matches!(self, Match::Json(..))
    }

    /// Tests a message; `json` is its parse (when it parsed).
    pub fn test(&self, text: &[u8], json: Option<&serde_json::Value>) -> bool {
        match self {
            Match::Json(pointer, want) => match json.and_then(|j| j.pointer(pointer)) {
                Some(v) => want.as_ref().is_none_or(|w| w == v),
                None => false,
            },
            Match::Contains(s) => memfind(text, s.as_bytes()),
            Match::Regex(re) => std::str::from_utf8(text).is_ok_and(|t| re.is_match(t)),
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

impl<'de> Deserialize<'de> for Match {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawMatch::deserialize(d)?;
        match (raw.json, raw.contains, raw.regex) {
            (Some(p), None, None) => {
                if !(p.is_empty() || p.starts_with('/')) {
                    return Err(de::Error::custom(format!(
                        "`json` takes a JSON pointer such as `/type`, got `{p}`"
                    )));
                }
                Ok(Match::Json(p, raw.equals))
            }
            (None, Some(s), None) if raw.equals.is_none() => Ok(Match::Contains(s)),
            (None, None, Some(r)) if raw.equals.is_none() => regex::Regex::new(&r)
                .map(Match::Regex)
                .map_err(|e| de::Error::custom(format!("invalid regular expression `{r}`: {e}"))),
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

/// A sender step's delivery expectation: after the request succeeds, the devices named here
/// must receive a push with this id within the deadline.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Track {
    /// The user whose devices must get it (a template, e.g. `{{to}}`).
    #[serde(default)]
    pub unicast: Option<Template>,
    /// Every connected device with push handling must get it.
    #[serde(default)]
    pub broadcast: Option<bool>,
    /// Every connected device that lists this topic must get it.
    #[serde(default)]
    pub topic: Option<Template>,
    /// The message id the devices will see (default `{{msg_id}}`).
    #[serde(default)]
    pub id: Option<Template>,
    /// Delivery deadline after the send (default 10s).
    #[serde(default)]
    pub within: Option<Dur>,
}

/// Default delivery deadline.
pub const DEFAULT_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Track {
    /// The deadline.
    pub fn within(&self) -> std::time::Duration {
        self.within.map_or(DEFAULT_WITHIN, |d| d.get())
    }
}

/// How the swarm runs: in-process or as shard processes, and the source addresses.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwarmOptions {
    /// Shard processes (0 = devices run inside the loadgen process). Default: 0 up to
    /// `per_shard` devices, else enough shards for `per_shard` each.
    #[serde(default)]
    pub shards: Option<u32>,
    /// Most connections one shard process holds (default 15000; the fd limit bounds it).
    #[serde(default)]
    pub per_shard: Option<u32>,
    /// Source addresses to spread connections over: 127.0.0.1 and up (default: enough for
    /// at most 60% of the ephemeral port range per source and destination).
    #[serde(default)]
    pub source_addresses: Option<u32>,
}

/// The embedded gateway's rooms.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedRooms {
    /// Rooms (default 1).
    #[serde(default)]
    pub count: Option<u32>,
    /// Run each room as a process of its own (needed beyond ~18k connections per room).
    #[serde(default)]
    pub processes: bool,
    /// Heartbeat period the rooms announce; silent connections close after 3 of them.
    #[serde(default)]
    pub heartbeat: Option<Dur>,
}

/// Variables every device template may read.
pub const DEVICE_VARS: &[&str] = &[
    "base_url",
    "user",
    "device.index",
    "device.id",
    "device.journey",
    "address",
];

impl super::load::Checker<'_> {
    /// Cross-field checks of `devices:`, `swarm:` and sender `track:` options.
    pub(super) fn check_devices(&self, s: &super::Scenario) -> Result<(), super::ScenarioError> {
        use super::step::Step;
        if s.devices.is_empty() {
            for (i, sender) in s.senders.iter().enumerate() {
                for (j, step) in sender.steps.iter().enumerate() {
                    if matches!(step, Step::Request(r) if r.track.is_some()) {
                        return Err(self.err(None, "track", format!("senders[{i}].steps[{j}].track: delivery tracking needs device journeys (`devices:`)")));
                    }
                }
            }
            if s.swarm.is_some() {
                return Err(self.err(
                    None,
                    "swarm",
                    "swarm: there are no device journeys (`devices:`)".into(),
                ));
            }
            return Ok(());
        }
        for (i, sender) in s.senders.iter().enumerate() {
            for (j, step) in sender.steps.iter().enumerate() {
                let Step::Request(r) = step else { continue };
                let Some(t) = &r.track else { continue };
                let anchor = format!("name: {}", sender.name);
                let kinds = usize::from(t.unicast.is_some())
                    + usize::from(t.broadcast == Some(true))
                    + usize::from(t.topic.is_some());
                if kinds != 1 {
                    return Err(self.err(Some(&anchor), "track", format!("senders[{i}].steps[{j}].track: expected exactly one of `unicast: USER`, `broadcast: true` or `topic: NAME`")));
                }
                if t.within.is_some_and(|w| w.get().is_zero()) {
                    return Err(self.err(
                        Some(&anchor),
                        "within",
                        format!("senders[{i}].steps[{j}].track.within: must be longer than 0s"),
                    ));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let mut any_constant = false;
        for (i, d) in s.devices.iter().enumerate() {
            let anchor = format!("name: {}", d.name);
            let anchor = Some(anchor.as_str());
            let field = |f: &str| format!("devices[{i}].{f}");
            if d.name.trim().is_empty() {
                return Err(self.err(
                    anchor,
                    "name",
                    format!("{}: must not be empty", field("name")),
                ));
            }
            if !names.insert(d.name.as_str()) || s.senders.iter().any(|sd| sd.name == d.name) {
                return Err(self.err(
                    anchor,
                    "name",
                    format!("{}: `{}` is used by another journey", field("name"), d.name),
                ));
            }
            match (&d.count, &d.arrival) {
                (Some(Shape::Constant(0)), None) => {
                    return Err(self.err(anchor, "count", format!("{}: must be at least 1", field("count"))))
                }
                (Some(Shape::Constant(_)), None) => any_constant = true,
                (Some(Shape::Staged(st)), None) => {
                    self.check_stages(anchor, &field("count.stages"), &st.stages)?
                }
                (None, Some(a)) => {
                    if !(a.per_second.is_finite() && a.per_second > 0.0) || a.max == 0 {
                        return Err(self.err(anchor, "arrival", format!("{}: expected a positive `per_second` and `max` of at least 1", field("arrival"))));
                    }
                    any_constant = true;
                }
                _ => {
                    return Err(self.err(anchor, "name", format!("{}: expected exactly one of `count` (closed model: connections held) or `arrival` (open model: devices per second)", field("count"))))
                }
            }
            self.check_connect(anchor, i, d)?;
            if let Some(h) = &d.heartbeat {
                if h.every.get().is_zero() {
                    return Err(self.err(
                        anchor,
                        "every",
                        format!("{}: must be longer than 0s", field("heartbeat.every")),
                    ));
                }
            }
            if let Some(c) = &d.churn {
                if !(c.per_second.is_finite() && (0.0..=1.0).contains(&c.per_second)) {
                    return Err(self.err(
                        anchor,
                        "churn",
                        format!(
                            "{}: expected a fraction of devices per second from 0 to 1, got {}",
                            field("churn.per_second"),
                            c.per_second
                        ),
                    ));
                }
            }
            if let Some(r) = &d.reconnect {
                if r.backoff.initial > r.backoff.max {
                    return Err(self.err(
                        anchor,
                        "backoff",
                        format!(
                            "{}: `initial` must not exceed `max`",
                            field("reconnect.backoff")
                        ),
                    ));
                }
            }
            self.check_device_vars(anchor, i, d)?;
        }
        if any_constant && s.duration.is_none() {
            return Err(self.err(None, "devices", "duration: a constant device count or an arrival rate needs a `duration` to bound the run".into()));
        }
        if let Some(o) = &s.swarm {
            if o.per_shard == Some(0) || o.source_addresses == Some(0) {
                return Err(self.err(
                    None,
                    "swarm",
                    "swarm: `per_shard` and `source_addresses` must be at least 1".into(),
                ));
            }
            if o.source_addresses.is_some_and(|n| n > 65_000) {
                return Err(self.err(
                    None,
                    "source_addresses",
                    "swarm.source_addresses: at most 65000 (127.0.0.1 up to 127.0.253.232)".into(),
                ));
            }
        }
        Ok(())
    }

    fn check_connect(
        &self,
        anchor: Option<&str>,
        i: usize,
        d: &Device,
    ) -> Result<(), super::ScenarioError> {
        let c = &d.connect;
        if c.url.is_none() && c.dispatch.is_none() {
            return Err(self.err(anchor, "connect", format!("devices[{i}].connect: expected `url` (ws://, wss:// or tcp://) or `dispatch: {{ get: URL, address: {{ json: /ws }} }}`")));
        }
        if let Some(url) = &c.url {
            let src = url.source();
            let scheme_ok = ["ws://", "wss://", "tcp://"]
                .iter()
                .any(|p| src.starts_with(p))
                || src.starts_with("{{");
            if !scheme_ok {
                return Err(self.err(anchor, "url", format!("devices[{i}].connect.url: expected a ws://, wss:// or tcp:// URL, got `{src}`")));
            }
            if c.framing.is_some() && (src.starts_with("ws://") || src.starts_with("wss://")) {
                return Err(self.err(anchor, "framing", format!("devices[{i}].connect.framing: framing is for tcp:// connections; WebSocket has its own frames")));
            }
        }
        Ok(())
    }

    fn check_device_vars(
        &self,
        anchor: Option<&str>,
        i: usize,
        d: &Device,
    ) -> Result<(), super::ScenarioError> {
        let mut known: std::collections::BTreeSet<String> =
            DEVICE_VARS.iter().map(|s| s.to_string()).collect();
        let check = |known: &std::collections::BTreeSet<String>, what: &str, t: &Template| {
            for v in t.vars() {
                let ack_id = what.ends_with("ack") && v == "msg.id";
                if !(known.contains(v) || ack_id) {
                    return Err(self.err(anchor, &format!("{{{{{v}"), format!("devices[{i}].{what}: variable `{v}` is not set; device templates read {} and values captured by `send_on_connect`", DEVICE_VARS.join(", "))));
                }
            }
            Ok(())
        };
        if let Some(u) = &d.user {
            for v in u.vars() {
                if v == "user" || !known.contains(v) {
                    return Err(self.err(anchor, "user", format!("devices[{i}].user: variable `{v}` is not available here; use device.index, device.id, device.journey or base_url")));
                }
            }
        }
        if let Some(disp) = &d.connect.dispatch {
            check(&known, "connect.dispatch.get", &disp.get)?;
        }
        if let Some(u) = &d.connect.url {
            check(&known, "connect.url", u)?;
        }
        for h in d.connect.headers.values() {
            check(&known, "connect.headers", h)?;
        }
        for (j, x) in d.send_on_connect.iter().enumerate() {
            check(&known, &format!("send_on_connect[{j}].send"), &x.send)?;
            known.extend(x.capture.keys().cloned());
        }
        if let Some(h) = &d.heartbeat {
            check(&known, "heartbeat.send", &h.send)?;
        }
        if let Some(p) = &d.push {
            if let Some(a) = &p.ack {
                check(&known, "push.ack", a)?;
            }
        }
        if let Some(c) = &d.close {
            check(&known, "close", c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn err(text: &str) -> String {
        crate::scenario::load_str(Path::new("d.yaml"), text)
            .unwrap_err()
            .to_string()
    }

    const GOOD: &str = r#"version: 1
name: d
target: { base_url: "http://127.0.0.1:1" }
duration: 5s
devices:
  - name: phones
    count: 10
    connect: { url: "ws://127.0.0.1:2/ws" }
    send_on_connect:
      - send: '{"type":"hello","user":"{{user}}"}'
        expect: { json: /type, equals: welcome }
        capture: { conn: { json: /conn } }
    heartbeat: { every: 1s, send: 'ping {{conn}}', expect: { contains: pong } }
    push:
      match: { regex: '^PUSH' }
      id: { regex: 'id=(\w+)' }
      ack: 'ACK {{msg.id}}'
senders:
  - name: s
    rate: { per_second: 1 }
    steps:
      - post: "{{base_url}}/push"
        json: { user: "{{random_device}}", id: "{{msg_id}}" }
        track: { unicast: "{{random_device}}" }
"#;

    #[test]
    fn a_device_journey_loads() {
        let s = crate::scenario::load_str(Path::new("d.yaml"), GOOD).unwrap();
        assert_eq!(s.devices.len(), 1);
        assert!(s.devices[0].push.is_some());
    }

    #[test]
    fn device_errors_are_located_and_say_what_was_expected() {
        let e = err(&GOOD.replace("    count: 10\n", "    count: 10\n    countt: 3\n"));
        assert!(e.starts_with("d.yaml:8:5: "), "{e}");
        assert!(e.contains("unknown field `countt`"), "{e}");
        let e = err(&GOOD.replace("'ping {{conn}}'", "'ping {{nope}}'"));
        assert!(e.starts_with("d.yaml:13:"), "{e}");
        assert!(
            e.contains("devices[0].heartbeat.send: variable `nope` is not set"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "connect: { url: \"ws://127.0.0.1:2/ws\" }",
            "connect: { url: \"ws://127.0.0.1:2/ws\", framing: newline }",
        ));
        assert!(e.starts_with("d.yaml:8:"), "{e}");
        assert!(e.contains("framing is for tcp://"), "{e}");
        let e = err(&GOOD.replace("    count: 10\n", ""));
        assert!(e.contains("expected exactly one of `count`"), "{e}");
        let e = err(&GOOD.replace("match: { regex: '^PUSH' }", "match: { regex: '^PUSH(' }"));
        assert!(e.starts_with("d.yaml:15:"), "{e}");
        assert!(e.contains("invalid regular expression"), "{e}");
    }

    #[test]
    fn tracking_needs_devices() {
        let no_devices = GOOD.split("devices:").next().unwrap().to_string()
            + "senders:"
            + GOOD.split("senders:").nth(1).unwrap();
        let e = err(&no_devices.replace("{{random_device}}", "u1"));
        assert!(e.starts_with("d.yaml:"), "{e}");
        assert!(
            e.contains("track: delivery tracking needs device journeys"),
            "{e}"
        );
    }
}
