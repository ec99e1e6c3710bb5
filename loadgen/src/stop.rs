//! The run's stop switch, in two steps every engine watches:
//!
//! 1. **stop** — no new work starts (the plan's bound, Ctrl-C or SIGTERM, a failed engine);
//!    what is in flight may finish during the run's grace;
//! 2. **cut** — what is still in flight ends now and is recorded as `unfinished` (after the
//!    grace, or at once on an interrupt), so nothing measured is lost and nothing waits for a
//!    target that does not answer.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::sync::lock;
use tokio::sync::Notify;

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The plan's bound (its `duration`, or its last stage) was reached.
    DurationReached,
    /// Every engine finished its work before the bound.
    Finished,
    /// The operator interrupted the run (SIGINT or SIGTERM).
    Interrupted,
    /// Something the run cannot go on without failed.
    Failed(String),
}

impl StopReason {
    /// True when the run ended before its plan did (the record is partial).
    pub fn is_early(&self) -> bool {
        matches!(self, StopReason::Interrupted | StopReason::Failed(_))
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::DurationReached => f.write_str("duration reached"),
            StopReason::Finished => f.write_str("every engine finished"),
            StopReason::Interrupted => f.write_str("interrupted (SIGINT or SIGTERM)"),
            StopReason::Failed(why) => f.write_str(why),
        }
    }
}

/// A cloneable stop switch.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    cut: AtomicBool,
    notify: Notify,
    cut_notify: Notify,
    reason: std::sync::Mutex<Option<StopReason>>,
}

impl Stop {
    /// A switch not yet pulled.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Pulls the switch (the first reason is kept). Safe from any thread.
    pub fn stop(&self, reason: StopReason) {
        lock(&self.inner.reason).get_or_insert(reason);
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Ends what is in flight now (and stops, if not yet stopped, for `reason`).
    pub fn cut(&self, reason: StopReason) {
        self.stop(reason);
        self.inner.cut.store(true, Ordering::SeqCst);
        self.inner.cut_notify.notify_waiters();
    }

    /// True once pulled.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// True once in-flight work must end.
    pub fn is_cut(&self) -> bool {
        self.inner.cut.load(Ordering::SeqCst)
    }

    /// Why the run stopped, if it did.
    pub fn reason(&self) -> Option<StopReason> {
        lock(&self.inner.reason).clone()
    }

    /// Resolves once the switch is pulled.
    pub async fn wait(&self) {
        wait_for(&self.inner.notify, || self.is_stopped()).await;
    }

    /// Resolves once in-flight work must end.
    pub async fn wait_cut(&self) {
        wait_for(&self.inner.cut_notify, || self.is_cut()).await;
    }
}

async fn wait_for(notify: &Notify, done: impl Fn() -> bool) {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_is_kept_and_a_cut_implies_a_stop() {
        let s = Stop::new();
        assert!(!s.is_stopped() && !s.is_cut());
        s.stop(StopReason::DurationReached);
        s.stop(StopReason::Interrupted);
        assert_eq!(s.reason(), Some(StopReason::DurationReached));
        assert!(!s.is_cut());
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.wait_cut().await })
        };
        s.cut(StopReason::Interrupted);
        waiter.await.unwrap();
        assert!(s.is_cut());
        assert!(!s.reason().unwrap().is_early());
        let t = Stop::new();
        t.cut(StopReason::Interrupted);
        assert!(t.is_stopped() && t.reason().unwrap().is_early());
    }
}
