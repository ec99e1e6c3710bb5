//! A live list of one service's instances: [`ServiceWatch`] reads the children of
//! `/{base}/{service}` and each child's data, keeps a ZooKeeper watch on the children and on
//! every child's data (one-shot watches, which servers from 3.4 on keep across a reconnect),
//! and publishes a new [`Instances`] on every change. [`ServiceWatch::pick`] and
//! [`ServiceWatch::failover`] lease instances from it (see [`crate::balance`]).
//!
//! Fallbacks, so that a caller never hangs and always has a reason:
//! - **Unreachable ensemble** at start: [`ServiceWatch::start`] fails after `connect_timeout`
//!   with one line ([`Error::Unreachable`]); the caller falls back (the router to its static
//!   URL). Later outages keep the last list, marked stale, and the watch reconnects in the
//!   background (a new session after an expiry); picks keep working on the last list.
//! - **A path with no instances** (or no path at all): the watch waits for instances to come;
//!   a pick fails at once with [`Error::NoInstance`] naming the path and why.
//! - **A malformed node** (not JSON, not Curator's shape, a bad weight): skipped, with one
//!   warning line naming the node and the JSON error's line and column; listed in
//!   [`Instances::malformed`].
//! - Two nodes with one instance id (an old session's node not yet expired next to its
//!   re-registration): the newest node wins.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use zookeeper_client::{Client, EventType, OneshotWatcher, SessionState, WatchedEvent};

use crate::balance::{Lease, Load, Member, Picker};
use crate::session::{connect, ends_session, wait_connected};
use crate::{Balance, Error, ServiceInstance, ServicePath, ZkConfig};

/// How a [`ServiceWatch`] balances.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// The balancing strategy.
    pub balance: Balance,
    /// How long an instance whose connection failed is passed over.
    pub down_for: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            balance: Balance::RoundRobin,
            down_for: Duration::from_secs(5),
        }
    }
}

/// One published view of a service.
#[derive(Debug, Default)]
pub struct Instances {
    /// Well-formed instances, by node name.
    pub members: Vec<Arc<Member>>,
    /// Nodes that could not be read as instances: `(node name, why)`.
    pub malformed: Vec<(String, String)>,
    /// Whether the service's path exists.
    pub path_exists: bool,
    /// Why the list may be stale (ZooKeeper unreachable, session lost), if it may be.
    pub stale: Option<String>,
}

impl Instances {
    /// The instances (enabled or not).
    pub fn instances(&self) -> impl Iterator<Item = &ServiceInstance> {
        self.members.iter().map(|m| m.instance())
    }

    /// One line per instance (node, id, URI, weight, region, state, endpoints), then one per
    /// malformed node, then the staleness if any: what a command that looks prints.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.path_exists {
            lines.push("(the path does not exist)".to_string());
        }
        for m in &self.members {
            let i = m.instance();
            let mut line = format!(
                "{}  id={}  uri={}  weight={}  region={}  {}",
                m.node(),
                i.id,
                i.uri(),
                i.weight(),
                i.region().unwrap_or("-"),
                if i.enabled { "enabled" } else { "disabled" },
            );
            for (name, url) in i.endpoints() {
                line.push_str(&format!("  {name}={url}"));
            }
            lines.push(line);
        }
        for (node, why) in &self.malformed {
            lines.push(format!("{node}  malformed: {why}"));
        }
        if let Some(stale) = &self.stale {
            lines.push(format!("(the list may be stale: {stale})"));
        }
        lines
    }

    /// Why nothing can be picked from here (`tried`: instances that already failed).
    fn why_none(&self, tried: usize) -> String {
        let mut why = if !self.path_exists {
            "the path does not exist".to_string()
        } else if self.members.is_empty() && self.malformed.is_empty() {
            "the path has no children".to_string()
        } else if self.members.is_empty() {
            let (node, reason) = &self.malformed[0];
            format!(
                "all {} nodes are malformed (first: {node}: {reason})",
                self.malformed.len()
            )
        } else if tried > 0 {
            format!("all {tried} instances that take work failed to connect")
        } else {
            format!(
                "all {} instances are disabled or have weight 0",
                self.members.len()
            )
        };
        if let Some(stale) = &self.stale {
            why.push_str(&format!("; the list may be stale: {stale}"));
        }
        why
    }
}

