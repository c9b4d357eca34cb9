//! The embedded analytics store: rollup rows, the projector checkpoint and the dedup memory in
//! one SQLite file, so one transaction covers all three (exactly-once effect of a commit).
//!
//! Rollup rows are keyed `(resolution, feature, bucket, model, provider, environment, prompt_id,
//! prompt_version, experiment_id, variant)`; the feature-first key serves the per-feature
//! dashboards, and an index on `(resolution, bucket)` serves the cross-feature views. Cost is a
//! 16-byte little-endian `i128` of pico-dollars, the sum of squared costs a 16-byte
//! little-endian `u128`. A row's two sketches (latency, unique users; 4–5 KiB once dense) are in
//! `rollup_sketches`, found by the row's `sketch_id` and written in the same transaction, so a
//! scan without sketches reads only the narrow rows.
//! Dedup fingerprints of the open set are stored as append-only chunks (fingerprint and second per
//! event, packed by `codec::encode_dedup_chunk`); a seal replaces them with a
//! sealed generation (`dedup_generations`: its summary) and its sorted blocks (`dedup_blocks`),
//! in the same commit. Parts of merged runs are written the same way without touching the
//! chunks. The generations a commit retires, and those entirely older than the window, are
//! listed in `dedup_doomed` by that commit: from then on no load and no block read sees them.
//! Their rows go in steps, by that commit and the ones after it, so no commit stalls the
//! projector on one large delete: first their blocks — up to a gigabyte for a merged run of
//! 128 M ids — [`DOOMED_BLOCKS_PER_COMMIT`] more than the commit writes (so the backlog shrinks
//! whatever the rate), then, once a generation has no block left, its summary row, at most
//! [`DOOMED_SUMMARIES_PER_COMMIT`] a commit (a merged run's summaries are ~300 MB of overflow
//! pages, which SQLite walks page by page to free).
//! Open chunks entirely older than the window are deleted in the commit that passes them. Pages are 16 KiB and the writer's page cache may grow to 64 MiB:
//! the writer touches recent rows, and the OS page cache serves the rest (256 MiB measured no
//! faster under load, and cost 240 MiB of peak RSS). Reads run on at most [`READERS`] reader
//! threads ([`crate::sqlite::readers`]), each owning a connection with a small page cache
//! ([`READER_CACHE_MIB`]): a dashboard answer reads a few MB of rows and sketches, which the OS
//! page cache holds once for all of them.
//!
//! The checkpoint is one row per log partition (`projector_partitions`), and dedup chunks are
//! tagged with their partition. A commit whose `base_offset` differs from the stored offset is
//! refused inside the transaction (a real compare-and-set). One projector writes a data
//! directory, so rollup rows merge all partitions.
//!
//! `log_bindings` holds one row per log the store was bound to ([`tally_domain::log_binding`]); the
//! checkpoints and dedup chunks are those of the newest. An adoption replaces them in one
//! transaction (rollup rows, merged across partitions, need no change), and a commit checks
//! inside its transaction that its epoch is still the newest.
//!
//! The same transaction writes the counted events for the drill-down (`events`) and the
//! scores with the experiment events they join (`scores`).

mod bindings;
mod events;
mod schema;
mod scores;
mod sums;

use bindings::{adopt, bind, bindings, current_epoch};
use schema::{upgrade_layout, SCHEMA};

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use rusqlite::{params, Connection, OptionalExtension, Row};
use tally_schemas::{Environment, Pico, UsageEvent};
use tracing::instrument;

use crate::failure::{seam_sync, Failure, Result};
use crate::sqlite::readers::Readers;
use crate::sqlite::{blocking, open_with};
use tally_domain::drilldown::EventQuery;
use tally_domain::hll::Hll;
use tally_domain::log_binding::{Adoption, LogBinding};
use tally_domain::rollup::{Dims, Resolution, Rollup, RollupKey, RollupRow};
use tally_domain::sketch::LatencySketch;
use tally_domain::store::{
    AnalyticsStore, BucketSums, DedupGeneration, DedupSeal, Filter, PartitionState, Partitions,
    ProjectionCommit, ProjectorState, RowFold, RowSketches, RowVersions, ScanRequest, ScannedRow,
    ScoreQuery, ScoredEvent, Span, StoreResult, SumsOf,
};

/// Sketch rows (`rollup_sketches`) carry blobs of a few hundred bytes to 16 KiB, and counted
/// events and dedup blocks are chunks of several KiB; 16 KiB pages keep most of them off overflow
/// chains.
const PAGE_SIZE: u32 = 16_384;

/// Rows one retention step deletes: 256 event chunks are a few MB.
const PRUNE_STEP_ROWS: usize = 256;

/// Page cache of each reader thread's connection, MiB. A reader's cache lasts one read: SQLite
/// drops it when the next read finds the file changed, which every projector commit does, so it
/// only needs to hold the pages one answer reads again (the b-trees' upper levels); the OS page
/// cache holds the rest once for all readers. The performance log (`benches/PERFORMANCE-LOG.md`)
/// has the query latency and peak RSS measured with 64, 8 and 2 MiB.
const READER_CACHE_MIB: i64 = 2;

/// Page cache of each reader's view of the embedded log (the drill-down reads a page's
/// events from it), MiB.
const LOG_READER_CACHE_MIB: i64 = 1;

/// Reader threads, each with its own connection: reads beyond this many at once queue.
const READERS: usize = 8;

const COLUMNS: &str = "resolution, feature, bucket, model, provider, environment, prompt_id, prompt_version, experiment_id, variant, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, cost_squares, unpriced, sketch_id";

/// The measure columns, in the order [`measures`] reads them.
const MEASURES: &str = "requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, cost_squares, unpriced";

pub struct SqliteAnalyticsStore {
    writer: Arc<Mutex<Connection>>,
    readers: Readers,
    /// The id of the embedded log the drill-down points into ([`Self::open_beside_log`]);
    /// `None`: it keeps copies of the events.
    log_id: Option<Arc<str>>,
    /// Moved after every change to rollup rows ([`RowVersions`]), on the writer's thread once
    /// the change is visible (or failed), so even a write whose caller went away moves it:
    /// this process is the store's only writer (the data directory's lock) and sees every
    /// change happen.
    versions: Arc<RowVersions>,
}

impl SqliteAnalyticsStore {
    /// Opens (or creates) `analytics.db` in `dir`; the drill-down keeps copies of the counted
    /// events (for a log that is not the embedded one).
    pub fn open(dir: &Path) -> StoreResult<SqliteAnalyticsStore> {
        Self::open_with_log(dir, None)
    }

    /// Opens `analytics.db` in `dir` beside the embedded `log`: the drill-down's chunks point
    /// into that log instead of copying its events, and its readers read the events from it.
    pub fn open_beside_log(
        dir: &Path,
        log: &crate::SqliteEventLog,
    ) -> StoreResult<SqliteAnalyticsStore> {
        Self::open_with_log(dir, Some((log.path().to_path_buf(), log.id().to_owned())))
    }

