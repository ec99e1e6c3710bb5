//! Scenario files (YAML, `version: 1`): the types, their loading with file:line:column errors,
//! the variables filled in before parsing ([`vars`]), and the JSON Schema generated from the
//! same types.
//!
//! The serde types here are the single definition of the format: the parser, its error
//! messages (serde's "unknown field `x`, expected one of …") and `loadgen schema` all come
//! from them.

mod check;
mod check_device;
pub mod device;
pub mod extract;
mod load;
pub mod replay;
pub mod step;
pub mod template;
pub mod vars;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

pub use common::duration::Dur;
pub use device::Device;
pub use extract::{Match, Source};
pub use load::{load_str, located, located_after, ScenarioError};
pub use step::Request;
pub use step::{Expect, Method, Step, Think};
pub use template::{JsonTemplate, Template};

/// A scenario file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Format version; only `1` exists.
    pub version: u32,
    /// Name of the run, used in run records and report titles.
    pub name: String,
    /// Free text shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    /// What the load goes to.
    pub target: Target,
    /// Hard bound on the run. Optional when every load shape has stages (then it is their
    /// length); required when any shape is constant.
    #[serde(default)]
    pub duration: Option<Dur>,
    /// Closed-model users shared by the senders that have no `rate`, by weight.
    #[serde(default)]
    pub users: Option<Shape>,
    /// CSV data feeders, by name: `{{data.NAME.COLUMN}}` reads the current row.
    #[serde(default)]
    pub data: BTreeMap<String, Feeder>,
    /// Sender journeys: scripted HTTP calls to the gateway's API.
    #[serde(default)]
    pub senders: Vec<Sender>,
    /// Device journeys: long-lived WebSocket or TCP connections (the device swarm).
    #[serde(default)]
    pub devices: Vec<device::Device>,
    /// How the device swarm runs (shard processes, source addresses).
    #[serde(default)]
    pub swarm: Option<device::SwarmOptions>,
    /// Recorded traffic to replay against the target (with or without senders).
    #[serde(default)]
    pub replay: Option<replay::ReplaySpec>,
    /// Pass/fail criteria, k6 style: metric (with optional `{tag=value}`) → expressions.
    #[serde(default)]
    pub thresholds: BTreeMap<ThresholdKey, Vec<ThresholdExpr>>,
    /// The metrics a baseline comparison gates by default (metric keys or tag filters, e.g.
    /// `http_req_duration{journey=unicast}`); default: the metrics the thresholds name.
    /// Others are compared with `--all`, reported but never failing the gate.
    #[serde(default)]
    pub gate: Vec<GateKey>,
}

/// Where the load goes: an embedded reference target, a URL, or the instances a ZooKeeper
/// service path lists.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// An embedded target started in-process on loopback: `gateway`.
    #[serde(default)]
    pub embedded: Option<Embedded>,
    /// Faults injected by the embedded gateway (only with `embedded`).
    #[serde(default)]
    pub faults: Option<Faults>,
    /// Base URL of the gateway's HTTP API, e.g. `http://127.0.0.1:8080`; `{{base_url}}`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The gateway's instances, registered in ZooKeeper in Curator ServiceDiscovery's format
    /// (`{ ensemble, path, endpoint, balance }`), followed during the run: each sender
    /// iteration's `{{base_url}}` is one of the instances listed when it starts (the named
    /// `endpoint` of its payload, else its URI).
    #[serde(default)]
    pub discovery: Option<discovery::Discover>,
    /// Accept invalid TLS certificates (self-signed staging hosts).
    #[serde(default)]
    pub insecure: bool,
    /// The embedded gateway's rooms (device connections); default one in-process room.
    #[serde(default)]
    pub rooms: Option<device::EmbeddedRooms>,
    /// What the gateway promises a device that was away when a tracked push was sent:
    /// `online` (default: only connected devices get pushes) or `store_and_forward` (a device
    /// that reconnects before the deadline must still get it).
    #[serde(default)]
    pub delivery: Promise,
}

/// A gateway's delivery promise, which decides how a tracked push to a device that was not
/// connected for the whole window is judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Promise {
    /// Pushes reach devices connected when they are sent; a device away for part of the window
    /// is not verifiable.
    #[default]
    Online,
    /// Pushes are kept for devices that are away: a device known before the send that
    /// reconnects before the deadline must get the push, else it is lost.
    StoreAndForward,
}

/// The embedded targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Embedded {
    /// The reference push gateway (`testbed gateway`).
    Gateway,
}

/// Faults for the embedded gateway.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Fixed latency added to every API response.
    #[serde(default)]
    pub latency: Option<Dur>,
    /// Uniform random latency added on top, 0 to this.
    #[serde(default)]
    pub jitter: Option<Dur>,
    /// Fraction of requests answered with an error status (0.0 to 1.0).
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// The status of injected errors (default 503).
    #[serde(default)]
    pub error_status: Option<u16>,
    /// Fraction of (push, connection) deliveries dropped for good.
    #[serde(default)]
    pub push_drop_rate: Option<f64>,
    /// Fraction of deliveries sent twice.
    #[serde(default)]
    pub push_duplicate_rate: Option<f64>,
    /// Fraction of deliveries held `push_delay` first.
    #[serde(default)]
    pub push_delay_rate: Option<f64>,
    /// How long a delayed delivery is held.
    #[serde(default)]
    pub push_delay: Option<Dur>,
    /// Fraction of device connections reset per second.
    #[serde(default)]
    pub conn_reset_rate: Option<f64>,
    /// Fraction of hellos refused.
    #[serde(default)]
    pub refuse_rate: Option<f64>,
}

