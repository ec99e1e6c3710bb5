//! The run's stop switch: the deadline, Ctrl-C and SIGTERM all pull it; every engine watches it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A cloneable stop switch.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    notify: Notify,
    reason: std::sync::Mutex<Option<String>>,
}

impl Stop {
    /// A switch not yet pulled.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Pulls the switch (the first reason is kept). Safe from any thread.
    pub fn stop(&self, reason: &str) {
        if let Ok(mut r) = self.inner.reason.lock() {
            r.get_or_insert_with(|| reason.to_string());
        }
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// True once pulled.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Why the run stopped, if it did.
    pub fn reason(&self) -> Option<String> {
        self.inner.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Resolves once the switch is pulled.
    pub async fn wait(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}
