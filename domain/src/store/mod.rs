//! The three storage seams. The projector and the query API only see these traits; the embedded
//! (SQLite) and distributed (Kafka / ClickHouse / Postgres) adapters implement them, and one
//! conformance suite (`tally-conformance`) runs against each implementation.
//!
//! - [`EventLog`]: the append-only source of truth. `append` returns only once the events are
//!   durable; positions are per-partition "next offset to read", so a projector can resume from
//!   exactly where its last commit left off.
//! - [`AnalyticsStore`]: rollups plus the projector's checkpoint and dedup memory. `commit` is
//!   atomic: rollup deltas, new dedup fingerprints and the new log position become visible
//!   together or not at all, so a crash never double-counts or skips. Its checkpoints belong
//!   to one log, the one it is bound to ([`crate::log_binding`]): a commit lands only in the
//!   store's current epoch.
//! - [`ConfigStore`]: the configuration, one trait per resource group ([`CatalogStore`],
//!   [`DeploymentStore`], [`PromptStore`], [`BudgetStore`], [`ExperimentStore`], [`KeyStore`],
//!   [`AuditTrail`], [`SessionStore`]); every change is written with its audit entry (console
//!   sessions are not configuration and are not audited).

mod analytics;
mod config;
mod log;
mod versions;

pub use analytics::*;
pub use config::*;
pub use log::*;
pub use versions::RowVersions;

pub use crate::error::{StoreError, StoreResult};
