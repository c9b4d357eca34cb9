//! Postgres adapters (sqlx): the configuration store of the distributed mode and its migrator.
//!
//! Migrations live in `migrations/postgres/NNNN_name.sql`, are compiled into the binary and are
//! applied in order by `tally migrate` (and at start-up), each in its own transaction under an
//! advisory lock so concurrent starts cannot race.

mod config;

pub use config::PostgresConfigStore;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tracing::info;

use crate::store::StoreError;

/// (version, name, SQL) in apply order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "config",
        include_str!("../../../migrations/postgres/0001_config.sql"),
    ),
    (
        2,
        "api_keys",
        include_str!("../../../migrations/postgres/0002_api_keys.sql"),
    ),
    (
        3,
        "prompts_budgets_experiments",
        include_str!("../../../migrations/postgres/0003_prompts_budgets_experiments.sql"),
    ),
    (
        4,
        "audit",
        include_str!("../../../migrations/postgres/0004_audit.sql"),
    ),
    (
        5,
        "reprices",
        include_str!("../../../migrations/postgres/0005_reprices.sql"),
    ),
];

/// Advisory-lock key serialising migrations ("tally" in ASCII).
const MIGRATION_LOCK: i64 = 0x0074_616c_6c79;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::not_found("row"),
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                StoreError::Conflict(db.message().to_string())
            }
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
                StoreError::not_found(db.message().to_string())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// Connects a pool to `url`.
pub async fn connect(url: &str) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await?)
}

/// Applies every migration not yet applied; returns how many were applied.
pub async fn migrate(pool: &PgPool) -> Result<usize, StoreError> {
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
}
