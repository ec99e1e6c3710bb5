//! A device journey compiled for running: the scenario's `devices[i]` with its plan (its
//! place in the global device index space and its schedule), its metric keys, and the
//! template scope of one device.

use std::time::Duration;

use reports::{MetricId, MetricKey};

use super::names;
use super::wire::Framing;
use crate::journey::mqtt::Version;
use crate::plan::DeviceJourneyPlan;
use crate::scenario::device::{Device, Framing as FileFraming, HttpMode, MqttVersion};
use crate::scenario::template::Scope;

/// The protocol a device journey speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// The journey's own messages over WebSocket or TCP.
    Text,
    /// MQTT over TCP, TLS or WebSocket.
    Mqtt(Version),
    /// Server-Sent Events or long-poll.
    Http(HttpMode),
}

/// A device journey ready to run.
#[derive(Debug)]
pub struct Script {
    /// As written.
    pub def: Device,
    /// Its devices and schedule.
    pub plan: DeviceJourneyPlan,
    /// Raw TCP framing.
    pub tcp_framing: Framing,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// The protocol.
    pub proto: Proto,
    /// MQTT keep-alive (`None`: off).
    pub keep_alive: Option<Duration>,
    /// MQTT QoS of topics that name none.
    pub mqtt_qos: u8,
    /// MQTT: how long acks are held back.
    pub mqtt_ack_delay: Option<Duration>,
    /// Keys.
    pub keys: Keys,
}

/// Metric keys of one device journey.
#[derive(Debug)]
pub struct Keys {
    /// `connections_opened{journey}`.
    pub opened: MetricId,
    /// `ws_connecting{journey}`.
    pub ws_connecting: MetricId,
    /// `tcp_connecting{journey}`.
    pub tcp_connecting: MetricId,
    /// `heartbeat_rtt{journey}`.
    pub heartbeat_rtt: MetricId,
    /// `connections_closed{journey,reason=end}`: open until the device was stopped (the
    /// schedule's step down, or the end of the run).
    pub closed_end: MetricId,
    /// `connections_closed{journey,reason=think}`: the device closed it after its think time.
    pub closed_think: MetricId,
    /// `connections_closed{journey,reason=churn}`: dropped by churn.
    pub closed_churn: MetricId,
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
    /// Compiles every device journey of `devices` with its plan.
    pub fn compile_all(devices: &[Device], plans: Vec<DeviceJourneyPlan>) -> Vec<Script> {
        plans
            .into_iter()
            .map(|plan| {
                let d = &devices[plan.index];
                let tagged = |n: &str| MetricKey::new(n).with_tag("journey", &d.name);
                let closed = |reason: &str| {
                    MetricId::of(&tagged(names::CONNECTIONS_CLOSED).with_tag("reason", reason))
                };
                let mqtt = d.connect.mqtt.as_ref();
                let proto = match (mqtt, &d.connect.http) {
                    (Some(m), _) => Proto::Mqtt(match m.version {
                        MqttVersion::V311 => Version::V311,
                        MqttVersion::V5 => Version::V5,
                    }),
                    (None, Some(h)) => Proto::Http(h.mode),
                    (None, None) => Proto::Text,
                };
                Script {
                    proto,
                    keep_alive: mqtt
                        .map(|m| m.keep_alive.map_or(Duration::from_secs(60), |k| k.get()))
                        .filter(|k| !k.is_zero()),
                    mqtt_qos: mqtt.and_then(|m| m.qos).unwrap_or(0),
                    mqtt_ack_delay: mqtt.and_then(|m| m.ack_delay).map(|d| d.get()),
                    def: d.clone(),
                    plan,
                    tcp_framing: match d.connect.framing {
                        Some(FileFraming::Newline) => Framing::Newline,
                        _ => Framing::LengthU32,
                    },
                    connect_timeout: d
                        .connect
                        .timeout
                        .map_or(Duration::from_secs(10), |t| t.get()),
                    keys: Keys {
                        opened: MetricId::of(&tagged(names::CONNECTIONS_OPENED)),
                        ws_connecting: MetricId::of(&tagged(names::WS_CONNECTING)),
                        tcp_connecting: MetricId::of(&tagged(names::TCP_CONNECTING)),
                        heartbeat_rtt: MetricId::of(&tagged(names::HEARTBEAT_RTT)),
                        closed_end: closed("end"),
                        closed_think: closed("think"),
                        closed_churn: closed("churn"),
                        failed: tagged(names::CONNECTIONS_FAILED),
                    },
                }
            })
            .collect()
    }

    /// The user id of this journey's device `index`.
    pub fn user(&self, index: u32, base_url: &str) -> String {
        match &self.def.user {
            Some(t) => {
                let scope = DeviceScope::new(self, index, "", base_url);
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

    /// The topics device `index` (user `user`) subscribes to, rendered.
    pub fn topics(&self, index: u32, user: &str, base_url: &str) -> Box<[Box<str>]> {
        if self.def.topics.is_empty() {
            return Box::default();
        }
        let scope = DeviceScope::new(self, index, user, base_url);
        self.def
            .topics
            .iter()
            .filter_map(|t| t.topic.render(&scope).ok())
            .map(String::into_boxed_str)
            .collect()
    }

    /// Whether a push published to `topic` reaches a subscription to `filter`: MQTT's
    /// wildcards (`+`, `#`) for MQTT devices, the same name for the others.
    pub fn topic_matches(&self, filter: &str, topic: &str) -> bool {
        match self.proto {
            Proto::Mqtt(_) => rumqttc::mqttbytes::matches(topic, filter),
            _ => filter == topic,
        }
    }
}

/// Every device's user id, by global index.
pub fn all_users(scripts: &[Script], base_url: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in scripts {
        for k in 0..s.plan.planned {
            out.push(s.user(s.plan.index_of(k), base_url));
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
    /// The scope of device `index` of the journey with user `user`; `{{device.id}}` is the
    /// device's number in the whole plan (the same in every segment or worker).
    pub fn new(
        script: &'a Script,
        index: u32,
        user: &'a str,
        base_url: &'a str,
    ) -> DeviceScope<'a> {
        DeviceScope {
            index: index.to_string(),
            id: script.plan.id_of(index).to_string(),
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
