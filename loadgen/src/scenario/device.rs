//! Device journeys (`devices:`): long-lived WebSocket, raw TCP, MQTT (3.1.1 and 5, over TCP,
//! TLS or WebSocket), Server-Sent Events and long-poll connections that connect (optionally
//! through a dispatch call that yields the address), subscribe to their topics, say hello,
//! heartbeat, receive pushes and acknowledge them, and churn or reconnect. Also the sender side of delivery
//! tracking (`track:` on a request step) and the swarm's process options (`swarm:`).
//!
//! Nothing here knows a gateway's protocol: every message is a template and every reply is
//! recognised by a [`Match`] (JSON pointer + value, substring or regex), so a gateway with its
//! own JSON or text protocol is driven from the file alone.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer};

use super::extract::{Match, Source};
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
    /// Topics the device subscribes to (templates: `news`, `user/{{user}}`, or `{ topic: …,
    /// qos: 1 }`). MQTT devices send them as one SUBSCRIBE; WebSocket and TCP devices send
    /// `subscribe.send` once per topic; `{{topics}}` (comma-joined) puts them in a URL (nchan's
    /// multiplexed channels). A push tracked with `track: { topic: T }` is expected on the
    /// devices whose subscriptions take T (MQTT filters with `+` and `#` included).
    #[serde(default)]
    pub topics: Vec<Subscription>,
    /// The message a WebSocket or TCP device sends for each of its `topics` after
    /// `send_on_connect` (`{{topic}}` is the topic), with the answer to wait for.
    #[serde(default)]
    pub subscribe: Option<Exchange>,
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

/// One subscription: a topic (or MQTT topic filter) and the QoS asked for it.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(with = "RawSubscription")]
pub struct Subscription {
    /// The topic or filter (a template).
    pub topic: Template,
    /// MQTT QoS asked for it (default `connect.mqtt.qos`, else 0).
    pub qos: Option<u8>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RawSubscription {
    /// The topic alone.
    Topic(Template),
    /// The topic and its QoS.
    Full(FullSubscription),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FullSubscription {
    /// The topic or MQTT filter (a template).
    topic: Template,
    /// MQTT QoS: 0, 1 or 2.
    #[serde(default)]
    qos: Option<u8>,
}

impl<'de> Deserialize<'de> for Subscription {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawSubscription::deserialize(d)? {
            RawSubscription::Topic(topic) => Ok(Subscription { topic, qos: None }),
            RawSubscription::Full(f) => Ok(Subscription {
                topic: f.topic,
                qos: f.qos,
            }),
        }
    }
}

/// Where and how a device connects.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// `ws://host:port/path`, `wss://…`, `tcp://host:port`, `mqtt://host:port`,
    /// `mqtts://…`, or `http://…` / `https://…` with `http:` (SSE, long-poll); a template,
    /// default `{{address}}` after a dispatch. `ws://` and `wss://` with `mqtt:` carry MQTT
    /// over WebSocket.
    #[serde(default)]
    pub url: Option<Template>,
    /// MQTT session options (`mqtt://`, `mqtts://`, or MQTT over `ws://` / `wss://`).
    #[serde(default)]
    pub mqtt: Option<Mqtt>,
    /// Server-Sent Events or long-poll over `http://` / `https://`.
    #[serde(default)]
    pub http: Option<HttpStream>,
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

/// MQTT versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum MqttVersion {
    /// MQTT 3.1.1 (protocol level 4; the default).
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.
    #[serde(rename = "5")]
    V5,
}

