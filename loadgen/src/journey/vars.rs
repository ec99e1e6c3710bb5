//! The variables of one running user or worker: values set by `let` and `capture`, the
//! current row of each data feeder, and the run's globals (`base_url`), as templates read
//! them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::plan::Feeders;
use crate::scenario::template::Scope;

/// The variables of one running user or worker.
#[derive(Debug, Clone)]
pub struct Vars {
    globals: Arc<HashMap<String, String>>,
    local: HashMap<String, String>,
    iteration: u64,
    user_id: u64,
}

impl Vars {
    /// No variables yet but `globals`, for user or worker `user_id`.
    pub fn new(globals: Arc<HashMap<String, String>>, user_id: u64) -> Vars {
        Vars {
            globals,
            local: HashMap::new(),
            iteration: 0,
            user_id,
        }
    }

    /// Counts the next iteration (`{{iteration}}`).
    pub fn next_iteration(&mut self) {
        self.iteration += 1;
    }

    /// Sets a variable.
    pub fn set(&mut self, name: &str, value: String) {
        self.local.insert(name.to_string(), value);
    }

    /// Unsets a variable.
    pub fn unset(&mut self, name: &str) {
        self.local.remove(name);
    }

    /// Takes the next row of every feeder.
    pub fn fill(&mut self, feeders: &Feeders) {
        feeders.next_rows(|name, value| self.set(name, value.to_string()));
    }
}

impl Scope for Vars {
    fn var(&self, name: &str) -> Option<&str> {
        self.local
            .get(name)
            .or_else(|| self.globals.get(name))
            .map(String::as_str)
    }
    fn iteration(&self) -> u64 {
        self.iteration
    }
    fn user_id(&self) -> u64 {
        self.user_id
    }
}
