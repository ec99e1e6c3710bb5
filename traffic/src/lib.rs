//! Recorded traffic for `loadgen replay`: readers that turn recordings into one stream of
//! timed requests, the transforms an operator applies before playing them, and the
//! inspection that shows what a recording holds before anything is sent.
//!
//! - Readers ([`gor`], [`har`], [`accesslog`], [`vegeta`]) parse one file each; [`source`]
//!   expands globs, opens `.gz`, detects the format and merges several files in timestamp
//!   order through a bounded reorder buffer ([`Stream`]), counting out-of-order records and
//!   attaching recorded responses (GoReplay type 2) to their requests.
//! - [`transform`] filters, rewrites and paces the stream: each item gets the offset from the
//!   start of the replay at which it is due ([`Paced`]).
//! - [`inspect`] summarises a recording: requests per method and path template, rate over
//!   time, sizes, status mix, span, gaps and out-of-order records.
//!
//! ```no_run
//! use traffic::{ReadOptions, Recording, Transforms};
//!
//! let recording = Recording::open(&["traffic/*.gor.gz"], ReadOptions::default())?;
//! let transforms = Transforms { speed: 2.0, ..Transforms::default() };
//! for scheduled in traffic::Paced::new(&recording, transforms)? {
//!     let scheduled = scheduled?;
//!     println!("{:?} {:?}", scheduled.offset, scheduled.item);
//! }
//! # Ok::<(), traffic::ReadError>(())
//! ```
#![deny(missing_docs)]

pub mod accesslog;
pub mod error;
pub mod gor;
pub mod har;
pub mod inspect;
pub mod item;
pub mod source;
pub mod transform;
pub mod vegeta;

pub use error::{Location, ReadError};
pub use inspect::Inspection;
pub use item::{DeviceSession, Item, Recorded, Request, WsDirection, WsMessage};
pub use source::{Format, ReadOptions, ReadStats, Recording, Stream};
pub use transform::{Paced, Scheduled, Transforms};
