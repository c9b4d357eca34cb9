//! Embedded implementations of the storage seams, on SQLite (bundled; nothing to install).
//!
//! Each store has its own database file in the data directory (`events.db`, `analytics.db`,
//! `config.db`) so that the log's writer, the projector's writer and configuration changes never
//! wait on one another. All files run in WAL mode with `synchronous=FULL`: a committed
//! transaction has been fsynced, and after a crash SQLite's WAL checksums discard a torn tail.
//! Readers never block the writer.

mod analytics;
mod config;
mod log;

use std::path::Path;

use rusqlite::Connection;

pub use analytics::SqliteAnalyticsStore;
pub use config::SqliteConfigStore;
pub use log::SqliteEventLog;

use crate::store::StoreError;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::not_found("row"),
            rusqlite::Error::SqliteFailure(code, _)
                if code.code == rusqlite::ErrorCode::DatabaseBusy
                    || code.code == rusqlite::ErrorCode::DatabaseLocked =>
            {
                StoreError::Unavailable(e.to_string())
            }
            rusqlite::Error::SqliteFailure(code, _)
                if code.code == rusqlite::ErrorCode::DiskFull =>
            {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// Opens a database file with Tally's durability settings and a page cache of `cache_mib`.
/// `page_size` only takes effect when the file is created.
pub(crate) fn open_with(
    path: &Path,
    cache_mib: i64,
    page_size: u32,
) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "page_size", page_size)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -1024 * cache_mib)?;
    Ok(conn)
}

/// [`open_with`] and SQLite's default 4 KiB pages.
pub(crate) fn open(path: &Path, cache_mib: i64) -> Result<Connection, StoreError> {
    open_with(path, cache_mib, 4096)
}

/// Runs blocking SQLite work off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
}
