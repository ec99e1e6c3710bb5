//! Registering one instance the way Curator's `ServiceDiscovery.registerService` does, with
//! protected creation added: the node is `/{base}/{service}/_c_<uuid>-{id}` (ephemeral; a
//! `DYNAMIC_SEQUENTIAL` instance's node is sequential, a `STATIC` or `PERMANENT` one persistent
//! and unprotected at `/{base}/{service}/{id}`, as Curator makes them) holding Curator's JSON.
//!
//! A background task keeps it registered:
//! - the connection drops and comes back within the session: the node is checked, and made
//!   again if someone deleted it;
//! - the session expires (no server for 7/5 of the session timeout, or the server says so):
//!   a new session, the node made again (a new protected name), and the old session's node
//!   deleted if the server still holds it, so watchers never see the instance twice for long;
//! - [`Registration::drain`]: the node is deleted and the session closed (a clean shutdown);
//!   dropping the registration closes the session, which removes an ephemeral node too.
//!
//! Every call is bounded by `connect_timeout`; while ZooKeeper is unreachable the task retries
//! with backoff (up to 5 s apart), logging one warning per failed attempt.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, SessionState, StateWatcher};

use crate::protect::create_protected;
use crate::session::{connect, ends_session, make_parents, retry_lost};
use crate::{Error, ServiceInstance, ServicePath, ServiceType, ZkConfig};

/// Where the instance is registered now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The node's full path.
    pub path: String,
    /// The ZooKeeper session that owns it.
    pub session: i64,
}

