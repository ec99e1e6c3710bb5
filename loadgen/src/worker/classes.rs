//! The scenario's journeys as Locust user classes: each sender journey is a class weighted by
//! its `weight` (its users run iterations one after another, with its think time), and each
//! device journey a class with a `fixed_count` of its planned devices (a user is one device).
//! `loadgen worker --classes` prints them as JSON; the master's locustfile
//! (`deploy/locust/locustfile.py`) defines Locust classes of the same names from it.

use serde::Serialize;

use crate::plan::{DeviceJourneyPlan, Plan};

/// What a class runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassKind {
    /// A sender journey: closed-loop users.
    Sender,
    /// A device journey: devices of the swarm.
    Device,
}

/// One user class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserClass {
    /// The journey's name (the class's name in Locust).
    pub name: String,
    /// Sender or device journey.
    pub kind: ClassKind,
    /// Its position in `senders` or `devices`.
    pub index: usize,
    /// Locust's `weight` (senders: the journey's weight; devices: 1).
    pub weight: u32,
    /// Locust's `fixed_count` (devices: their planned count; senders: none).
    pub fixed_count: Option<u32>,
}

/// The classes of `plan`; two journeys of one name are an error (Locust names classes).
pub fn of(plan: &Plan) -> Result<Vec<UserClass>, String> {
    let s = &plan.scenario;
    let mut out: Vec<UserClass> = s
        .senders
        .iter()
        .enumerate()
        .map(|(index, sd)| UserClass {
            name: sd.name.clone(),
            kind: ClassKind::Sender,
            index,
            weight: sd.weight.unwrap_or(1),
            fixed_count: None,
        })
        .collect();
    for d in DeviceJourneyPlan::all(&s.devices, plan.duration) {
        out.push(UserClass {
            name: s.devices[d.index].name.clone(),
            kind: ClassKind::Device,
            index: d.index,
            weight: 1,
            fixed_count: Some(d.planned),
        });
    }
    for (i, c) in out.iter().enumerate() {
        if out[..i].iter().any(|o| o.name == c.name) {
            return Err(format!(
                "{}: two journeys are named `{}`: as Locust user classes their names must differ",
                plan.path.display(),
                c.name
            ));
        }
    }
    Ok(out)
}
