//! The link's two ends: a TUN device per side, made inside that side's network namespace so
//! the namespace's kernel routes the side's subnet into it. The ioctls that make and address
//! a TUN device are unsafe code; the `tun-rs` crate does them (maintained, Apache-2.0, used
//! without its optional address-management dependencies), so this workspace keeps
//! `unsafe_code = "deny"`. Entering a namespace is `setns(2)` through `nix`'s safe wrapper,
//! on a thread of its own: a network namespace is a per-thread attribute, and a TUN device
//! (like a socket) belongs to the namespace of the thread that made it, wherever it is used
//! from afterwards.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use tun_rs::{DeviceBuilder, SyncDevice};

/// One end of the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// The network namespace (a file such as `/run/netns/NAME`); `None`: this process's.
    pub netns: Option<PathBuf>,
    /// The TUN device's name (15 bytes at most).
    pub dev: String,
    /// The side's address on the device.
    pub addr: Ipv4Addr,
    /// The prefix length of the subnet routed into the device.
    pub prefix: u8,
}

impl Side {
    /// A side in namespace `netns` (a name under `/run/netns`, or a path) with address
    /// `addr/prefix` on device `dev`.
    pub fn new(netns: Option<&str>, dev: &str, addr: Ipv4Addr, prefix: u8) -> Side {
        Side {
            netns: netns.map(netns_path),
            dev: dev.to_string(),
            addr,
            prefix,
        }
    }

    /// `NAMESPACE` and the address, for messages.
    pub fn describe(&self) -> String {
        let ns = self
            .netns
            .as_ref()
            .map_or_else(|| "this namespace".into(), |p| p.display().to_string());
        format!("{}/{} on {} in {ns}", self.addr, self.prefix, self.dev)
    }
}

/// `/run/netns/NAME` for a bare name (as `ip netns add NAME` makes it), else the path as is.
pub fn netns_path(netns: &str) -> PathBuf {
    if netns.contains('/') {
        PathBuf::from(netns)
    } else {
        PathBuf::from("/run/netns").join(netns)
    }
}

/// Makes, addresses and brings up `side`'s TUN device in its namespace; non-blocking, so
/// reads can be interrupted.
pub(crate) fn open(side: &Side) -> io::Result<SyncDevice> {
    let side = side.clone();
    let opener = std::thread::Builder::new()
        .name(format!("link-open-{}", side.dev))
        .spawn(move || -> io::Result<SyncDevice> {
            if let Some(path) = &side.netns {
                let ns = File::open(path).map_err(|e| with_context(e, path.display()))?;
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    with_context(e.into(), format_args!("setns {}", path.display()))
                })?;
            }
            let device = DeviceBuilder::new()
                .name(&side.dev)
                .ipv4(side.addr, side.prefix, None)
                .mtu(1500)
                .tx_queue_len(1000)
                .packet_information(false)
                .build_sync()
                .map_err(|e| with_context(e, format_args!("TUN device {}", side.dev)))?;
            device.set_nonblocking(true)?;
            Ok(device)
        })?;
    opener
        .join()
        .map_err(|_| io::Error::other("the thread opening the TUN device panicked"))?
}

fn with_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
