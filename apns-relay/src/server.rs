//! `apns-relay serve`: starts what the config enables — the relay, the proxy, the operations
//! listener, the registration in ZooKeeper — and shuts them down gracefully, in this order:
//!
//! 1. `/healthz` answers 503 (draining);
//! 2. the instance's node is removed from ZooKeeper, and the listeners keep accepting for
//!    `discovery.deregister_lead` so senders' watches drop the instance first;
//! 3. stop accepting, GOAWAY to senders, wait for pushes in flight (bounded by
//!    `relay.drain_timeout`), then stop. The operations listener answers through the drain
//!    and stops last.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::dedupe;
use crate::jwt::{Signer, TokenCache};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::registration::{self, Listener, Registrar};
use crate::relay::auth::Senders;
use crate::relay::inbound::Inbound;
use crate::relay::pool::{Pool, PoolOptions, Target};
use crate::relay::retry::RetryPolicy;
use crate::relay::Relay;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad material named by the config (key, certificate, URL): exit 2.
    #[error("{0}")]
    Config(String),
    /// A runtime failure (a port in use, the store unreachable): exit 1.
    #[error("{0}")]
    Runtime(String),
}

/// A running server.
pub struct Running {
    /// The relay's listen address, if enabled.
    pub relay_addr: Option<SocketAddr>,
    /// The proxy's listen address, if enabled.
    pub proxy_addr: Option<SocketAddr>,
    /// The operations listener's address, if enabled.
    pub ops_addr: Option<SocketAddr>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The registration in ZooKeeper, when `[discovery]` is configured.
    pub registrar: Option<Registrar>,
    /// True from the start of the drain (`/healthz` says so).
    draining: watch::Sender<bool>,
    /// True when the listeners stop accepting.
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The operations listener, stopped after the drain.
    ops: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    relay: Option<Arc<Relay>>,
    drain: Duration,
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Runtime(format!("{what}: cannot listen on {addr}: {e}")))
}

