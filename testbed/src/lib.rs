//! Embedded default targets for pushbench, whose behaviour is known so that tests can check the
//! load tester's measurements against the truth.
//!
//! Today this is the HTTP side of a reference push gateway ([`gateway`]): devices, users and
//! topics held in memory, pushes and broadcasts counted, and faults (latency, jitter, error
//! responses, stalls) injected on request. Its long-connection side ([`gateway::room`]) hands
//! out rooms through `GET /dispatch` and holds devices over WebSocket and length-prefixed TCP
//! (protocol in `testbed/PROTOCOL.md`), in this process or in room processes. The binary `testbed` serves it from the command line:
//!
//! ```text
//! testbed gateway --listen 127.0.0.1:8080 --latency 5ms --latency-jitter 2ms --error-rate 0.01
//! ```
//!
//! From Rust, [`spawn`] starts a gateway on a Tokio runtime and returns a [`GatewayHandle`]:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use testbed::{FaultConfig, GatewayConfig};
//!
//! let faults = FaultConfig { latency_ms: 5.0, ..FaultConfig::default() };
//! // The default config listens on a free port of 127.0.0.1.
//! let gateway = testbed::spawn(GatewayConfig { faults, ..GatewayConfig::default() }).await?;
//! println!("gateway at {}", gateway.base_url());
//! gateway.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! [`apns`] is a mock of Apple's push service (HTTP/2 over TLS, provider tokens or client
//! certificates, APNs errors, injectable faults) for APNs clients such as the relay, served by
//! `testbed mock-apns --listen ADDR`; [`pki`] makes the test CA, certificates and provider keys
//! that it and its clients use.
//!
//! [`link`] emulates a network path (delay, jitter, loss bursts, bandwidth cap, cuts) between
//! two network namespaces through TUN devices, served by `testbed link`.

mod accept;
pub mod apns;
pub mod gateway;
pub mod link;
pub mod pki;
mod timer;

pub use gateway::{spawn, FaultConfig, FaultConfigError, GatewayConfig, GatewayHandle, Stats};
pub use gateway::{RoomAddr, RoomCommand, RoomCounters, RoomsConfig};