/// Watches one service; see the module doc. The background task ends when this is dropped,
/// or with [`ServiceWatch::close`].
#[derive(Debug)]
pub struct ServiceWatch {
    shared: Arc<Shared>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    path: ServicePath,
    picker: Picker,
    view: RwLock<Arc<Instances>>,
    version: watch::Sender<u64>,
}

impl Drop for ServiceWatch {
    fn drop(&mut self) {
        if let Some(task) = common::sync::lock(&self.task).as_ref() {
            task.abort();
        }
    }
}

impl ServiceWatch {
    /// Connects, reads the service once (both within `config.connect_timeout`) and keeps
    /// following it in the background.
    pub async fn start(
        config: &ZkConfig,
        path: &ServicePath,
        options: WatchOptions,
    ) -> Result<ServiceWatch, Error> {
        let client = connect(config).await?;
        let (version, mut seen) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            path: path.clone(),
            picker: Picker::new(options.balance, options.down_for),
            view: RwLock::new(Arc::default()),
            version,
        });
        let task = tokio::spawn(run(Arc::clone(&shared), config.clone(), client));
        let first = tokio::time::timeout(config.connect_timeout, seen.wait_for(|v| *v > 0)).await;
        if !matches!(first, Ok(Ok(_))) {
            task.abort();
            return Err(Error::Unreachable {
                ensemble: config.ensemble.clone(),
                within: config.connect_timeout,
                why: format!("no answer to reading `{path}`"),
            });
        }
        Ok(ServiceWatch {
            shared,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Stops following (the last view stays) and waits until the follower has let go of its
    /// session, which then closes. Call it before the runtime shuts down: zookeeper-client
    /// 0.11 panics in a watch that is polled after a shutting-down runtime dropped its session
    /// task.
    pub async fn close(&self) {
        let task = common::sync::lock(&self.task).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// The service's path.
    pub fn path(&self) -> &ServicePath {
        &self.shared.path
    }

    /// The latest view.
    pub fn instances(&self) -> Arc<Instances> {
        Arc::clone(&common::sync::read(&self.shared.view))
    }

    /// Waits (at most `within`) until the view satisfies `cond`; returns the view that did, or
    /// the last one seen when time ran out.
    pub async fn wait_until(
        &self,
        within: Duration,
        cond: impl Fn(&Instances) -> bool,
    ) -> Result<Arc<Instances>, Arc<Instances>> {
        let mut seen = self.shared.version.subscribe();
        let wait = async {
            loop {
                let view = self.instances();
                if cond(&view) {
                    return view;
                }
                if seen.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .map_err(|_| self.instances())
    }

    /// A receiver that changes on every new view (for callers that follow changes).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.version.subscribe()
    }

    /// A lease on one instance, by the balancing strategy.
    pub fn pick(&self) -> Result<Lease, Error> {
        self.failover().next_lease()
    }

    /// Picks for one piece of work that fails over: each [`Failover::next_lease`] leases an instance
    /// not tried yet for this work.
    pub fn failover(&self) -> Failover<'_> {
        Failover {
            watch: self,
            tried: HashSet::new(),
            passed_over: 0,
        }
    }
}

/// Instances for one piece of work, each tried at most once (see [`ServiceWatch::failover`]).
#[derive(Debug)]
pub struct Failover<'a> {
    watch: &'a ServiceWatch,
    tried: HashSet<String>,
    /// Of `tried`, the instances passed over as unusable for this work rather than failed.
    pub(crate) passed_over: usize,
}

impl Failover<'_> {
    /// The next instance to try; [`Error::NoInstance`] when none is left, naming why.
    pub fn next_lease(&mut self) -> Result<Lease, Error> {
        let view = self.watch.instances();
        let lease = self
            .watch
            .shared
            .picker
            .pick(&view.members, |m| self.tried.contains(&m.instance().id));
        match lease {
            Some(l) => {
                self.tried.insert(l.instance().id.clone());
                Ok(l)
            }
            None => Err(Error::NoInstance {
                path: self.watch.shared.path.to_string(),
                why: view.why_none(self.tried.len() - self.passed_over),
            }),
        }
    }
}

/// One node as last read.
#[derive(Debug)]
enum Node {
    Instance {
        instance: ServiceInstance,
        czxid: i64,
    },
    Malformed(String),
}

