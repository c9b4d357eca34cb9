//! The configuration store seam ([`tally_domain::store::ConfigStore`]): the catalog, prompts,
//! budgets, experiments, API keys and the audit trail, each change written with its audit
//! entry in one transaction. [`SqliteConfigStore`] (embedded, `config.db`) and
//! [`postgres::PostgresConfigStore`] (distributed).

pub mod postgres;
mod sqlite;

pub use sqlite::SqliteConfigStore;
