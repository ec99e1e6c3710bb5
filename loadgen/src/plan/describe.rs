//! `loadgen check`'s text: the planned schedule of every part of a plan, phase by phase, with
//! the iterations, requests, connections and recordings it will send. Nothing here sends.

use std::fmt::Write;
use std::time::Duration;

use common::duration::format as format_duration;

use super::{Plan, ReplayPlan, Schedule, SwarmPlan};
use crate::scenario::Step;

impl Plan {
    /// The planned schedule as text, for `loadgen check`.
    pub fn describe(&self) -> String {
        let s = &self.scenario;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario `{}` ({}) is valid",
            s.name,
            self.path.display()
        );
        let target = match (&s.target.embedded, &s.target.base_url, &s.target.discovery) {
            (Some(_), _, _) => {
                "embedded reference gateway on 127.0.0.1 (started by loadgen)".to_string()
            }
            (_, Some(url), _) => url.clone(),
            (_, _, Some(d)) => format!(
                "the instances of {} in ZooKeeper `{}` ({}, endpoint {}), followed during the run",
                d.path,
                d.ensemble,
                match d.balance {
                    discovery::Balance::RoundRobin => "round robin",
                    discovery::Balance::LeastInFlight => "least in flight",
                },
                d.endpoint.as_deref().unwrap_or("URI")
            ),
            _ => "?".into(),
        };
        let _ = writeln!(out, "target:   {target}");
        let _ = writeln!(
            out,
            "duration: {} (hard bound)",
            format_duration(self.duration)
        );
        if !self.share.is_whole() {
            let (i, n) = (self.share.segment, self.share.segments);
            let _ = writeln!(
                out,
                "segment:  {i}/{n} (arrivals, users and devices #{i}, #{}, #{}, …; the other segments run the rest)",
                i + n,
                i + 2 * n
            );
        }
        for line in self.feeders.describe() {
            let _ = writeln!(out, "data:     {line}");
        }
        if let Some(c) = &self.closed {
            let total_weight: u32 = c.senders.iter().map(|(_, w)| w).sum();
            let _ = writeln!(
                out,
                "\nclosed model (goose): peak {} users",
                c.users.peak().round()
            );
            describe_phases(&mut out, &c.users, "users", |_| String::new());
            for (i, w) in &c.senders {
                let sd = &s.senders[*i];
                let _ = writeln!(
                    out,
                    "  journey `{}`: weight {w}/{total_weight}, {} request steps per iteration, timeout {} per request{}",
                    sd.name,
                    request_steps(&sd.steps),
                    format_duration(sd.timeout()),
                    sd.think.as_ref().map_or(String::new(), |t| format!(
                        ", think {} mean",
                        format_duration(t.mean())
                    ))
                );
            }
            let _ = writeln!(out, "  requests depend on response times (closed model)");
        }
        for o in &self.open {
            let sd = &s.senders[o.sender];
            let steps = request_steps(&sd.steps) as f64;
            let _ = writeln!(
                out,
                "\nopen model: journey `{}`, {} connections{}, {} request steps per iteration, timeout {} per request",
                sd.name,
                o.pool.connections,
                if o.pool.http2 {
                    format!(" (HTTP/2, {} streams each)", o.pool.streams)
                } else {
                    " (HTTP/1.1)".into()
                },
                steps,
                format_duration(sd.timeout())
            );
            describe_phases(&mut out, &o.rate, "iterations/s", |segment| {
                // The phase's own levels: at a step (a 0 s ramp) the level just before it is
                // not the level of the phase after it.
                let its = Schedule {
                    segments: vec![segment],
                    phase: 0.0,
                }
                .area();
                format!(
                    ", {} iterations, {} requests",
                    its.round(),
                    (its * steps).round()
                )
            });
            let total = o.rate.area();
            let _ = writeln!(
                out,
                "  expected: {} iterations, {} requests",
                total.round(),
                (total * steps).round()
            );
        }
        if let Some(swarm) = self.swarm() {
            describe_swarm(self, &swarm, &mut out);
        }
        if let Some(r) = &self.replay {
            out.push_str(&describe_replay(r));
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(out, "\nthresholds:");
            for t in &self.thresholds {
                let _ = writeln!(out, "  {}: {}", t.metric, t.source);
            }
        }
        let _ = writeln!(out, "\nnothing was sent (check only)");
        out
    }
}

