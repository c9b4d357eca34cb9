//! Postgres adapters (sqlx): the configuration store of the distributed mode and its migrator.
//!
//! Migrations live in `migrations/postgres/NNNN_name.sql`, are compiled into the binary and are
//! applied in order by `tally migrate` (and at start-up), each in its own transaction under an
//! advisory lock so concurrent starts cannot race.

mod store;

pub use store::PostgresConfigStore;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tracing::info;

use crate::failure::{seam, Failure, Result};
use tally_domain::store::StoreError;

/// (version, name, SQL) in apply order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "config",
        include_str!("../../../../migrations/postgres/0001_config.sql"),
    ),
    (
        2,
        "api_keys",
        include_str!("../../../../migrations/postgres/0002_api_keys.sql"),
    ),
    (
        3,
        "prompts_budgets_experiments",
        include_str!("../../../../migrations/postgres/0003_prompts_budgets_experiments.sql"),
    ),
    (
        4,
        "audit",
        include_str!("../../../../migrations/postgres/0004_audit.sql"),
    ),
    (
        5,
        "reprices",
        include_str!("../../../../migrations/postgres/0005_reprices.sql"),
    ),
    (
        6,
        "alerting",
        include_str!("../../../../migrations/postgres/0006_alerting.sql"),
    ),
    (
        7,
        "console_sessions",
        include_str!("../../../../migrations/postgres/0007_console_sessions.sql"),
    ),
    (
        8,
        "test_cases",
        include_str!("../../../../migrations/postgres/0008_test_cases.sql"),
    ),
    (
        9,
        "test_runs",
        include_str!("../../../../migrations/postgres/0009_test_runs.sql"),
    ),
];

/// Advisory-lock key serialising migrations ("tally" in ASCII).
const MIGRATION_LOCK: i64 = 0x0074_616c_6c79;

/// Connects a pool to `url`.
///
/// A TLS refusal (the server's certificate not trusted, or no TLS where `sslmode` demands it)
/// is `Invalid` on `database_url`, not `Unavailable`: waiting does not mend it.
pub async fn connect(url: &str) -> Result<PgPool, StoreError> {
    seam(async || -> Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| {
                // The certificate refused (a rustls error), or TLS demanded of a server that
                // offers none; a handshake cut off by a reset stays `Unavailable`.
                let tls = crate::failure::causes(&e)
                    .iter()
                    .any(|c| c.downcast_ref::<rustls::Error>().is_some())
                    || matches!(&e, sqlx::Error::Tls(t) if t.to_string().contains("not support"));
                if tls {
                    Failure::invalid("database_url", e.to_string())
                } else {
                    Failure::from(e)
                }
            })
    })
    .await
}

/// Applies every migration not yet applied; returns how many were applied.
pub async fn migrate(pool: &PgPool) -> Result<usize, StoreError> {
    seam(async || -> Result<usize> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS tally_schema_migrations (version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(pool)
        .await?;
        let mut applied = 0;
        for &(version, name, sql) in MIGRATIONS {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
            let done: Option<i32> =
                sqlx::query_scalar("SELECT version FROM tally_schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_none() {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO tally_schema_migrations (version, name) VALUES ($1, $2)")
                    .bind(version)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                info!(version, name, "applied postgres migration");
                applied += 1;
            }
            tx.commit().await?;
        }
        Ok(applied)
    })
    .await
}