    fn open_with_log(
        dir: &Path,
        log: Option<(std::path::PathBuf, String)>,
    ) -> StoreResult<SqliteAnalyticsStore> {
        let (log_path, log_id) = log.unzip();
        seam_sync(|| -> Result<SqliteAnalyticsStore> {
            let path = dir.join("analytics.db");
            let reader_path = path.clone();
            let mut writer = open_with(&path, 64, PAGE_SIZE)?;
            writer.execute_batch(SCHEMA)?;
            writer.execute_batch(events::TABLE)?;
            writer.execute_batch(scores::TABLE)?;
            upgrade_layout(&mut writer)?;
            describe_metrics();
            report_backlog(forgotten(&writer)?);
            Ok(SqliteAnalyticsStore {
                writer: Arc::new(Mutex::new(writer)),
                readers: Readers::new("analytics-reader", READERS, move || {
                    let conn = open_with(&reader_path, READER_CACHE_MIB, PAGE_SIZE)?;
                    sums::register(&conn)?;
                    if let Some(log_path) = &log_path {
                        let log_path = log_path.to_str().ok_or_else(|| {
                            Failure::Backend(format!(
                                "the data directory's path is not UTF-8: {}",
                                log_path.display()
                            ))
                        })?;
                        conn.execute(
                            &format!("ATTACH DATABASE ?1 AS {}", events::LOG_SCHEMA),
                            params![log_path],
                        )?;
                        conn.pragma_update(
                            Some(rusqlite::DatabaseName::Attached(events::LOG_SCHEMA)),
                            "cache_size",
                            -1024 * LOG_READER_CACHE_MIB,
                        )?;
                    }
                    Ok(conn)
                }),
                log_id: log_id.map(Arc::from),
                versions: Arc::new(RowVersions::new()),
            })
        })
    }

    /// Runs `f` on a reader thread's connection, off the async runtime (readers never wait for
    /// the projector's writer).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.readers.read(f).await
    }
}

fn poisoned() -> Failure {
    Failure::Backend("analytics connection lock poisoned".into())
}

/// A 16-byte money column of `row`, read in place.
fn blob_16(row: &rusqlite::Row<'_>, index: usize, column: &str) -> Result<[u8; 16]> {
    row.get_ref(index)?
        .as_blob()
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Failure::Corrupt(format!("{column} column")))
}

/// The `AND column = ?n` conditions of `filter`, numbered from `first`, and their values.
fn filter_sql(filter: &Filter, first: usize) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = String::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    let environment = filter.environment.map(|e| e.as_str().to_string());
    for (col, val) in [
        ("feature", &filter.feature),
        ("model", &filter.model),
        ("provider", &filter.provider),
        ("prompt_id", &filter.prompt_id),
        ("prompt_version", &filter.prompt_version),
        ("experiment_id", &filter.experiment_id),
        ("variant", &filter.variant),
        ("environment", &environment),
    ] {
        if let Some(v) = val {
            sql.push_str(&format!(" AND {col} = ?{}", first + values.len()));
            values.push(v.clone().into());
        }
    }
    (sql, values)
}

fn env_of(text: &str) -> Result<Environment> {
    Environment::parse(text).ok_or_else(|| Failure::Corrupt(format!("environment {text}")))
}

/// Reads the measure columns starting at `first` ([`MEASURES`], then latency and users).
fn measures(row: &Row, first: usize, with_sketches: bool) -> Result<Rollup> {
    let get_u64 = |i: usize| -> Result<u64> { Ok(row.get::<_, i64>(first + i)? as u64) };
    let mut rollup = Rollup {
        requests: get_u64(0)?,
        errors: get_u64(1)?,
        timeouts: get_u64(2)?,
        latency_sum_us: get_u64(3)?,
        input_tokens: get_u64(4)?,
        output_tokens: get_u64(5)?,
        cached_input_tokens: get_u64(6)?,
        cost: Pico(i128::from_le_bytes(blob_16(row, first + 7, "cost")?)),
        cost_squares: u128::from_le_bytes(blob_16(row, first + 8, "cost_squares")?),
        unpriced: get_u64(9)?,
        ..Rollup::default()
    };
    if with_sketches {
        let (mut latency, mut users) = sketch_blobs(row, first)?;
        rollup.latency = LatencySketch::decode(&mut latency)
            .ok_or_else(|| Failure::Corrupt("latency sketch".into()))?;
        rollup.users =
            Hll::decode(&mut users).ok_or_else(|| Failure::Corrupt("user sketch".into()))?;
    }
    Ok(rollup)
}

/// The latency and user sketches as stored, after the measure columns starting at `first`.
fn sketch_blobs<'r>(row: &'r Row, first: usize) -> Result<(&'r [u8], &'r [u8])> {
    let blob = |i: usize, what: &str| -> Result<&'r [u8]> {
        row.get_ref(first + i)?
            .as_blob()
            .map_err(|_| Failure::Corrupt(format!("{what} column")))
    };
    Ok((blob(10, "latency")?, blob(11, "users")?))
}

fn merge_row(tx: &rusqlite::Transaction, key: &RollupKey, delta: &Rollup) -> Result<()> {
    let d = &key.dims;
    let env = d.environment.as_str();
    let res = key.resolution.seconds();
    let existing = {
        let mut select = tx.prepare_cached(&format!(
            "SELECT {MEASURES}, latency, users, sketch_id
             FROM rollups LEFT JOIN rollup_sketches ON rollup_sketches.id = rollups.sketch_id
             WHERE resolution = ?1 AND feature = ?2 AND bucket = ?3 AND model = ?4 AND provider = ?5 AND environment = ?6 AND prompt_id = ?7 AND prompt_version = ?8 AND experiment_id = ?9 AND variant = ?10",
        ))?;
        select
            .query_row(
                params![
                    res,
                    d.feature,
                    key.bucket,
                    d.model,
                    d.provider,
                    env,
                    d.prompt_id,
                    d.prompt_version,
                    d.experiment_id,
                    d.variant
                ],
                |row| Ok(measures(row, 0, true).map(|m| (m, row.get::<_, i64>(12)))),
            )
            .optional()?
            .transpose()?
    };
    let (mut merged, sketch_id) = match existing {
        Some((rollup, id)) => (rollup, Some(id?)),
        None => (Rollup::default(), None),
    };
    merged.merge(delta);
    let sketch_id = match sketch_id {
        Some(id) => {
            tx.prepare_cached("UPDATE rollup_sketches SET latency = ?2, users = ?3 WHERE id = ?1")?
                .execute(params![id, merged.encode_latency(), merged.encode_users()])?;
            id
        }
        None => {
            tx.prepare_cached("INSERT INTO rollup_sketches (latency, users) VALUES (?1, ?2)")?
                .execute(params![merged.encode_latency(), merged.encode_users()])?;
            tx.last_insert_rowid()
        }
    };
    let mut upsert = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO rollups ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    ))?;
    upsert.execute(params![
        res,
        d.feature,
        key.bucket,
        d.model,
        d.provider,
        env,
        d.prompt_id,
        d.prompt_version,
        d.experiment_id,
        d.variant,
        merged.requests as i64,
        merged.errors as i64,
        merged.timeouts as i64,
        merged.latency_sum_us as i64,
        merged.input_tokens as i64,
        merged.output_tokens as i64,
        merged.cached_input_tokens as i64,
        &merged.cost.0.to_le_bytes()[..],
        &merged.cost_squares.to_le_bytes()[..],
        merged.unpriced as i64,
        sketch_id,
    ])?;
    Ok(())
}

