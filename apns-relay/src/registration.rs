//! This instance in ZooKeeper (`[discovery]`): once the listeners are bound, the instance
//! registers its relay and proxy endpoints — the addresses it actually bound, with the scheme
//! each listener speaks — as an ephemeral node in Curator ServiceDiscovery's format
//! ([`discovery::Registration`]: created the protected way, made again after a session
//! expiry). The registration's state feeds `/healthz` and the `discovery_*` metrics.
//!
//! - ZooKeeper unreachable at start: the relay serves anyway (senders with a static URL still
//!   reach it), logs one warning line per attempt and keeps trying, every ≤ 5 s.
//! - At SIGTERM the node is removed first ([`Registrar::drain`]); the server keeps accepting
//!   for `deregister_lead` after, so senders' watches drop the instance before it refuses
//!   connections (see [`crate::server`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use discovery::{Registration, ServiceInstance, ServicePath, UriSpec};
use tokio::sync::{oneshot, watch};

use crate::config::DiscoveryConfig;
use crate::metrics::Metrics;

/// Where the registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not registered (not yet, or not again): why.
    Unregistered(String),
    /// Registered: the node's path and the ZooKeeper session that owns it.
    Registered {
        /// The node's full path.
        node: String,
        /// The owning session's id.
        session: i64,
    },
    /// Removed at the drain.
    Drained,
}

impl Status {
    /// The `discovery` member of `/healthz`: `{"registered": bool, "node", "session"}` or
    /// `{"registered": false, "why"}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Status::Registered { node, session } => serde_json::json!({
                "registered": true,
                "node": node,
                "session": format!("{session:#x}"),
            }),
            Status::Unregistered(why) => serde_json::json!({"registered": false, "why": why}),
            Status::Drained => serde_json::json!({"registered": false, "why": "drained"}),
        }
    }
}

/// A listener to register: its bound address and whether it speaks TLS.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    /// The bound address.
    pub addr: SocketAddr,
    /// TLS (`https://`) or not (`http://`: h2c for the relay, plain for the proxy).
    pub tls: bool,
}

/// The instance as registered: `address` (advertised, or the relay's bound address),
/// `port`/`sslPort` and `uriSpec` of the relay listener (else the proxy's), and
/// `payload.endpoints.relay` / `.proxy` as URLs with the scheme each listener speaks.
pub fn instance(
    config: &DiscoveryConfig,
    relay: Option<Listener>,
    proxy: Option<Listener>,
) -> Result<ServiceInstance, String> {
    let main = relay
        .or(proxy)
        .ok_or("discovery: neither a relay nor a proxy listener to register")?;
    let host = config.advertised(main.addr)?;
    let mut i = ServiceInstance::new(&config.service, &host).with_weight(config.weight);
    if let Some(id) = &config.id {
        i.id = id.clone();
    }
    if let Some(region) = &config.region {
        i = i.with_region(region);
    }
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let url = |l: Listener| {
        let scheme = if l.tls { "https" } else { "http" };
        format!("{scheme}://{url_host}:{}", l.addr.port())
    };
    if let Some(l) = relay {
        i = i.with_endpoint("relay", &url(l));
    }
    if let Some(l) = proxy {
        i = i.with_endpoint("proxy", &url(l));
    }
    let spec = if main.tls {
        i.ssl_port = Some(main.addr.port());
        "{scheme}://{address}:{ssl-port}"
    } else {
        i.port = Some(main.addr.port());
        "{scheme}://{address}:{port}"
    };
    i.uri_spec = Some(UriSpec::parse(spec)?);
    Ok(i)
}

type DrainReply = oneshot::Sender<Result<bool, String>>;

