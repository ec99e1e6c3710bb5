//! The accept loop every testbed server shares: accept until told to stop, serve each
//! connection in its own task, then give open connections a grace period to finish.

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Accepts on `listener` until `stop` changes (or its sender is gone), spawning
/// `serve(stream)` for each connection; then closes the listener and waits up to `grace`
/// for the connections to end. Whatever is left when the grace runs out is aborted.
pub(crate) async fn accept_until_stopped<F, Fut>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    mut serve: F,
) where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // An error means the handle is gone: stop as well.
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream));
                }
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            remaining = connections.len(),
            "closing connections with requests in flight"
        );
    }
    // Dropping the set aborts whatever is left.
}
