//! The small pieces every pushbench crate shares, each with one definition so that the
//! crates cannot disagree:
//!
//! - [`duration`]: the one grammar for durations (`500us`, `250ms`, `1m30s`) in scenario
//!   files, command-line flags, the testbed and the relay's configuration, with one error text.
//! - [`clock`]: wall-clock Unix time in nanoseconds (delivery timestamps cross processes).
//! - [`sync`]: locking that ignores poisoning (a panicked holder leaves valid data here).
//! - [`websocket`]: the RFC 6455 accept key.
//! - [`apns`]: constants of Apple's push protocol shared by the mock APNs and the relay.
//! - [`endpoint`]: a URL's scheme, host and port, as the socket layer needs them.
//! - [`printable`]: outside text made safe for one terminal line.
//! - [`stream`]: reassembling a connection's bytes into whole frames, packets or events.

#![deny(missing_docs)]

pub mod apns;
pub mod clock;
pub mod duration;
pub mod endpoint;
pub mod printable;
pub mod stream;
pub mod sync;
pub mod websocket;

pub use duration::{Dur, DurationError};
