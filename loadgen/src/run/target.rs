//! The run's target: the embedded reference gateway started in-process on loopback (with the
//! scenario's faults and rooms), a URL target checked for reachability, or the instances a
//! ZooKeeper service path lists ([`Discovered`]), followed during the run — so an unreachable
//! target is one clear error before any load starts.
//!
//! A discovered target: each sender iteration takes one instance listed when it starts (its
//! `{{base_url}}`, leased for the iteration: `least_in_flight` counts iterations); a refused
//! connection passes the instance over for `down_for`. The run records the list: the gauge
//! `target_instances` (instances that take work, each second), the counter `target_changes`
//! (one per change of that set), the counter `target_picks{instance=URL}` (iterations sent to
//! each), and in the record's `meta.target_discovery` every set with the second it began. The
//! device swarm and a replay use the instance picked at the start (`{{base_url}}` of the
//! run); they do not follow changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::endpoint::Endpoint;
use discovery::{Discover, Lease, ServiceWatch};
use reports::{MetricId, MetricKey, RecorderHandle, Recorders};

use super::RunError;
use crate::journey::TargetInstances;
use crate::scenario::{Faults, Target};

/// Instances that take work, each second (gauge).
pub const TARGET_INSTANCES: &str = "target_instances";
/// Changes of the set of instances that take work (counter).
pub const TARGET_CHANGES: &str = "target_changes";
/// Iterations sent to each instance, tagged `instance` (counter).
pub const TARGET_PICKS: &str = "target_picks";

/// A started target; an embedded gateway stops when this drops.
#[derive(Debug)]
pub struct Started {
    base_url: String,
    _gateway: Option<testbed::GatewayHandle>,
    discovered: Option<Arc<Discovered>>,
}

impl Started {
    /// A target at `url` started elsewhere (checked with [`reachable`] first).
    pub fn url(url: &str) -> Started {
        Started {
            base_url: url.trim_end_matches('/').to_string(),
            _gateway: None,
            discovered: None,
        }
    }

    /// `{{base_url}}`: the target's HTTP API, without a trailing `/` (for a discovered target,
    /// the instance picked at the start).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The discovered instances, for the journeys to pick from.
    pub fn instances(&self) -> Option<Arc<dyn TargetInstances>> {
        self.discovered
            .clone()
            .map(|d| d as Arc<dyn TargetInstances>)
    }

    /// Starts recording the instance list's changes into `recorders` (on the run's clock).
    pub fn follow(&self, recorders: &Arc<Recorders>) {
        if let Some(d) = &self.discovered {
            let rec = recorders.handle();
            let task = tokio::spawn(follow(d.clone(), rec.clone(), recorders.origin()));
            *common::sync::lock(&d.follower) = Some((task, rec));
        }
    }

    /// Stops following and records the last partial second (before the final harvest).
    pub fn finish(&self) {
        if let Some(d) = &self.discovered {
            if let Some((task, rec)) = common::sync::lock(&d.follower).take() {
                task.abort();
                d.flush(&rec, Instant::now());
            }
        }
    }

    /// For a discovered target, sets the run record's `meta.target` (`zookeeper:ENSEMBLE/PATH`)
    /// and `meta.target_discovery`: the ensemble, the path, and each instance set with the
    /// second it began.
    pub fn annotate(&self, meta: &mut serde_json::Value) {
        let Some(d) = self.discovered.as_ref() else {
            return;
        };
        let sets: Vec<serde_json::Value> = common::sync::lock(&d.sets)
            .iter()
            .map(|(at, urls)| serde_json::json!({"at_s": at, "instances": urls}))
            .collect();
        meta["target"] = format!("zookeeper:{}{}", d.discover.ensemble, d.discover.path).into();
        meta["target_discovery"] = serde_json::json!({
            "ensemble": d.discover.ensemble,
            "path": d.discover.path,
            "changes": sets.len().saturating_sub(1),
            "sets": sets,
        });
    }

    /// Lets go of ZooKeeper (before the runtime shuts down); an embedded gateway stops.
    pub async fn close(self) {
        self.finish();
        if let Some(d) = &self.discovered {
            d.watch.close().await;
        }
    }
}

/// Starts the embedded gateway, checks that a URL target answers TCP connections, or follows
/// a discovered target and checks that one of its instances answers.
pub async fn start(target: &Target) -> Result<Started, RunError> {
    match (&target.embedded, &target.base_url, &target.discovery) {
        (Some(_), _, _) => {
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
                discovered: None,
            })
        }
        (None, Some(url), _) => {
            reachable(url)
                .await
                .map_err(|e| RunError::BadInput(e.to_string()))?;
            Ok(Started {
                base_url: url.trim_end_matches('/').to_string(),
                _gateway: None,
                discovered: None,
            })
        }
        (None, None, Some(d)) => {
            let discovered = Discovered::start(d).await?;
            let base_url = match discovered.first_reachable().await {
                Ok(url) => url,
                Err(e) => {
                    discovered.watch.close().await;
                    return Err(e);
                }
            };
            Ok(Started {
                base_url,
                _gateway: None,
                discovered: Some(Arc::new(discovered)),
            })
        }
        (None, None, None) => Err(RunError::BadInput("target: no target".into())),
    }
}