/// A registered instance; see the module doc.
#[derive(Debug)]
pub struct Registration {
    instance: Arc<Mutex<ServiceInstance>>,
    registered: watch::Receiver<Option<Registered>>,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

enum Command {
    Update(ServiceInstance, oneshot::Sender<Result<(), Error>>),
    Drain(oneshot::Sender<Result<(), Error>>),
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Registration {
    /// Connects and registers `instance` under `path` (its `name` is set to the service's),
    /// within `config.connect_timeout`.
    pub async fn start(
        config: &ZkConfig,
        path: &ServicePath,
        mut instance: ServiceInstance,
    ) -> Result<Registration, Error> {
        instance.name = path.service().to_string();
        let client = connect(config).await?;
        let deadline = Instant::now() + config.connect_timeout;
        let node = register(&client, path, &instance, deadline).await?;
        tracing::info!(node = %node, id = %instance.id, "registered");
        let (tx, registered) = watch::channel(Some(Registered {
            path: node.clone(),
            session: client.session_id().0,
        }));
        let (commands, rx) = mpsc::unbounded_channel();
        let instance = Arc::new(Mutex::new(instance));
        let keeper = Keeper {
            config: config.clone(),
            path: path.clone(),
            instance: Arc::clone(&instance),
            states: Some(client.state_watcher()),
            client: Some(client),
            node: Some(node),
            stale: None,
            registered: tx,
            commands: rx,
        };
        Ok(Registration {
            instance,
            registered,
            commands,
            task: tokio::spawn(keeper.run()),
        })
    }

    /// Where the instance is registered now (`None` while it is being registered again).
    pub fn registered(&self) -> Option<Registered> {
        self.registered.borrow().clone()
    }

    /// A receiver that changes whenever the registration does.
    pub fn subscribe(&self) -> watch::Receiver<Option<Registered>> {
        self.registered.clone()
    }

    /// The instance as registered.
    pub fn instance(&self) -> ServiceInstance {
        common::sync::lock(&self.instance).clone()
    }

    /// Replaces the node's data (Curator's `updateService`): a new weight, `enabled: false`
    /// before a drain, …; the id must stay.
    pub async fn update(&self, instance: ServiceInstance) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Update(instance, tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Marks the instance enabled or not (a disabled instance takes no new work).
    pub async fn set_enabled(&self, enabled: bool) -> Result<(), Error> {
        let mut instance = self.instance();
        instance.enabled = enabled;
        self.update(instance).await
    }

    /// Deletes the node and closes the session (a clean shutdown).
    pub async fn drain(self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Drain(tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

/// Creates the instance's node; returns its path.
async fn register(
    client: &Client,
    path: &ServicePath,
    instance: &ServiceInstance,
    deadline: Instant,
) -> Result<String, Error> {
    let parent = path.path();
    let data = instance.to_json();
    let zk = |op: &str, e: ZkError| Error::Zk {
        op: format!("{op} {parent}/…{}", instance.id),
        source: e,
    };
    let mode = match instance.service_type {
        ServiceType::Dynamic => CreateMode::Ephemeral,
        ServiceType::DynamicSequential => CreateMode::EphemeralSequential,
        ServiceType::Static | ServiceType::Permanent => {
            return create_persistent(client, &parent, instance, &data, deadline)
                .await
                .map_err(|e| zk("create", e));
        }
    };
    create_protected(client, &parent, &instance.id, &data, mode, deadline)
        .await
        .map_err(|e| zk("create", e))
}

/// Curator's way for persistent instances: `/{base}/{service}/{id}`; an existing node is
/// deleted and made again, so watchers fire.
async fn create_persistent(
    client: &Client,
    parent: &str,
    instance: &ServiceInstance,
    data: &[u8],
    deadline: Instant,
) -> Result<String, ZkError> {
    let node = format!("{parent}/{}", instance.id);
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    for _ in 0..3 {
        match retry_lost(deadline, || client.create(&node, data, &options)).await {
            Ok(_) => return Ok(node),
            Err(ZkError::NodeExists) => {
                match retry_lost(deadline, || client.delete(&node, None)).await {
                    Ok(()) | Err(ZkError::NoNode) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(ZkError::NoNode) => make_parents(client, parent).await?,
            Err(e) => return Err(e),
        }
    }
    Err(ZkError::NodeExists)
}

/// What the keeper waits for.
enum Event {
    Command(Option<Command>),
    State(SessionState),
    Reconnected(Result<(Client, String), Error>),
}

/// The background task that keeps the instance registered.
struct Keeper {
    config: ZkConfig,
    path: ServicePath,
    instance: Arc<Mutex<ServiceInstance>>,
    client: Option<Client>,
    states: Option<StateWatcher>,
    /// The node of the current session.
    node: Option<String>,
    /// A node of an ended session, deleted once a new session is up.
    stale: Option<String>,
    registered: watch::Sender<Option<Registered>>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Keeper {
    async fn run(mut self) {
        let mut pause = Duration::from_millis(100);
        loop {
            let event = match self.states.as_mut() {
                Some(states) => tokio::select! {
                    cmd = self.commands.recv() => Event::Command(cmd),
                    state = states.changed() => Event::State(state),
                },
                None => tokio::select! {
                    cmd = self.commands.recv() => Event::Command(cmd),
                    r = reconnect(&self.config, &self.path, &self.instance, pause) => Event::Reconnected(r),
                },
            };
            match event {
                Event::Command(cmd) => {
                    if self.command(cmd).await {
                        return;
                    }
                }
                Event::State(state) => self.state_changed(state).await,
                Event::Reconnected(Ok((client, node))) => {
                    pause = Duration::from_millis(100);
                    self.registered_again(client, node).await;
                }
                Event::Reconnected(Err(e)) => {
                    tracing::warn!(path = %self.path, "cannot register again yet: {e}");
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Handles a command; true when the task should end.
    async fn command(&mut self, cmd: Option<Command>) -> bool {
        match cmd {
            None => true,
            Some(Command::Update(instance, reply)) => {
                let _ = reply.send(self.update(instance).await);
                false
            }
            Some(Command::Drain(reply)) => {
                let _ = reply.send(self.drain().await);
                true
            }
        }
    }

    async fn update(&mut self, mut instance: ServiceInstance) -> Result<(), Error> {
        let old = common::sync::lock(&self.instance).clone();
        if instance.id != old.id {
            return Err(Error::Config(format!(
                "update: the instance id must stay `{}`, got `{}`",
                old.id, instance.id
            )));
        }
        instance.name = old.name;
        *common::sync::lock(&self.instance) = instance.clone();
        // Without a session the new data goes in with the next registration.
        let (Some(client), Some(node)) = (&self.client, &self.node) else {
            return Ok(());
        };
        let deadline = Instant::now() + self.config.connect_timeout;
        let data = instance.to_json();
        retry_lost(deadline, || client.set_data(node, &data, None))
            .await
            .map(|_| ())
            .map_err(|e| Error::Zk {
                op: format!("set data of {node}"),
                source: e,
            })
    }

    async fn drain(&mut self) -> Result<(), Error> {
        let keep = common::sync::lock(&self.instance).service_type == ServiceType::Permanent;
        let result = match (&self.client, &self.node) {
            (Some(client), Some(node)) if !keep => {
                let deadline = Instant::now() + self.config.connect_timeout;
                match retry_lost(deadline, || client.delete(node, None)).await {
                    Ok(()) | Err(ZkError::NoNode) => {
                        tracing::info!(node = %node, "deregistered");
                        Ok(())
                    }
                    Err(e) => Err(Error::Zk {
                        op: format!("delete {node}"),
                        source: e,
                    }),
                }
            }
            _ => Ok(()),
        };
        // Dropping the last client closes the session (and its ephemeral nodes with it).
        self.client = None;
        self.states = None;
        self.registered.send_replace(None);
        result
    }

    async fn state_changed(&mut self, state: SessionState) {
        match state {
            SessionState::SyncConnected => self.check_node().await,
            s if s.is_terminated() => {
                tracing::warn!(path = %self.path, state = ?s, "ZooKeeper session ended; registering again");
                self.stale = self.node.take();
                self.client = None;
                self.states = None;
                self.registered.send_replace(None);
            }
            _ => {}
        }
    }

    /// After a reconnect within the session: the node should still be there.
    async fn check_node(&mut self) {
        let (Some(client), Some(node)) = (&self.client, &self.node) else {
            return;
        };
        let deadline = Instant::now() + self.config.connect_timeout;
        match retry_lost(deadline, || client.check_stat(node)).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(node = %node, "the registration's node was deleted; registering again");
                let instance = common::sync::lock(&self.instance).clone();
                match register(client, &self.path, &instance, deadline).await {
                    Ok(node) => {
                        self.registered.send_replace(Some(Registered {
                            path: node.clone(),
                            session: client.session_id().0,
                        }));
                        self.node = Some(node);
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            }
            Err(e) if ends_session(&e) => {}
            Err(e) => tracing::warn!(node = %node, "cannot check the registration: {e}"),
        }
    }

    async fn registered_again(&mut self, client: Client, node: String) {
        tracing::info!(node = %node, "registered again in a new session");
        if let Some(stale) = self.stale.take() {
            let deadline = Instant::now() + self.config.connect_timeout;
            match retry_lost(deadline, || client.delete(&stale, None)).await {
                Ok(()) => tracing::info!(node = %stale, "deleted the old session's node"),
                Err(ZkError::NoNode) => {}
                Err(e) => {
                    tracing::warn!(node = %stale, "cannot delete the old session's node: {e}")
                }
            }
        }
        self.registered.send_replace(Some(Registered {
            path: node.clone(),
            session: client.session_id().0,
        }));
        self.node = Some(node);
        self.states = Some(client.state_watcher());
        self.client = Some(client);
    }
}

/// After `pause`: a new session and the instance registered in it.
async fn reconnect(
    config: &ZkConfig,
    path: &ServicePath,
    instance: &Mutex<ServiceInstance>,
    pause: Duration,
) -> Result<(Client, String), Error> {
    tokio::time::sleep(pause).await;
    let client = connect(config).await?;
    let instance = common::sync::lock(instance).clone();
    let deadline = Instant::now() + config.connect_timeout;
    let node = register(&client, path, &instance, deadline).await?;
    Ok((client, node))
}
