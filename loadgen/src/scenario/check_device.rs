//! Validation of `devices:`, `swarm:` and sender `track:` sections: each device protocol's
//! fields (WebSocket and TCP messages, MQTT sessions, SSE and long-poll), subscriptions, the
//! variables device templates read, and what tracking targets, each error located in the file.

use std::collections::BTreeSet;

use super::check::Checker;
use super::device::{Device, MqttVersion, DEVICE_VARS};
use super::load::ScenarioError;
use super::{Scenario, Shape, Step, Template};

/// Variables a topic template reads (rendered once per device, before it connects).
const TOPIC_VARS: &[&str] = &[
    "base_url",
    "user",
    "device.index",
    "device.id",
    "device.journey",
];

impl Checker<'_> {
    /// Cross-field checks of `devices:`, `swarm:` and sender `track:` options.
    pub(super) fn check_devices(&self, s: &Scenario) -> Result<(), ScenarioError> {
        self.check_tracks(s)?;
        if s.devices.is_empty() {
            if s.swarm.is_some() {
                return Err(self.err(
                    None,
                    "swarm",
                    "swarm: there are no device journeys (`devices:`)".into(),
                ));
            }
            return Ok(());
        }
        let mut names = BTreeSet::new();
        let mut any_constant = false;
        for (i, d) in s.devices.iter().enumerate() {
            let anchor = format!("name: {}", d.name);
            let anchor = Some(anchor.as_str());
            if d.name.trim().is_empty() {
                return Err(self.err(
                    anchor,
                    "name",
                    format!("devices[{i}].name: must not be empty"),
                ));
            }
            if !names.insert(d.name.as_str()) || s.senders.iter().any(|sd| sd.name == d.name) {
                return Err(self.err(
                    anchor,
                    "name",
                    format!("devices[{i}].name: `{}` is used by another journey", d.name),
                ));
            }
            any_constant |= self.check_device(anchor, i, d, s.target.base_url.as_deref())?;
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

    /// Sender steps' `track:` sections: only with device journeys, one kind of recipient, a
    /// deadline longer than 0s, and no two steps of one sender tracking the same id (one
    /// iteration would then count one push twice and the other as unexpected).
    fn check_tracks(&self, s: &Scenario) -> Result<(), ScenarioError> {
        for (i, sender) in s.senders.iter().enumerate() {
            let mut ids: Vec<(usize, &str)> = Vec::new();
            for (j, step) in sender.steps.iter().enumerate() {
                let Step::Request(r) = step else { continue };
                let Some(t) = &r.track else { continue };
                let id = t.id.as_ref().map_or("{{msg_id}}", |t| t.source());
                if let Some((k, _)) = ids.iter().find(|(_, seen)| *seen == id) {
                    return Err(self.err(
                        Some(&format!("name: {}", sender.name)),
                        "track",
                        format!(
                            "senders[{i}].steps[{j}].track: tracks the id `{id}` as steps[{k}] \
                             does, and it is one value per iteration: give this step's push an \
                             id of its own (e.g. `let: {{ id2: \"{{{{msg_id}}}}-2\" }}` and \
                             `track: {{ id: \"{{{{id2}}}}\", … }}`)"
                        ),
                    ));
                }
                ids.push((j, id));
                if s.devices.is_empty() {
                    return Err(self.err(None, "track", format!("senders[{i}].steps[{j}].track: delivery tracking needs device journeys (`devices:`)")));
                }
                let anchor = format!("name: {}", sender.name);
                let kinds = usize::from(t.unicast.is_some())
                    + usize::from(t.broadcast == Some(true))
                    + usize::from(t.topic.is_some())
                    + usize::from(t.journey.is_some());
                if kinds != 1 {
                    return Err(self.err(Some(&anchor), "track", format!("senders[{i}].steps[{j}].track: expected exactly one of `unicast: USER`, `broadcast: true`, `topic: NAME` or `journey: DEVICE_JOURNEY`")));
                }
                if let Some(name) = &t.journey {
                    if !s.devices.iter().any(|d| &d.name == name) {
                        return Err(self.err(Some(&anchor), "journey", format!("senders[{i}].steps[{j}].track.journey: `{name}` names no device journey")));
                    }
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
        Ok(())
    }

    /// One device journey; true when its count is constant or it has an arrival rate (it
    /// then needs a `duration`).
    fn check_device(
        &self,
        anchor: Option<&str>,
        i: usize,
        d: &Device,
        base_url: Option<&str>,
    ) -> Result<bool, ScenarioError> {
        let field = |f: &str| format!("devices[{i}].{f}");
        let constant = match (&d.count, &d.arrival) {
            (Some(Shape::Constant(0)), None) => {
                return Err(self.err(anchor, "count", format!("{}: must be at least 1", field("count"))))
            }
            (Some(Shape::Constant(_)), None) => true,
            (Some(Shape::Staged(st)), None) => {
                self.check_stages(anchor, &field("count.stages"), &st.stages)?;
                false
            }
            (None, Some(a)) => {
                if !(a.per_second.is_finite() && a.per_second > 0.0) || a.max == 0 {
                    return Err(self.err(anchor, "arrival", format!("{}: expected a positive `per_second` and `max` of at least 1", field("arrival"))));
                }
                true
            }
            _ => {
                return Err(self.err(anchor, "name", format!("{}: expected exactly one of `count` (closed model: connections held) or `arrival` (open model: devices per second)", field("count"))))
            }
        };
        self.check_connect(anchor, i, d, base_url)?;
        self.check_protocol(anchor, i, d)?;
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
        Ok(constant)
    }

    fn check_connect(
        &self,
        anchor: Option<&str>,
        i: usize,
        d: &Device,
        base_url: Option<&str>,
    ) -> Result<(), ScenarioError> {
        let c = &d.connect;
        if c.url.is_none() && c.dispatch.is_none() {
            return Err(self.err(anchor, "connect", format!("devices[{i}].connect: expected `url` (ws://, wss://, tcp://, mqtt://, mqtts://, http:// or https://) or `dispatch: {{ get: URL, address: {{ json: /ws }} }}`")));
        }
        let Some(url) = &c.url else { return Ok(()) };
        // `{{base_url}}` is known now: its scheme says the protocol as a written one would.
        let src = match (url.source().strip_prefix("{{base_url}}"), base_url) {
            (Some(rest), Some(base)) => format!("{}{rest}", base.trim_end_matches('/')),
            _ => url.source().to_string(),
        };
        let scheme = [
            "ws://", "wss://", "tcp://", "mqtt://", "mqtts://", "http://", "https://",
        ]
        .into_iter()
        .find(|p| src.starts_with(p));
        if scheme.is_none() && !src.starts_with("{{") {
            return Err(self.err(anchor, "url", format!("devices[{i}].connect.url: expected a ws://, wss://, tcp://, mqtt://, mqtts://, http:// or https:// URL, got `{src}`")));
        }
        if c.framing.is_some() && scheme.is_some_and(|s| s != "tcp://") {
            return Err(self.err(anchor, "framing", format!("devices[{i}].connect.framing: framing is for tcp:// connections; WebSocket, MQTT and HTTP have their own")));
        }
        let http = matches!(scheme, Some("http://" | "https://"));
        let mqtt = matches!(scheme, Some("mqtt://" | "mqtts://"));
        if http && c.http.is_none() {
            return Err(self.err(anchor, "url", format!("devices[{i}].connect: an http:// or https:// device needs `http: {{ mode: sse }}` or `http: {{ mode: long-poll }}`")));
        }
        if c.http.is_some() && scheme.is_some_and(|_| !http) {
            return Err(self.err(anchor, "http", format!("devices[{i}].connect.http: SSE and long-poll take an http:// or https:// URL, got `{src}`")));
        }
        if c.mqtt.is_some()
            && scheme.is_some_and(|s| !matches!(s, "mqtt://" | "mqtts://" | "ws://" | "wss://"))
        {
            return Err(self.err(anchor, "mqtt", format!("devices[{i}].connect.mqtt: MQTT takes an mqtt://, mqtts://, ws:// or wss:// URL, got `{src}`")));
        }
        if mqtt && c.mqtt.is_none() {
            return Err(self.err(anchor, "url", format!("devices[{i}].connect: an mqtt:// device needs its session options, at least `mqtt: {{}}` (client id, clean session, keep-alive have defaults)")));
        }
        if c.mqtt.is_some() && c.http.is_some() {
            return Err(self.err(
                anchor,
                "http",
                format!("devices[{i}].connect: `mqtt` and `http` exclude each other"),
            ));
        }
        Ok(())
    }

    /// What each protocol takes: MQTT and HTTP devices have their own handshake, keep-alive
    /// and acks; WebSocket and TCP devices say everything in messages.
    fn check_protocol(
        &self,
        anchor: Option<&str>,
        i: usize,
        d: &Device,
    ) -> Result<(), ScenarioError> {
        let field = |f: &str| format!("devices[{i}].{f}");
        let qos_ok = |q: Option<u8>| q.is_none_or(|q| q <= 2);
        for (k, t) in d.topics.iter().enumerate() {
            if !qos_ok(t.qos) {
                return Err(self.err(
                    anchor,
                    "qos",
                    format!("{}: expected 0, 1 or 2", field(&format!("topics[{k}].qos"))),
                ));
            }
            if t.topic.source().is_empty() {
                return Err(self.err(
                    anchor,
                    "topics",
                    format!("{}: must not be empty", field(&format!("topics[{k}]"))),
                ));
            }
            for v in t.topic.vars() {
                if !TOPIC_VARS.contains(&v) {
                    return Err(self.err(
                        anchor,
                        &format!("{{{{{v}"),
                        format!(
                            "{}: variable `{v}` is not available here; topics read {}",
                            field(&format!("topics[{k}]")),
                            TOPIC_VARS.join(", ")
                        ),
                    ));
                }
            }
        }
        let c = &d.connect;
        let own = if let Some(m) = &c.mqtt {
            if !qos_ok(m.qos) {
                return Err(self.err(
                    anchor,
                    "qos",
                    format!("{}: expected 0, 1 or 2", field("connect.mqtt.qos")),
                ));
            }
            if m.keep_alive
                .is_some_and(|k| k.get().as_secs() > u64::from(u16::MAX))
            {
                return Err(self.err(
                    anchor,
                    "keep_alive",
                    format!(
                        "{}: at most 65535s (MQTT's 16-bit field)",
                        field("connect.mqtt.keep_alive")
                    ),
                ));
            }
            if m.password.is_some() && m.username.is_none() {
                return Err(self.err(
                    anchor,
                    "password",
                    format!(
                        "{}: a password needs `username`",
                        field("connect.mqtt.password")
                    ),
                ));
            }
            if m.session_expiry.is_some() && m.version != MqttVersion::V5 {
                return Err(self.err(anchor, "session_expiry", format!("{}: session expiry is MQTT 5's (`version: \"5\"`); MQTT 3.1.1 keeps a session with `clean: false`", field("connect.mqtt.session_expiry"))));
            }
            Some("MQTT")
        } else if c.http.is_some() {
            Some("SSE and long-poll")
        } else {
            None
        };
        if let Some(proto) = own {
            let not_here = [
                ("send_on_connect", !d.send_on_connect.is_empty()),
                ("subscribe", d.subscribe.is_some()),
                ("heartbeat", d.heartbeat.is_some()),
                ("close", d.close.is_some()),
                ("ack", d.push.as_ref().is_some_and(|p| p.ack.is_some())),
            ];
            if let Some((what, _)) = not_here.iter().find(|(_, set)| *set) {
                return Err(self.err(anchor, what, format!("{}: {proto} devices do not send messages of their own (MQTT subscribes to `topics`, pings and acknowledges by itself)", field(what))));
            }
        } else {
            if let Some(p) = &d.push {
                if p.match_.is_none() {
                    return Err(self.err(anchor, "push", format!("{}: WebSocket and TCP devices need `match` to tell pushes from other messages", field("push.match"))));
                }
            }
            if d.subscribe.is_some() && d.topics.is_empty() {
                return Err(self.err(
                    anchor,
                    "subscribe",
                    format!(
                        "{}: there are no `topics` to subscribe to",
                        field("subscribe")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_device_vars(
        &self,
        anchor: Option<&str>,
        i: usize,
        d: &Device,
    ) -> Result<(), ScenarioError> {
        let mut known: BTreeSet<String> = DEVICE_VARS
            .iter()
            .filter(|v| **v != "topics" || !d.topics.is_empty())
            .map(|s| s.to_string())
            .collect();
        let check = |known: &BTreeSet<String>, what: &str, t: &Template| {
            for v in t.vars() {
                let ack_id = what.ends_with("ack") && v == "msg.id";
                let topic = what.starts_with("subscribe") && v == "topic";
                if !(known.contains(v) || ack_id || topic) {
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
        if let Some(x) = &d.subscribe {
            check(&known, "subscribe.send", &x.send)?;
            known.extend(x.capture.keys().cloned());
        }
        if let Some(m) = &d.connect.mqtt {
            for (what, t) in [
                ("connect.mqtt.client_id", &m.client_id),
                ("connect.mqtt.username", &m.username),
                ("connect.mqtt.password", &m.password),
            ] {
                if let Some(t) = t {
                    check(&known, what, t)?;
                }
            }
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
