//! The run's target: the embedded reference gateway started in-process on loopback (with the
//! scenario's faults and rooms), or a URL target checked for reachability, so an unreachable
//! target is one clear error before any load starts.

use std::time::Duration;

use common::endpoint::Endpoint;

use super::RunError;
use crate::scenario::{Faults, Target};

/// A started target; an embedded gateway stops when this drops.
#[derive(Debug)]
pub struct Started {
    base_url: String,
    _gateway: Option<testbed::GatewayHandle>,
}

impl Started {
    /// A target at `url` started elsewhere (checked with [`reachable`] first).
    pub fn url(url: &str) -> Started {
        Started {
            base_url: url.trim_end_matches('/').to_string(),
            _gateway: None,
        }
    }

    /// `{{base_url}}`: the target's HTTP API, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// Starts the embedded gateway, or checks that a URL target answers TCP connections.
pub async fn start(target: &Target) -> Result<Started, RunError> {
    match (&target.embedded, &target.base_url) {
        (Some(_), _) => {
            let gw = testbed::gateway::spawn(testbed::gateway::GatewayConfig {
                listen: ([127, 0, 0, 1], 0).into(),
                faults: faults(target.faults.as_ref()),
                rooms: rooms(target.rooms.as_ref()),
            })
            .await
            .map_err(|e| RunError::Harness(format!("cannot start the embedded gateway: {e}")))?;
            Ok(Started {
                base_url: gw.base_url(),
                _gateway: Some(gw),
            })
        }
        (None, Some(url)) => {
            reachable(url)
                .await
                .map_err(|e| RunError::BadInput(e.to_string()))?;
            Ok(Started {
                base_url: url.trim_end_matches('/').to_string(),
                _gateway: None,
            })
        }
        (None, None) => Err(RunError::BadInput("target: no target".into())),
    }
}

/// The schemes a `target.base_url` may have.
pub const TARGET_SCHEMES: [&str; 4] = ["http", "https", "mqtt", "mqtts"];

/// Why a target cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// Not an http(s) or mqtt(s) URL with a host.
    #[error("target {url}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The TCP connection failed or timed out.
    #[error("target {url} is unreachable: {why}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
}

/// The embedded gateway's faults from the scenario's `target.faults`.
fn faults(f: Option<&Faults>) -> testbed::gateway::FaultConfig {
    let mut out = testbed::gateway::FaultConfig::default();
    if let Some(f) = f {
        let ms = |d: Option<crate::scenario::Dur>| d.map_or(0.0, |d| d.get().as_secs_f64() * 1e3);
        out.latency_ms = ms(f.latency);
        out.jitter_ms = ms(f.jitter);
        out.error_rate = f.error_rate.unwrap_or(0.0);
        if let Some(s) = f.error_status {
            out.error_status = s;
        }
        out.push_drop_rate = f.push_drop_rate.unwrap_or(0.0);
        out.push_duplicate_rate = f.push_duplicate_rate.unwrap_or(0.0);
        out.push_delay_rate = f.push_delay_rate.unwrap_or(0.0);
        out.push_delay_ms = ms(f.push_delay);
        out.conn_reset_rate = f.conn_reset_rate.unwrap_or(0.0);
        out.refuse_rate = f.refuse_rate.unwrap_or(0.0);
    }
    out
}

/// The embedded gateway's rooms from the scenario's `target.rooms`: room processes are this
/// executable's hidden `__room` subcommand.
fn rooms(r: Option<&crate::scenario::device::EmbeddedRooms>) -> testbed::RoomsConfig {
    let mut out = testbed::RoomsConfig::default();
    if let Some(r) = r {
        if let Some(n) = r.count {
            out.count = n as usize;
        }
        if let Some(h) = r.heartbeat {
            out.heartbeat = h.get();
        }
        if r.processes {
            match std::env::current_exe() {
                Ok(program) => {
                    out.processes = Some(testbed::RoomCommand {
                        program,
                        args: vec!["__room".into()],
                    })
                }
                Err(e) => tracing::warn!("cannot find loadgen to start room processes: {e}"),
            }
        }
    }
    out
}

/// Checks that a TCP connection to the URL's host and port can be made within 5 s (an HTTP
/// gateway, or an MQTT broker).
pub async fn reachable(url: &str) -> Result<(), Unreachable> {
    let endpoint = Endpoint::parse(url, &TARGET_SCHEMES).map_err(|e| Unreachable::Url {
        url: url.to_string(),
        why: e.to_string(),
    })?;
    let connect = async {
        let addr = crate::engine::swarm::net::resolve(&endpoint).await?;
        tokio::net::TcpStream::connect(addr).await
    };
    let failed = |why: String| Unreachable::Connect {
        url: url.to_string(),
        why,
    };
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed("no answer within 5s".into())),
    }
}
