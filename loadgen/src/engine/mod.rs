//! The engines that send load, each reading its part of the plan and recording into per-task
//! recorders under the run's stop switch:
//!
//! - [`closed`]: closed-model sender journeys on goose (users in a loop, think time);
//! - [`open`]: the open-rate driver (iterations start at scheduled instants over a fixed
//!   connection pool, latency from the intended instant);
//! - [`replay`]: recorded traffic paced onto the open-rate driver, and recorded WebSocket
//!   sessions;
//! - [`swarm`]: the device swarm (long-lived connections in shards);
//! - [`users`]: closed-loop users whose number a controller (a Locust master) sets while
//!   they run;
//! - [`http`]: the HTTP connections the open-rate driver, replay and dispatch calls share;
//! - [`pacer`]: the thread that puts scheduled work on a queue at its instant.

pub mod closed;
pub mod http;
pub mod open;
pub mod pacer;
pub mod replay;
pub mod swarm;
pub mod users;