/// The checkpoints of `partitions`, with the dedup fingerprints seen within `window_s` of each
/// partition's log clock (none when `window_s` is `None`).
pub(super) fn load_state(
    conn: &Connection,
    window_s: Option<u32>,
    partitions: &Partitions,
) -> Result<ProjectorState> {
    let mut state = ProjectorState {
        epoch: current_epoch(conn)?,
        ..ProjectorState::default()
    };
    let mut stmt = conn.prepare("SELECT log_partition, next_offset, last_received_ms, events_applied, duplicates_dropped, anchor FROM projector_partitions")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let partition: i32 = r.get(0)?;
        if !partitions.contains(partition) {
            continue;
        }
        let ps = PartitionState {
            next_offset: r.get(1)?,
            last_received_ms: r.get(2)?,
            events_applied: r.get::<_, i64>(3)? as u64,
            duplicates_dropped: r.get::<_, i64>(4)? as u64,
            anchor: r.get::<_, i64>(5)? as u64,
            dedup: Vec::new(),
            generations: Vec::new(),
        };
        state.partitions.insert(partition, ps);
    }
    let Some(window_s) = window_s else {
        return Ok(state);
    };
    let mut stmt = conn.prepare(
        "SELECT entries FROM dedup_chunks WHERE log_partition = ?1 AND max_seen_s >= ?2 ORDER BY id",
    )?;
    let mut generations = conn.prepare(
        &format!("SELECT id, max_seen_s, entries FROM dedup_generations g WHERE log_partition = ?1 AND max_seen_s >= ?2 AND {HELD} ORDER BY id"),
    )?;
    for (partition, ps) in &mut state.partitions {
        let since_s = ((ps.last_received_ms / 1000) as u32).saturating_sub(window_s);
        let mut rows = stmt.query(params![partition, since_s])?;
        while let Some(row) = rows.next()? {
            let bytes: Vec<u8> = row.get(0)?;
            crate::codec::decode_dedup_chunk(&bytes, since_s, &mut ps.dedup)?;
        }
        let mut rows = generations.query(params![partition, since_s])?;
        while let Some(row) = rows.next()? {
            ps.generations.push(DedupGeneration {
                id: row.get::<_, i64>(0)? as u64,
                max_seen_s: row.get(1)?,
                entries: row.get::<_, i64>(2)? as u64,
            });
        }
    }
    Ok(state)
}

/// Appends the entries of `partition`'s sealed generations seen at or after `since_s` to
/// `out` (an adoption hands the whole dedup memory over as chunks).
pub(super) fn sealed_entries(
    conn: &Connection,
    partition: i32,
    since_s: u32,
    out: &mut Vec<(u64, u32)>,
) -> Result<()> {
    let mut stmt = conn.prepare(
        &format!("SELECT b.entries FROM dedup_blocks b JOIN dedup_generations g ON g.log_partition = b.log_partition AND g.id = b.generation WHERE b.log_partition = ?1 AND g.max_seen_s >= ?2 AND {HELD} ORDER BY b.generation, b.block"),
    )?;
    let mut rows = stmt.query(params![partition, since_s])?;
    while let Some(row) = rows.next()? {
        let bytes: Vec<u8> = row.get(0)?;
        crate::codec::decode_dedup_chunk(&bytes, since_s, out)?;
    }
    Ok(())
}

/// The blocks `wanted` of `partition`'s sealed generations, in order.
fn dedup_blocks(
    conn: &Connection,
    partition: i32,
    wanted: &[(u64, u32)],
) -> Result<Vec<Vec<(u64, u32)>>> {
    let mut stmt = conn.prepare_cached(
        // Only of generations still held: a forgotten one's blocks may be half deleted.
        &format!("SELECT b.entries FROM dedup_blocks b JOIN dedup_generations g ON g.log_partition = b.log_partition AND g.id = b.generation WHERE b.log_partition = ?1 AND b.generation = ?2 AND b.block = ?3 AND {HELD}"),
    )?;
    let mut out = Vec::with_capacity(wanted.len());
    for (generation, block) in wanted {
        let bytes: Vec<u8> = stmt
            .query_row(params![partition, *generation as i64, block], |r| r.get(0))
            .optional()?
            .ok_or_else(|| Failure::NotFound {
                what: format!(
                    "dedup block {block} of generation {generation} (partition {partition})"
                ),
            })?;
        let mut entries = Vec::with_capacity(bytes.len() / 12);
        crate::codec::decode_dedup_chunk(&bytes, 0, &mut entries)?;
        out.push(entries);
    }
    Ok(out)
}

/// Sealed generations whose summaries one read hands over ([`AnalyticsStore::dedup_summaries`]):
/// at most a few seals' worth (about 4.6 MB each at the default cap of 2 M ids).
const SUMMARIES_PER_READ: usize = 4;

/// The summaries of `partition`'s held sealed generations among `ids`, in order.
fn dedup_summaries(conn: &Connection, partition: i32, ids: &[u64]) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT summary FROM dedup_generations g WHERE log_partition = ?1 AND id = ?2 AND {HELD}"
    ))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(summary) = stmt
            .query_row(params![partition, *id as i64], |r| r.get(0))
            .optional()?
        {
            out.push((*id, summary));
        }
    }
    Ok(out)
}

/// Writes sealed generations in place of the partition's open chunks.
fn seal(tx: &Connection, partition: i32, seals: &[DedupSeal]) -> Result<()> {
    tx.execute(
        "DELETE FROM dedup_chunks WHERE log_partition = ?1",
        params![partition],
    )?;
    write_generations(tx, partition, seals)
}

/// Blocks of retired or expired generations a commit deletes beyond the blocks it writes (256
/// blocks of 1,024 ids: about 2 MB of rows). Every block written is forgotten once (retired by
/// a merge, or expired), so deleting as many as are written, and these more, drains the
/// backlog whatever the rate: under load, where commits come several times a second, a merged
/// run's 125,000 blocks are gone within minutes.
pub const DOOMED_BLOCKS_PER_COMMIT: i64 = 256;

/// Summary rows of forgotten generations, their blocks all deleted, that a commit deletes: a
/// summary is ≈ 2.3 bytes per id (about 0.6 MB for a merged run's part, 4.6 MB for a seal of
/// 2 M ids). Generations are forgotten at most as fast as they are written, a few per commit.
pub const DOOMED_SUMMARIES_PER_COMMIT: i64 = 8;

/// The SQL condition that generation `g` (a `dedup_generations` row) is not forgotten.
const HELD: &str = "NOT EXISTS (SELECT 1 FROM dedup_doomed d WHERE d.log_partition = g.log_partition AND d.generation = g.id)";

