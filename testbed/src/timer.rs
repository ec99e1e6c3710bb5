//! A sub-millisecond timer for injected latency.
//!
//! Tokio's timer rounds every deadline up to its next 1 ms tick and then waits in epoll with
//! millisecond granularity, so a 5 ms `sleep_until` fires anywhere between 5 and ~7 ms: far too
//! coarse for a reference whose latency is the truth a load tester is checked against. Here one
//! background thread keeps the pending deadlines in a heap and waits on a condition variable,
//! whose timeout the kernel honours to within tens of microseconds, then wakes the waiting task
//! through a oneshot channel. Tasks never block a runtime thread; the lock is held only to push
//! or pop heap entries.
//!
//! Waking an idle thread still costs time (on a virtual machine, a few hundred microseconds),
//! so the timer learns that wake-up latency (a moving average, capped at [`MAX_LEAD`]) and wakes
//! tasks that much early; a task woken before its deadline yields to the runtime until the
//! deadline has passed. Nothing is ever answered early.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The most a task is woken ahead of its deadline; beyond this the machine is overloaded and
/// yielding would only burn CPU.
const MAX_LEAD: Duration = Duration::from_micros(500);

/// Waits until `deadline` with sub-millisecond precision, never returning before it.
pub(crate) async fn sleep_until(deadline: Instant) {
    if deadline <= Instant::now() {
        return;
    }
    match timer() {
        Some(timer) => {
            let wake_at = deadline.checked_sub(timer.lead()).unwrap_or(deadline);
            if timer.schedule(wake_at).await.is_ok() {
                timer.learn(Instant::now().saturating_duration_since(wake_at));
            } else {
                // The timer thread is gone (it never exits): fall back rather than spin.
                tokio::time::sleep_until(deadline.into()).await;
            }
            while Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
        }
        None => tokio::time::sleep_until(deadline.into()).await,
    }
}

/// The process-wide timer, started on first use; `None` if its thread could not be spawned.
fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<Arc<Timer>>> = OnceLock::new();
    TIMER
        .get_or_init(|| {
            let timer = Arc::new(Timer::default());
            let runner = Arc::clone(&timer);
            let spawned = std::thread::Builder::new()
                .name("testbed-timer".into())
                .spawn(move || runner.run());
            match spawned {
                Ok(_) => Some(timer),
                Err(error) => {
                    tracing::warn!(%error, "precise timer unavailable; falling back to tokio's timer");
                    None
                }
            }
        })
        .as_deref()
}

#[derive(Default)]
struct Timer {
    queue: Mutex<Queue>,
    changed: Condvar,
    /// Moving average of the wake-up latency, in nanoseconds.
    lead_ns: AtomicU64,
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Entry>,
}

struct Entry {
    deadline: Instant,
    wake: oneshot::Sender<()>,
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        common::sync::lock(&self.queue)
    }

    fn lead(&self) -> Duration {
        Duration::from_nanos(self.lead_ns.load(Relaxed))
    }

    /// Folds one observed wake-up latency into the average (weight 1/8). Concurrent updates may
    /// lose a sample, which an average can afford.
    fn learn(&self, latency: Duration) {
        let sample = latency.min(MAX_LEAD).as_nanos() as i64;
        let lead = self.lead_ns.load(Relaxed) as i64;
        let next = lead + (sample - lead) / 8;
        self.lead_ns.store(next.max(0) as u64, Relaxed);
    }

    fn schedule(&self, deadline: Instant) -> oneshot::Receiver<()> {
        let (wake, woken) = oneshot::channel();
        let mut queue = self.lock();
        let earliest = queue
            .heap
            .peek()
            .is_none_or(|next| deadline < next.deadline);
        queue.heap.push(Entry { deadline, wake });
        drop(queue);
        if earliest {
            self.changed.notify_one();
        }
        woken
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut queue = self.lock();
        loop {
            let now = Instant::now();
            while queue.heap.peek().is_some_and(|next| next.deadline <= now) {
                due.extend(queue.heap.pop());
            }
            if !due.is_empty() {
                // Wake outside the lock so that scheduling is never held up by wake-ups.
                drop(queue);
                for entry in due.drain(..) {
                    // The receiver is gone when the request was cancelled: nothing to wake.
                    let _ = entry.wake.send(());
                }
                queue = self.lock();
                continue;
            }
            queue = match queue.heap.peek().map(|next| next.deadline - now) {
                Some(wait) => {
                    self.changed
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

// The heap is a max-heap: order entries so that the earliest deadline is the greatest.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.deadline.cmp(&self.deadline)
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}

impl Eq for Entry {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_each_sleeper_on_time_and_never_early() {
        let start = Instant::now();
        let sleepers: Vec<_> = [30u64, 10, 20, 0, 10]
            .into_iter()
            .map(|ms| {
                tokio::spawn(async move {
                    let deadline = start + Duration::from_millis(ms);
                    sleep_until(deadline).await;
                    Instant::now().checked_duration_since(deadline)
                })
            })
            .collect();
        for sleeper in sleepers {
            let lateness = sleeper.await.expect("sleeper task").expect("woke early");
            assert!(
                lateness < Duration::from_millis(50),
                "woke {lateness:?} late"
            );
        }
    }
}
