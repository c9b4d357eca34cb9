//! What the three embedded stores share: opening a SQLite file (bundled; nothing to install)
//! with Tally's durability settings, running blocking work off the async runtime, and the
//! reader threads that serve the analytics store's reads ([`readers`]).
//!
//! Each store has its own database file in the data directory (`events.db`, `analytics.db`,
//! `config.db`) so that the log's writer, the projector's writer and configuration changes never
//! wait on one another. All files run in WAL mode with `synchronous=FULL`: a committed
//! transaction has been fsynced, and after a crash SQLite's WAL checksums discard a torn tail.
//! Readers never block the writer.

use std::path::Path;

use rusqlite::Connection;

use tally_domain::store::StoreError;

use crate::failure::Result;

pub(crate) mod readers;

/// Opens a database file with Tally's durability settings and a page cache of `cache_mib`.
/// `page_size` only takes effect when the file is created.
pub(crate) fn open_with(path: &Path, cache_mib: i64, page_size: u32) -> Result<Connection> {
    let conn = Connection::open(path)?;
    // First, so that the pragmas after it wait for a busy file instead of failing at once.
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "page_size", page_size)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -1024 * cache_mib)?;
    Ok(conn)
}

/// [`open_with`] and SQLite's default 4 KiB pages.
pub(crate) fn open(path: &Path, cache_mib: i64) -> Result<Connection> {
    open_with(path, cache_mib, 4096)
}

/// Runs blocking SQLite work off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
        .map_err(StoreError::from)
}

/// The steps of SQLite's plan for `sql` (the `detail` column of `EXPLAIN QUERY PLAN`, e.g.
/// `SCAN log` or `SEARCH b USING …`), for tests that pin a statement's plan.
#[cfg(test)]
pub(crate) fn query_plan(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Vec<String> {
    conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("plan")
        .query_map(params, |r| r.get::<_, String>(3))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read")
}
