//! Sockets for the swarm and other long-lived clients: the process's open-file limit,
//! planned loopback source addresses (`127.0.x.y`, bound with `IP_BIND_ADDRESS_NO_PORT` so
//! `connect()` picks the port per destination), resolving an endpoint, and connecting one
//! device.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::endpoint::Endpoint;
use tokio::net::{TcpSocket, TcpStream};

/// Raises the soft open-file limit to the hard one; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The socket address of `endpoint`: an IP literal as it is, a name through the resolver.
pub async fn resolve(endpoint: &Endpoint) -> io::Result<SocketAddr> {
    if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, endpoint.port));
    }
    tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no address", endpoint.host),
            )
        })
}

/// The `n`-th loopback source address: 127.0.0.1, 127.0.0.2, … 127.0.0.254, 127.0.1.1, …
pub fn source_address(n: u32) -> Ipv4Addr {
    let (hi, lo) = (n / 254, n % 254);
    Ipv4Addr::new(127, (hi >> 8) as u8, hi as u8, (lo + 1) as u8)
}

/// Connects to `dst`, from `source` when given (only used for loopback destinations: a
/// 127.x source cannot reach anything else). Nagle is off: heartbeats and acks are small.
pub async fn connect(dst: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = match dst {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let (Some(src), IpAddr::V4(d)) = (source, dst.ip()) {
        if d.is_loopback() {
            // Without this, bind() reserves a port for the source address alone, and only
            // half the range (odd ports) is handed out to bound sockets.
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpBindAddressNoPort,
                &true,
            )
            .map_err(io::Error::from)?;
            socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
        }
    }
    let stream = socket.connect(dst).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_count_up_from_127_0_0_1() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_address(253), Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(source_address(254), Ipv4Addr::new(127, 0, 1, 1));
    }

    #[tokio::test]
    async fn connects_from_a_planned_source() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dst = listener.local_addr().unwrap();
        let src = source_address(6);
        let client = connect(dst, Some(src)).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), IpAddr::V4(src));
        assert_eq!(client.local_addr().unwrap().ip(), IpAddr::V4(src));
    }
}
