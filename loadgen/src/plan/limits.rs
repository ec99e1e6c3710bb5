//! What this process and machine can do, checked against a plan before anything runs: open
//! files (every connection is one), memory (per connection and per user), and a request rate
//! per core. A plan far beyond them would not measure the target — it would take the machine,
//! or never end — so `check` and `run` refuse it with one line naming the field, unless the
//! operator says `--ignore-limits`.
//!
//! The figures are deliberately generous (they refuse the impossible, not the ambitious):
//!
//! | resource | estimate |
//! | --- | --- |
//! | open files | one per pool connection, per closed-model user, per device held by a process, plus 256 for the process itself |
//! | memory | 12 KiB per device connection (user space + both loopback sockets' kernel memory), 64 KiB per pool connection, 16 KiB per closed-model user |
//! | rate | 200,000 iterations per second per core (the open-rate driver measured ~95k/s on one) |

use crate::scenario;

use super::devices::{DeviceJourneyPlan, SwarmPlan};
use super::{Plan, PlanError};

/// Open files a process needs besides its connections.
const FD_RESERVE: u64 = 256;
/// Memory per device connection, bytes.
const DEVICE_BYTES: u64 = 12 * 1024;
/// Memory per pool connection, bytes.
const POOL_CONN_BYTES: u64 = 64 * 1024;
/// Memory per closed-model user, bytes.
const USER_BYTES: u64 = 16 * 1024;
/// Iterations per second one core can start, at the very most.
const RATE_PER_CORE: f64 = 200_000.0;

/// The machine the plan would run on.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    /// Open files one process may hold (the hard limit: loadgen raises its soft limit to it).
    pub open_files: u64,
    /// Memory available, bytes.
    pub memory: u64,
    /// Cores this process may run on.
    pub cores: u32,
}

impl Machine {
    /// This machine, as the kernel reports it.
    pub fn this() -> Machine {
        let open_files = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(_, hard)| hard)
            .unwrap_or(1024);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemAvailable:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(u64::MAX, |kb| kb * 1024);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Machine {
            open_files,
            memory,
            cores,
        }
    }
}

impl Plan {
    /// Refuses a plan this machine cannot run (see the module docs); the error names the field
    /// at its line and column.
    pub fn check_limits(&self, machine: &Machine) -> Result<(), PlanError> {
        let s = &self.scenario;
        let text = self.source.as_deref().unwrap_or("");
        let path = self.path.as_path();
        let refuse = |anchor: Option<&str>, needle: &str, what: String| {
            PlanError::Scenario(scenario::located_after(
                path,
                text,
                anchor,
                needle,
                format!("{what}; use --ignore-limits to run it anyway"),
            ))
        };
        let mut files = FD_RESERVE;
        let mut memory = 0u64;
        for o in &self.open {
            let sender = &s.senders[o.sender];
            let anchor = format!("name: {}", sender.name);
            let conns = o.pool.connections as u64;
            if conns.saturating_add(FD_RESERVE) > machine.open_files {
                return Err(refuse(
                    Some(&anchor),
                    "connections",
                    format!(
                        "senders[{}].pool.connections: {conns} connections need as many open files; this process may hold {} (its hard RLIMIT_NOFILE)",
                        o.sender, machine.open_files
                    ),
                ));
            }
            files += conns;
            memory = memory.saturating_add(conns.saturating_mul(POOL_CONN_BYTES));
            let cap = RATE_PER_CORE * f64::from(machine.cores);
            if o.rate.peak() > cap {
                return Err(refuse(
                    Some(&anchor),
                    "rate",
                    format!(
                        "senders[{}].rate: a peak of {} iterations per second is beyond what this machine can start (at most about {cap:.0}/s on {} cores)",
                        o.sender,
                        o.rate.peak(),
                        machine.cores
                    ),
                ));
            }
        }
        if let Some(r) = &self.replay {
            let conns = r.pool.connections as u64;
            files = files.saturating_add(conns);
            memory = memory.saturating_add(conns.saturating_mul(POOL_CONN_BYTES));
            if files > machine.open_files {
                return Err(refuse(
                    None,
                    "connections",
                    format!(
                        "replay.pool.connections: {conns} connections need as many open files; this process may hold {} (its hard RLIMIT_NOFILE)",
                        machine.open_files
                    ),
                ));
            }
        }
        if let Some(c) = &self.closed {
            let users = c.users.peak().round() as u64;
            files = files.saturating_add(users);
            memory = memory.saturating_add(users.saturating_mul(USER_BYTES));
            if files > machine.open_files {
                return Err(refuse(
                    None,
                    "users",
                    format!(
                        "users: {users} users need about {files} open files in one process; it may hold {} (its hard RLIMIT_NOFILE)",
                        machine.open_files
                    ),
                ));
            }
        }
        // This process's share of the devices (a segment's stripe, a Locust worker's share)
        // and the shard processes planned for it.
        // (Counted without listing the devices: an open-model journey's arrivals are not made
        // before the plan is accepted.)
        let devices: u64 = DeviceJourneyPlan::counts(&s.devices, self.duration)
            .into_iter()
            .map(|n| self.share.devices_of(n))
            .sum();
        let shards = SwarmPlan::shards_for(s, devices);
        if devices > 0 {
            // In-process devices share this process's files; shard processes hold their
            // share of them each.
            let (need, what) = if shards > 0 {
                (
                    devices.div_ceil(u64::from(shards)) + FD_RESERVE,
                    "one shard process",
                )
            } else {
                (files + devices, "the loadgen process (no shard processes)")
            };
            if need > machine.open_files {
                return Err(refuse(
                    None,
                    "devices",
                    format!(
                        "devices: {devices} devices need about {need} open files in {what}; a process may hold {} (its hard RLIMIT_NOFILE); set `swarm: {{ per_shard: N }}` lower",
                        machine.open_files
                    ),
                ));
            }
        }
        memory = memory.saturating_add(devices.saturating_mul(DEVICE_BYTES));
        if memory > machine.memory {
            let needle = if devices > 0 { "devices" } else { "senders" };
            return Err(refuse(
                None,
                needle,
                format!(
                    "the plan needs about {} MiB ({devices} device connections, {} pool connections, {} users) and {} MiB are available",
                    memory >> 20,
                    self.open.iter().map(|o| o.pool.connections as u64).sum::<u64>(),
                    self.closed.as_ref().map_or(0, |c| c.users.peak().round() as u64),
                    machine.memory >> 20
                ),
            ));
        }
        if files > machine.open_files {
            return Err(refuse(
                None,
                "senders",
                format!(
                    "the senders need about {files} open files in one process; it may hold {} (its hard RLIMIT_NOFILE)",
                    machine.open_files
                ),
            ));
        }
        Ok(())
    }
}