fn describe_phases(
    out: &mut String,
    s: &Schedule,
    unit: &str,
    extra: impl Fn((f64, f64, f64, f64)) -> String,
) {
    for &(a, b, from, to) in &s.segments {
        let span = format!(
            "{:>7} – {:<7}",
            format_duration(Duration::from_secs_f64(a)),
            format_duration(Duration::from_secs_f64(b))
        );
        let what = if (from - to).abs() < 1e-9 {
            format!("hold {} {unit}", fmt_level(to))
        } else {
            format!("ramp {} → {} {unit}", fmt_level(from), fmt_level(to))
        };
        let _ = writeln!(out, "  {span} {what}{}", extra((a, b, from, to)));
    }
}

fn fmt_level(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round())
    } else {
        format!("{x:.2}")
    }
}

fn request_steps(steps: &[Step]) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Request(_)))
        .count()
}

/// The device journeys' part of `loadgen check`.
fn describe_swarm(plan: &Plan, swarm: &SwarmPlan, out: &mut String) {
    let (shards, sources, total) = (swarm.shards, swarm.sources, swarm.total);
    let _ = writeln!(
        out,
        "\ndevice swarm: {total} devices, {}, {sources} source address{}",
        if shards == 0 {
            "in the loadgen process".to_string()
        } else {
            format!("{shards} shard processes")
        },
        if sources == 1 { "" } else { "es" }
    );
    for s in &swarm.journeys {
        let d = &plan.scenario.devices[s.index];
        let how = match (&s.count, d.arrival.as_ref()) {
            (Some(c), _) => format!("closed model, peak {} connections", s.local_count(c.peak())),
            (None, Some(a)) => {
                format!("open model, {} devices/s up to {}", a.per_second, s.planned)
            }
            _ => String::new(),
        };
        let connect = match (&d.connect.dispatch, &d.connect.url) {
            (Some(disp), _) => format!("dispatch {}", disp.get),
            (None, Some(u)) => u.to_string(),
            _ => String::new(),
        };
        let _ = writeln!(out, "  journey `{}`: {how}; connect {connect}", d.name);
        if let Some(c) = &s.count {
            for &(a, b, from, to) in &c.segments {
                let span = format!(
                    "{:>7} – {:<7}",
                    format_duration(Duration::from_secs_f64(a)),
                    format_duration(Duration::from_secs_f64(b))
                );
                // This process's share of the journey's devices (all of them unless segmented).
                let (from, to) = (s.local_count(from), s.local_count(to));
                if from == to {
                    let _ = writeln!(out, "    {span} hold {to} connections");
                } else {
                    let _ = writeln!(out, "    {span} ramp {from} → {to} connections");
                }
            }
        }
        let mut parts = Vec::new();
        if let Some(h) = &d.heartbeat {
            parts.push(format!("heartbeat every {}", h.every));
        }
        if d.push.is_some() {
            parts.push("handles pushes".to_string());
        }
        if let Some(c) = &d.churn {
            parts.push(format!("churn {}/s", c.per_second));
        }
        if d.reconnect.is_some() {
            parts.push("reconnects".to_string());
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "    {}", parts.join(", "));
        }
    }
}

/// The replay's part of `loadgen check`.
fn describe_replay(r: &ReplayPlan) -> String {
    let t = &r.transforms;
    let files: Vec<String> = r
        .recording
        .files()
        .iter()
        .map(|(p, f)| format!("{} ({})", p.display(), f.name()))
        .collect();
    let mut out = format!(
        "\nreplay: {} requests over {} from {}\n  speed {}x{}{}{}, {} connections{}\n",
        r.planned_requests,
        format_duration(Duration::from_millis(r.length.as_millis() as u64)),
        files.join(", "),
        t.speed,
        t.max_wait.map_or(String::new(), |m| format!(
            ", max wait {}",
            format_duration(m)
        )),
        if t.loops > 1 {
            format!(", {} loops", t.loops)
        } else {
            String::new()
        },
        t.rate_cap
            .map_or(String::new(), |cap| format!(", at most {cap}/s")),
        r.pool.connections,
        if r.pool.http2 {
            " (HTTP/2)"
        } else {
            " (HTTP/1.1)"
        },
    );
    let s = &r.read_stats;
    if s.out_of_order > 0 || s.malformed > 0 {
        out += &format!(
            "  {} out-of-order records, {} malformed skipped\n",
            s.out_of_order, s.malformed
        );
    }
    if s.upgrades_skipped > 0 {
        out += &format!(
            "  {} WebSocket upgrade lines (status 101) skipped: the log holds no frames to replay\n",
            s.upgrades_skipped
        );
    }
    if r.planned_sessions > 0 {
        out += &format!(
            "  {} WebSocket device sessions ({} messages to send, {} recorded from the server) to {}\n",
            r.planned_sessions,
            r.planned_ws_sends,
            r.recorded_ws_receives,
            r.ws_target.as_deref().unwrap_or("the target's ws:// twin"),
        );
    }
    out
}
