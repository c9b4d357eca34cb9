//! Tally's storage adapters: one folder per seam of `tally_domain::store`, one file (or
//! folder) per backend.
//!
//! - [`log`]: the append-only event log — [`SqliteEventLog`] (embedded, `events.db`) and
//!   [`KafkaLog`] (distributed, one topic).
//! - [`analytics`]: rollups, checkpoints and dedup memory — [`SqliteAnalyticsStore`]
//!   (`analytics.db`) and [`ClickHouseAnalyticsStore`].
//! - [`config`]: the configuration and audit trail — [`SqliteConfigStore`] (`config.db`) and
//!   [`PostgresConfigStore`].
//!
//! Invariant: adapters persist and keep no business rules; what they decide is what a
//! database must (unique keys, transactions, atomic commits). Every adapter passes the same
//! conformance suite (`tally-conformance`). Driver errors are classified once ([`failure`]).

pub mod analytics;
/// The binary forms every store shares (kept in the domain crate, where they can be fuzzed
/// without the adapters).
pub use tally_domain::codec;
pub mod config;
pub mod failure;
pub mod log;
mod sqlite;
mod upsert;

pub use analytics::clickhouse::ClickHouseAnalyticsStore;
pub use analytics::SqliteAnalyticsStore;
pub use config::postgres::PostgresConfigStore;
pub use config::SqliteConfigStore;
pub use log::kafka::{KafkaLog, KafkaSettings};
pub use log::SqliteEventLog;
pub use sqlite::{heap_use as sqlite_heap_use, HeapUse as SqliteHeapUse};
