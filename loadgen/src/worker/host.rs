//! What a worker's heartbeat says about its process, as Locust's workers read it with psutil:
//! CPU use since the last heartbeat in percent of one core (`/proc/self/stat`, user + system
//! time) and resident memory in bytes (`VmRSS` in `/proc/self/status`). Shard processes are
//! not included.

use std::time::Instant;

/// Linux reports process times in USER_HZ ticks, fixed at 100 per second for user space.
const TICKS_PER_S: f64 = 100.0;

/// CPU use between calls.
#[derive(Debug)]
pub struct CpuMeter {
    last: Option<(Instant, u64)>,
}

impl CpuMeter {
    /// A meter whose first reading covers the time since now.
    pub fn new() -> CpuMeter {
        CpuMeter {
            last: cpu_ticks().map(|t| (Instant::now(), t)),
        }
    }

    /// Percent of one core used since the last reading (0 when unknown).
    pub fn percent(&mut self) -> f64 {
        let Some(now_ticks) = cpu_ticks() else {
            return 0.0;
        };
        let now = Instant::now();
        let out = match self.last {
            Some((at, ticks)) => {
                let wall = now.duration_since(at).as_secs_f64();
                if wall > 0.0 {
                    (now_ticks.saturating_sub(ticks) as f64 / TICKS_PER_S) / wall * 100.0
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, now_ticks));
        out
    }
}

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter::new()
    }
}

/// utime + stime of this process, in ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of this process, bytes (0 when unknown).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_has_memory_and_uses_cpu() {
        assert!(rss_bytes() > 1024 * 1024);
        let mut m = CpuMeter::new();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 150 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let p = m.percent();
        assert!(p > 10.0 && p < 400.0, "{p}");
    }
}
