//! A device journey compiled for running: the scenario's `devices[i]` with its metric keys,
//! its place in the global device index space, and the template scope of one device.

use std::time::Duration;

use reports::MetricKey;

use crate::plan::Schedule;
use crate::scenario::device::{Device, Framing as FileFraming};
use crate::scenario::template::Scope;
use crate::scenario::Shape;

/// Metric names of the device swarm.
pub mod names {
    /// Delivery latency, µs: receipt − send time.
    pub const DELIVERY_LATENCY: &str = "delivery_latency";
    /// Last receipt − send of each tracked broadcast, µs.
    pub const BROADCAST_COMPLETION: &str = "broadcast_completion";
    /// TCP connect + WebSocket upgrade, µs.
    pub const WS_CONNECTING: &str = "ws_connecting";
    /// TCP connect of raw TCP devices, µs.
    pub const TCP_CONNECTING: &str = "tcp_connecting";
    /// Heartbeat round trip, µs.
    pub const HEARTBEAT_RTT: &str = "heartbeat_rtt";
    /// First in-time receipts of tracked pushes.
    pub const DELIVERY_RECEIVED: &str = "delivery_received";
    /// (push, device) pairs expected.
    pub const DELIVERY_EXPECTED: &str = "delivery_expected";
    /// Expected pairs not received by the deadline.
    pub const DELIVERY_LOST: &str = "delivery_lost";
    /// Receipts of a push the device already had, not marked as redelivery.
    pub const DELIVERY_DUPLICATES: &str = "delivery_duplicates";
    /// Receipts no tracked send explains.
    pub const DELIVERY_UNEXPECTED: &str = "delivery_unexpected";
    /// Receipts marked as redelivery.
    pub const DELIVERY_REDELIVERED: &str = "delivery_redelivered";
    /// Tracked pushes still within their deadline when the run ended (not judged).
    pub const DELIVERY_UNRESOLVED: &str = "delivery_unresolved";
    /// Sessions established.
    pub const CONNECTIONS_OPENED: &str = "connections_opened";
    /// Connection attempts or sessions that failed, by `cause`.
    pub const CONNECTIONS_FAILED: &str = "connections_failed";
    /// Sessions open now (gauge, one writer per shard).
    pub const CONNECTIONS_ACTIVE: &str = "connections_active";
}

/// A device journey ready to run.
#[derive(Debug)]
pub struct Script {
    /// As written.
    pub def: Device,
    /// Its position in `scenario.devices`.
    pub index: usize,
    /// First global device index of this journey.
    pub base: u32,
    /// Devices planned (peak count, or arrival max).
    pub planned: u32,
    /// Closed model: connections over time.
    pub count: Option<Schedule>,
    /// Open model: arrival instants (seconds from the start), one per device index.
    pub arrivals: Vec<f64>,
    /// Raw TCP framing.
    pub tcp_framing: crate::swarm::wire::Framing,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Any rule needs messages parsed as JSON.
    pub needs_json: bool,
    /// Keys.
    pub keys: Keys,
}

/// Metric keys of one device journey.
#[derive(Debug)]
pub struct Keys {
    /// `connections_opened{journey}`.
    pub opened: MetricKey,
    /// `ws_connecting{journey}`.
    pub ws_connecting: MetricKey,
    /// `tcp_connecting{journey}`.
    pub tcp_connecting: MetricKey,
    /// `heartbeat_rtt{journey}`.
    pub heartbeat_rtt: MetricKey,
    failed: MetricKey,
}

impl Keys {
    /// `connections_failed{journey}` (for a zero count before any failure).
    pub fn failed_any(&self) -> MetricKey {
        self.failed.clone()
    }

    /// `connections_failed{journey,cause}`.
    pub fn failed(&self, cause: &str) -> MetricKey {
        self.failed.clone().with_tag("cause", cause)
    }
}

