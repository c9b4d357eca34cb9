//! The embedded event log: one SQLite table of records, appended by a single writer thread.
//!
//! Offsets are dense per record (partition 0), starting at 0. Appends are group-committed: the
//! writer thread takes every request waiting in its bounded queue, writes them in one
//! transaction and answers each request only after `COMMIT` returned (fsynced, WAL mode,
//! `synchronous=FULL`). A request that was never answered with success was never acknowledged.
//! `received_at_ms` is stamped by the writer and never goes backwards.
//!
//! The log's identity ([`EventLog::describe`]) is `embedded` and an id written when `events.db`
//! was created (`log_meta`): an analytics store whose checkpoints came from another log file
//! (a deleted and recreated `events.db`, one restored from an older backup) is then told apart.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tally_schemas::{Score, UsageEvent};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, instrument};

use crate::codec;
use crate::failure::{seam, seam_sync, Failure, Result};
use crate::sqlite::{blocking, open};
use tally_domain::log_binding::{LogDescription, LogIdentity, Watermarks};
use tally_domain::store::{AppendReceipt, EventLog, LogPosition, LogRecord, StoreResult};

/// Records one retention step deletes (a record is one append request: 256 are typically a few
/// MB).
const PRUNE_STEP_RECORDS: i64 = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    record_offset  INTEGER PRIMARY KEY,
    received_at_ms INTEGER NOT NULL,
    event_count    INTEGER NOT NULL,
    events_total   INTEGER NOT NULL,
    payload        BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_meta (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    log_id TEXT NOT NULL
);";

/// The name of the embedded log in its identity.
pub const EMBEDDED_LOG: &str = "embedded";

/// Most append requests grouped into one transaction.
const MAX_GROUP: usize = 512;

struct AppendRequest {
    payload: Vec<u8>,
    count: u64,
    reply: oneshot::Sender<Result<AppendReceipt>>,
}

/// The head of the log as the writer last committed it.
#[derive(Debug, Clone, Copy, Default)]
struct Head {
    next_offset: i64,
    events_total: u64,
}

/// The log's first and last record offsets, each found from an end of the key's b-tree.
const BOUNDS: &str =
    "SELECT (SELECT MIN(record_offset) FROM log), (SELECT MAX(record_offset) FROM log)";

pub struct SqliteEventLog {
    queue: mpsc::Sender<AppendRequest>,
    reader: Arc<Mutex<Connection>>,
    head: watch::Receiver<Head>,
    appended: Arc<AtomicU64>,
    /// Written when the file was created; see the module docs.
    log_id: String,
    path: std::path::PathBuf,
}

impl SqliteEventLog {
    /// The id written when `events.db` was created (the id of [`EventLog::describe`]).
    pub fn id(&self) -> &str {
        &self.log_id
    }

    /// The log's file, `events.db`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens (or creates) `events.db` in `dir`. `queue_depth` bounds how many append requests
    /// may wait for the writer; beyond it `append` answers `Unavailable` at once.
    pub fn open(dir: &Path, queue_depth: usize) -> StoreResult<SqliteEventLog> {
        seam_sync(|| -> Result<SqliteEventLog> {
            let path = dir.join("events.db");
            let writer = open(&path, 4)?;
            writer.execute_batch(SCHEMA)?;
            writer.execute(
                "INSERT OR IGNORE INTO log_meta (id, log_id) VALUES (1, ?1)",
                params![uuid::Uuid::new_v4().to_string()],
            )?;
            let log_id: String =
                writer.query_row("SELECT log_id FROM log_meta WHERE id = 1", [], |r| r.get(0))?;
            let head = writer.query_row(
                "SELECT COALESCE(MAX(record_offset) + 1, 0), COALESCE(MAX(events_total), 0) FROM log",
                [],
                |r| {
                    Ok(Head {
                        next_offset: r.get(0)?,
                        events_total: r.get::<_, i64>(1)? as u64,
                    })
                },
            )?;
            let last_received: i64 = writer.query_row(
                "SELECT COALESCE(MAX(received_at_ms), 0) FROM log",
                [],
                |r| r.get(0),
            )?;
            let reader = open(&path, 4)?;
            let (queue, rx) = mpsc::channel(queue_depth.max(1));
            let (head_tx, head_rx) = watch::channel(head);
            let appended = Arc::new(AtomicU64::new(head.events_total));
            let appended_w = appended.clone();
            std::thread::Builder::new()
                .name("tally-log-writer".into())
                .spawn(move || writer_loop(writer, rx, head_tx, head, last_received, appended_w))
                .map_err(|e| Failure::Backend(format!("spawn log writer: {e}")))?;
            Ok(SqliteEventLog {
                queue,
                reader: Arc::new(Mutex::new(reader)),
                head: head_rx,
                appended,
                log_id,
                path,
            })
        })
    }
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<AppendRequest>,
    head_tx: watch::Sender<Head>,
    mut head: Head,
    mut last_received: i64,
    appended: Arc<AtomicU64>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(req) => group.push(req),
                Err(_) => break,
            }
        }
        last_received = last_received.max(chrono::Utc::now().timestamp_millis());
        match write_group(&mut conn, &group, head, last_received) {
            Ok(new_head) => {
                let first = head.next_offset;
                // Publish the new head before acknowledging, so whoever sees an ack also sees
                // the events counted in the log.
                head = new_head;
                appended.store(head.events_total, Ordering::Release);
                head_tx.send_replace(head);
                for (i, req) in group.into_iter().enumerate() {
                    let receipt = AppendReceipt {
                        partition: 0,
                        offset: first + i as i64,
                    };
                    let _ = req.reply.send(Ok(receipt));
                }
            }
            Err(err) => {
                error!(error = %err, records = group.len(), "failed to append to the event log");
                for req in group {
                    let _ = req.reply.send(Err(Failure::Unavailable(format!(
                        "event log write failed: {err}"
                    ))));
                }
            }
        }
    }
}

