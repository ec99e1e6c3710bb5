//! Prometheus metrics of the relay and the proxy, and their text rendering for `/metrics`.
//!
//! Counters: pushes by outcome and reason (each push once, by the request that decided it),
//! dedupe hits by the state found (a sender's retry answered from the store or from another
//! request's attempt), inbound rejections by status and reason (refused before anything
//! reached APNs), retries by cause, proxy tunnels by result, provider tokens minted. Histograms (seconds): latency per leg — `inbound` (the sender's
//! whole request at the relay), `apns` (one attempt towards APNs), `store` (dedupe claims).
//! Gauges: pool connections open, streams in flight, pushes in flight, proxy tunnels open,
//! whether the instance is registered in ZooKeeper (with a counter of registrations).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// A leg of a push's way through the relay, for `leg_latency_seconds{leg}`.
#[derive(Debug, Clone, Copy)]
pub enum Leg {
    /// The sender's whole request at the relay.
    Inbound,
    /// One attempt towards APNs.
    Apns,
    /// A dedupe claim.
    Store,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// Every metric the process exports.
pub struct Metrics {
    registry: Registry,
    pushes: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    dedupe_hits: Family<Labels, Counter>,
    rejections: Family<Labels, Counter>,
    /// Outbound HTTP/2 connections open.
    pub pool_connections: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Outbound streams in flight.
    pub pool_streams: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Pushes in flight at the relay.
    pub pushes_in_flight: Gauge<i64, std::sync::atomic::AtomicI64>,
    tunnels: Family<Labels, Counter>,
    /// Proxy tunnels open.
    pub tunnels_open: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Provider tokens minted.
    pub token_refreshes: Counter<u64, AtomicU64>,
    /// 1 while this instance's node is registered in ZooKeeper, else 0.
    pub discovery_registered: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Nodes this instance made in ZooKeeper (the first, and one per registration again after
    /// a session expired or the node was deleted).
    pub discovery_registrations: Counter<u64, AtomicU64>,
    /// Handles to the series every push touches, taken once: a family lookup builds its
    /// label set (allocations) and hashes it on every call.
    hot: Hot,
}

#[derive(Clone)]
struct Hot {
    accepted: Counter,
    inbound: Histogram,
    apns: Histogram,
    store: Histogram,
}

impl Hot {
    fn of(
        pushes: &Family<Labels, Counter>,
        latency: &Family<Labels, Histogram, fn() -> Histogram>,
    ) -> Hot {
        let leg = |l: &str| latency.get_or_create(&vec![("leg", l.to_string())]).clone();
        Hot {
            accepted: pushes
                .get_or_create(&vec![
                    ("outcome", "accepted".to_string()),
                    ("reason", String::new()),
                ])
                .clone(),
            inbound: leg("inbound"),
            apns: leg("apns"),
            store: leg("store"),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("apns_relay");
        let pushes = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        let dedupe_hits = Family::<Labels, Counter>::default();
        let rejections = Family::<Labels, Counter>::default();
        let latency =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let tunnels = Family::<Labels, Counter>::default();
        let hot = Hot::of(&pushes, &latency);
        let m = Metrics {
            hot,
            pool_connections: Gauge::default(),
            pool_streams: Gauge::default(),
            pushes_in_flight: Gauge::default(),
            tunnels_open: Gauge::default(),
            token_refreshes: Counter::default(),
            discovery_registered: Gauge::default(),
            discovery_registrations: Counter::default(),
            registry: Registry::default(),
            pushes: pushes.clone(),
            retries: retries.clone(),
            dedupe_hits: dedupe_hits.clone(),
            rejections: rejections.clone(),
            tunnels: tunnels.clone(),
        };
        registry.register(
            "pushes",
            "Pushes by outcome and APNs reason, each counted once (not its dedupe replays)",
            pushes,
        );
        registry.register(
            "inbound_rejections",
            "Sender requests refused before reaching APNs, by status and APNs reason",
            rejections,
        );
        registry.register(
            "retries",
            "Attempts towards APNs after the first, by cause",
            retries,
        );
        registry.register(
            "dedupe_hits",
            "Sender requests answered from the dedupe store or another request's attempt, by state found",
            dedupe_hits,
        );
        registry.register(
            "leg_latency_seconds",
            "Latency per leg: inbound, apns, store",
            latency,
        );
        registry.register(
            "pool_connections",
            "Outbound HTTP/2 connections open",
            m.pool_connections.clone(),
        );
        registry.register(
            "pool_streams",
            "Outbound streams in flight",
            m.pool_streams.clone(),
        );
        registry.register(
            "pushes_in_flight",
            "Pushes in flight at the relay",
            m.pushes_in_flight.clone(),
        );
        registry.register("proxy_tunnels", "CONNECT requests, by result", tunnels);
        registry.register(
            "proxy_tunnels_open",
            "CONNECT tunnels open",
            m.tunnels_open.clone(),
        );
        registry.register(
            "token_refreshes",
            "Provider tokens minted",
            m.token_refreshes.clone(),
        );
        registry.register(
            "discovery_registered",
            "1 while this instance's node is registered in ZooKeeper",
            m.discovery_registered.clone(),
        );
        registry.register(
            "discovery_registrations",
            "Nodes this instance made in ZooKeeper (first registration and each one again)",
            m.discovery_registrations.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a push answered to a sender.
    pub fn push(&self, outcome: &str, reason: &str) {
        if outcome == "accepted" && reason.is_empty() {
            self.hot.accepted.inc();
            return;
        }
        self.pushes
            .get_or_create(&vec![
                ("outcome", outcome.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    /// Counts a sender request refused before it reached APNs.
    pub fn inbound_rejection(&self, status: u16, reason: &str) {
        self.rejections
            .get_or_create(&vec![
                ("status", status.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    /// Counts a retry towards APNs.
    pub fn retry(&self, cause: &str) {
        self.retries
            .get_or_create(&vec![("cause", cause.to_string())])
            .inc();
    }

    /// Counts a dedupe hit.
    pub fn dedupe_hit(&self, state: &str) {
        self.dedupe_hits
            .get_or_create(&vec![("state", state.to_string())])
            .inc();
    }

    /// Records one leg's latency.
    pub fn latency(&self, leg: Leg, d: Duration) {
        let h = match leg {
            Leg::Inbound => &self.hot.inbound,
            Leg::Apns => &self.hot.apns,
            Leg::Store => &self.hot.store,
        };
        h.observe(d.as_secs_f64());
    }

    /// Counts a CONNECT request by result (`ok`, `forbidden`, `auth`, `method`,
    /// `bad_request`, `upstream`) and, for allowed destinations, the host (from the
    /// allowlist, so the label set stays small).
    pub fn tunnel(&self, result: &'static str, host: Option<&str>) {
        let mut labels = vec![("result", result.to_string())];
        if let Some(h) = host {
            labels.push(("host", h.to_string()));
        }
        self.tunnels.get_or_create(&labels).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
