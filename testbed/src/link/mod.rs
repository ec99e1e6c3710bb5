//! A user-space link emulator: two network namespaces (or a namespace and this one) joined by
//! a pair of TUN devices, with this process in between delaying, dropping, rate-capping and
//! cutting the packets that cross. The kernels on both sides see a real path: their TCP
//! measures the delay, retransmits the losses and backs off on the cap. It stands in for
//! `tc netem`, which this project's machines lack.
//!
//! - [`Profile`] says what the link does (the one-line form `rtt=180ms jitter=20ms loss=2%
//!   rate=20mbit`, or TOML), and is meant to describe weak device networks as well.
//! - [`line::Line`] is the per-direction model (cut, Gilbert–Elliott bursts, random loss,
//!   token bucket with a bounded queue, delay with jitter), free of I/O.
//! - [`Link::start`] opens the two TUN devices and forwards packets through the model in
//!   threads; the handle cuts and restores the link, swaps the profile and reads counters.
//! - [`control`] serves the same commands as text lines over TCP for `testbed link`.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use testbed::link::{Link, LinkConfig, Profile, Side};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // `ip netns add cn` and `ip netns add us` beforehand.
//! let link = Link::start(LinkConfig {
//!     a: Side::new(Some("cn"), "pbl", Ipv4Addr::new(198, 18, 0, 1), 24),
//!     b: Side::new(Some("us"), "pbl", Ipv4Addr::new(198, 18, 0, 2), 24),
//!     profile: Profile::parse("rtt=180ms jitter=10ms loss=2% rate=20mbit")?,
//!     seed: 1,
//! })?;
//! link.cut(Some(std::time::Duration::from_secs(5)));
//! println!("{}", serde_json::to_string(&link.stats())?);
//! # Ok(())
//! # }
//! ```

pub mod control;
mod forward;
pub mod line;
pub mod profile;
mod tun;
mod units;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tun_rs::InterruptEvent;

use forward::DelayQueue;
use line::{Counters, Line};
pub use profile::{Direction, Profile, ProfileError};
pub use tun::{netns_path, Side};

/// How to start a link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Side A (the near side: `up` is from A to B).
    pub a: Side,
    /// Side B.
    pub b: Side,
    /// What the link does.
    pub profile: Profile,
    /// Seed of the loss and jitter draws (each direction derives its own).
    pub seed: u64,
}

/// The link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A TUN device could not be made in its namespace.
    #[error("cannot open side {side} ({what}): {error}")]
    Open {
        /// `A` or `B`.
        side: char,
        /// The side, described.
        what: String,
        /// The cause (in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start the link's threads: {0}")]
    Threads(std::io::Error),
}

/// Counters and state, as `stats` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// From side A to side B.
    pub up: Counters,
    /// From side B to side A.
    pub down: Counters,
    /// Whether the link is cut now.
    pub cut: bool,
    /// The profile in force (one-line form).
    pub profile: String,
}

/// What the forwarding threads and the handle share.
pub(crate) struct Shared {
    up: Mutex<Line>,
    down: Mutex<Line>,
    state: Mutex<State>,
    start: Instant,
}

struct State {
    profile: Profile,
    /// A cut on command: `Some(None)` until restored, `Some(Some(t))` until `t`.
    cut: Option<Option<Instant>>,
}

impl Shared {
    pub(crate) fn is_cut(&self, now: Instant) -> bool {
        let state = common::sync::lock(&self.state);
        let commanded = match state.cut {
            Some(None) => true,
            Some(Some(until)) => now < until,
            None => false,
        };
        commanded || state.profile.scheduled_cut(now.duration_since(self.start))
    }
}

/// A running link; stopped (devices closed, threads joined) on drop.
pub struct Link {
    shared: Arc<Shared>,
    stop: Arc<InterruptEvent>,
    queues: [Arc<DelayQueue>; 2],
    threads: Vec<JoinHandle<()>>,
    description: String,
}

