//! Which relay an Apple push goes to: the one `apple.relay_url`, or one of the relays
//! ZooKeeper lists (`apple.discovery`), picked per push by the configured balancing and
//! failed over to another when a connection to it fails.
//!
//! Fallbacks, each with one line (a log warning, and `Router::note` for the command line):
//! - ZooKeeper unreachable at start: `relay_url` when given (for the router's life), else
//!   [`RouterError::Setup`] (`send` exits 2). Never a hang: connecting is bounded by
//!   `apple.discovery.connect_timeout`.
//! - No relay listed (an empty or missing path, only malformed nodes): `relay_url` when given;
//!   else the push's first send fails at once with [`RouterError::NoRelay`] (`send` exits 2),
//!   while a push already being retried keeps retrying until `retry_for`.
//! - ZooKeeper lost later: the last list is kept (and followed again once it is back).

use discovery::{Discover, Failover, Lease, ServiceWatch};

use super::RouterError;

/// The endpoint of a registered instance the router sends to.
const ENDPOINT: &str = "relay";

/// Where Apple pushes through the relay go.
#[derive(Debug)]
pub(crate) enum Relays {
    /// Not through the relay (proxy or direct), or one relay URL.
    Static(Option<String>),
    /// The relays ZooKeeper lists, with the static URL (if any) for when it lists none.
    Discovered {
        watch: ServiceWatch,
        discover: Discover,
        fallback: Option<String>,
    },
}

/// The relays one push may still try.
pub(crate) enum Tries<'a> {
    /// One URL (or none, for the proxy and direct paths).
    Static(Option<&'a str>),
    /// Discovered relays not tried yet for this push.
    Discovered {
        tries: Failover<'a>,
        discover: &'a Discover,
        fallback: Option<&'a str>,
    },
}

/// One send's relay: its base URL and, when discovered, the lease to report on.
pub(crate) struct Picked {
    pub base: Option<String>,
    pub lease: Option<Lease>,
}

impl Relays {
    /// Follows `discover` (bounded by its `connect_timeout`); falls back to `fallback` with
    /// a note when ZooKeeper cannot be reached.
    pub(crate) async fn start(
        discover: Discover,
        fallback: Option<String>,
    ) -> Result<(Relays, Option<String>), RouterError> {
        match discover.watch().await {
            Ok(watch) => {
                let relays = Relays::Discovered {
                    watch,
                    discover,
                    fallback,
                };
                let note = relays.empty_note();
                Ok((relays, note))
            }
            Err(e) => match fallback {
                Some(url) => {
                    let note = format!("apple.discovery: {e}; sending to apple.relay_url {url}");
                    tracing::warn!("{note}");
                    Ok((Relays::Static(Some(url)), Some(note)))
                }
                None => Err(RouterError::Setup(format!("apple.discovery: {e}"))),
            },
        }
    }

    /// What to say when ZooKeeper lists no relay now.
    fn empty_note(&self) -> Option<String> {
        let Relays::Discovered {
            watch,
            discover,
            fallback,
        } = self
        else {
            return None;
        };
        let e = discover
            .next_url(&mut watch.failover(), Some(ENDPOINT))
            .err()?;
        // Without a fallback the first push fails with this very line.
        let url = fallback.as_ref()?;
        let note =
            format!("apple.discovery: {e}; sending to apple.relay_url {url} until relays register");
        tracing::warn!("{note}");
        Some(note)
    }

    /// Stops following ZooKeeper.
    pub(crate) async fn close(self) {
        if let Relays::Discovered { watch, .. } = self {
            watch.close().await;
        }
    }

    /// The relays one push may try.
    pub(crate) fn tries(&self) -> Tries<'_> {
        match self {
            Relays::Static(url) => Tries::Static(url.as_deref()),
            Relays::Discovered {
                watch,
                discover,
                fallback,
            } => Tries::Discovered {
                tries: watch.failover(),
                discover,
                fallback: fallback.as_deref(),
            },
        }
    }
}

impl Tries<'_> {
    /// The next relay to send to: a discovered one not tried yet for this push, else the
    /// static URL; an error naming why none is left.
    pub(crate) fn next(&mut self) -> Result<Picked, RouterError> {
        match self {
            Tries::Static(url) => Ok(Picked {
                base: url.map(str::to_string),
                lease: None,
            }),
            Tries::Discovered {
                tries,
                discover,
                fallback,
            } => match discover.next_url(tries, Some(ENDPOINT)) {
                Ok((url, lease)) => Ok(Picked {
                    base: Some(url),
                    lease: Some(lease),
                }),
                Err(_) if fallback.is_some() => Ok(Picked {
                    base: fallback.map(str::to_string),
                    lease: None,
                }),
                Err(e) => Err(RouterError::NoRelay(format!("apple.discovery: {e}"))),
            },
        }
    }
}