/// Keeps this instance registered in the background; see the module doc.
#[derive(Debug)]
pub struct Registrar {
    status: watch::Receiver<Status>,
    drain: Option<oneshot::Sender<DrainReply>>,
    task: tokio::task::JoinHandle<()>,
    connect_timeout: Duration,
    /// How long to keep accepting after the node is removed.
    pub lead: Duration,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Registrar {
    /// Starts registering `instance` (in the background: the first attempt may fail and is
    /// retried, see the module doc).
    pub fn start(
        config: &DiscoveryConfig,
        instance: ServiceInstance,
        metrics: Arc<Metrics>,
    ) -> Result<Registrar, String> {
        let path = config.service_path()?;
        let (tx, status) = watch::channel(Status::Unregistered("registering".into()));
        let (drain, drain_rx) = oneshot::channel();
        let keeper = Keeper {
            zk: config.zk(),
            path,
            instance,
            metrics,
            status: tx,
        };
        Ok(Registrar {
            status,
            drain: Some(drain),
            task: tokio::spawn(keeper.run(drain_rx)),
            connect_timeout: config.connect_timeout,
            lead: config.deregister_lead,
        })
    }

    /// Follows the status (for `/healthz`).
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Removes the node (bounded by `connect_timeout`) and stops registering; true when a
    /// node was registered and is now removed.
    pub async fn drain(&mut self) -> Result<bool, String> {
        let Some(drain) = self.drain.take() else {
            return Ok(false);
        };
        let (reply, answer) = oneshot::channel();
        if drain.send(reply).is_err() {
            return Ok(false);
        }
        let bound = self.connect_timeout + Duration::from_secs(1);
        match tokio::time::timeout(bound, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Ok(false),
            Err(_) => Err(format!(
                "no answer from ZooKeeper within {} while deregistering",
                common::duration::format(bound)
            )),
        }
    }
}

/// The background task.
struct Keeper {
    zk: discovery::ZkConfig,
    path: ServicePath,
    instance: ServiceInstance,
    metrics: Arc<Metrics>,
    status: watch::Sender<Status>,
}

impl Keeper {
    async fn run(self, mut drain: oneshot::Receiver<DrainReply>) {
        let Some(registration) = self.first(&mut drain).await else {
            return;
        };
        let mut changes = registration.subscribe();
        let mut last_node = None;
        loop {
            let now = changes.borrow_and_update().clone();
            match now {
                Some(r) => {
                    if last_node.as_ref() != Some(&r.path) {
                        self.metrics.discovery_registrations.inc();
                        last_node = Some(r.path.clone());
                    }
                    self.metrics.discovery_registered.set(1);
                    self.status.send_replace(Status::Registered {
                        node: r.path,
                        session: r.session,
                    });
                }
                None => {
                    self.metrics.discovery_registered.set(0);
                    self.status.send_replace(Status::Unregistered(
                        "the ZooKeeper session ended; registering again".into(),
                    ));
                }
            }
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() {
                        // The registration's own task is gone; nothing more will change.
                        self.metrics.discovery_registered.set(0);
                        self.status.send_replace(Status::Unregistered("the registration ended".into()));
                        let reply = drain.await;
                        if let Ok(reply) = reply {
                            let _ = reply.send(Ok(false));
                        }
                        return;
                    }
                }
                reply = &mut drain => {
                    let result = registration.drain().await.map(|()| true).map_err(|e| e.to_string());
                    self.metrics.discovery_registered.set(0);
                    self.status.send_replace(Status::Drained);
                    if let Ok(reply) = reply {
                        let _ = reply.send(result);
                    }
                    return;
                }
            }
        }
    }

    /// Registers, retrying with backoff while ZooKeeper cannot be reached; `None` when the
    /// drain came first (it is answered here).
    async fn first(&self, drain: &mut oneshot::Receiver<DrainReply>) -> Option<Registration> {
        let mut pause = Duration::from_millis(200);
        loop {
            let attempt = tokio::select! {
                r = Registration::start(&self.zk, &self.path, self.instance.clone()) => r,
                reply = &mut *drain => {
                    self.status.send_replace(Status::Drained);
                    if let Ok(reply) = reply {
                        let _ = reply.send(Ok(false));
                    }
                    return None;
                }
            };
            match attempt {
                Ok(r) => return Some(r),
                Err(e) => {
                    tracing::warn!(
                        "discovery: {e}; serving unregistered, trying again in {}",
                        common::duration::format(pause)
                    );
                    self.status
                        .send_replace(Status::Unregistered(e.to_string()));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                reply = &mut *drain => {
                    self.status.send_replace(Status::Drained);
                    if let Ok(reply) = reply {
                        let _ = reply.send(Ok(false));
                    }
                    return None;
                }
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> DiscoveryConfig {
        toml::from_str(&format!("ensemble = \"127.0.0.1:2181\"\n{extra}")).unwrap()
    }

    #[test]
    fn the_instance_names_each_listener_with_its_scheme() {
        let relay = Listener {
            addr: "10.0.0.5:8443".parse().unwrap(),
            tls: true,
        };
        let proxy = Listener {
            addr: "10.0.0.5:3128".parse().unwrap(),
            tls: false,
        };
        let i = instance(
            &config("id = \"r1\"\nregion = \"us-west-1\"\nweight = 3"),
            Some(relay),
            Some(proxy),
        )
        .unwrap();
        assert_eq!(i.id, "r1");
        assert_eq!(i.name, "apns-relay");
        assert_eq!((i.port, i.ssl_port), (None, Some(8443)));
        assert_eq!(i.uri(), "https://10.0.0.5:8443");
        assert_eq!(i.endpoint("relay"), Some("https://10.0.0.5:8443"));
        assert_eq!(i.endpoint("proxy"), Some("http://10.0.0.5:3128"));
        assert_eq!((i.region(), i.weight()), (Some("us-west-1"), 3));

        let h2c = Listener {
            addr: "[::1]:8080".parse().unwrap(),
            tls: false,
        };
        let i = instance(&config(""), Some(h2c), None).unwrap();
        assert_eq!((i.port, i.ssl_port), (Some(8080), None));
        assert_eq!(i.endpoint("relay"), Some("http://[::1]:8080"));
        assert_eq!(i.endpoint("proxy"), None);
        // Curator builds `{address}` as it is (no brackets); the endpoints are proper URLs.
        assert_eq!(i.uri(), "http://::1:8080");

        let any = Listener {
            addr: "0.0.0.0:8443".parse().unwrap(),
            tls: true,
        };
        let i = instance(&config("address = \"relay-1.example\""), Some(any), None).unwrap();
        assert_eq!(i.endpoint("relay"), Some("https://relay-1.example:8443"));
        assert!(instance(&config(""), None, None).is_err());
    }

    #[test]
    fn status_in_healthz() {
        let s = Status::Registered {
            node: "/services/apns-relay/_c_x-r1".into(),
            session: 0x1234,
        };
        assert_eq!(
            s.to_json(),
            serde_json::json!({"registered": true, "node": "/services/apns-relay/_c_x-r1", "session": "0x1234"})
        );
        assert_eq!(
            Status::Drained.to_json(),
            serde_json::json!({"registered": false, "why": "drained"})
        );
    }
}
