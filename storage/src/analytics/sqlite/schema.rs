//! The tables of `analytics.db` and the upgrade of a data directory written by an earlier version
//! to the current layout.

use rusqlite::{params, Connection, OptionalExtension};
use tally_domain::store::LogPosition;

use crate::failure::{Failure, Result};

/// Rollup rows hold the key and the sums; their sketches live in `rollup_sketches`, one row per
/// rollup row (`sketch_id`). A scan that needs no sketch (sums over a month, the previous window,
/// usage by hour of day) then reads rows of about 150 bytes instead of 4–5 KiB. Sketch ids are
/// never reused (`AUTOINCREMENT`), so a row can never come to share another row's sketch.
pub(super) const ROLLUPS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS rollups (
    resolution   INTEGER NOT NULL,
    feature      TEXT NOT NULL,
    bucket       INTEGER NOT NULL,
    model        TEXT NOT NULL,
    provider     TEXT NOT NULL,
    environment  TEXT NOT NULL,
    prompt_id    TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    variant      TEXT NOT NULL,
    requests     INTEGER NOT NULL,
    errors       INTEGER NOT NULL,
    timeouts     INTEGER NOT NULL,
    latency_sum_us INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cost_pico    BLOB NOT NULL,
    cost_squares BLOB NOT NULL,
    unpriced     INTEGER NOT NULL,
    sketch_id    INTEGER NOT NULL,
    PRIMARY KEY (resolution, feature, bucket, model, provider, environment, prompt_id, prompt_version, experiment_id, variant)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_by_time ON rollups (resolution, bucket);
CREATE TABLE IF NOT EXISTS rollup_sketches (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    latency BLOB NOT NULL,
    users   BLOB NOT NULL
);
";

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projector_partitions (
    log_partition INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL,
    last_received_ms INTEGER NOT NULL,
    events_applied INTEGER NOT NULL,
    duplicates_dropped INTEGER NOT NULL,
    anchor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dedup_chunks (
    id INTEGER PRIMARY KEY,
    max_seen_s INTEGER NOT NULL,
    entries BLOB NOT NULL,
    log_partition INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dedup_chunks_by_time ON dedup_chunks (max_seen_s);
CREATE TABLE IF NOT EXISTS dedup_generations (
    log_partition INTEGER NOT NULL,
    id INTEGER NOT NULL,
    max_seen_s INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    summary BLOB NOT NULL,
    PRIMARY KEY (log_partition, id)
);
CREATE TABLE IF NOT EXISTS dedup_blocks (
    log_partition INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    block INTEGER NOT NULL,
    entries BLOB NOT NULL,
    PRIMARY KEY (log_partition, generation, block)
);
CREATE TABLE IF NOT EXISTS dedup_doomed (
    log_partition INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (log_partition, generation)
);
CREATE TABLE IF NOT EXISTS log_bindings (
    epoch INTEGER PRIMARY KEY,
    log_name TEXT NOT NULL,
    log_id TEXT,
    bound_at_ms INTEGER NOT NULL,
    retired_at_ms INTEGER,
    retired_position TEXT
);
";

/// Brings a data directory written by an earlier version to the current layout, in one
/// transaction on open:
/// - rollup rows that kept their sketches inline (every layout before `rollup_sketches`; the
///   oldest also without prompt or experiment dimensions) are copied into the current tables;
/// - directories written before checkpoints were kept per log partition had one
///   `projector_meta` row and partition-less dedup chunks (all of partition 0, the only
///   partition of the embedded log).
pub(super) fn upgrade_layout(conn: &mut Connection) -> Result<()> {
    let has_column = |conn: &Connection, table: &str, column: &str| -> Result<bool> {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(names.iter().any(|n| n == column))
    };
    let tx = conn.transaction()?;
    let had_rollups: bool = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'rollups'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    // Every earlier layout kept the sketches in the rollup row. Rows written before rollups had
    // prompt or experiment dimensions keep empty ones, and rows from before the sum of squared
    // costs keep 0 there (they hold no experiment's events, the only reader of that sum); a
    // rebuild fills everything in from the log.
    let earlier = had_rollups && has_column(&tx, "rollups", "latency")?;
    if earlier {
        let prompts = has_column(&tx, "rollups", "prompt_id")?;
        let experiments = has_column(&tx, "rollups", "variant")?;
        let squares = if has_column(&tx, "rollups", "cost_squares")? {
            "cost_squares"
        } else {
            "zeroblob(16)"
        };
        // The old primary key orders the rows, so both copies number them alike.
        let mut key = "resolution, feature, bucket, model, provider, environment".to_string();
        if prompts {
            key.push_str(", prompt_id, prompt_version");
        }
        if experiments {
            key.push_str(", experiment_id, variant");
        }
        let prompt_cols = if prompts {
            "prompt_id, prompt_version"
        } else {
            "'', ''"
        };
        let experiment_cols = if experiments {
            "experiment_id, variant"
        } else {
            "'', ''"
        };
        tx.execute_batch(&format!(
            "ALTER TABLE rollups RENAME TO rollups_of_an_earlier_layout;
             DROP INDEX IF EXISTS rollups_by_time;
             DROP TABLE IF EXISTS rollup_sketches;
             {ROLLUPS_TABLE}
             INSERT INTO rollup_sketches (id, latency, users)
                 SELECT row_number() OVER (ORDER BY {key}), latency, users FROM rollups_of_an_earlier_layout;
             INSERT INTO rollups SELECT resolution, feature, bucket, model, provider, environment, {prompt_cols}, {experiment_cols}, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, {squares}, unpriced, row_number() OVER (ORDER BY {key}) FROM rollups_of_an_earlier_layout;
             DROP TABLE rollups_of_an_earlier_layout;"
        ))?;
    } else {
        tx.execute_batch(ROLLUPS_TABLE)?;
    }
    if !has_column(&tx, "projector_partitions", "anchor")? {
        tx.execute_batch(
            "ALTER TABLE projector_partitions ADD COLUMN anchor INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    if !has_column(&tx, "dedup_chunks", "log_partition")? {
        tx.execute_batch(
            "ALTER TABLE dedup_chunks ADD COLUMN log_partition INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    let old_meta: bool = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'projector_meta'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if old_meta {
        let row = tx
            .query_row(
                "SELECT position, last_received_ms, events_applied, duplicates_dropped FROM projector_meta WHERE id = 1",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)),
            )
            .optional()?;
        if let Some((position, last_ms, applied, dups)) = row {
            let position: LogPosition = serde_json::from_str(&position)
                .map_err(|e| Failure::Corrupt(format!("checkpoint: {e}")))?;
            for (i, (partition, next)) in position.0.iter().enumerate() {
                let (a, d) = if i == 0 { (applied, dups) } else { (0, 0) };
                tx.execute(
                    "INSERT OR REPLACE INTO projector_partitions VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                    params![partition, next, last_ms, a, d],
                )?;
            }
        }
        tx.execute_batch("DROP TABLE projector_meta")?;
    }
    tx.commit()?;
    Ok(())
}
