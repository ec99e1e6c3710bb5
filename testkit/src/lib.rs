//! pushbench's test kit: what integration tests of every crate need to run real components on
//! loopback, with deadlines instead of sleeps.
//!
//! - [`process`]: start a binary, read the address it announces on stdout, stop it with
//!   SIGTERM and wait with a deadline (SIGKILL after), killed on drop.
//! - [`net`]: loopback addresses a test owns alone, so a port picked for an outside server is
//!   not taken by another test between the pick and the server's bind.
//! - [`wait`]: wait for a condition with a deadline.
//! - [`servers`]: outside servers a test needs (redis-server, nginx), installed by
//!   `scripts/test.sh`, started on private addresses and stopped on drop.
//! - [`netns`]: network namespaces a test makes for itself (as root), removed on drop, with
//!   commands, threads and runtimes inside and veth pairs between them.

#![deny(missing_docs)]

pub mod net;
pub mod netns;
pub mod process;
pub mod servers;
pub mod wait;

pub use process::Spawned;