fn write_group(
    conn: &mut Connection,
    group: &[AppendRequest],
    head: Head,
    received_at_ms: i64,
) -> Result<Head> {
    let tx = conn.transaction()?;
    let mut next = head;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO log (record_offset, received_at_ms, event_count, events_total, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for req in group {
            next.events_total += req.count;
            insert.execute(params![
                next.next_offset,
                received_at_ms,
                req.count as i64,
                next.events_total as i64,
                req.payload
            ])?;
            next.next_offset += 1;
        }
    }
    tx.commit()?;
    Ok(next)
}

fn read_records(conn: &Connection, from: i64, max_events: usize) -> Result<Vec<LogRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT record_offset, received_at_ms, event_count, payload FROM log WHERE record_offset >= ?1 ORDER BY record_offset LIMIT 4096",
    )?;
    let mut rows = stmt.query(params![from])?;
    let mut out = Vec::new();
    let mut items = 0usize;
    while let Some(row) = rows.next()? {
        let payload: Vec<u8> = row.get(3)?;
        let received_at_ms: i64 = row.get(1)?;
        let (events, scores) = codec::decode_record(&payload)?;
        let record = LogRecord {
            partition: 0,
            offset: row.get(0)?,
            received_at_ms,
            events,
            scores,
            fingerprint: xxhash_rust::xxh3::xxh3_64_with_seed(&payload, received_at_ms as u64),
        };
        items += record.events.len() + record.scores.len();
        out.push(record);
        if items >= max_events {
            break;
        }
    }
    Ok(out)
}

impl SqliteEventLog {
    /// Queues one encoded record (of `count` events) and waits until it is durable.
    async fn append_payload(
        &self,
        payload: StoreResult<Vec<u8>>,
        count: u64,
    ) -> StoreResult<AppendReceipt> {
        let payload = payload?;
        seam(async || -> Result<AppendReceipt> {
            let (reply, answer) = oneshot::channel();
            self.queue
                .try_send(AppendRequest {
                    payload,
                    count,
                    reply,
                })
                .map_err(|e| {
                    Failure::Unavailable(match e {
                        mpsc::error::TrySendError::Full(_) => {
                            "event log write queue is full".into()
                        }
                        mpsc::error::TrySendError::Closed(_) => "event log writer stopped".into(),
                    })
                })?;
            answer
                .await
                .map_err(|_| Failure::Unavailable("event log writer stopped".into()))?
        })
        .await
    }
}

#[async_trait]
impl EventLog for SqliteEventLog {
    #[instrument(name = "log.append", skip_all, fields(events = events.len()), err)]
    async fn append(&self, events: Vec<UsageEvent>) -> StoreResult<AppendReceipt> {
        let count = events.len() as u64;
        self.append_payload(codec::encode_events(&events), count)
            .await
    }

    #[instrument(name = "log.append_scores", skip_all, fields(scores = scores.len()), err)]
    async fn append_scores(&self, scores: Vec<Score>) -> StoreResult<AppendReceipt> {
        self.append_payload(codec::encode_scores(&scores), 0).await
    }

