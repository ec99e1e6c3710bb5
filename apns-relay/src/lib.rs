//! An APNs relay for senders far from Apple, with idempotent retries, an Apple-only CONNECT
//! proxy and a sender-side router.
//!
//! - [`relay`]: the terminating relay — APNs-compatible HTTP/2 in, a pool of HTTP/2
//!   connections to APNs out, and dedupe so that a retry never becomes a duplicate.
//! - [`dedupe`]: the store of push outcomes (embedded fjall database, or Redis for several
//!   instances).
//! - [`proxy`]: HTTP CONNECT only to Apple's push hosts, with credentials or per-sender source
//!   CIDRs.
//! - [`router`]: what senders run — Apple through the relay or the proxy, every other vendor
//!   direct.
//! - [`vendors`]: the other vendors' own push APIs (FCM, Huawei, Xiaomi, vivo, OPPO), which
//!   the router speaks directly.
//! - [`server`]: runs what a config enables, with metrics, health and graceful shutdown.
//! - [`registration`]: the instance in ZooKeeper (Curator's format), so senders find it.
//! - [`config`], [`jwt`], [`tls`], [`metrics`]: the pieces they share.

pub mod config;
pub mod dedupe;
pub mod jwt;
pub mod metrics;
pub mod ops;
pub mod preflight;
pub mod proxy;
pub mod registration;
pub mod relay;
pub mod router;
pub mod server;
pub mod tls;
pub mod vendors;
