//! The `replay:` section of a scenario file: which recordings to play against the target and
//! the transforms to apply. `loadgen replay` builds the same section from its flags.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Dur, Pool};

/// Recorded traffic played on the open-rate driver at recorded or scaled speed.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    /// Recording files or globs (`.gor`, `.gor.gz`, HAR, access logs, Vegeta targets),
    /// relative to the scenario file. Several files are merged in timestamp order.
    pub files: Vec<String>,
    /// `gor`, `har`, `access-log` or `vegeta`; detected from each file's content when absent.
    #[serde(default)]
    pub format: Option<String>,
    /// Skip and count malformed records instead of failing (default false: the first
    /// malformed record is an error naming its place).
    #[serde(default)]
    pub skip_malformed: bool,
    /// Records held per file to restore timestamp order and pair responses (default 10000).
    #[serde(default)]
    pub reorder_window: Option<usize>,
    /// Requests per second for recordings without times (Vegeta targets; default 50).
    #[serde(default)]
    pub untimed_rate: Option<f64>,
    /// Speed factor: `2x` plays twice as fast, `0.5x` half as fast (default 1x).
    #[serde(default)]
    pub speed: Option<Speed>,
    /// Play only this part of the recording, offsets from its first record.
    #[serde(default)]
    pub window: Option<Window>,
    /// Play only matching requests.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Change requests before sending.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    /// The longest wait between two records, after the speed factor (long idle gaps shrink).
    #[serde(default)]
    pub max_wait: Option<Dur>,
    /// Play the recording this many times in a row (default 1).
    #[serde(default, rename = "loop")]
    pub loops: Option<u32>,
    /// At most this many requests per second (later ones are pushed back).
    #[serde(default)]
    pub rate_cap: Option<f64>,
    /// The connection pool (as for open-model senders).
    #[serde(default)]
    pub pool: Option<Pool>,
    /// Per-request timeout (default 30s).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Compare each replayed status with the recorded response, when the recording has one
    /// (default true); mismatches count in `replay_status_mismatch`.
    #[serde(default = "yes")]
    pub compare_status: bool,
    /// Where the recording's WebSocket device sessions (HAR) connect: `ws://host:port` or
    /// `wss://…` (an `http(s)://` URL means its `ws(s)://` twin), with each session's
    /// recorded path and query. Default: the target's base URL as `ws(s)://`.
    #[serde(default)]
    pub ws_target: Option<String>,
}

fn yes() -> bool {
    true
}

/// A part of a recording.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// From this offset.
    #[serde(default)]
    pub from: Option<Dur>,
    /// Until this offset.
    #[serde(default)]
    pub to: Option<Dur>,
}

/// Which requests to play.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only these methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Only requests recorded for these hosts (without port).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Only paths (with query) matching this regex.
    #[serde(default)]
    pub path: Option<String>,
    /// Not paths matching this regex.
    #[serde(default)]
    pub exclude_path: Option<String>,
}

/// Changes to each request.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Path rewrites in order: `{ match: "^/v1/(.*)", to: "/v2/$1" }`.
    #[serde(default)]
    pub path: Vec<PathRewrite>,
    /// Send this `Host` header instead of the target's.
    #[serde(default)]
    pub host: Option<String>,
    /// Headers to set (replacing recorded ones).
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    /// Headers to remove.
    #[serde(default)]
    pub remove_headers: Vec<String>,
}

/// One path rewrite.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathRewrite {
    /// A regex on the path with query.
    #[serde(rename = "match")]
    pub pattern: String,
    /// The replacement; `$1` for groups.
    pub to: String,
}

/// A speed factor: `2x`, `0.5x`, `150%` or a bare number.
#[derive(Debug, Clone, Copy, PartialEq, JsonSchema)]
#[schemars(with = "String")]
pub struct Speed(pub f64);

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Speed, String> {
        let t = s.trim();
        let v = if let Some(p) = t.strip_suffix('%') {
            p.trim().parse::<f64>().map(|v| v / 100.0)
        } else {
            t.strip_suffix(['x', 'X'])
                .unwrap_or(t)
                .trim()
                .parse::<f64>()
        };
        match v {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(Speed(v)),
            _ => Err(format!(
                "speed: expected a positive factor such as `2x`, `0.5x` or `150%`, got `{s}`"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Speed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(v) => format!("{v}").parse(),
            Raw::S(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}
