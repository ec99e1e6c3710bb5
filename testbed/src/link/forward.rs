//! Moving real packets: per direction, a reader thread takes each packet from the source TUN
//! device, asks the direction's [`Line`] for a verdict and puts kept packets on a delay queue;
//! a writer thread sleeps until the earliest packet is due and writes it to the destination
//! device. Threads (not async tasks) so a packet leaves within tens of microseconds of its
//! time rather than on a millisecond timer tick.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tun_rs::{InterruptEvent, SyncDevice};

use super::line::{Line, Verdict};
use super::Shared;
use crate::link::profile::Direction;

/// Packets waiting for their delivery time, earliest first (ties in arrival order).
#[derive(Default)]
pub(crate) struct DelayQueue {
    state: Mutex<Waiting>,
    changed: Condvar,
}

#[derive(Default)]
struct Waiting {
    heap: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    next: u64,
    closed: bool,
}

impl DelayQueue {
    fn push(&self, at: Instant, packet: Vec<u8>) {
        let mut w = common::sync::lock(&self.state);
        let seq = w.next;
        w.next += 1;
        let earliest = w.heap.peek().is_none_or(|Reverse((first, ..))| at < *first);
        w.heap.push(Reverse((at, seq, packet)));
        drop(w);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// The next packet once it is due; `None` once closed.
    fn pop_due(&self) -> Option<Vec<u8>> {
        let mut w = common::sync::lock(&self.state);
        loop {
            if w.closed {
                return None;
            }
            let now = Instant::now();
            let wait = match w.heap.peek() {
                Some(Reverse((at, ..))) if *at <= now => {
                    return w.heap.pop().map(|Reverse((.., packet))| packet);
                }
                Some(Reverse((at, ..))) => Some(*at - now),
                None => None,
            };
            w = match wait {
                Some(d) => {
                    self.changed
                        .wait_timeout(w, d)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.changed.wait(w).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    pub(crate) fn close(&self) {
        common::sync::lock(&self.state).closed = true;
        self.changed.notify_all();
    }
}

/// Reads packets from `from` until `stop` fires, and queues the ones the line keeps.
fn read(
    from: &SyncDevice,
    direction: Direction,
    shared: &Shared,
    queue: &DelayQueue,
    stop: &InterruptEvent,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = match from.recv_intr(&mut buf, stop) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(e) => {
                tracing::error!(error = %e, ?direction, "link: reading from the TUN device failed");
                return;
            }
        };
        let now = Instant::now();
        let cut = shared.is_cut(now);
        let verdict = lock_line(shared, direction).offer(now, n, cut);
        if let Verdict::Deliver(at) = verdict {
            queue.push(at, buf[..n].to_vec());
        }
    }
}

fn lock_line(shared: &Shared, direction: Direction) -> std::sync::MutexGuard<'_, Line> {
    common::sync::lock(match direction {
        Direction::Up => &shared.up,
        Direction::Down => &shared.down,
    })
}

/// Writes each queued packet to `to` when it is due, until the queue closes.
fn write(to: &SyncDevice, queue: &DelayQueue) {
    let mut failures = 0u64;
    while let Some(packet) = queue.pop_due() {
        // The kernel refuses a packet it cannot take (e.g. the device went down); the far
        // end's TCP sees that as loss, which is what it is.
        if let Err(e) = to.send(&packet) {
            failures += 1;
            if failures.is_power_of_two() {
                tracing::warn!(error = %e, failures, "link: writing to the TUN device failed");
            }
        }
    }
}

/// Starts the reader and writer threads of one direction.
pub(crate) fn spawn(
    from: Arc<SyncDevice>,
    to: Arc<SyncDevice>,
    direction: Direction,
    shared: Arc<Shared>,
    queue: Arc<DelayQueue>,
    stop: Arc<InterruptEvent>,
) -> std::io::Result<[std::thread::JoinHandle<()>; 2]> {
    let name = match direction {
        Direction::Up => "up",
        Direction::Down => "down",
    };
    let reader = {
        let queue = queue.clone();
        std::thread::Builder::new()
            .name(format!("link-{name}-in"))
            .spawn(move || read(&from, direction, &shared, &queue, &stop))?
    };
    let writer = std::thread::Builder::new()
        .name(format!("link-{name}-out"))
        .spawn(move || write(&to, &queue))?;
    Ok([reader, writer])
}
