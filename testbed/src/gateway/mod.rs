//! The reference push gateway, shaped like a real one: the HTTP API (an in-memory registry of
//! devices, users and topics, served over HTTP/1.1 and h2c on one port, with injectable faults)
//! is the center, which also answers the dispatcher (`GET /dispatch?user=U`) and routes
//! unicasts and broadcasts to the [`room`]s holding the devices' long connections (WebSocket
//! and length-prefixed TCP; protocol in `testbed/PROTOCOL.md`).
//!
//! [`spawn`] binds the listener, starts the rooms (in this process, or as room processes) and
//! serves in background Tokio tasks; the returned [`GatewayHandle`] reads the counters, changes
//! the faults and shuts the gateway down. The routes are in [`api`], the registry in `state`,
//! the faults in [`faults`], the routing to rooms in `center`, the control link to room
//! processes in `control`.

pub mod api;
mod center;
mod control;
pub mod faults;
pub mod room;
mod state;

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use center::RoomAddr;
pub use faults::{FaultConfig, FaultConfigError};
pub use room::{RoomCommand, RoomCounters, RoomsConfig};
pub use state::Stats;

use center::Center;
use faults::Faults;
use state::State;

/// How long [`GatewayHandle::shutdown`] lets in-flight requests finish before it drops their
/// connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How to start a gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Address to listen on; port 0 picks a free port (see [`GatewayHandle::addr`]).
    pub listen: SocketAddr,
    /// Faults in force from the start.
    pub faults: FaultConfig,
    /// The rooms holding device connections.
    pub rooms: RoomsConfig,
}

impl Default for GatewayConfig {
    /// A free port on 127.0.0.1, no faults, one in-process room.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            faults: FaultConfig::default(),
            rooms: RoomsConfig::default(),
        }
    }
}

/// What every connection of one gateway shares.
#[derive(Debug)]
pub(crate) struct Gateway {
    state: State,
    faults: Arc<Faults>,
    center: Center,
}

impl Gateway {
    /// Replaces the faults here and in every room process.
    fn set_faults(&self, config: FaultConfig) {
        self.faults.set(config);
        self.center.set_faults(self.faults.current());
    }

    /// Every counter, with fresh ones from the room processes.
    async fn stats(&self) -> Stats {
        self.state
            .stats()
            .with_rooms(self.center.counters().await, self.center.room_count())
    }
}

/// Binds `config.listen` and serves the gateway in background tasks on the current Tokio
/// runtime until the handle is shut down or dropped.
///
/// Fails with [`io::ErrorKind::InvalidInput`] when `config.faults` does not
/// [validate](FaultConfig::validate), and with the bind error when the address cannot be bound.
pub async fn spawn(config: GatewayConfig) -> io::Result<GatewayHandle> {
    config
        .faults
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let faults = Arc::new(Faults::new(config.faults));
    let center = Center::start(&config.rooms, &faults).await?;
    let gateway = Arc::new(Gateway {
        state: State::default(),
        faults,
        center,
    });
    let (shutdown, stop) = watch::channel(false);
    let server = tokio::spawn(serve(listener, Arc::clone(&gateway), stop));
    tracing::info!(%addr, "gateway listening");
    Ok(GatewayHandle {
        addr,
        gateway,
        shutdown,
        server: Some(server),
    })
}

/// A running gateway. Dropping it stops the gateway too, without waiting.
#[derive(Debug)]
pub struct GatewayHandle {
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl GatewayHandle {
    /// The address the gateway is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, with a loopback IP when the gateway listens on all interfaces.
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    }

    /// A snapshot of the gateway's counters; room processes' counters are their last report
    /// (at most ~250 ms old; [`fetch_stats`](Self::fetch_stats) asks them).
    pub fn stats(&self) -> Stats {
        self.gateway.state.stats().with_rooms(
            self.gateway.center.counters_now(),
            self.gateway.center.room_count(),
        )
    }

    /// The gateway's counters, asking every room process for its current ones (as
    /// `GET /stats` does).
    pub async fn fetch_stats(&self) -> Stats {
        self.gateway.stats().await
    }

    /// Where each room listens, in room order (what `/dispatch` hands out).
    pub fn room_addrs(&self) -> Vec<RoomAddr> {
        self.gateway.center.room_addrs()
    }

    /// The faults in force (`stall_ms` reads 0 once a stall window has ended).
    pub fn faults(&self) -> FaultConfig {
        self.gateway.faults.current()
    }

    /// Replaces the faults, as `POST /admin/faults` does. Out-of-range values are clamped to
    /// the nearest valid one (an invalid `error_status` becomes 503); check with
    /// [`FaultConfig::validate`] first to reject them instead.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.gateway.set_faults(faults);
    }

    /// Stops accepting connections, lets in-flight requests finish for up to a second, closes
    /// every connection (device connections with `shutdown`), stops the room processes and
    /// returns once the listener is closed.
    pub async fn shutdown(mut self) {
        self.gateway.center.shutdown().await;
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            if let Err(error) = server.await {
                tracing::warn!(%error, "gateway server task failed");
            }
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Accepts connections until told to stop, then drains them.
async fn serve(listener: TcpListener, gateway: Arc<Gateway>, stop: watch::Receiver<bool>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let connection_stop = stop.clone();
    crate::accept::accept_until_stopped(listener, stop, SHUTDOWN_GRACE, |stream| {
        serve_connection(
            stream,
            Arc::clone(&gateway),
            Arc::clone(&builder),
            connection_stop.clone(),
        )
    })
    .await;
}

/// Serves one connection (HTTP/1.1 with keep-alive, or h2c with prior knowledge) until it
/// closes or the gateway stops, in which case it finishes in-flight requests first.
async fn serve_connection(
    stream: TcpStream,
    gateway: Arc<Gateway>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
) {
    // Small responses must leave at once, not wait for Nagle's algorithm.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let service = service_fn(move |request| {
        let gateway = Arc::clone(&gateway);
        async move { Ok::<_, Infallible>(api::handle(gateway, request).await) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}
