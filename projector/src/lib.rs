//! The projector: reads the event log from its checkpoint and folds events into rollups; the
//! scores it reads pass through to the analytics store with the commit (the store keeps the
//! first copy of each and joins them to events when results are read).
//!
//! Delivery semantics: **exactly-once effect**. The log is read at-least-once (after a crash the
//! projector re-reads from its last committed position, kept in the analytics store, never in
//! the broker), and each commit carries rollup deltas, the new dedup fingerprints and the new
//! position. The embedded store applies a commit in one transaction. ClickHouse cannot, so its
//! store writes rollup rows that are each correct for the offset they carry and the checkpoint
//! last; a commit that died midway is reported on load (`ProjectorState::unfinished`), and the
//! projector then commits up to exactly its end before going further, which lets the store tell
//! per row whether the events are already in it (`tally_storage::analytics::clickhouse` has the details).
//! Whatever was folded but not committed is simply folded again; whatever was committed is never
//! re-read.
//!
//! Pipelining: one commit is in flight while the next batch is read and folded, so the store's
//! writing and the fold use two cores. Commits still reach the store one at a time and in
//! order, each building on the one before; a commit that fails ends the session, and the next
//! session reloads from the checkpoint, so nothing folded after a failed commit is kept. A read
//! of dedup blocks that the commit in flight writes (a filter hit on a generation it seals, a
//! merge of one) waits for it to land. The status (and what waiting for projection sees)
//! moves only when a commit has landed; a session ends only after its commit in flight has.
//!
//! Duplicates: an event whose `event_id` was already seen within the dedup window counts once.
//! The window is measured on the log's `received_at` clock (stamped by the log when it made the
//! record durable), not on wall-clock time at projection, so a rebuild that replays the whole log
//! in seconds deduplicates exactly like the live projection did over days.
//!
//! Partitions: all state (position, log clock, counters, dedup memory) is kept per log
//! partition, and a partition's projection depends only on its own records in offset order —
//! never on which other partitions the projector holds or how records were batched. So
//! projectors can share a partitioned log (a Kafka consumer group): each loads the checkpoints
//! of the partitions it is given, and on every ownership change drops uncommitted work and
//! reloads. Each commit names the offset it builds on per partition; a store refuses a commit
//! whose base is stale (another projector moved the partition), and the projector reloads.
//! Dedup is per partition, which is exact when every copy of an event is in one partition
//! (the Kafka log keys messages by `event_id`).
//!
//! Logs: checkpoints are offsets of one log, the one the analytics store is bound to. Before a
//! session reads anything it checks that the log it is given is that log and still holds what
//! was projected ([`guard`]); otherwise it reads nothing, reports why, and waits for an
//! operator's way out. Commits carry the binding's epoch, so a store re-bound meanwhile refuses
//! them.

mod dedup;
mod filter_files;
mod guard;
mod metrics;
mod projector;
mod session;
mod summaries;

pub use dedup::{load_summary, Dedup};
pub use filter_files::FilterFiles;
pub use guard::{guard_rebuild, plan_adoption, AdoptionError};
pub use projector::{
    rebuild, start_clean, start_clean_watching, Projector, ProjectorConfig, ProjectorStatus,
    RebuildReport, ReplayHandle, Replays,
};