/// `loadgen check`'s lines about a discovered target: the instances listed now (one line each,
/// and one per malformed node), or the one-line error `run` would stop with.
pub async fn describe_discovered(d: &Discover) -> Result<Vec<String>, String> {
    let discovered = Discovered::start(d).await.map_err(|e| e.to_string())?;
    let view = discovered.watch.instances();
    let usable = discovered.usable();
    discovered.watch.close().await;
    if usable.is_empty() {
        return Err(format!(
            "target.discovery: no instance of `{}` to use: {}",
            d.path,
            discovered.why_none()
        ));
    }
    let mut lines = vec![format!(
        "{} instances take work: {}",
        usable.len(),
        usable.join(", ")
    )];
    lines.extend(view.describe());
    Ok(lines)
}

/// A discovered target's instances; see the module doc.
#[derive(Debug)]
pub struct Discovered {
    discover: Discover,
    watch: ServiceWatch,
    /// Iterations started per instance URL since the last harvest.
    picks: Mutex<HashMap<String, u64>>,
    /// The set of instances that take work at the start and after each change: (seconds
    /// since the run's start, URLs).
    sets: Mutex<Vec<(f64, Vec<String>)>>,
    follower: Mutex<Option<(tokio::task::JoinHandle<()>, RecorderHandle)>>,
}

impl TargetInstances for Discovered {
    fn pick(&self) -> Result<(String, Lease), String> {
        let (url, lease) = self
            .discover
            .next_url(&mut self.watch.failover(), None)
            .map_err(|e| e.to_string())?;
        let mut picks = common::sync::lock(&self.picks);
        match picks.get_mut(&url) {
            Some(n) => *n += 1,
            None => {
                picks.insert(url.clone(), 1);
            }
        }
        Ok((url, lease))
    }
}

impl Discovered {
    /// Follows the service (connecting within `connect_timeout`); an unreachable ensemble or a
    /// list with no instance to use is one line, exit 2.
    async fn start(d: &Discover) -> Result<Discovered, RunError> {
        let watch = d
            .watch()
            .await
            .map_err(|e| RunError::BadInput(format!("target.discovery: {e}")))?;
        Ok(Discovered {
            discover: d.clone(),
            watch,
            picks: Mutex::default(),
            sets: Mutex::default(),
            follower: Mutex::default(),
        })
    }

    /// The URLs of the instances that take work now, sorted.
    fn usable(&self) -> Vec<String> {
        let view = self.watch.instances();
        let mut urls: Vec<String> = view
            .instances()
            .filter(|i| i.enabled && i.weight() > 0)
            .filter_map(|i| self.discover.url_of(i, None))
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    /// Why no instance can be used now.
    fn why_none(&self) -> String {
        match self.discover.next_url(&mut self.watch.failover(), None) {
            Err(discovery::Error::NoInstance { why, .. }) => why,
            Err(e) => e.to_string(),
            Ok(_) => "every instance is disabled or has weight 0".into(),
        }
    }

    /// The first instance that answers TCP connections (checked together, 5 s at most), the
    /// run's `{{base_url}}`; the one-line error when none does.
    async fn first_reachable(&self) -> Result<String, RunError> {
        let urls = self.usable();
        if urls.is_empty() {
            return Err(RunError::BadInput(format!(
                "target.discovery: no instance of `{}` to use: {}",
                self.discover.path,
                self.why_none()
            )));
        }
        let checks = futures::future::join_all(urls.iter().map(|u| reachable(u))).await;
        let mut first_error = None;
        for (url, check) in urls.iter().zip(checks) {
            match check {
                Ok(()) => return Ok(url.clone()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(RunError::BadInput(format!(
            "target.discovery: no instance of `{}` answers: {}",
            self.discover.path,
            first_error.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// Records the iterations picked per instance since the last flush, and the level.
    fn flush(&self, rec: &RecorderHandle, now: Instant) {
        let picks = std::mem::take(&mut *common::sync::lock(&self.picks));
        let level = common::sync::lock(&self.sets)
            .last()
            .map_or(0, |(_, urls)| urls.len());
        let mut rec = common::sync::lock(rec);
        rec.gauge(
            MetricId::of(&MetricKey::new(TARGET_INSTANCES)),
            now,
            level as u64,
        );
        for (url, n) in picks {
            rec.add(
                MetricKey::new(TARGET_PICKS).with_tag("instance", url),
                now,
                n,
            );
        }
    }
}

/// Records the instance set at the start and on every change, and flushes each second.
async fn follow(d: Arc<Discovered>, rec: RecorderHandle, origin: Instant) {
    let changes = MetricId::of(&MetricKey::new(TARGET_CHANGES));
    let mut seen = d.watch.subscribe();
    let mut current = d.usable();
    common::sync::lock(&d.sets).push((origin.elapsed().as_secs_f64(), current.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => d.flush(&rec, Instant::now()),
            r = seen.changed() => {
                if r.is_err() {
                    return;
                }
                let now = d.usable();
                if now != current {
                    tracing::info!(instances = ?now, "the target's instances changed");
                    common::sync::lock(&d.sets).push((origin.elapsed().as_secs_f64(), now.clone()));
                    common::sync::lock(&rec).add(changes, Instant::now(), 1);
                    current = now;
                    d.flush(&rec, Instant::now());
                }
            }
        }
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