/// Forgets the partition's sealed generations `ids`: at once for loads and reads, their rows
/// in steps ([`delete_doomed`]).
fn retire(tx: &Connection, partition: i32, ids: &[u64]) -> Result<()> {
    let mut doomed = tx.prepare_cached(
        "INSERT OR IGNORE INTO dedup_doomed (log_partition, generation) SELECT log_partition, id FROM dedup_generations WHERE log_partition = ?1 AND id = ?2",
    )?;
    for id in ids {
        doomed.execute(params![partition, *id as i64])?;
    }
    Ok(())
}

/// Up to `?1` blocks of forgotten generations. `CROSS JOIN` makes SQLite walk the few doomed
/// generations and look their blocks up: with a plain `JOIN` its planner walks every block
/// (86,116 after 15 minutes at 100,000 events/s) and looks each up among the doomed, on every
/// commit, mostly to find none: 8 ms a commit then, growing with the window.
const DOOMED_BLOCKS: &str = "DELETE FROM dedup_blocks WHERE rowid IN (SELECT b.rowid FROM dedup_doomed d CROSS JOIN dedup_blocks b ON b.log_partition = d.log_partition AND b.generation = d.generation LIMIT ?1)";

/// The summary rows of up to `?1` doomed generations with no block left, found from the
/// doomed side as above.
const DOOMED_GENERATIONS: &str = "DELETE FROM dedup_generations WHERE rowid IN (SELECT g.rowid FROM dedup_doomed d CROSS JOIN dedup_generations g ON g.log_partition = d.log_partition AND g.id = d.generation WHERE NOT EXISTS (SELECT 1 FROM dedup_blocks b WHERE b.log_partition = d.log_partition AND b.generation = d.generation) LIMIT ?1)";

/// Deletes up to `blocks` blocks of forgotten generations, then the summary rows of up to
/// [`DOOMED_SUMMARIES_PER_COMMIT`] of those with no block left, and forgets the generations
/// that have neither left.
fn delete_doomed(tx: &Connection, blocks: i64) -> Result<()> {
    tx.prepare_cached(DOOMED_BLOCKS)?.execute(params![blocks])?;
    tx.prepare_cached(DOOMED_GENERATIONS)?
        .execute(params![DOOMED_SUMMARIES_PER_COMMIT])?;
    tx.prepare_cached(
        "DELETE FROM dedup_doomed WHERE NOT EXISTS (SELECT 1 FROM dedup_blocks b WHERE b.log_partition = dedup_doomed.log_partition AND b.generation = dedup_doomed.generation) AND NOT EXISTS (SELECT 1 FROM dedup_generations g WHERE g.log_partition = dedup_doomed.log_partition AND g.id = dedup_doomed.generation)",
    )?
    .execute([])?;
    Ok(())
}

/// Forgotten dedup generations whose rows are not all deleted yet.
pub const FORGOTTEN_GENERATIONS: &str = "tally_storage_dedup_forgotten_generations";
/// Ids those generations held.
pub const FORGOTTEN_IDS: &str = "tally_storage_dedup_forgotten_ids";

fn describe_metrics() {
    metrics::describe_gauge!(
        FORGOTTEN_GENERATIONS,
        "Dedup generations the embedded store has forgotten (retired by a merge, or older than the window) whose rows are not all deleted yet; every commit deletes more of them."
    );
    metrics::describe_gauge!(
        FORGOTTEN_IDS,
        "Ids held by the forgotten dedup generations whose rows are not all deleted yet (an upper bound of the rows left: a generation's blocks go before its summary)."
    );
}

/// The backlog of [`delete_doomed`]: forgotten generations not yet wholly deleted, and the
/// ids they held.
fn forgotten(conn: &Connection) -> Result<(u64, u64)> {
    let (generations, ids): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(g.entries), 0) FROM dedup_doomed d LEFT JOIN dedup_generations g ON g.log_partition = d.log_partition AND g.id = d.generation",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((generations.max(0) as u64, ids.max(0) as u64))
}

fn report_backlog((generations, ids): (u64, u64)) {
    metrics::gauge!(FORGOTTEN_GENERATIONS).set(generations as f64);
    metrics::gauge!(FORGOTTEN_IDS).set(ids as f64);
}

/// Writes generations and their blocks.
fn write_generations(tx: &Connection, partition: i32, seals: &[DedupSeal]) -> Result<()> {
    let mut generation = tx.prepare_cached(
        "INSERT INTO dedup_generations (log_partition, id, max_seen_s, entries, summary) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut block = tx.prepare_cached(
        "INSERT INTO dedup_blocks (log_partition, generation, block, entries) VALUES (?1, ?2, ?3, ?4)",
    )?;
    // A name forgotten before (names are content hashes: rare) whose rows are not all
    // deleted yet: what is left of them goes first.
    let mut revived =
        tx.prepare_cached("DELETE FROM dedup_doomed WHERE log_partition = ?1 AND generation = ?2")?;
    let mut leftovers =
        tx.prepare_cached("DELETE FROM dedup_blocks WHERE log_partition = ?1 AND generation = ?2")?;
    let mut old_summary =
        tx.prepare_cached("DELETE FROM dedup_generations WHERE log_partition = ?1 AND id = ?2")?;
    for seal in seals {
        let g = &seal.generation;
        if revived.execute(params![partition, g.id as i64])? > 0 {
            leftovers.execute(params![partition, g.id as i64])?;
            old_summary.execute(params![partition, g.id as i64])?;
        }
        generation.execute(params![
            partition,
            g.id as i64,
            g.max_seen_s,
            g.entries as i64,
            seal.summary
        ])?;
        for (i, entries) in seal.blocks().enumerate() {
            block.execute(params![
                partition,
                g.id as i64,
                i as i64,
                crate::codec::encode_dedup_chunk(entries)
            ])?;
        }
    }
    Ok(())
}

