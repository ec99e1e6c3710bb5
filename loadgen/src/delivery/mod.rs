//! End-to-end delivery tracking, shared by sender journeys and device journeys: a sender's
//! successful request with `track:` declares who must receive push `id` by a deadline
//! ([`TrackMsg`]); devices report what they receive; each expected (push, device) pair is
//! settled as received in time, lost, or not verifiable (the device was away for part of the
//! window and the gateway's [`Promise`] does not cover it), and extra copies as duplicates,
//! redeliveries or unexpected.
//!
//! - [`hooks`]: the senders' side, in the coordinating process: `{{msg_id}}`,
//!   `{{random_device}}`, routing tracking records to the shards that own the recipients,
//!   broadcast completion across shards.
//! - [`tracker`]: one shard's side: expected pairs, receipts, settlement at the deadline.
//! - [`clock`]: the wall clock the two sides share (send times cross processes).
//!
//! Nothing here knows how devices connect: the swarm engine gives the tracker its devices
//! through [`Recipients`] and the hooks their shards through a routing function.

pub mod clock;
pub mod hooks;
pub mod tracker;

use serde::{Deserialize, Serialize};

pub use hooks::DeliveryHooks;
pub use tracker::{DeliveryTracker, Receipt};

/// Metric names of delivery tracking.
pub mod names {
    /// Delivery latency, µs: receipt − send time.
    pub const DELIVERY_LATENCY: &str = "delivery_latency";
    /// Last receipt − send of each tracked broadcast, µs.
    pub const BROADCAST_COMPLETION: &str = "broadcast_completion";
    /// First in-time receipts of tracked pushes.
    pub const DELIVERY_RECEIVED: &str = "delivery_received";
    /// (push, device) pairs expected.
    pub const DELIVERY_EXPECTED: &str = "delivery_expected";
    /// Expected pairs not received by the deadline.
    pub const DELIVERY_LOST: &str = "delivery_lost";
    /// (push, device) pairs that cannot be judged: the device was not connected for the
    /// whole window and the gateway's promise does not say it must get the push.
    pub const DELIVERY_UNVERIFIABLE: &str = "delivery_unverifiable";
    /// Receipts of a push the device already had, not marked as redelivery.
    pub const DELIVERY_DUPLICATES: &str = "delivery_duplicates";
    /// Receipts no tracked send explains.
    pub const DELIVERY_UNEXPECTED: &str = "delivery_unexpected";
    /// Receipts marked as redelivery.
    pub const DELIVERY_REDELIVERED: &str = "delivery_redelivered";
    /// (push, device) pairs not received and still within the push's deadline when the run
    /// ended (not judged; the pairs of such a push already received count as received).
    pub const DELIVERY_UNRESOLVED: &str = "delivery_unresolved";
}

/// Who must receive a tracked push.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// Every device of this user.
    Unicast {
        /// The user id.
        user: String,
    },
    /// Every device that handles pushes.
    Broadcast,
    /// Every device whose subscriptions take the topic.
    Topic {
        /// The topic.
        topic: String,
    },
    /// Every device of one device journey that handles pushes.
    Journey {
        /// The device journey's name.
        journey: String,
    },
}

/// A tracked push.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackMsg {
    /// The message id the devices will see.
    pub id: String,
    /// The sender journey (the `journey` tag of delivery metrics).
    pub journey: String,
    /// The expected recipients.
    pub target: Target,
    /// When the send started, Unix ns.
    pub sent_ns: u64,
    /// Deadline, Unix ns.
    pub deadline_ns: u64,
}

/// A device's connection history, as far as settling a push needs it (Unix ns).
pub trait Presence {
    /// True when one session of the device spanned the whole window `[from_ns, to_ns]`.
    fn connected_through(&self, from_ns: u64, to_ns: u64) -> bool;
    /// True when a session of the device was up at some time in `[from_ns, to_ns]`.
    fn connected_during(&self, from_ns: u64, to_ns: u64) -> bool;
    /// True when the device had connected before `at_ns` (the gateway knew it).
    fn known_before(&self, at_ns: u64) -> bool;
}

pub use crate::scenario::Promise;

/// The devices one tracker settles pushes for, by local index.
pub trait Recipients {
    /// One device.
    type Device: Presence;

    /// Whether device `local` is an expected recipient of `target`.
    fn is_recipient(&self, target: &Target, local: u32) -> bool;

    /// Calls `f` on every device that is a recipient of `target`.
    fn for_each_recipient(&self, target: &Target, f: &mut dyn FnMut(u32, &Self::Device));
}
