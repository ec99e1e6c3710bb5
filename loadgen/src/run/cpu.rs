//! The generator's own CPU: this process and its shard processes, sampled each second from
//! `/proc/PID/stat` (user + system time, in the kernel's 100 Hz ticks), as a share of the
//! cores the process may run on. When it nears 100 % the harness, not the target, is the limit
//! (`reports::saturation`).

use std::time::Instant;

/// USER_HZ: the unit of `/proc/PID/stat`'s times on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// Samples the CPU time of a set of processes.
#[derive(Debug)]
pub struct CpuMeter {
    cores: f64,
    last: Option<(Instant, u64)>,
}

impl CpuMeter {
    /// A meter for this machine's cores.
    pub fn new() -> CpuMeter {
        CpuMeter {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            last: None,
        }
    }

    /// The share of all cores (0–100 %) that `pids` (and this process) used since the last
    /// sample; `None` on the first sample or where `/proc` cannot be read.
    pub fn sample(&mut self, pids: &[u32]) -> Option<u64> {
        let now = Instant::now();
        let ticks = std::iter::once(std::process::id())
            .chain(pids.iter().copied())
            .filter_map(ticks_of)
            .sum::<u64>();
        let (then, before) = self.last.replace((now, ticks))?;
        let wall = now.duration_since(then).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let used = ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND;
        Some((used / wall / self.cores * 100.0).round().clamp(0.0, 100.0) as u64)
    }
}

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter::new()
    }
}

/// User + system ticks of process `pid`.
fn ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state is field 3, utime field 14, stime field 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_shows() {
        let mut m = CpuMeter::new();
        assert_eq!(m.sample(&[]), None);
        let end = Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < end {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let share = m.sample(&[]).unwrap();
        assert!(share > 0 && share <= 100, "{share}");
    }
}