/// A load shape: a constant level (`users: 50`), or stages (k6 style).
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Shape {
    /// A constant level for the whole run.
    Constant(u64),
    /// Ramps and holds.
    Staged(Staged),
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a number of users, or `{ stages: [ { to: 10, over: 5s }, { hold: 10s } ] }`",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Shape, E> {
                Ok(Shape::Constant(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
                Staged::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Shape::Staged)
            }
        }
        d.deserialize_any(V)
    }
}

/// Stages of a load shape, starting from `start` (default 0).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Staged {
    /// Level before the first stage.
    #[serde(default)]
    pub start: u64,
    /// Ramps (`{to: 100, over: 10s}`) and holds (`{hold: 30s}`), in order.
    pub stages: Vec<Stage>,
}

/// One stage: ramp linearly to `to` over `over`, or hold the current level for `hold`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Target level at the end of the ramp.
    #[serde(default)]
    pub to: Option<u64>,
    /// Length of the ramp.
    #[serde(default)]
    pub over: Option<Dur>,
    /// Length of a hold at the current level.
    #[serde(default)]
    pub hold: Option<Dur>,
}

/// An open-model arrival rate: iterations started per second whatever the responses do.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Constant iterations per second.
    #[serde(default)]
    pub per_second: Option<f64>,
    /// Rate before the first stage (with `stages`).
    #[serde(default)]
    pub start: Option<f64>,
    /// Ramping rate stages; `to` is iterations per second.
    #[serde(default)]
    pub stages: Option<Vec<Stage>>,
}

/// The connection pool of an open-model sender.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Connections to the target (default 64).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Speak HTTP/2 (prior knowledge on http://, ALPN on https://).
    #[serde(default)]
    pub http2: bool,
    /// Concurrent iterations per HTTP/2 connection (default 16; HTTP/1.1 is always 1).
    #[serde(default = "default_streams")]
    pub streams: usize,
    /// Iterations that may wait for a free connection before new ones are dropped
    /// (default 10000). Waiting time counts in the latency.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_connections() -> usize {
    64
}
fn default_streams() -> usize {
    16
}
fn default_queue() -> usize {
    10_000
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            connections: default_connections(),
            http2: false,
            streams: default_streams(),
            queue: default_queue(),
        }
    }
}

/// A sender journey.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    /// Name, used as the `journey` tag.
    pub name: String,
    /// Share of the closed-model users (default 1). Not used with `rate`.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Open model: the arrival rate of iterations. Without it the journey is closed-model.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Open model: the connection pool.
    #[serde(default)]
    pub pool: Option<Pool>,
    /// Pause between iterations (closed model).
    #[serde(default)]
    pub think: Option<Think>,
    /// Per-request timeout (default 30s).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// The steps of one iteration, in order.
    pub steps: Vec<Step>,
}

/// A request's timeout when the sender does not set one.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Sender {
    /// The per-request timeout: `timeout`, or [`DEFAULT_TIMEOUT`].
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout.map_or(DEFAULT_TIMEOUT, Dur::get)
    }
}

/// A CSV data feeder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Feeder {
    /// CSV file, relative to the scenario file. The first row names the columns.
    pub csv: String,
    /// `sequential` (default, wraps around) or `random`.
    #[serde(default)]
    pub order: FeedOrder,
}

/// How a feeder hands out rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedOrder {
    /// Each iteration takes the next row, wrapping around at the end.
    #[default]
    Sequential,
    /// Each iteration takes a random row.
    Random,
}

/// A threshold's metric key, e.g. `http_req_duration{journey=unicast}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[schemars(with = "String")]
pub struct ThresholdKey(pub reports::MetricKey);

impl<'de> Deserialize<'de> for ThresholdKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<reports::MetricKey>()
            .map(ThresholdKey)
            .map_err(|e| serde::de::Error::custom(format!("threshold metric `{s}`: {e}")))
    }
}

/// A metric key of the `gate:` list, e.g. `http_req_duration{journey=unicast}`.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub struct GateKey(pub reports::MetricKey);

impl<'de> Deserialize<'de> for GateKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<reports::MetricKey>()
            .map(GateKey)
            .map_err(|e| serde::de::Error::custom(format!("gate metric `{s}`: {e}")))
    }
}

/// A threshold expression, e.g. `p(99) < 500ms`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(with = "String")]
pub struct ThresholdExpr {
    /// The text as written.
    pub source: String,
    /// The parsed expression.
    pub expr: reports::threshold::Expr,
}

impl<'de> Deserialize<'de> for ThresholdExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<reports::threshold::Expr>()
            .map(|expr| ThresholdExpr {
                source: s.clone(),
                expr,
            })
            .map_err(|e| serde::de::Error::custom(format!("threshold `{s}`: {e}")))
    }
}

/// The JSON Schema of scenario files, generated from the types above.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Scenario);
    serde_json::to_value(&schema).unwrap_or_default()
}