/// Applies `c` in one transaction; the backlog of forgotten generations it leaves
/// ([`forgotten`]).
fn commit(
    conn: &mut Connection,
    mut c: ProjectionCommit,
    log_id: Option<&str>,
) -> Result<(u64, u64)> {
    let tx = conn.transaction()?;
    let epoch = current_epoch(&tx)?;
    if epoch != c.epoch {
        return Err(Failure::Conflict(format!(
            "the store was bound to another log (epoch {epoch}) since this projector loaded epoch {}",
            c.epoch
        )));
    }
    for (partition, pc) in &c.partitions {
        let stored: i64 = tx
            .query_row(
                "SELECT next_offset FROM projector_partitions WHERE log_partition = ?1",
                params![partition],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        if stored != pc.base_offset {
            return Err(Failure::Conflict(format!(
                "log partition {partition} is at offset {stored}, not {}: another projector moved it",
                pc.base_offset
            )));
        }
    }
    // One projector writes this store, so rows are not kept per partition: the partitions'
    // deltas are merged before they touch a row.
    let mut deltas = std::collections::BTreeMap::new();
    for pc in c.partitions.values_mut() {
        tally_domain::rollup::apply(&mut deltas, std::mem::take(&mut pc.deltas));
    }
    for (key, delta) in &deltas {
        merge_row(&tx, key, delta)?;
    }
    events::write(
        &tx,
        c.partitions.values().flat_map(|pc| pc.raw_events()),
        log_id,
    )?;
    scores::write(
        &tx,
        c.partitions.values().flat_map(|pc| pc.raw_events()),
        c.partitions.values().flat_map(|pc| &pc.scores),
    )?;
    for (partition, pc) in &c.partitions {
        // Expiry first: a seal never meets an expired generation of the same name.
        tx.execute(
            "DELETE FROM dedup_chunks WHERE log_partition = ?1 AND max_seen_s < ?2",
            params![partition, pc.dedup_horizon_s],
        )?;
        tx.prepare_cached(
            "INSERT OR IGNORE INTO dedup_doomed (log_partition, generation) SELECT log_partition, id FROM dedup_generations WHERE log_partition = ?1 AND max_seen_s < ?2",
        )?
        .execute(params![partition, pc.dedup_horizon_s])?;
        retire(&tx, *partition, &pc.retired)?;
        write_generations(&tx, *partition, &pc.merged)?;
        if !pc.seals.is_empty() {
            seal(&tx, *partition, &pc.seals)?;
        } else if let Some(max_seen) = pc.dedup_new.iter().map(|(_, s)| *s).max() {
            tx.execute(
                "INSERT INTO dedup_chunks (max_seen_s, entries, log_partition) VALUES (?1, ?2, ?3)",
                params![
                    max_seen,
                    crate::codec::encode_dedup_chunk(&pc.dedup_new),
                    partition
                ],
            )?;
        }
        let s = &pc.state;
        tx.execute(
            "INSERT OR REPLACE INTO projector_partitions VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                partition,
                s.next_offset,
                s.last_received_ms,
                s.events_applied as i64,
                s.duplicates_dropped as i64,
                s.anchor as i64
            ],
        )?;
    }
    let written: usize = c
        .partitions
        .values()
        .flat_map(|pc| pc.seals.iter().chain(&pc.merged))
        .map(|seal| seal.blocks().count())
        .sum();
    delete_doomed(
        &tx,
        DOOMED_BLOCKS_PER_COMMIT.saturating_add(i64::try_from(written).unwrap_or(i64::MAX)),
    )?;
    let backlog = forgotten(&tx)?;
    tx.commit()?;
    Ok(backlog)
}

fn scan(conn: &Connection, req: &ScanRequest) -> Result<Vec<RollupRow>> {
    let mut out = Vec::new();
    scan_rows(conn, req, |row| {
        out.push(row.into_row()?);
        Ok(())
    })?;
    Ok(out)
}

/// Hands every row of `req` to `each`, span by span in the request's order, with its sketches
/// as stored when asked for ([`RowSketches::Encoded`], borrowed from SQLite's row).
fn scan_rows(
    conn: &Connection,
    req: &ScanRequest,
    mut each: impl FnMut(ScannedRow<'_>) -> StoreResult<()>,
) -> Result<()> {
    let f = &req.filter;
    // Sketches only when asked: the narrow rollup rows are all a sum needs. A row whose sketch
    // is missing is reported as corrupt (a left join), never silently left out.
    let (sketch_cols, sketches) = if req.with_sketches {
        (
            "latency, users",
            "LEFT JOIN rollup_sketches ON rollup_sketches.id = rollups.sketch_id",
        )
    } else {
        ("x'', x''", "")
    };
    let mut sql = format!(
        "SELECT feature, bucket, model, provider, environment, prompt_id, prompt_version, experiment_id, variant, {MEASURES}, {sketch_cols}
         FROM rollups {sketches} WHERE resolution = ?1 AND bucket >= ?2 AND bucket < ?3"
    );
    let (conditions, extra) = filter_sql(f, 4);
    sql.push_str(&conditions);
    let mut stmt = conn.prepare_cached(&sql)?;
    for span in &req.spans {
        if span.from >= span.to {
            continue;
        }
        let mut values: Vec<rusqlite::types::Value> = vec![
            span.resolution.seconds().into(),
            span.from.into(),
            span.to.into(),
        ];
        values.extend(extra.iter().cloned());
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            let env: String = row.get(4)?;
            let key = RollupKey {
                resolution: span.resolution,
                bucket: row.get(1)?,
                dims: Dims {
                    feature: row.get(0)?,
                    model: row.get(2)?,
                    provider: row.get(3)?,
                    environment: env_of(&env)?,
                    prompt_id: row.get(5)?,
                    prompt_version: row.get(6)?,
                    experiment_id: row.get(7)?,
                    variant: row.get(8)?,
                },
            };
            let sketches = if req.with_sketches {
                let (latency, users) = sketch_blobs(row, 9)?;
                RowSketches::Encoded { latency, users }
            } else {
                RowSketches::InRollup
            };
            each(ScannedRow {
                key,
                rollup: measures(row, 9, false)?,
                sketches,
            })?;
        }
    }
    Ok(())
}

#[async_trait]
impl AnalyticsStore for SqliteAnalyticsStore {
    async fn load_state(
        &self,
        dedup_window_s: u32,
        partitions: &Partitions,
    ) -> StoreResult<ProjectorState> {
        let writer = self.writer.clone();
        let partitions = partitions.clone();
        blocking(move || {
            load_state(
                &*writer.lock().map_err(|_| poisoned())?,
                Some(dedup_window_s),
                &partitions,
            )
        })
        .await
    }

    async fn checkpoints(&self, partitions: &Partitions) -> StoreResult<ProjectorState> {
        let partitions = partitions.clone();
        self.read(move |conn| load_state(conn, None, &partitions))
            .await
    }

    async fn bindings(&self) -> StoreResult<Vec<LogBinding>> {
        self.read(bindings).await
    }

    async fn bind(&self, binding: LogBinding) -> StoreResult<LogBinding> {
        let writer = self.writer.clone();
        blocking(move || bind(&mut *writer.lock().map_err(|_| poisoned())?, &binding)).await
    }

    #[instrument(name = "analytics.adopt", skip_all, fields(epoch = adoption.adopted.epoch), err)]
    async fn adopt(&self, adoption: &Adoption, dedup_window_s: u32) -> StoreResult<()> {
        let writer = self.writer.clone();
        let adoption = adoption.clone();
        blocking(move || {
            adopt(
                &mut *writer.lock().map_err(|_| poisoned())?,
                &adoption,
                dedup_window_s,
            )
        })
        .await
    }

    #[instrument(name = "analytics.commit", skip_all, fields(rows = c.rows(), dedup = c.dedup_entries()), err)]
    async fn commit(&self, c: ProjectionCommit) -> StoreResult<()> {
        let writer = self.writer.clone();
        let log_id = self.log_id.clone();
        let versions = self.versions.clone();
        let touched: std::collections::BTreeSet<(Resolution, i64)> = c
            .partitions
            .values()
            .flat_map(|pc| pc.deltas.keys().map(|k| (k.resolution, k.bucket)))
            .collect();
        let backlog = blocking(move || {
            let done = writer
                .lock()
                .map_err(|_| poisoned())
                .and_then(|mut conn| commit(&mut conn, c, log_id.as_deref()));
            versions.touch(touched);
            done
        })
        .await?;
        report_backlog(backlog);
        Ok(())
    }