impl Link {
    /// Opens both TUN devices (addressed and up) and starts forwarding through the profile.
    pub fn start(config: LinkConfig) -> Result<Link, LinkError> {
        let open = |side: char, s: &Side| {
            tun::open(s).map(Arc::new).map_err(|error| LinkError::Open {
                side,
                what: s.describe(),
                error,
            })
        };
        let a = open('A', &config.a)?;
        let b = open('B', &config.b)?;
        let start = Instant::now();
        let p = &config.profile;
        let shared = Arc::new(Shared {
            up: Mutex::new(Line::new(p, Direction::Up, start, config.seed)),
            down: Mutex::new(Line::new(p, Direction::Down, start, !config.seed)),
            state: Mutex::new(State {
                profile: p.clone(),
                cut: None,
            }),
            start,
        });
        let stop = Arc::new(InterruptEvent::new().map_err(LinkError::Threads)?);
        let queues = [
            Arc::new(DelayQueue::default()),
            Arc::new(DelayQueue::default()),
        ];
        let mut link = Link {
            shared,
            stop,
            queues: queues.clone(),
            threads: Vec::new(),
            description: format!("A {} <-> B {}", config.a.describe(), config.b.describe()),
        };
        // On a failure here, dropping `link` stops the threads already started.
        for (from, to, direction, queue) in [
            (&a, &b, Direction::Up, &queues[0]),
            (&b, &a, Direction::Down, &queues[1]),
        ] {
            let threads = forward::spawn(
                from.clone(),
                to.clone(),
                direction,
                link.shared.clone(),
                queue.clone(),
                link.stop.clone(),
            )
            .map_err(LinkError::Threads)?;
            link.threads.extend(threads);
        }
        Ok(link)
    }

    /// The two sides, described.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Cuts the link (every packet offered is dropped) for `duration`, or until
    /// [`restore`](Self::restore) when `None`. Packets already past the cut still arrive.
    pub fn cut(&self, duration: Option<Duration>) {
        common::sync::lock(&self.shared.state).cut = Some(duration.map(|d| Instant::now() + d));
    }

    /// Ends a cut made with [`cut`](Self::cut) (scheduled cuts of the profile go on).
    pub fn restore(&self) {
        common::sync::lock(&self.shared.state).cut = None;
    }

    /// Replaces the profile from the next packet on; queues, counters and the burst state
    /// carry on.
    pub fn set_profile(&self, profile: Profile) {
        let mut state = common::sync::lock(&self.shared.state);
        common::sync::lock(&self.shared.up).set_profile(&profile, Direction::Up);
        common::sync::lock(&self.shared.down).set_profile(&profile, Direction::Down);
        state.profile = profile;
    }

    /// The profile in force.
    pub fn profile(&self) -> Profile {
        common::sync::lock(&self.shared.state).profile.clone()
    }

    /// Counters of both directions and whether the link is cut now.
    pub fn stats(&self) -> Stats {
        Stats {
            up: common::sync::lock(&self.shared.up).counters(),
            down: common::sync::lock(&self.shared.down).counters(),
            cut: self.shared.is_cut(Instant::now()),
            profile: self.profile().to_string(),
        }
    }

    /// Carries out one text command (the [`control`] protocol) and returns its answer line.
    pub fn command(&self, line: &str) -> String {
        let line = line.trim();
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match (verb, rest) {
            ("cut", "") => {
                self.cut(None);
                "ok cut until restored".into()
            }
            ("cut", d) => match common::duration::parse(d) {
                Ok(d) => {
                    self.cut(Some(d));
                    format!("ok cut for {}", common::duration::format(d))
                }
                Err(e) => format!("error: cut: {e}"),
            },
            ("restore", "") => {
                self.restore();
                "ok restored".into()
            }
            ("profile", "") => format!("ok {}", self.profile()),
            ("profile", text) => match Profile::parse(text) {
                Ok(p) => {
                    let shown = p.to_string();
                    self.set_profile(p);
                    format!("ok {shown}")
                }
                Err(e) => format!("error: {e}"),
            },
            ("stats", "") => serde_json::to_string(&self.stats())
                .unwrap_or_else(|e| format!("error: stats: {e}")),
            _ => format!(
                "error: unknown command `{line}` (cut [DURATION], restore, profile [PROFILE], stats)"
            ),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.stop.trigger();
        for q in &self.queues {
            q.close();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