    async fn read(
        &self,
        from: &LogPosition,
        max_events: usize,
        wait: Duration,
    ) -> StoreResult<Vec<LogRecord>> {
        let start = from.next_offset(0);
        let mut head = self.head.clone();
        if head.borrow().next_offset <= start {
            let _ = tokio::time::timeout(wait, head.wait_for(|h| h.next_offset > start)).await;
        }
        if head.borrow().next_offset <= start {
            return Ok(Vec::new());
        }
        let reader = self.reader.clone();
        blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| Failure::Backend("log reader poisoned".into()))?;
            read_records(&conn, start, max_events)
        })
        .await
    }

    fn appended_events(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    async fn end(&self) -> StoreResult<LogPosition> {
        let next = self.head.borrow().next_offset;
        Ok(LogPosition(if next > 0 {
            [(0, next)].into_iter().collect()
        } else {
            Default::default()
        }))
    }

    async fn describe(&self) -> StoreResult<LogDescription> {
        let high = self.head.borrow().next_offset;
        let reader = self.reader.clone();
        let low = blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| Failure::Backend("log reader poisoned".into()))?;
            Ok(
                conn.query_row("SELECT MIN(record_offset) FROM log", [], |r| {
                    r.get::<_, Option<i64>>(0)
                })?,
            )
        })
        .await?;
        Ok(LogDescription {
            identity: LogIdentity {
                name: EMBEDDED_LOG.into(),
                id: Some(self.log_id.clone()),
            },
            partitions: [(
                0,
                Watermarks {
                    low: low.unwrap_or(high).min(high),
                    high,
                },
            )]
            .into_iter()
            .collect(),
        })
    }

    #[instrument(name = "log.prune", skip_all, err)]
    async fn prune(&self, received_before_ms: i64, consumed: &LogPosition) -> StoreResult<u64> {
        let below = consumed.next_offset(0);
        let reader = self.reader.clone();
        // `received_at_ms` never goes backwards along the offsets, so the records received
        // before the cutoff are the log's first ones: a binary search over the primary key
        // finds where they end, without reading the table.
        let (first, end) = blocking(move || {
            let conn = reader.lock().map_err(|_| Failure::Backend("log reader poisoned".into()))?;
            // Two subqueries: SQLite answers a lone MIN or MAX of the key from the b-tree's
            // ends, but both in one SELECT scan every record (seconds on a large log, holding
            // the reader the projector reads through).
            let (min, max): (Option<i64>, Option<i64>) = conn.query_row(
                BOUNDS,
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (Some(min), Some(max)) = (min, max) else {
                return Ok((0, 0));
            };
            // The newest record stays: it carries the head (next offset, event total) across
            // restarts.
            let limit = below.min(max).max(min);
            let mut received_from = conn.prepare(
                "SELECT received_at_ms FROM log WHERE record_offset >= ?1 ORDER BY record_offset LIMIT 1",
            )?;
            // Every record before `lo` was received before the cutoff; none from `hi` on may go.
            let (mut lo, mut hi) = (min, limit);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let at: Option<i64> = received_from
                    .query_row(params![mid], |r| r.get(0))
                    .optional()?;
                if at.is_some_and(|at| at < received_before_ms) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            Ok((min, lo))
        })
        .await?;
        // Deleted in steps, each its own transaction, so appends wait for one step at most;
        // after each step the pass waits as long as it held the connection, so the steps take
        // at most half of the log's write time.
        let mut deleted = 0;
        let mut from = first;
        while from < end {
            let to = end.min(from + PRUNE_STEP_RECORDS);
            let reader = self.reader.clone();
            let (n, held) = blocking(move || {
                let conn = reader
                    .lock()
                    .map_err(|_| Failure::Backend("log reader poisoned".into()))?;
                let began = std::time::Instant::now();
                let n = conn.execute(
                    "DELETE FROM log WHERE record_offset >= ?1 AND record_offset < ?2",
                    params![from, to],
                )?;
                Ok((n as u64, began.elapsed()))
            })
            .await?;
            deleted += n;
            from = to;
            if from < end {
                tokio::time::sleep(held).await;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_bounds_are_found_without_reading_the_records() {
        let dir = tempfile::tempdir().expect("dir");
        drop(SqliteEventLog::open(dir.path(), 4).expect("opened"));
        let conn = Connection::open(dir.path().join("events.db")).expect("reopened");
        let plan = crate::sqlite::query_plan(&conn, BOUNDS, []);
        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN log")),
            "a scan of the log: {plan:?}"
        );
        // The same two bounds as MIN and MAX over the whole table.
        for (offset, at) in [(3_i64, 10_i64), (7, 20), (5, 30)] {
            conn.execute(
                "INSERT INTO log (record_offset, received_at_ms, event_count, events_total, payload) VALUES (?1, ?2, 0, 0, x'')",
                params![offset, at],
            )
            .expect("inserted");
        }
        let bounds: (i64, i64) = conn
            .query_row(BOUNDS, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("bounds");
        assert_eq!(bounds, (3, 7));
    }
}