    async fn scan(&self, request: ScanRequest) -> StoreResult<Vec<RollupRow>> {
        self.read(move |conn| scan(conn, &request)).await
    }

    async fn scan_into(
        &self,
        request: ScanRequest,
        mut fold: Box<dyn RowFold>,
    ) -> StoreResult<Box<dyn RowFold>> {
        self.read(move |conn| {
            scan_rows(conn, &request, |row| fold.add(row))?;
            Ok(fold)
        })
        .await
    }

    async fn bucket_sums(
        &self,
        filter: &Filter,
        spans: &[Span],
        which: SumsOf,
    ) -> StoreResult<Vec<BucketSums>> {
        let (filter, spans) = (filter.clone(), spans.to_vec());
        self.read(move |conn| sums::bucket_sums(conn, &filter, &spans, which))
            .await
    }

    fn seals_dedup(&self) -> bool {
        true
    }

    #[instrument(name = "analytics.dedup_blocks", skip_all, fields(blocks = wanted.len()), err)]
    async fn dedup_blocks(
        &self,
        partition: i32,
        wanted: &[(u64, u32)],
    ) -> StoreResult<Vec<Vec<(u64, u32)>>> {
        let wanted = wanted.to_vec();
        self.read(move |conn| dedup_blocks(conn, partition, &wanted))
            .await
    }

    fn dedup_summaries<'a>(
        &'a self,
        partition: i32,
        ids: &'a [u64],
    ) -> BoxStream<'a, StoreResult<(u64, Vec<u8>)>> {
        // A few per read: no reader is held for the whole load, nor are the summaries.
        futures::stream::iter(ids.chunks(SUMMARIES_PER_READ))
            .then(move |chunk| {
                let chunk = chunk.to_vec();
                self.read(move |conn| dedup_summaries(conn, partition, &chunk))
            })
            .map_ok(|found| futures::stream::iter(found.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM projector_partitions", [], |r| {
                r.get::<_, i64>(0)
            })?;
            Ok(())
        })
        .await
    }

    #[instrument(name = "analytics.events", skip_all, err)]
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<UsageEvent>> {
        let query = query.clone();
        let log_id = self.log_id.clone();
        self.read(move |conn| events::query(conn, &query, log_id.as_deref()))
            .await
    }

    #[instrument(name = "analytics.experiment_scores", skip_all, err)]
    async fn experiment_scores(&self, query: &ScoreQuery) -> StoreResult<Vec<ScoredEvent>> {
        let query = query.clone();
        self.read(move |conn| scores::query(conn, &query)).await
    }

    #[instrument(name = "analytics.prune", skip_all, err)]
    async fn prune(&self, before_s: i64) -> StoreResult<u64> {
        // Whole UTC days, exactly like the ClickHouse store's partition drops. Every
        // resolution divides a day, so a row's bucket lies in the day the row belongs to.
        let first_kept_day = before_s.div_euclid(86_400) * 86_400;
        // The days' raw events, scores and experiment events go first (as ClickHouse drops
        // their partitions before the rollups'), so the drill-down never shows events of a day
        // whose rollups are gone. They can be many (hundreds of MB a day): they go in bounded
        // steps, each its own transaction taking the writer once, so a projector commit waits
        // for one step at most, never for the whole pass. After each step the pass leaves the
        // writer alone for as long as it held it: the steps use at most half the writer's
        // time, however far behind the projector is.
        for step in [events::prune_step, scores::prune_step] {
            loop {
                let writer = self.writer.clone();
                let (n, held) = blocking(move || {
                    let conn = writer.lock().map_err(|_| poisoned())?;
                    let began = std::time::Instant::now();
                    let n = step(&conn, first_kept_day, PRUNE_STEP_ROWS)?;
                    Ok((n, began.elapsed()))
                })
                .await?;
                if n < PRUNE_STEP_ROWS {
                    break;
                }
                tokio::time::sleep(held).await;
            }
        }
        // Then the rollups and their sketches, in one transaction, whole days like ClickHouse's
        // partition drops. The rollup table is small (rows per minute, not per event) and the
        // time index finds the rows (never the running totals, which have no day).
        let resolutions = Resolution::ALL
            .iter()
            .map(|r| r.seconds().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let writer = self.writer.clone();
        let versions = self.versions.clone();
        blocking(move || {
            let done = prune_rollups(&writer, &resolutions, first_kept_day);
            if !matches!(done, Ok(0)) {
                versions.touch_all();
            }
            done
        })
        .await
    }

    async fn reset(&self) -> StoreResult<()> {
        let writer = self.writer.clone();
        let versions = self.versions.clone();
        blocking(move || {
            let done = writer.lock().map_err(|_| poisoned()).and_then(|conn| {
                conn.execute_batch("BEGIN; DELETE FROM rollups; DELETE FROM rollup_sketches; DELETE FROM event_chunks; DELETE FROM scores; DELETE FROM experiment_events; DELETE FROM experiment_arms; DELETE FROM projector_partitions; DELETE FROM dedup_chunks; DELETE FROM dedup_blocks; DELETE FROM dedup_generations; DELETE FROM dedup_doomed; DELETE FROM log_bindings; COMMIT;")?;
                Ok(())
            });
            versions.touch_all();
            done
        })
        .await
    }

    fn row_versions(&self) -> Option<&RowVersions> {
        Some(&self.versions)
    }
}

