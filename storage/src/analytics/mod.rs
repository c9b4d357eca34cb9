//! The analytics store seam ([`tally_domain::store::AnalyticsStore`]): rollups, the
//! projector's checkpoints and dedup memory, committed atomically (SQLite: one transaction;
//! ClickHouse: an order of inserts of which any prefix is harmless, see [`clickhouse`]).

pub mod clickhouse;
mod sqlite;

pub use sqlite::SqliteAnalyticsStore;
