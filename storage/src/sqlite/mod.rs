//! What the three embedded stores share: opening a SQLite file (bundled; nothing to install)
//! with Tally's durability settings, running blocking work off the async runtime, the
//! reader threads that serve the analytics store's reads ([`readers`]), and SQLite's memory
//! counters ([`heap_use`]).
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

/// What SQLite holds on the heap in this process (it allocates with the C library's `malloc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUse {
    /// The page caches of every connection, and their scratch pages. The bundled SQLite is
    /// built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`: all caches share one pool of as many pages
    /// as their `cache_size`s add up to, of whichever size each page is (16 KiB analytics pages
    /// may fill what a 4 KiB log cache adds), so the bound is on pages, not bytes.
    pub page_cache: i64,
    /// Everything else: statements, schemas, values being read or bound, sorts.
    pub other: i64,
}

/// Reads SQLite's memory counters ([`HeapUse`]). The two are read one after the other, each
/// under its own lock, so `other` is a difference of two nearby moments (never shown below 0).
///
/// It relies on how the bundled SQLite is built: memory statistics on (its default), and no
/// page-cache buffer (`SQLITE_CONFIG_PAGECACHE`, which nothing sets) with
/// `SQLITE_ENABLE_MEMORY_MANAGEMENT`, under which every page-cache allocation is counted as an
/// "overflow" one (no bulk block per cache escapes the count).
#[allow(unsafe_code)]
pub fn heap_use() -> HeapUse {
    // SAFETY: sqlite3_initialize is idempotent and thread-safe; nothing in the process
    // configures SQLite (sqlite3_config), so initializing it here changes nothing. Once it is
    // initialized, its counters are read under its locks.
    unsafe { rusqlite::ffi::sqlite3_initialize() };
    let status = |op: i32| {
        let (mut now, mut highest) = (0i64, 0i64);
        // SAFETY: sqlite3_status64 reads one of SQLite's process-wide counters, under the lock
        // that guards it, into the two locals; it needs no connection and any thread may call it.
        unsafe { rusqlite::ffi::sqlite3_status64(op, &mut now, &mut highest, 0) };
        now
    };
    let used = status(rusqlite::ffi::SQLITE_STATUS_MEMORY_USED);
    let page_cache = status(rusqlite::ffi::SQLITE_STATUS_PAGECACHE_OVERFLOW);
    HeapUse {
        page_cache,
        other: (used - page_cache).max(0),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_a_connection_holds_are_counted_as_page_cache() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = open_with(&dir.path().join("t.db"), 64, 16_384).expect("opened");
        // 4 MB in 1,000 rows of 4,000 bytes: about 250 pages of 16 KiB, all kept in the cache.
        conn.execute_batch(
            "CREATE TABLE t (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO t SELECT randomblob(4000) FROM n;",
        )
        .expect("written");
        let total: i64 = conn
            .query_row("SELECT sum(length(b)) FROM t", [], |r| r.get(0))
            .expect("read");
        assert_eq!(total, 4_000_000);
        // Other tests' connections add to the process-wide counter (they could only take this
        // one's pages through the shared pool when they are the least recently used).
        let heap = heap_use();
        assert!(heap.page_cache >= 4_000_000, "{heap:?}");
        assert!(heap.other > 0, "{heap:?}");
        drop(conn);
    }
}
