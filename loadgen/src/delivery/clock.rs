//! The clock delivery tracking runs on: wall-clock Unix nanoseconds, because a push's send
//! time is taken in the sender's process and its receipt in a shard process, and the run's
//! origin as an `Instant` in each process, from its wall-clock start.

use std::time::{Duration, Instant};

pub use common::clock::unix_ns;

/// The run's origin as a local instant, from its wall-clock start (Unix ns).
pub fn origin_from_unix(origin_unix_ns: u64) -> Instant {
    let now = Instant::now();
    let ago = Duration::from_nanos(unix_ns().saturating_sub(origin_unix_ns));
    now.checked_sub(ago).unwrap_or(now)
}

/// The wall-clock time (Unix ns) of the local instant `origin`.
pub fn unix_of(origin: Instant) -> u64 {
    unix_ns().saturating_sub(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
}
