//! Tally's shared core.
//!
//! What several services need and none owns: the rollup model ([`rollup`]) with its mergeable
//! sketches ([`sketch`], [`hll`]), pricing ([`pricing`]) over the configuration model
//! ([`config`]), the storage seams ([`store`]) with the rule that binds checkpoints to their log ([`log_binding`]) and their embedded SQLite implementations
//! ([`embedded`]) and the Postgres config store ([`postgres`]), the ClickHouse analytics store ([`clickhouse`]), the Kafka event log ([`kafka`]), the one HTTP error shape ([`http`]), the log record codec ([`codec`]) and the injected clock ([`clock`]).

pub mod access;
pub mod audit;
pub mod auth;
pub mod clickhouse;
pub mod clock;
pub mod codec;
pub mod config;
pub mod embedded;
pub mod hll;
pub mod http;
pub mod kafka;
pub mod log_binding;
pub mod openapi;
pub mod postgres;
pub mod pricing;
pub mod rollup;
pub mod sketch;
pub mod store;
mod upsert;
mod varint;

/// Stable 64-bit fingerprint of an event id, used by the projector's dedup memory.
pub fn event_fingerprint(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(event_id.as_bytes(), 0x7a11_7e57)
}
