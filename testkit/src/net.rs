//! Loopback addresses for outside servers that must be given a port up front (nginx, ZooKeeper,
//! mosquitto): picking a free port and handing it to a server races with every other test
//! that does the same on 127.0.0.1. Each call here returns an address of its own in
//! 127.100.0.0 – 127.254.255.254, never handed out twice by one process and spread over
//! processes by their pid, so no other test binds it; a port on it that was free a moment ago
//! stays free. (The swarm's source addresses live in 127.0.x.y; the servers under test bind
//! 127.0.0.1.) Servers our own binaries run bind port 0 and announce the port instead.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback address no other caller of this function in any process gets (for the life of
/// the test run).
pub fn private_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    // 155 × 256 second octets × third octets; the pid picks a block, the counter walks it.
    let block = pid % (155 * 256);
    let (b, c) = (100 + block / 256, block % 256);
    let d = 1 + (n % 254);
    // Past 254 addresses in one process, move to the next block (wrapping within the range).
    let shift = n / 254;
    let c = (c + shift) % 256;
    Ipv4Addr::new(127, b as u8, c as u8, d as u8)
}

/// An address on a [`private_ip`] with a port the kernel reports free: give it to a server
/// that cannot bind port 0 itself.
pub fn private_addr() -> SocketAddr {
    let ip = private_ip();
    let port = TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}"));
    SocketAddr::from((ip, port))
}

/// A listener already bound on 127.0.0.1 port 0: for servers inside the test process, which
/// take the listener itself (no pick-then-bind gap at all).
pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_bindable() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..600 {
            let ip = private_ip();
            assert!(ip.is_loopback() && ip.octets()[1] >= 100, "{ip}");
            assert!(seen.insert(ip), "{ip} twice");
        }
        let a = private_addr();
        TcpListener::bind(a).unwrap();
    }
}