/// An MQTT device's session.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mqtt {
    /// `"3.1.1"` (default) or `"5"`.
    #[serde(default)]
    pub version: MqttVersion,
    /// The client id (a template; default `{{user}}`).
    #[serde(default)]
    pub client_id: Option<Template>,
    /// Clean session (3.1.1) or clean start (5); default true. With `false` the broker
    /// keeps the session (subscriptions, queued QoS 1/2 messages) across reconnects.
    #[serde(default = "yes")]
    pub clean: bool,
    /// MQTT 5 session expiry after the connection closes (default 0: ends with it).
    #[serde(default)]
    pub session_expiry: Option<Dur>,
    /// User name (a template).
    #[serde(default)]
    pub username: Option<Template>,
    /// Password (a template; needs `username`).
    #[serde(default)]
    pub password: Option<Template>,
    /// Keep-alive: a PINGREQ goes after this much time, its PINGRESP is awaited as long
    /// (default 60s; at most 65535s).
    #[serde(default)]
    pub keep_alive: Option<Dur>,
    /// QoS asked for `topics` that do not give one (default 0).
    #[serde(default)]
    pub qos: Option<u8>,
    /// Hold each PUBACK / PUBREC this long after the PUBLISH (a slow device; a connection
    /// lost meanwhile leaves the message unacknowledged, so the broker must send it again).
    #[serde(default)]
    pub ack_delay: Option<Dur>,
}

fn yes() -> bool {
    true
}

/// How a device reads pushes over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HttpMode {
    /// Server-Sent Events (`text/event-stream`): event `id` and `data` are the push's id and
    /// payload; a reconnect sends `Last-Event-ID`.
    Sse,
    /// Long-poll: one GET per message; the next GET carries `If-Modified-Since` and
    /// `If-None-Match` from the last answer's `Last-Modified` and `Etag`.
    LongPoll,
}

/// HTTP versions for SSE and long-poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum HttpVersion {
    /// HTTP/1.1 (default).
    #[default]
    #[serde(rename = "1.1")]
    Http1,
    /// HTTP/2 (ALPN `h2` over TLS, prior knowledge over plain TCP).
    #[serde(rename = "2")]
    Http2,
}

/// SSE or long-poll.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpStream {
    /// `sse` or `long-poll`.
    pub mode: HttpMode,
    /// `"1.1"` (default) or `"2"`.
    #[serde(default)]
    pub version: HttpVersion,
}

/// The dispatch step: `GET` a URL, take the address from the answer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    /// The URL (a template, e.g. `{{base_url}}/dispatch?user={{user}}`).
    pub get: Template,
    /// Where the address is in the answer (`{ json: /ws }`, `{ regex: ... }`, `{ header: ... }`).
    pub address: Source,
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
    pub capture: BTreeMap<String, Source>,
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
    /// Which messages are pushes (required on WebSocket and TCP; MQTT PUBLISHes, SSE events
    /// and long-poll answers are all pushes unless this says otherwise).
    #[serde(rename = "match", default)]
    pub match_: Option<Match>,
    /// The message id (tracking joins receipts to sends on it).
    pub id: Source,
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
    pub cause: Option<Source>,
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
    pub source: Source,
    /// Its unit.
    pub unit: TimeUnit,
}

impl<'de> Deserialize<'de> for SentAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawSentAt::deserialize(d)?;
        let source = match (raw.json, raw.regex) {
            (Some(p), None) if p.is_empty() || p.starts_with('/') => Source::Json(p),
            (Some(p), None) => {
                return Err(de::Error::custom(format!(
                    "`json` takes a JSON pointer such as `/sent_at_ns`, got `{p}`"
                )))
            }
            (None, Some(r)) => {
                Source::regex_first_group(super::extract::regex(&r).map_err(de::Error::custom)?)
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
    /// Every connected device of this device journey (with push handling) must get it.
    #[serde(default)]
    pub journey: Option<String>,
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
    "topics",
];

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

    /// `{{msg_id}}` is one value per iteration: a second tracked step with the same id would
    /// count one push twice and the other as unexpected.
    #[test]
    fn two_steps_of_a_sender_cannot_track_one_id() {
        let step = "      - post: \"{{base_url}}/push\"\n        json: { user: \"{{random_device}}\", id: \"{{msg_id}}\" }\n        track: { unicast: \"{{random_device}}\" }\n";
        let e = err(&format!("{GOOD}{step}"));
        assert!(e.starts_with("d.yaml:"), "{e}");
        assert!(
            e.contains("senders[0].steps[1].track: tracks the id `{{msg_id}}` as steps[0] does"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        let own = step
            .replace("id: \"{{msg_id}}\"", "id: \"{{msg_id}}-2\"")
            .replace("track: {", "track: { id: \"{{msg_id}}-2\",");
        crate::scenario::load_str(Path::new("d.yaml"), &format!("{GOOD}{own}")).unwrap();
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
