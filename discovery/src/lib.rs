//! Service discovery on ZooKeeper, in Apache Curator's ServiceDiscovery format, so that Java
//! services using Curator and pushbench's Rust parts find each other:
//!
//! - [`Registration`]: an instance (its endpoints, region and weight in the `payload`)
//!   registered as an ephemeral node under `/{base}/{service}`, created the protected way
//!   ([`protect`]: a `_c_<uuid>-` prefix, so a connection lost during the create leaves no
//!   orphan and no duplicate), registered again after its session expires, removed on
//!   [`Registration::drain`].
//! - [`ServiceWatch`]: a live list of a service's instances (watches on the children and on
//!   every child's data), balanced round robin or least in flight, with fail-over to another
//!   instance when a connection fails: [`ServiceWatch::failover`] → use → [`Lease::done`] or
//!   [`Lease::connect_failed`].
//! - [`Discover`]: what a client's file says to find a service (ensemble, path, balancing,
//!   which endpoint), turned into a [`ServiceWatch`] and, per piece of work, a URL and a lease.
//! - [`ServiceInstance`]: Curator's JSON (`name`, `id`, `address`, `port`, `sslPort`,
//!   `payload`, `registrationTimeUTC`, `serviceType`, `uriSpec`, `enabled`).
//!
//! # Bad input and fallbacks
//! Every error is one line ([`Error`]'s display) naming the ensemble, the path or the node,
//! and nothing waits unbounded: connecting, registering and the first read each take at most
//! [`ZkConfig::connect_timeout`].
//!
//! | input | what happens |
//! |---|---|
//! | unreachable ensemble | [`Error::Unreachable`] after `connect_timeout` from `start`; a running watch keeps its last list (marked stale) and a running registration keeps retrying, both reconnecting in the background |
//! | a path with no instances (or no path) | the watch follows it until instances come; a pick fails with [`Error::NoInstance`] saying why |
//! | a malformed node | skipped with one warning (node, JSON line and column or the wrong field); listed in [`Instances::malformed`] |
//!
//! # The ZooKeeper client: `zookeeper-client` (kezhuw)
//! Compared (December 2026) for this crate:
//! - **zookeeper-client 0.11** (chosen): async, written from scratch against the ZooKeeper
//!   protocol, released regularly; one `Client` per session with reconnection inside it and
//!   `ConnectionLoss` on calls in flight, as the Java client; expires a session on its own after
//!   7/5 of the timeout without a server, so a partitioned instance learns it is gone; one-shot
//!   and persistent watches, multi-ops, TLS and SASL; its lock recipe already finds its own
//!   Curator-protected node after a lost connection. Runs on tokio through its `tokio` feature.
//! - **zookeeper-async 5**: an async port of the older synchronous `zookeeper` crate with
//!   Curator-like recipes (caches, leader latch); its watcher model is the Java one (one global
//!   watcher callback) and its session handling reconnects behind the caller's back.
//! - **tokio-zookeeper 0.4**: no release for years, no TLS, no multi-op support to speak of.
//! - **zookeeper 0.8** (synchronous, threads): blocking calls in an async relay.
//!
//! No crate implements Curator's ServiceDiscovery; this one does, on top of the first.

#![deny(missing_docs)]

pub mod balance;
pub mod config;
pub mod discover;
pub mod instance;
pub mod protect;
pub mod register;
mod session;
pub mod watch;

use std::time::Duration;

pub use balance::{Balance, Lease, Member};
pub use config::{ServicePath, ZkConfig};
pub use discover::Discover;
pub use instance::{ServiceInstance, ServiceType, UriSpec};
pub use register::{Registered, Registration};
pub use watch::{read_once, Failover, Instances, ServiceWatch, WatchOptions};

/// A discovery error: one line naming what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong (the message names the field).
    #[error("{0}")]
    Config(String),
    /// No ZooKeeper server gave a session in time.
    #[error("cannot reach the ZooKeeper ensemble `{ensemble}` within {}: {why}", common::duration::format(*within))]
    Unreachable {
        /// The connect string.
        ensemble: String,
        /// The bound waited.
        within: Duration,
        /// What failed.
        why: String,
    },
    /// A ZooKeeper call failed.
    #[error("ZooKeeper {op}: {source}")]
    Zk {
        /// The call and its path.
        op: String,
        /// The client's error.
        source: zookeeper_client::Error,
    },
    /// No instance can be picked.
    #[error("no instance of `{path}` to use: {why}")]
    NoInstance {
        /// The service's path.
        path: String,
        /// Why (no path, no children, all malformed, all failed, stale list).
        why: String,
    },
    /// The registration's background task is gone.
    #[error("the registration has ended")]
    Closed,
}
