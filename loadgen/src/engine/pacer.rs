//! The pacer every scheduled engine shares: a plain thread that sleeps until each item's
//! instant and hands it over then. A thread, not a Tokio timer: the timer wheel has 1 ms ticks,
//! and a late wake-up would be charged to the target as latency. The thread asks the kernel for
//! a 1 µs timer slack (instead of the default 50 µs), so a wake-up is typically within tens of
//! microseconds of its instant; what lateness remains is measured per item (`schedule_lag`).

use std::time::{Duration, Instant};

use crate::stop::Stop;

/// How long the pacer sleeps at a time before looking at the stop switch again.
const STEP: Duration = Duration::from_millis(50);

/// Starts a pacer thread named `name` running `body`; the caller joins it.
pub fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            // Best effort: without it wake-ups are up to ~50 µs later, and measured as lag.
            let _ = nix::sys::prctl::set_timerslack(1);
            body()
        })
}

/// Sleeps until `due` in steps of at most 50 ms, so a stop is seen; false when stopped.
pub fn sleep_until(due: Instant, stop: &Stop) -> bool {
    loop {
        if stop.is_stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(STEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_close_to_its_instant_and_sees_a_stop() {
        let stop = Stop::new();
        let lateness = spawn("pacer-test", move || {
            let mut worst = Duration::ZERO;
            for i in 1..=20u64 {
                let due = Instant::now() + Duration::from_micros(500 * i);
                assert!(sleep_until(due, &stop));
                worst = worst.max(Instant::now() - due);
            }
            worst
        })
        .unwrap()
        .join()
        .unwrap();
        // A bound a busy CI runner keeps; the benchmark measures the real figure.
        assert!(lateness < Duration::from_millis(50), "{lateness:?}");
        let stop = Stop::new();
        stop.stop(crate::stop::StopReason::Interrupted);
        assert!(!sleep_until(
            Instant::now() + Duration::from_secs(60),
            &stop
        ));
    }
}