impl Script {
    /// Compiles every device journey of a scenario, bounded by `duration`.
    pub fn compile_all(devices: &[Device], duration: Duration) -> Vec<Script> {
        let mut base = 0u32;
        devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (count, arrivals, planned) = match (&d.count, &d.arrival) {
                    (Some(shape), _) => {
                        let s = match shape {
                            Shape::Constant(n) => Schedule::constant(*n as f64, duration),
                            Shape::Staged(st) => {
                                Schedule::staged(st.start as f64, &st.stages, Some(duration))
                            }
                        };
                        let peak = s.peak().round() as u32;
                        (Some(s), Vec::new(), peak)
                    }
                    (None, Some(a)) => {
                        let s = Schedule::constant(a.per_second, duration);
                        let arrivals: Vec<f64> = s.arrivals().take(a.max as usize).collect();
                        let n = arrivals.len() as u32;
                        (None, arrivals, n)
                    }
                    (None, None) => (None, Vec::new(), 0),
                };
                let tagged = |n: &str| MetricKey::new(n).with_tag("journey", &d.name);
                let mut needs_json = d.send_on_connect.iter().any(|x| {
                    x.expect.as_ref().is_some_and(|m| m.needs_json())
                        || x.capture
                            .values()
                            .any(|c| matches!(c.source, crate::scenario::CaptureSource::Json(_)))
                });
                needs_json |= d
                    .heartbeat
                    .as_ref()
                    .is_some_and(|h| h.expect.as_ref().is_some_and(|m| m.needs_json()));
                if let Some(p) = &d.push {
                    needs_json |= p.match_.needs_json()
                        || matches!(p.id.source, crate::scenario::CaptureSource::Json(_))
                        || p.sent_at.as_ref().is_some_and(|s| {
                            matches!(s.source, crate::scenario::CaptureSource::Json(_))
                        })
                        || p.redelivery.as_ref().is_some_and(|m| m.needs_json());
                }
                if let Some(e) = &d.error {
                    needs_json |= e.match_.needs_json()
                        || e.cause.as_ref().is_some_and(|c| {
                            matches!(c.source, crate::scenario::CaptureSource::Json(_))
                        });
                }
                let script = Script {
                    def: d.clone(),
                    index: i,
                    base,
                    planned,
                    count,
                    arrivals,
                    tcp_framing: match d.connect.framing {
                        Some(FileFraming::Newline) => crate::swarm::wire::Framing::Newline,
                        _ => crate::swarm::wire::Framing::LengthU32,
                    },
                    connect_timeout: d
                        .connect
                        .timeout
                        .map_or(Duration::from_secs(10), |t| t.get()),
                    needs_json,
                    keys: Keys {
                        opened: tagged(names::CONNECTIONS_OPENED),
                        ws_connecting: tagged(names::WS_CONNECTING),
                        tcp_connecting: tagged(names::TCP_CONNECTING),
                        heartbeat_rtt: tagged(names::HEARTBEAT_RTT),
                        failed: tagged(names::CONNECTIONS_FAILED),
                    },
                };
                base = base.saturating_add(planned);
                script
            })
            .collect()
    }

    /// The user id of this journey's device `index` (global index `global`).
    pub fn user(&self, index: u32, global: u32, base_url: &str) -> String {
        match &self.def.user {
            Some(t) => {
                let scope = DeviceScope::new(self, index, global, "", base_url);
                t.render(&scope)
                    .unwrap_or_else(|_| format!("{}-{index}", self.def.name))
            }
            None => format!("{}-{index}", self.def.name),
        }
    }

    /// True when the journey recognises pushes.
    pub fn handles_push(&self) -> bool {
        self.def.push.is_some()
    }
}

/// Every device's user id, by global index.
pub fn all_users(scripts: &[Script], base_url: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in scripts {
        for i in 0..s.planned {
            out.push(s.user(i, s.base + i, base_url));
        }
    }
    out
}

/// The variables of one device while it renders a template.
#[derive(Debug)]
pub struct DeviceScope<'a> {
    index: String,
    id: String,
    user: &'a str,
    base_url: &'a str,
    journey: &'a str,
    /// Values captured from answers, and `address`.
    pub extra: Vec<(String, String)>,
}

impl<'a> DeviceScope<'a> {
    /// The scope of device `index` (global `global`) with user `user`.
    pub fn new(
        script: &'a Script,
        index: u32,
        global: u32,
        user: &'a str,
        base_url: &'a str,
    ) -> DeviceScope<'a> {
        DeviceScope {
            index: index.to_string(),
            id: global.to_string(),
            user,
            base_url,
            journey: &script.def.name,
            extra: Vec::new(),
        }
    }

    /// Sets or replaces a variable.
    pub fn set(&mut self, name: &str, value: String) {
        match self.extra.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.extra.push((name.to_string(), value)),
        }
    }
}

impl Scope for DeviceScope<'_> {
    fn var(&self, name: &str) -> Option<&str> {
        match name {
            "user" => Some(self.user),
            "base_url" => Some(self.base_url),
            "device.journey" => Some(self.journey),
            "device.index" => Some(&self.index),
            "device.id" => Some(&self.id),
            _ => lookup(&self.extra, name),
        }
    }
    fn iteration(&self) -> u64 {
        0
    }
    fn user_id(&self) -> u64 {
        self.id.parse().unwrap_or(0)
    }
}

/// The value a device variable list gives `name`: the last one set wins.
pub fn lookup<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Takes a value out of a message by a capture rule (JSON pointer or regex).
pub fn extract(
    source: &crate::scenario::CaptureSource,
    text: &[u8],
    json: Option<&serde_json::Value>,
) -> Option<String> {
    use crate::scenario::CaptureSource;
    match source {
        CaptureSource::Json(p) => json.and_then(|j| j.pointer(p)).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }),
        CaptureSource::Regex(re, group) => std::str::from_utf8(text)
            .ok()
            .and_then(|t| re.captures(t))
            .and_then(|c| c.get(*group))
            .map(|m| m.as_str().to_string()),
        CaptureSource::Header(_) => None,
    }
}
