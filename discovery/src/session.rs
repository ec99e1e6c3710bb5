//! ZooKeeper sessions with bounded waits: connecting (an unreachable ensemble is one error
//! line after `connect_timeout`, never a hang), retrying a call across a lost connection within
//! its session, and making the persistent parents of a path.
//!
//! A `zookeeper_client::Client` is one session: it reconnects by itself while the session
//! lives (calls in flight fail with `ConnectionLoss`), and ends for good when the session
//! expires. It expires a session on its own when no server answered for 7/5 of the negotiated
//! timeout, so a partitioned client learns of the expiry even before a server tells it.
//! Registrations and watches therefore make a new client after an expiry.

use std::future::Future;
use std::time::{Duration, Instant};

use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, SessionState};

use crate::{Error, ZkConfig};

/// Connects a new session, within `config.connect_timeout`.
pub(crate) async fn connect(config: &ZkConfig) -> Result<Client, Error> {
    config.check()?;
    let unreachable = |why: String| Error::Unreachable {
        ensemble: config.ensemble.clone(),
        within: config.connect_timeout,
        why,
    };
    let connect = Client::connector()
        .with_session_timeout(config.session_timeout)
        .connect(&config.ensemble);
    match tokio::time::timeout(config.connect_timeout, connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(ZkError::BadArguments(why))) => Err(Error::Config(format!(
            "ensemble: `{}`: {why}",
            config.ensemble
        ))),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("no server accepted a session".into())),
    }
}

/// Whether a session error ends the session (a new client is needed).
pub(crate) fn ends_session(e: &ZkError) -> bool {
    matches!(
        e,
        ZkError::SessionExpired
            | ZkError::ClientClosed
            | ZkError::AuthFailed
            | ZkError::SessionMoved
    )
}

/// Runs `op` until it does not fail with `ConnectionLoss` (the client reconnects meanwhile), or
/// until `deadline`, after which the loss is returned.
pub(crate) async fn retry_lost<T, F, Fut>(deadline: Instant, mut op: F) -> Result<T, ZkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ZkError>>,
{
    let mut pause = Duration::from_millis(20);
    loop {
        match op().await {
            Err(ZkError::ConnectionLoss) if Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Makes `path` and its missing ancestors as container nodes, as Curator's
/// `creatingParentContainersIfNeeded` does (ZooKeeper removes an empty container by itself).
pub(crate) async fn make_parents(client: &Client, path: &str) -> Result<(), ZkError> {
    let options = CreateMode::Container.with_acls(Acls::anyone_all());
    match client.mkdir(path, &options).await {
        // Servers before 3.5 know no containers: persistent nodes then.
        Err(ZkError::Unimplemented) => {
            let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
            client.mkdir(path, &options).await
        }
        other => other,
    }
}

/// Waits until the session is connected again (true) or has ended (false).
pub(crate) async fn wait_connected(client: &Client) -> bool {
    let mut states = client.state_watcher();
    loop {
        match states.peek_state() {
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => return true,
            s if s.is_terminated() => return false,
            _ => {
                states.changed().await;
            }
        }
    }
}