/// What the follower knows across sessions.
#[derive(Default)]
struct Known {
    nodes: BTreeMap<String, Node>,
    loads: HashMap<String, Arc<Load>>,
    path_exists: bool,
}

/// Follows the service for ever: one session after another.
async fn run(shared: Arc<Shared>, config: ZkConfig, mut client: Client) {
    let mut known = Known::default();
    let mut pause = Duration::from_millis(100);
    loop {
        let ended = follow(&shared, &client, &mut known).await;
        publish(
            &shared,
            &mut known,
            Some(format!("ZooKeeper session ended ({ended})")),
        );
        client = loop {
            match connect(&config).await {
                Ok(c) => {
                    pause = Duration::from_millis(100);
                    break c;
                }
                Err(e) => {
                    tracing::warn!(path = %shared.path, "{e}; the instance list is kept and may be stale");
                    publish(&shared, &mut known, Some(e.to_string()));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        tracing::info!(path = %shared.path, "ZooKeeper session re-established; reading the instances again");
    }
}

type DataWatches = FuturesUnordered<futures::future::BoxFuture<'static, (String, WatchedEvent)>>;

/// Follows the service within one session; returns why the session ended.
async fn follow(shared: &Shared, client: &Client, known: &mut Known) -> String {
    let path = shared.path.path();
    let mut states = client.state_watcher();
    let mut data_watches = DataWatches::new();
    let mut watched: HashSet<String> = HashSet::new();
    loop {
        let (children, children_watch) = match list(client, &path).await {
            Ok(Some((c, w))) => {
                known.path_exists = true;
                (c, w)
            }
            Ok(None) => match client.check_and_watch_stat(&path).await {
                Ok((None, w)) => {
                    known.path_exists = false;
                    (Vec::new(), w)
                }
                Ok((Some(_), _)) => continue,
                Err(e) => match recover(shared, known, client, &e).await {
                    Some(ended) => return ended,
                    None => continue,
                },
            },
            Err(e) => match recover(shared, known, client, &e).await {
                Some(ended) => return ended,
                None => continue,
            },
        };
        let children: HashSet<String> = children.into_iter().collect();
        known.nodes.retain(|n, _| children.contains(n));
        watched.retain(|n| children.contains(n));
        let unread: Vec<String> = children.difference(&watched).cloned().collect();
        if let Err(e) = read_nodes(
            client,
            &path,
            unread,
            known,
            &mut watched,
            &mut data_watches,
        )
        .await
        {
            if ends_session(&e) {
                return e.to_string();
            }
        }
        publish(shared, known, None);
        let fired = children_watch.changed();
        tokio::pin!(fired);
        loop {
            tokio::select! {
                event = &mut fired => {
                    if event.event_type == EventType::Session && event.session_state.is_terminated() {
                        return format!("{:?}", event.session_state);
                    }
                    break;
                }
                Some((node, event)) = data_watches.next(), if !data_watches.is_empty() => {
                    watched.remove(&node);
                    if event.event_type == EventType::Session && event.session_state.is_terminated() {
                        return format!("{:?}", event.session_state);
                    }
                    break;
                }
                state = states.changed() => match state {
                    SessionState::Disconnected => publish(shared, known, Some("disconnected from ZooKeeper".into())),
                    // Back within the session: the server re-arms the watches; read again
                    // what a lost connection may have left unread.
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => break,
                    s if s.is_terminated() => return format!("{s:?}"),
                    _ => {}
                },
            }
        }
    }
}

/// After a failed read of the service's path: `Some(why)` when the session ended; otherwise
/// waits until reading again makes sense (the connection is back, or 1 s after any other
/// error, which is published as the reason the list may be stale).
async fn recover(
    shared: &Shared,
    known: &mut Known,
    client: &Client,
    e: &zookeeper_client::Error,
) -> Option<String> {
    if ends_session(e) {
        return Some(e.to_string());
    }
    if *e == zookeeper_client::Error::ConnectionLoss {
        return (!wait_connected(client).await).then(|| "the session ended".to_string());
    }
    tracing::warn!(path = %shared.path, "cannot read the instances: {e}; trying again in 1s");
    publish(
        shared,
        known,
        Some(format!("cannot read `{}`: {e}", shared.path)),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    None
}

/// The children of `path` with a watch on them; `None` when the path does not exist.
async fn list(
    client: &Client,
    path: &str,
) -> Result<Option<(Vec<String>, OneshotWatcher)>, zookeeper_client::Error> {
    match client.list_and_watch_children(path).await {
        Ok(r) => Ok(Some(r)),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `nodes` (pipelined) with a data watch on each.
async fn read_nodes(
    client: &Client,
    path: &str,
    nodes: Vec<String>,
    known: &mut Known,
    watched: &mut HashSet<String>,
    data_watches: &mut DataWatches,
) -> Result<(), zookeeper_client::Error> {
    let full: Vec<String> = nodes.iter().map(|n| format!("{path}/{n}")).collect();
    let reads = futures::future::join_all(full.iter().map(|p| client.get_and_watch_data(p))).await;
    let mut result = Ok(());
    for (node, read) in nodes.into_iter().zip(reads) {
        match read {
            Ok((data, stat, watch)) => {
                let parsed = match ServiceInstance::from_json(&data) {
                    Ok(instance) => Node::Instance {
                        instance,
                        czxid: stat.czxid,
                    },
                    Err(why) => {
                        tracing::warn!("{path}/{node}: {why}; the node is skipped");
                        Node::Malformed(why)
                    }
                };
                known.nodes.insert(node.clone(), parsed);
                watched.insert(node.clone());
                data_watches.push(Box::pin(async move { (node, watch.changed().await) }));
            }
            // Gone between the listing and the read: the children watch says so too.
            Err(zookeeper_client::Error::NoNode) => {
                known.nodes.remove(&node);
            }
            Err(e) => result = Err(e),
        }
    }
    result
}

/// Publishes the known nodes as a new view.
fn publish(shared: &Shared, known: &mut Known, stale: Option<String>) {
    let mut newest: HashMap<&str, (&String, &ServiceInstance, i64)> = HashMap::new();
    let mut malformed = Vec::new();
    for (node, n) in &known.nodes {
        match n {
            Node::Instance { instance, czxid } => {
                let e = newest
                    .entry(instance.id.as_str())
                    .or_insert((node, instance, *czxid));
                if *czxid > e.2 {
                    *e = (node, instance, *czxid);
                }
            }
            Node::Malformed(why) => malformed.push((node.clone(), why.clone())),
        }
    }
    let mut members: Vec<Arc<Member>> = newest
        .into_values()
        .map(|(node, instance, _)| {
            let load = Arc::clone(known.loads.entry(instance.id.clone()).or_default());
            Arc::new(Member::new(node.clone(), instance.clone(), load))
        })
        .collect();
    members.sort_by(|a, b| a.node().cmp(b.node()));
    let ids: HashSet<&str> = members.iter().map(|m| m.instance().id.as_str()).collect();
    known
        .loads
        .retain(|id, load| ids.contains(id.as_str()) || Arc::strong_count(load) > 1);
    let view = Instances {
        members,
        malformed,
        path_exists: known.path_exists,
        stale,
    };
    *common::sync::write(&shared.view) = Arc::new(view);
    shared.version.send_modify(|v| *v += 1);
}

/// Reads a service's instances once (a new session, closed after): for a command that looks.
pub async fn read_once(config: &ZkConfig, path: &ServicePath) -> Result<Arc<Instances>, Error> {
    let watch = ServiceWatch::start(config, path, WatchOptions::default()).await?;
    let view = watch.instances();
    watch.close().await;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_instances_and_malformed_nodes() {
        let mut i = ServiceInstance::new("relay", "10.0.0.5")
            .with_region("us-west-1")
            .with_endpoint("relay", "https://10.0.0.5:8443");
        i.id = "a".into();
        i.ssl_port = Some(8443);
        let view = Instances {
            members: vec![Arc::new(Member::new("_c_x-a".into(), i, Arc::default()))],
            malformed: vec![(
                "bad".into(),
                "not JSON: expected value at line 1 column 1".into(),
            )],
            path_exists: true,
            stale: Some("disconnected from ZooKeeper".into()),
        };
        assert_eq!(
            view.describe(),
            [
                "_c_x-a  id=a  uri=https://10.0.0.5:8443  weight=1  region=us-west-1  enabled  relay=https://10.0.0.5:8443",
                "bad  malformed: not JSON: expected value at line 1 column 1",
                "(the list may be stale: disconnected from ZooKeeper)",
            ]
        );
        assert_eq!(
            Instances::default().describe(),
            ["(the path does not exist)"]
        );
    }
}
