//! Wall-clock time as Unix nanoseconds: push send times cross processes and machines
//! (senders stamp them, devices in other processes read them), so they are wall-clock, not
//! `Instant`s.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    unix_ns() / 1_000_000
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_after_2024_and_consistent() {
        let ns = super::unix_ns();
        assert!(ns > 1_700_000_000_000_000_000, "{ns}");
        assert!(super::unix_ms() >= ns / 1_000_000);
    }
}
