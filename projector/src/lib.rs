//! The projector: reads the event log from its checkpoint and folds events into rollups.
//!
//! Delivery semantics: **exactly-once effect**. The log is read at-least-once (after a crash the
//! projector re-reads from its last committed position), and each commit writes rollup deltas,
//! the new dedup fingerprints and the new position in one atomic store transaction. Whatever was
//! folded but not committed is simply folded again; whatever was committed is never re-read.
//!
//! Duplicates: an event whose `event_id` was already seen within the dedup window counts once.
//! The window is measured on the log's `received_at` clock (stamped by the log when it made the
//! record durable), not on wall-clock time at projection, so a rebuild that replays the whole log
//! in seconds deduplicates exactly like the live projection did over days.

mod dedup;
mod metrics;
mod projector;

pub use dedup::Dedup;
pub use projector::{rebuild, Projector, ProjectorConfig, ProjectorStatus, RebuildReport};
