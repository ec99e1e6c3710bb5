//! Closed-loop users whose number is set while they run: each user runs its sender journey's
//! iterations one after another ([`journey::run_iteration`], then the journey's think time)
//! over a connection of its own. A Locust master sets the count of each user class at run
//! time, up and down; goose fixes its user count when the attack starts, so the worker runs
//! its users here, on the open-rate driver's connections ([`super::open::user_transport`]).
//!
//! A user told to stop finishes the request in flight (its outcome is recorded) and skips the
//! rest of its iteration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reports::Recorders;

use crate::engine::http::Tls;
use crate::journey::{self, Journey};
use crate::stop::Stop;

/// The users of one sender journey.
#[derive(Debug)]
pub struct Users {
    journey: Arc<Journey>,
    http2: bool,
    tls: Tls,
    recorders: Arc<Recorders>,
    /// The running users' stop switches, oldest first (the newest stop first).
    running: Vec<Stop>,
    next_id: u64,
    tasks: tokio::task::JoinSet<()>,
}

impl Users {
    /// No users yet of `journey`, recording into `recorders`.
    pub fn new(journey: Arc<Journey>, http2: bool, tls: Tls, recorders: Arc<Recorders>) -> Users {
        Users {
            journey,
            http2,
            tls,
            recorders,
            running: Vec::new(),
            next_id: 1,
            tasks: tokio::task::JoinSet::new(),
        }
    }

    /// Users running now.
    pub fn count(&self) -> usize {
        self.running.len()
    }

    /// Starts or stops users until `n` run.
    pub fn set(&mut self, n: usize) {
        while self.running.len() > n {
            if let Some(stop) = self.running.pop() {
                stop.stop(crate::stop::StopReason::Finished);
            }
        }
        while self.running.len() < n {
            let stop = Stop::new();
            let id = self.next_id;
            self.next_id += 1;
            let transport = super::open::user_transport(self.http2, &self.tls);
            self.tasks.spawn(user(
                self.journey.clone(),
                transport,
                id,
                self.recorders.clone(),
                stop.clone(),
            ));
            self.running.push(stop);
        }
    }

    /// Stops every user and waits up to `grace` for their requests in flight; the rest are
    /// abandoned.
    pub async fn finish(mut self, grace: Duration) {
        self.set(0);
        let end = tokio::time::Instant::now() + grace;
        while tokio::time::timeout_at(end, self.tasks.join_next())
            .await
            .is_ok_and(|r| r.is_some())
        {}
        self.tasks.abort_all();
    }
}

async fn user(
    journey: Arc<Journey>,
    mut transport: impl journey::Transport,
    id: u64,
    recorders: Arc<Recorders>,
    stop: Stop,
) {
    let mut vars = journey.vars(id);
    while !stop.is_stopped() {
        let recorder = recorders.for_thread();
        journey::run_iteration(
            &journey,
            &mut transport,
            &mut vars,
            &recorder,
            Instant::now(),
            &stop,
        )
        .await;
        journey::think(journey.sender.think.as_ref(), &stop).await;
    }
}
