//! The per-task recorders of a run and their harvest: engines record into their own
//! [`reports::Recorder`] (an uncontended lock each), and the collector takes every recorder's
//! delta about once a second for live progress and the final record.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use reports::Recorder;

/// One task's recorder.
pub type RecorderHandle = Arc<Mutex<Recorder>>;

/// Every recorder of the run.
#[derive(Debug)]
pub struct Recorders {
    origin: Instant,
    handles: Mutex<Vec<RecorderHandle>>,
}

impl Recorders {
    /// Recorders timed from `origin` (the run's start).
    pub fn new(origin: Instant) -> Recorders {
        Recorders {
            origin,
            handles: Mutex::new(Vec::new()),
        }
    }

    /// The run's start.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// A new recorder for one task.
    pub fn handle(&self) -> RecorderHandle {
        let h = Arc::new(Mutex::new(Recorder::new(self.origin)));
        common::sync::lock(&self.handles).push(h.clone());
        h
    }

    /// The recorder of the calling thread (made on first use). Tasks record through their
    /// thread's recorder between awaits, so thousands of goose users cost one recorder per
    /// runtime thread, not one each.
    pub fn for_thread(&self) -> RecorderHandle {
        thread_local! {
            static MINE: std::cell::RefCell<Option<(usize, RecorderHandle)>> = const { std::cell::RefCell::new(None) };
        }
        let id = self as *const Recorders as usize;
        MINE.with(|m| {
            let mut m = m.borrow_mut();
            match &*m {
                Some((owner, h)) if *owner == id => h.clone(),
                _ => {
                    let h = self.handle();
                    *m = Some((id, h.clone()));
                    h
                }
            }
        })
    }

    /// Takes what every recorder holds since the last harvest.
    pub fn harvest(&self) -> Recorder {
        let handles: Vec<RecorderHandle> = common::sync::lock(&self.handles).clone();
        let mut all = Recorder::new(self.origin);
        for h in handles {
            let delta = common::sync::lock(&h).take();
            all.merge(delta);
        }
        all
    }
}