/// Deletes the rollup rows (and their sketches) of days before `first_kept_day`, in one
/// transaction; returns how many rows.
fn prune_rollups(
    writer: &Mutex<Connection>,
    resolutions: &str,
    first_kept_day: i64,
) -> Result<u64> {
    let conn = writer.lock().map_err(|_| poisoned())?;
    let tx = conn.unchecked_transaction()?;
    let old = format!("resolution IN ({resolutions}) AND bucket < ?1");
    tx.execute(
        &format!(
            "DELETE FROM rollup_sketches WHERE id IN (SELECT sketch_id FROM rollups WHERE {old})"
        ),
        params![first_kept_day],
    )?;
    let deleted = tx.execute(
        &format!("DELETE FROM rollups WHERE {old}"),
        params![first_kept_day],
    )?;
    tx.commit()?;
    Ok(deleted as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_domain::dedup::GenerationSummary;
    use tally_domain::store::{
        DedupGeneration, DedupSeal, PartitionCommit, PartitionState, Partitions, StoreError,
    };

    fn fp(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// A generation named `id` of `entries` ids (from `first`), seen at second 1,000.
    fn generation(id: u64, first: u64, entries: u64) -> DedupSeal {
        let mut sealed: Vec<(u64, u32)> =
            (first..first + entries).map(|i| (fp(i), 1_000)).collect();
        sealed.sort_unstable();
        let keys: Vec<u64> = sealed.iter().map(|(f, _)| *f).collect();
        DedupSeal {
            generation: DedupGeneration {
                id,
                max_seen_s: 1_000,
                entries,
            },
            summary: GenerationSummary::build(&keys).expect("summary").encode(),
            entries: sealed,
        }
    }

    /// A commit of partition 0 moving it from `base` by one event.
    fn step(base: i64, merged: Vec<DedupSeal>, retired: Vec<u64>) -> ProjectionCommit {
        ProjectionCommit {
            epoch: 0,
            partitions: [(
                0,
                PartitionCommit {
                    base_offset: base,
                    merged,
                    retired,
                    state: PartitionState {
                        next_offset: base + 1,
                        last_received_ms: 1_000_000,
                        ..PartitionState::default()
                    },
                    ..PartitionCommit::default()
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    /// The dimensions of production chatbot rows of `model` (an OpenAI one), nothing else named.
    fn chatbot_dims(model: &str) -> Dims {
        Dims {
            feature: "chatbot".into(),
            model: model.into(),
            provider: "openai".into(),
            environment: Environment::Production,
            prompt_id: String::new(),
            prompt_version: String::new(),
            experiment_id: String::new(),
            variant: String::new(),
        }
    }

    fn count(store: &SqliteAnalyticsStore, sql: &str) -> i64 {
        let conn = store.writer.lock().expect("writer");
        conn.query_row(sql, [], |r| r.get(0)).expect("counted")
    }

    /// What the backlog gauges report: forgotten generations left, and their ids.
    fn backlog(store: &SqliteAnalyticsStore) -> (u64, u64) {
        forgotten(&store.writer.lock().expect("writer")).expect("backlog")
    }

    /// Commits (from offset 1) the retirement of generations `ids`, then loads the state.
    async fn retire_and_load(
        store: &SqliteAnalyticsStore,
        ids: Vec<u64>,
    ) -> tally_domain::store::ProjectorState {
        store
            .commit(step(1, Vec::new(), ids))
            .await
            .expect("retired");
        store
            .load_state(86_400, &Partitions::All)
            .await
            .expect("loaded")
    }

    /// What [`AnalyticsStore::dedup_summaries`] hands over for partition 0's `ids`.
    async fn summaries(store: &SqliteAnalyticsStore, ids: &[u64]) -> Vec<(u64, Vec<u8>)> {
        store
            .dedup_summaries(0, ids)
            .try_collect()
            .await
            .expect("summaries")
    }

    const BLOCKS: &str = "SELECT COUNT(*) FROM dedup_blocks";
    /// What a scan hands a fold: each row decoded, and a total per resolution added from the
    /// row as handed over.
    #[derive(Default)]
    struct Collected {
        rows: Vec<RollupRow>,
        totals: std::collections::BTreeMap<Resolution, tally_domain::rollup::RollupTotal>,
    }

    impl RowFold for Collected {
        fn add(&mut self, row: ScannedRow<'_>) -> StoreResult<()> {
            assert!(
                matches!(row.sketches, RowSketches::Encoded { .. }),
                "sketches handed over as stored"
            );
            row.add_to(self.totals.entry(row.key.resolution).or_default())?;
            self.rows.push(row.into_row()?);
            Ok(())
        }
    }

    async fn fold_all(store: &SqliteAnalyticsStore) -> StoreResult<Collected> {
        let everything = ScanRequest::everything(&Resolution::STORED, true);
        let back: Box<dyn std::any::Any> = store
            .scan_into(everything, Box::<Collected>::default())
            .await?;
        Ok(*back.downcast::<Collected>().expect("the fold handed in"))
    }

    #[tokio::test]
    async fn a_fold_gets_every_row_with_its_sketches_as_stored_and_corrupt_ones_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteAnalyticsStore::open(dir.path()).expect("opened");
        // Three minutes of two models: users 0..n (sparse, equal, subsets; 3,000 is dense).
        let mut deltas = std::collections::BTreeMap::new();
        for (minute, model, users) in [(0, "a", 40), (1, "a", 40), (1, "b", 3_000), (2, "a", 25)] {
            let mut rollup = Rollup {
                requests: users,
                ..Rollup::default()
            };
            for u in 0..users {
                rollup.users.insert(&format!("user-{u}"));
                rollup.latency.insert(1_000 + u * 37 % 5_000);
            }
            let key = RollupKey {
                resolution: Resolution::Minute,
                bucket: 1_800_000_000 + minute * 60,
                dims: chatbot_dims(model),
            };
            deltas.insert(key, rollup);
        }
        let mut commit = step(0, Vec::new(), Vec::new());
        commit.partitions.get_mut(&0).expect("partition 0").deltas = deltas.clone();
        store.commit(commit).await.expect("written");

        let got = fold_all(&store).await.expect("folded");
        let rows: std::collections::BTreeMap<_, _> =
            got.rows.into_iter().map(|r| (r.key, r.rollup)).collect();
        assert_eq!(rows, deltas, "every row, its sketches as written");
        let mut want = tally_domain::rollup::RollupTotal::new();
        deltas.values().for_each(|r| want.add(r));
        let totals: Vec<_> = got.totals.into_iter().collect();
        assert_eq!(totals.len(), 1, "minute rows only");
        assert_eq!(totals[0].1.clone().rollup(), want.rollup());

        // A user sketch whose two hashes (1, then 0) are out of order, then a latency sketch
        // cut short.
        let corrupt = |sql: &str| {
            let conn = store.writer.lock().expect("writer");
            conn.execute(sql, []).expect("corrupted");
        };
        for (sql, sketch) in [
            ("UPDATE rollup_sketches SET users = x'020201000000000000000000000000000000' WHERE id = (SELECT MIN(id) FROM rollup_sketches)", "user sketch"),
            ("UPDATE rollup_sketches SET users = x'0200', latency = x'0003' WHERE id = (SELECT MIN(id) FROM rollup_sketches)", "latency sketch"),
        ] {
            corrupt(sql);
            match fold_all(&store).await {
                Err(StoreError::Corrupt(what)) => assert_eq!(what, sketch),
                other => panic!("expected a corrupt {sketch}, got {:?}", other.map(|c| c.rows.len())),
            }
        }
    }

    #[tokio::test]
    async fn every_change_to_rollup_rows_moves_their_versions() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteAnalyticsStore::open(dir.path()).expect("opened");
        let versions = store
            .row_versions()
            .expect("the embedded store keeps row versions");
        let day = 1_800_000_000 / 86_400 * 86_400;
        let buckets = [
            (Resolution::Minute, day + 60),
            (Resolution::Hour, day),
            (Resolution::Day, day),
            (Resolution::Day, day - 86_400),
        ];
        let now = |v: &RowVersions| buckets.map(|(r, b)| v.version(r, b));
        let before = now(versions);
        // A commit of one event's rows (its minute, hour and day).
        let commit_of = |base: i64, buckets: &[(Resolution, i64)]| {
            let mut commit = step(base, Vec::new(), Vec::new());
            for (resolution, bucket) in buckets {
                let key = RollupKey {
                    resolution: *resolution,
                    bucket: *bucket,
                    dims: chatbot_dims("a"),
                };
                let rollup = Rollup {
                    requests: 1,
                    ..Rollup::default()
                };
                commit
                    .partitions
                    .get_mut(&0)
                    .expect("partition 0")
                    .deltas
                    .insert(key, rollup);
            }
            commit
        };
        store
            .commit(commit_of(0, &buckets[..3]))
            .await
            .expect("written");
        let committed = now(versions);
        for i in 0..3 {
            assert_ne!(committed[i], before[i], "{:?} was written", buckets[i]);
        }
        assert_eq!(committed[3], before[3], "the day before was not");
        // A refused commit (its base offset is behind the stored one) moves the versions of
        // the rows it would have written: a version may move needlessly, never stay behind.
        store
            .commit(commit_of(0, &buckets[3..]))
            .await
            .expect_err("fenced off");
        let refused = now(versions);
        assert_eq!(refused[..3], committed[..3]);
        assert_ne!(refused[3], committed[3]);
        // A retention pass that deletes nothing moves nothing; one that deletes rows moves
        // every version.
        assert_eq!(store.prune(day).await.expect("pruned"), 0);
        assert_eq!(now(versions), refused);
        assert_eq!(store.prune(day + 86_400).await.expect("pruned"), 3);
        let pruned = now(versions);
        for i in 0..4 {
            assert_ne!(
                pruned[i], refused[i],
                "a retention pass moves every version"
            );
        }
        store.reset().await.expect("reset");
        let reset = now(versions);
        for i in 0..4 {
            assert_ne!(reset[i], pruned[i], "a reset moves every version");
        }
    }

    const SUMMARIES: &str = "SELECT COUNT(*) FROM dedup_generations";
    const DOOMED: &str = "SELECT COUNT(*) FROM dedup_doomed";

    #[tokio::test]
    async fn a_retired_generation_leaves_at_once_and_its_blocks_in_bounded_steps() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteAnalyticsStore::open(dir.path()).expect("opened");
        // 600 blocks of 1,024 ids, and a small one that stays.
        let big = generation(1, 0, 600 * 1_024);
        let small = generation(2, 10_000_000, 10);
        store
            .commit(step(0, vec![big.clone(), small.clone()], Vec::new()))
            .await
            .expect("written");
        assert_eq!(count(&store, BLOCKS), 601);
        assert_eq!(backlog(&store), (0, 0), "nothing forgotten yet");
        assert_eq!(
            summaries(&store, &[2, 1, 3]).await,
            vec![(2, small.summary.clone()), (1, big.summary.clone())],
            "the summaries of the generations held"
        );

        let state = retire_and_load(&store, vec![1]).await;
        assert_eq!(
            state.partitions[&0].generations,
            vec![small.generation],
            "the retired generation is not loaded again"
        );
        assert!(
            store.dedup_blocks(0, &[(1, 599)]).await.is_err(),
            "nor are its blocks read, though they are still stored"
        );
        assert!(summaries(&store, &[1]).await.is_empty(), "nor its summary");
        assert_eq!(
            count(&store, SUMMARIES),
            2,
            "its summary goes after its blocks"
        );
        // The retiring commit and each one after it delete 256 of its blocks: 600 → 344 →
        // 88 → 0, then the small generation's block is all that is left.
        assert_eq!(count(&store, BLOCKS), 1 + 600 - 256);
        store
            .commit(step(2, Vec::new(), Vec::new()))
            .await
            .expect("2");
        assert_eq!(count(&store, BLOCKS), 1 + 600 - 512);
        assert_eq!(count(&store, DOOMED), 1);
        assert_eq!(
            backlog(&store),
            (1, 600 * 1_024),
            "the big generation is forgotten, its 88 last blocks and its summary still stored"
        );
        store
            .commit(step(3, Vec::new(), Vec::new()))
            .await
            .expect("3");
        assert_eq!(count(&store, BLOCKS), 1);
        assert_eq!(count(&store, SUMMARIES), 1);
        assert_eq!(count(&store, DOOMED), 0);
        assert_eq!(backlog(&store), (0, 0), "the backlog is drained");
        assert_eq!(
            store.dedup_blocks(0, &[(2, 0)]).await.expect("read"),
            vec![small.entries.clone()]
        );
    }

    #[tokio::test]
    async fn retired_summaries_leave_a_few_per_commit_once_their_blocks_are_gone() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteAnalyticsStore::open(dir.path()).expect("opened");
        // Twenty generations of one block each.
        let many: Vec<DedupSeal> = (0..20).map(|g| generation(100 + g, g * 10, 10)).collect();
        store
            .commit(step(0, many, Vec::new()))
            .await
            .expect("written");
        let state = retire_and_load(&store, (100..120).collect()).await;
        assert!(state.partitions[&0].generations.is_empty(), "none loaded");
        // The retiring commit deletes the 20 blocks and 8 summaries, each later one 8 more.
        assert_eq!(count(&store, BLOCKS), 0);
        assert_eq!((count(&store, SUMMARIES), count(&store, DOOMED)), (12, 12));
        assert_eq!(
            backlog(&store),
            (12, 12 * 10),
            "12 generations of 10 ids left"
        );
        store
            .commit(step(2, Vec::new(), Vec::new()))
            .await
            .expect("2");
        assert_eq!((count(&store, SUMMARIES), count(&store, DOOMED)), (4, 4));
        assert_eq!(backlog(&store), (4, 4 * 10));
        store
            .commit(step(3, Vec::new(), Vec::new()))
            .await
            .expect("3");
        assert_eq!((count(&store, SUMMARIES), count(&store, DOOMED)), (0, 0));
    }

    #[tokio::test]
    async fn a_name_written_again_before_its_old_blocks_are_gone_holds_only_the_new_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteAnalyticsStore::open(dir.path()).expect("opened");
        store
            .commit(step(0, vec![generation(7, 0, 400 * 1_024)], Vec::new()))
            .await
            .expect("written");
        store
            .commit(step(1, Vec::new(), vec![7]))
            .await
            .expect("retired");
        assert_eq!(count(&store, BLOCKS), 400 - 256);
        // The same name, other ids, in two blocks.
        let again = generation(7, 50_000_000, 1_500);
        store
            .commit(step(2, vec![again.clone()], Vec::new()))
            .await
            .expect("written again");
        assert_eq!(count(&store, BLOCKS), 2);
        assert_eq!(count(&store, SUMMARIES), 1);
        assert_eq!(count(&store, DOOMED), 0);
        let want: Vec<Vec<(u64, u32)>> = again.blocks().map(<[_]>::to_vec).collect();
        assert_eq!(
            store
                .dedup_blocks(0, &[(7, 0), (7, 1)])
                .await
                .expect("read"),
            want
        );
    }

    #[test]
    fn forgotten_generations_are_found_without_walking_every_block() {
        let dir = tempfile::tempdir().expect("dir");
        drop(SqliteAnalyticsStore::open(dir.path()).expect("opened"));
        let conn = Connection::open(dir.path().join("analytics.db")).expect("reopened");
        for sql in [DOOMED_BLOCKS, DOOMED_GENERATIONS] {
            let plan = crate::sqlite::query_plan(&conn, sql, [1]);
            assert!(
                plan.iter()
                    .all(|step| !step.starts_with("SCAN b") && !step.starts_with("SCAN g")),
                "a walk of every block or generation: {plan:?}"
            );
        }
    }
}
