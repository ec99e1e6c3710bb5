//! Validation of a parsed scenario: the checks serde cannot express (fields that depend on
//! each other, variables used before they are set, device and tracking options), each error
//! located in the file by searching its text for the offending field.

use std::collections::BTreeSet;
use std::path::Path;

use super::load::ScenarioError;
use super::{Rate, Scenario, Sender, Shape, Stage, Step};

/// The file being checked: errors are located in its text.
pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Checker<'_> {
    /// An error located at the first occurrence of `needle` (after `anchor`, when given).
    pub(super) fn err(&self, anchor: Option<&str>, needle: &str, message: String) -> ScenarioError {
        let start = anchor.and_then(|a| self.text.find(a)).unwrap_or(0);
        let at = self.text[start..]
            .find(needle)
            .or_else(|| (start > 0).then_some(0))
            .map(|i| {
                let offset = start + i;
                let before = &self.text[..offset];
                let line = before.matches('\n').count() + 1;
                let col = before.rfind('\n').map_or(offset, |n| offset - n - 1) + 1;
                (line, col)
            });
        ScenarioError::Invalid {
            path: self.path.to_path_buf(),
            at,
            message,
        }
    }

    /// Every check of a parsed scenario; the first failure is the error.
    pub(super) fn validate(&self, s: &Scenario) -> Result<(), ScenarioError> {
        if s.version != 1 {
            return Err(self.err(
                None,
                "version",
                format!(
                    "version: expected 1 (the only scenario format version), got {}",
                    s.version
                ),
            ));
        }
        if s.name.trim().is_empty() {
            return Err(self.err(None, "name", "name: must not be empty".into()));
        }
        self.check_target(s)?;
        self.check_devices(s)?;
        if s.senders.is_empty() && s.devices.is_empty() && s.replay.is_none() {
            return Err(self.err(
                None,
                "senders",
                "senders: at least one sender or device journey (or a `replay:` section) is needed"
                    .into(),
            ));
        }
        let mut names = BTreeSet::new();
        let mut machine_names = BTreeSet::new();
        let (mut any_closed, mut any_constant) = (false, false);
        for (i, sender) in s.senders.iter().enumerate() {
            let anchor = format!("name: {}", sender.name);
            let anchor = Some(anchor.as_str());
            self.check_sender_basics(anchor, i, sender, &mut names)?;
            match &sender.rate {
                Some(rate) => any_constant |= self.check_open_sender(anchor, i, sender, rate)?,
                None => {
                    any_closed = true;
                    self.check_closed_sender(anchor, i, sender, &mut machine_names)?;
                }
            }
            self.check_vars(s, anchor, i)?;
        }
        match (&s.users, any_closed) {
            (None, true) => return Err(self.err(None, "senders", "users: closed-model senders (without `rate`) need `users: N` or `users: { stages: [...] }`".into())),
            (Some(_), false) => return Err(self.err(None, "users", "users: no sender is closed-model (every sender has a `rate`)".into())),
            (Some(Shape::Constant(0)), true) => return Err(self.err(None, "users", "users: must be at least 1".into())),
            (Some(Shape::Constant(_)), true) => any_constant = true,
            (Some(Shape::Staged(st)), true) => self.check_stages(None, "users.stages", &st.stages)?,
            (None, false) => {}
        }
        if any_constant && s.duration.is_none() {
            return Err(self.err(None, "senders", "duration: a constant load (`users: N` or `rate: { per_second: N }`) needs a `duration` to bound the run".into()));
        }
        if let Some(d) = s.duration {
            if d.0.is_zero() {
                return Err(self.err(None, "duration", "duration: must be longer than 0s".into()));
            }
        }
        Ok(())
    }

    /// A sender's name (unique) and steps (at least one request).
    fn check_sender_basics<'s>(
        &self,
        anchor: Option<&str>,
        i: usize,
        sender: &'s Sender,
        names: &mut BTreeSet<&'s str>,
    ) -> Result<(), ScenarioError> {
        let field = |f: &str| format!("senders[{i}].{f}");
        if sender.name.trim().is_empty() {
            return Err(self.err(
                anchor,
                "name",
                format!("{}: must not be empty", field("name")),
            ));
        }
        if !names.insert(sender.name.as_str()) {
            return Err(self.err(
                anchor,
                "name",
                format!(
                    "{}: `{}` is used by two senders",
                    field("name"),
                    sender.name
                ),
            ));
        }
        if sender.steps.is_empty() {
            return Err(self.err(
                anchor,
                "steps",
                format!("{}: a journey needs at least one step", field("steps")),
            ));
        }
        if !sender.steps.iter().any(|s| matches!(s, Step::Request(_))) {
            return Err(self.err(
                anchor,
                "steps",
                format!(
                    "{}: a journey needs at least one request step",
                    field("steps")
                ),
            ));
        }
        Ok(())
    }

    /// An open-model sender's rate and pool; true when its rate is constant (it then needs a
    /// `duration`).
    fn check_open_sender(
        &self,
        anchor: Option<&str>,
        i: usize,
        sender: &Sender,
        rate: &Rate,
    ) -> Result<bool, ScenarioError> {
        let field = |f: &str| format!("senders[{i}].{f}");
        if sender.weight.is_some() {
            return Err(self.err(
                anchor,
                "weight",
                format!(
                    "{}: `weight` shares closed-model users; a sender with `rate` is open-model",
                    field("weight")
                ),
            ));
        }
        let constant = match (&rate.per_second, &rate.stages) {
            (Some(r), None) => {
                if !(r.is_finite() && *r > 0.0) {
                    return Err(self.err(
                        anchor,
                        "per_second",
                        format!(
                            "{}: must be a positive number of iterations per second",
                            field("rate.per_second")
                        ),
                    ));
                }
                if rate.start.is_some() {
                    return Err(self.err(
                        anchor,
                        "start",
                        format!("{}: `start` goes with `stages`", field("rate.start")),
                    ));
                }
                true
            }
            (None, Some(stages)) => {
                self.check_stages(anchor, &field("rate.stages"), stages)?;
                false
            }
            _ => {
                return Err(self.err(
                    anchor,
                    "rate",
                    format!(
                        "{}: expected exactly one of `per_second` or `stages`",
                        field("rate")
                    ),
                ))
            }
        };
        if let Some(pool) = &sender.pool {
            if pool.connections == 0 || pool.streams == 0 {
                return Err(self.err(
                    anchor,
                    "pool",
                    format!(
                        "{}: `connections` and `streams` must be at least 1",
                        field("pool")
                    ),
                ));
            }
        }
        Ok(constant)
    }

    /// A closed-model sender: no pool, a weight of at least 1, a name goose keeps apart.
    fn check_closed_sender(
        &self,
        anchor: Option<&str>,
        i: usize,
        sender: &Sender,
        machine_names: &mut BTreeSet<String>,
    ) -> Result<(), ScenarioError> {
        let field = |f: &str| format!("senders[{i}].{f}");
        if sender.pool.is_some() {
            return Err(self.err(anchor, "pool", format!("{}: `pool` is for open-model senders (with `rate`); closed-model users share goose's client", field("pool"))));
        }
        if sender.weight == Some(0) {
            return Err(self.err(
                anchor,
                "weight",
                format!("{}: must be at least 1", field("weight")),
            ));
        }
        // goose keeps only letters and digits of scenario names.
        let machine: String = sender
            .name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        if !machine_names.insert(machine) {
            return Err(self.err(anchor, "name", format!("{}: `{}` differs from another closed-model sender only in punctuation or case; goose would merge them", field("name"), sender.name)));
        }
        Ok(())
    }

    fn check_target(&self, s: &Scenario) -> Result<(), ScenarioError> {
        let t = &s.target;
        match (&t.embedded, &t.base_url, &t.discovery) {
            (Some(_), None, None) => {}
            (None, Some(url), None) => {
                // An MQTT broker is a target too: its devices and publishing senders read
                // `{{base_url}}`.
                let schemes = ["http", "https", "mqtt", "mqtts"];
                if let Err(e) = common::endpoint::Endpoint::parse(url, &schemes) {
                    return Err(self.err(
                        None,
                        "base_url",
                        format!("target.base_url: expected an http://, https://, mqtt:// or mqtts:// URL: {e}"),
                    ));
                }
            }
            (None, None, Some(d)) => {
                if let Err(e) = d.check() {
                    let field = e.to_string();
                    let needle = field.split(':').next().unwrap_or("discovery");
                    return Err(self.err(
                        Some("discovery"),
                        needle,
                        format!("target.discovery.{e}"),
                    ));
                }
            }
            _ => {
                return Err(self.err(
                    None,
                    "target",
                    "target: expected exactly one of `embedded: gateway`, `base_url: URL` or `discovery: { ensemble, path }`".into(),
                ))
            }
        }
        if t.embedded.is_none() && t.faults.is_some() {
            return Err(self.err(
                None,
                "faults",
                "target.faults: faults are injected by the embedded gateway only".into(),
            ));
        }
        if let Some(f) = &t.faults {
            if let Some(r) = f.error_rate {
                if !(0.0..=1.0).contains(&r) {
                    return Err(self.err(None, "error_rate", format!("target.faults.error_rate: expected a fraction from 0.0 to 1.0, got {r}")));
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_stages(
        &self,
        anchor: Option<&str>,
        field: &str,
        stages: &[Stage],
    ) -> Result<(), ScenarioError> {
        if stages.is_empty() {
            return Err(self.err(
                anchor,
                "stages",
                format!("{field}: at least one stage is needed"),
            ));
        }
        for (j, st) in stages.iter().enumerate() {
            let ok = matches!(
                (st.to, st.over, st.hold),
                (Some(_), Some(_), None) | (None, None, Some(_))
            );
            if !ok {
                return Err(self.err(anchor, "stages", format!("{field}[{j}]: a stage is `{{ to: N, over: DURATION }}` or `{{ hold: DURATION }}`")));
            }
        }
        Ok(())
    }

    /// Every variable a step reads must be set by then: by `let` or `capture` in an earlier
    /// step, by a data feeder, or built in.
    fn check_vars(
        &self,
        s: &Scenario,
        anchor: Option<&str>,
        i: usize,
    ) -> Result<(), ScenarioError> {
        let mut known: BTreeSet<String> = BTreeSet::from(["base_url".to_string()]);
        if !s.devices.is_empty() {
            // Delivery tracking helpers, set by the swarm for every iteration.
            known.extend(["msg_id".to_string(), "random_device".to_string()]);
            known.extend(
                s.devices
                    .iter()
                    .map(|d| super::template::random_device_var(&d.name)),
            );
        }
        let feeders: BTreeSet<&str> = s.data.keys().map(String::as_str).collect();
        let is_known = |known: &BTreeSet<String>, v: &str| {
            known.contains(v)
                || v.strip_prefix("data.")
                    .and_then(|rest| rest.split_once('.'))
                    .is_some_and(|(feeder, _)| feeders.contains(feeder))
        };
        for (j, step) in s.senders[i].steps.iter().enumerate() {
            let mut used: Vec<&str> = Vec::new();
            match step {
                Step::Let(vars) => {
                    for (name, t) in vars {
                        used.extend(t.vars());
                        for v in &used {
                            if !is_known(&known, v) {
                                return Err(self.unset(anchor, i, j, v));
                            }
                        }
                        used.clear();
                        known.insert(name.clone());
                    }
                }
                Step::Request(r) => {
                    // Senders publish over plain MQTT only (devices may use mqtts://).
                    let url = r.url.source();
                    let over_base = url.starts_with("{{base_url}}")
                        && s.target
                            .base_url
                            .as_deref()
                            .is_some_and(|b| b.starts_with("mqtts://"));
                    if url.starts_with("mqtts://") || over_base {
                        return Err(self.err(anchor, url, format!("senders[{i}].steps[{j}]: senders publish over mqtt:// only; publishing over mqtts:// (TLS) is not supported (devices may connect with mqtts://)")));
                    }
                    used.extend(r.url.vars());
                    for (_, h) in &r.headers {
                        used.extend(h.vars());
                    }
                    used.extend(r.expect.body_contains.iter().flat_map(|t| t.vars()));
                    match &r.body {
                        super::step::Body::Json(j) => used.extend(j.vars()),
                        super::step::Body::Raw(t) => used.extend(t.vars()),
                        super::step::Body::None => {}
                    }
                    for v in &used {
                        if !is_known(&known, v) {
                            return Err(self.unset(anchor, i, j, v));
                        }
                    }
                    known.extend(r.capture.iter().map(|(n, _)| n.clone()));
                }
            }
        }
        Ok(())
    }

    fn unset(&self, anchor: Option<&str>, i: usize, j: usize, var: &str) -> ScenarioError {
        let hint = if let Some(name) = super::template::random_device_journey(var) {
            return self.err(
                anchor,
                "random_device",
                format!("senders[{i}].steps[{j}]: `{{{{random_device \"{name}\"}}}}` names no device journey (`devices:` has no `name: {name}`)"),
            );
        } else if let Some(rest) = var.strip_prefix("data.") {
            format!(
                "no data feeder `{}` is defined",
                rest.split('.').next().unwrap_or(rest)
            )
        } else {
            "set it with `let` or `capture` in an earlier step, or use a `data` feeder".into()
        };
        self.err(
            anchor,
            &format!("{{{{{var}"),
            format!("senders[{i}].steps[{j}]: variable `{var}` is used before it is set; {hint}"),
        )
    }
}
