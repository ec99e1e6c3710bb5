//! The device swarm: long-lived WebSocket, raw TCP, MQTT, SSE and long-poll connections
//! running the scenario's device journeys, reporting what they receive to delivery tracking
//! ([`crate::delivery`]).
//!
//! - [`wire`]: client framing (RFC 6455, length-prefixed, newline, raw) and the WebSocket
//!   upgrade.
//! - [`io`]: a connection's byte stream (TCP or TLS), read through a per-thread buffer.
//! - [`mqtt`]: an MQTT device's session (handshake, acks by QoS, keep-alive).
//! - [`http_stream`]: SSE and long-poll over HTTP/1.1 (requests, answers, events);
//!   `h2io` carries them over HTTP/2.
//! - [`net`]: source addresses, `IP_BIND_ADDRESS_NO_PORT`, the open-file limit, resolving.
//! - [`script`]: a device journey compiled for running, its metric keys, template scope.
//! - `open`: opening a device's connection (dispatch, TCP, TLS, HTTP/2, WebSocket upgrade).
//! - [`connection`]: one device's task (connect, exchanges, heartbeat, pushes, churn,
//!   reconnect).
//! - [`ack`]: the reply to a push, rendered straight into the connection's output.
//! - [`dispatch`]: the HTTP call that hands a device its address.
//! - [`shard`]: the devices a shard owns, its schedule and control loop.
//! - [`control`]: the coordinator ↔ shard messages (JSON lines).
//! - [`coordinator`]: shards, routing of tracking records, metrics merge.
//!
//! Devices are split over shards by global index (device g belongs to shard g mod N). Small
//! swarms run in the loadgen process; larger ones as `loadgen __shard` child processes of at
//! most `swarm.per_shard` connections each, since one process's open-file limit bounds it
//! (the layout is planned in [`crate::plan::devices`]).

pub mod ack;
pub mod connection;
pub mod control;
pub mod coordinator;
pub mod dispatch;
mod h2io;
pub mod http_stream;
pub mod io;
pub mod mqtt;
pub mod net;
mod open;
pub mod script;
pub mod shard;
pub mod wire;

pub use coordinator::{Launched, Swarm, SwarmError, SwarmSetup};

/// Metric names of device connections (delivery's are in [`crate::delivery::names`]).
pub mod names {
    /// TCP connect + WebSocket upgrade, µs.
    pub const WS_CONNECTING: &str = "ws_connecting";
    /// TCP connect of raw TCP devices, µs.
    pub const TCP_CONNECTING: &str = "tcp_connecting";
    /// Heartbeat round trip, µs.
    pub const HEARTBEAT_RTT: &str = "heartbeat_rtt";
    /// Sessions established.
    pub const CONNECTIONS_OPENED: &str = "connections_opened";
    /// Connection attempts or sessions that failed, by `cause` (`unfinished`: a connect cut
    /// by the end of the run).
    pub const CONNECTIONS_FAILED: &str = "connections_failed";
    /// Sessions that ended without failing, by `reason`: `end` (stopped by the schedule or
    /// the end of the run), `think`, `churn`.
    pub const CONNECTIONS_CLOSED: &str = "connections_closed";
    /// Sessions open now (gauge, one writer per shard).
    pub const CONNECTIONS_ACTIVE: &str = "connections_active";
}
