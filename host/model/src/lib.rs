//! The canonical OpenMOHAA event model.
//!
//! * [`EventKind`]: the event vocabulary, kept in step with `wit/stats.wit`;
//! * [`Event`]: the normalised event every stage after decoding uses;
//! * [`wire`]: decoding the game's wire formats (JSON arrays of strings,
//!   NDJSON, URL-encoded lines) with every upstream field spelling;
//! * [`tracker`]: sessions, matches, rounds and lives derived from the stream;
//! * [`sched`]: the lower scheduling priority of background threads.

pub mod event;
mod kind;
pub mod plugin;
pub mod sched;
pub mod tracker;
pub mod wire;

pub use event::{Event, Participant, Stance, Str, Team, Vec3};
pub use kind::EventKind;