/// Starts everything the config enables.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let cfg_err = |e: &dyn std::fmt::Display| StartError::Config(e.to_string());
    let metrics = Arc::new(Metrics::new());
    let (shutdown, rx) = watch::channel(false);
    let (draining, draining_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let senders = Arc::new(Senders::load(&config.senders).map_err(|e| cfg_err(&e))?);
    let mut running = Running {
        relay_addr: None,
        proxy_addr: None,
        ops_addr: None,
        metrics: metrics.clone(),
        registrar: None,
        draining,
        shutdown,
        tasks: Vec::new(),
        ops: None,
        relay: None,
        drain: Duration::ZERO,
    };
    if let Some(rc) = &config.relay {
        let apns = &config.apns;
        let client_cert = apns
            .certificate
            .as_ref()
            .map(|c| (c.cert.as_path(), c.key.as_path()));
        let tls =
            crate::tls::client_config(apns.ca.as_deref(), client_cert).map_err(|e| cfg_err(&e))?;
        let target = Target::from_url(&apns.endpoint, tls)
            .map_err(|e| StartError::Config(format!("apns.endpoint: {e}")))?;
        let options = PoolOptions {
            connections: apns.connections,
            ping_interval: apns.ping_interval,
            connect_timeout: apns.connect_timeout,
            request_timeout: apns.request_timeout,
        };
        let tokens = match &apns.token {
            Some(t) => Some(TokenCache::new(
                Signer::from_p8_file(&t.key, &t.key_id, &t.team_id).map_err(|e| cfg_err(&e))?,
                t.refresh,
                t.min_refresh_gap,
                metrics.token_refreshes.clone(),
            )),
            None => None,
        };
        let store = dedupe::open(&config.dedupe)
            .await
            .map_err(|e| StartError::Runtime(e.to_string()))?;
        let pool = Arc::new(Pool::new(target, options, metrics.clone()));
        pool.maintain();
        let relay = Arc::new(Relay::new(
            pool,
            store,
            tokens,
            RetryPolicy::new(config.retry.clone()),
            config.dedupe.in_flight_lease,
            &apns.endpoint,
            metrics.clone(),
        ));
        relay.adopt_shared_token().await;
        let acceptor = match &rc.tls {
            Some(t) => Some(TlsAcceptor::from(
                crate::tls::server_config(t, &[b"h2"]).map_err(|e| cfg_err(&e))?,
            )),
            None => None,
        };
        let listener = bind(rc.listen, "relay").await?;
        running.relay_addr = listener.local_addr().ok();
        let inbound = Arc::new(Inbound::new(relay.clone(), senders.clone(), rc.max_payload));
        tasks.push(tokio::spawn(inbound.serve(
            listener,
            acceptor,
            rx.clone(),
            rc.drain_timeout,
        )));
        running.relay = Some(relay);
        running.drain = rc.drain_timeout;
        tracing::info!(addr = ?running.relay_addr, endpoint = %apns.endpoint, "relay listening");
    }
    if let Some(pc) = &config.proxy {
        let acceptor = match &pc.tls {
            Some(t) => Some(TlsAcceptor::from(
                crate::tls::server_config(t, &[b"http/1.1"]).map_err(|e| cfg_err(&e))?,
            )),
            None => None,
        };
        let listener = bind(pc.listen, "proxy").await?;
        running.proxy_addr = listener.local_addr().ok();
        let proxy = Arc::new(Proxy::new(pc, &config.senders, metrics.clone()));
        tasks.push(tokio::spawn(proxy.serve(listener, acceptor, rx.clone())));
        tracing::info!(addr = ?running.proxy_addr, "proxy listening");
    }
    if let Some(dc) = &config.discovery {
        let listener =
            |addr: Option<SocketAddr>, tls: bool| addr.map(|addr| Listener { addr, tls });
        let relay = listener(
            running.relay_addr,
            config.relay.as_ref().is_some_and(|r| r.tls.is_some()),
        );
        let proxy = listener(
            running.proxy_addr,
            config.proxy.as_ref().is_some_and(|p| p.tls.is_some()),
        );
        let instance = registration::instance(dc, relay, proxy).map_err(StartError::Config)?;
        let registrar =
            Registrar::start(dc, instance, metrics.clone()).map_err(StartError::Config)?;
        running.registrar = Some(registrar);
    }
    if let Some(oc) = &config.ops {
        let listener = bind(oc.listen, "ops").await?;
        running.ops_addr = listener.local_addr().ok();
        let health = crate::ops::Health {
            metrics: metrics.clone(),
            store: running.relay.as_ref().map(|r| r.store().clone()),
            pool_size: running.relay.as_ref().map(|r| r.pool().size()),
            draining: draining_rx,
            discovery: running.registrar.as_ref().map(Registrar::status),
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(crate::ops::serve(listener, health, stopped));
        running.ops = Some((stop, task));
    }
    running.tasks = tasks;
    Ok(running)
}

impl Running {
    /// Graceful shutdown; see the module doc.
    pub async fn shutdown(mut self) {
        let _ = self.draining.send(true);
        if let Some(registrar) = self.registrar.as_mut() {
            match registrar.drain().await {
                Ok(true) => {
                    tracing::info!(
                        lead = %common::duration::format(registrar.lead),
                        "deregistered from ZooKeeper; still accepting for the lead"
                    );
                    tokio::time::sleep(registrar.lead).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("discovery: {e}; the node goes with the session"),
            }
        }
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + self.drain + Duration::from_secs(1);
        for t in self.tasks {
            let _ = tokio::time::timeout_at(deadline.into(), t).await;
        }
        if let Some(relay) = &self.relay {
            while relay.in_flight() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if relay.in_flight() > 0 {
                tracing::warn!(
                    left = relay.in_flight(),
                    "drain timeout with pushes in flight"
                );
            }
            // Carries the last outcomes to the disk; bounded, since a store that is gone
            // (Redis down) would hold the exit up for as long as its client retries.
            match tokio::time::timeout(Duration::from_secs(5), relay.store().ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "dedupe store: last flush failed"),
                Err(_) => tracing::warn!("dedupe store: no answer to the last flush in 5 s"),
            }
        }
        if let Some((stop, task)) = self.ops {
            let _ = stop.send(true);
            let _ = task.await;
        }
        tracing::info!("stopped");
    }
}
