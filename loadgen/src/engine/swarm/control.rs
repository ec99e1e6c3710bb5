//! The control protocol between the coordinating process and its swarm shards: one JSON
//! object per line, commands on the shard's stdin, events on its stdout. An in-process shard
//! speaks the same messages over channels.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::delivery::TrackMsg;

/// Coordinator → shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// The first message: what to run.
    Plan(ShardPlan),
    /// A push the shard's devices may have to receive.
    Track(TrackMsg),
    /// Close every connection, settle delivery tracking, send the last metrics, then `done`.
    Stop,
    /// Hold `count` devices of device journey `journey` (index into `scenario.devices`)
    /// from now on, whatever its schedule says: a controller (a Locust master) sets the
    /// counts of a `controlled` share.
    Count {
        /// The device journey.
        journey: usize,
        /// Devices of the journey this process holds (each shard starts those it owns).
        count: u32,
    },
}

/// What one shard runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardPlan {
    /// The scenario file (for messages) and its text (parsed again by the shard).
    pub scenario_path: String,
    /// The scenario text.
    pub scenario_text: String,
    /// This shard's number: it owns the devices whose global index ≡ shard (mod shards).
    pub shard: u32,
    /// How many shards there are.
    pub shards: u32,
    /// The run's start, Unix nanoseconds: metrics seconds and schedules count from it.
    pub origin_unix_ns: u64,
    /// How long the run lasts (the schedules' bound), seconds.
    pub duration_s: f64,
    /// `{{base_url}}`.
    pub base_url: String,
    /// Loopback source addresses, used by global device index round-robin.
    pub sources: Vec<Ipv4Addr>,
    /// Accept any TLS certificate (wss://).
    pub insecure: bool,
    /// This process's share of the devices (a segment's stripe, a Locust worker's block).
    #[serde(default)]
    pub share: crate::plan::Share,
}

/// Shard → coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// The shard process is up and reads commands (sent before the plan).
    Up,
    /// The plan was accepted; the shard's open-file limit.
    Ready {
        /// Soft RLIMIT_NOFILE after raising it.
        fd_limit: u64,
        /// Devices this shard owns.
        devices: u64,
    },
    /// Devices that came up (handshake done) or went down since the last batch (global
    /// indices).
    Conn {
        /// Up.
        up: Vec<u32>,
        /// Down.
        down: Vec<u32>,
    },
    /// Recorder samples since the last batch.
    Metrics {
        /// The delta.
        delta: reports::Delta,
    },
    /// A tracked broadcast was settled on this shard.
    BroadcastDone {
        /// Message id.
        id: String,
        /// Last in-time receipt, Unix ns (0 when none).
        last_ns: u64,
        /// In-time receipts.
        received: u64,
    },
    /// Stopped; nothing follows.
    Done,
    /// The shard cannot run (bad plan); nothing follows.
    Failed {
        /// Why.
        message: String,
    },
}
