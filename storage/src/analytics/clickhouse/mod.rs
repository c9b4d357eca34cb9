//! The analytics store on ClickHouse (distributed mode).
//!
//! **Exactly-once effect.** ClickHouse has no transactions: only an insert into one partition
//! is atomic. A projector commit is therefore written so that *any prefix* of it is harmless:
//! 1. the counted raw events (`tally_events`), which collapse when re-inserted, and every score
//!    read (`tally_scores`; a repeated copy changes nothing, the first copy counts);
//! 2. the full merged state of every touched rollup row (`tally_rollups`, one partition per
//!    UTC day, several inserts for a commit spanning many days). A row for (key, log
//!    partition) with `version` v holds exactly that key's events among the partition's
//!    records before offset v, so each row is correct on its own whatever else landed;
//! 3. last, each log partition's checkpoint (next offset, log clock, counters) with a chunk
//!    of its dedup fingerprints, one small atomic insert into the unpartitioned
//!    `tally_projection`.
//!
//! On start (and after any failure or rebalance) a projector reads its checkpoints from
//! ClickHouse, never from the broker's committed offsets. Rollup rows with a version past the
//! checkpoint betray an unfinished commit: `load_state` reports its end offset
//! ([`tally_domain::store::ProjectorState::unfinished`]) and the projector does not commit past it
//! until the checkpoint reaches it. Committing up to offset n, a stored row at version ≤ base
//! gets the delta merged in, a row at version ≥ n already holds the delta and is left alone,
//! and a row in between (the projector did not stop where it was told) refuses the commit.
//! So a crash at any point neither loses nor double-counts. Reads use `FINAL`, so superseded
//! versions of a row are never counted. No materialized views: every duplicate delivery would
//! be counted forever.
//!
//! **Log epochs.** Rows of both tables carry the epoch of the log binding they belong to
//! ([`tally_domain::log_binding`]): checkpoints, dedup chunks and rollup rows of a retired topic keep
//! their epoch and are never written again, while the adopted topic's partitions start again
//! at offset 0 in rows of the next epoch. Versions and fencing are per (epoch, partition);
//! queries sum rows across epochs and partitions, so what a retired topic counted stays
//! counted. Bindings are rows of `tally_projection` (kind 3).
//!
//! **Several projectors.** Rows are kept per log partition (`log_partition` is part of the
//! key), so only the partition's owner writes them; queries merge partitions in Rust. A row's
//! `version` is its partition's next offset after the commit that wrote it, and its content is
//! a deterministic function of the partition's records before that offset (dedup runs on the
//! partition's own log clock). Two projectors that briefly both believe they own a partition
//! (a rebalance racing a slow commit) therefore write identical rows for the same version, and
//! the newest version is the true state; a commit whose base offset is no longer the stored
//! checkpoint is refused (`Conflict`), and the projector reloads. Rebuild truncates the tables:
//! stop the projectors first.
//!
//! **Sealed dedup generations.** When a projector seals its open dedup set
//! ([`tally_domain::dedup`]), the generation (kind 4: its summary) and its blocks (kind 5) land
//! in the same atomic insert as the checkpoint, named by a hash of their content. Where a
//! partition's batches end depends on timing, so two projectors may seal differently; every
//! generation holds only true sightings of the partition's records before its version, so a
//! load takes every generation up to the checkpoint, and the chunks after the newest seal
//! (which held everything seen before it). The chunks a seal replaced, and expired
//! generations, are deleted by a mutation after the next seal (disk only: loads already skip
//! them; a partition that stops sealing keeps its expired generations' rows until it seals
//! again). Parts of merged runs are generations too, marked with `resolution` 1: they are not
//! seals of the open set, so the newest *seal* alone decides which chunks are still open. The
//! generations a completed merge retires are deleted by the same kind of mutation; until it
//! has run, loads return them and the projector drops them, as the merged run names them
//! replaced. A block read asks for the blocks it needs by generation and number.
//!
//! **Raw events.** The events a commit counted (duplicates excluded) go to `tally_events`, one
//! partition per UTC day, in an `INSERT` before the rollups. A crash before the checkpoint
//! re-inserts the same rows on replay; they share the sorting key and `ReplacingMergeTree`
//! collapses them (read with `FINAL`).
//!
//! **Scores.** Every copy read goes to `tally_scores` (before the checkpoint; a re-insert is
//! harmless): the first copy of each `score_id` in the log counts, chosen when read, and scores
//! join the events of `tally_events` by `event_id` only when an experiment's results are read.
//!
//! **Retention** drops whole day partitions of `tally_events`, `tally_scores` and `tally_rollups` (no
//! mutations); the embedded store deletes the same whole days, so both modes keep the same rows.
//!
//! Rows are merged in Rust (the sketches are Tally's own, identical to the embedded store), so
//! both modes report exactly the same numbers. SQL stays within what ClickHouse 18.16 runs:
//! no `LowCardinality`, no `DateTime64`, no server-side parameters, no aliases shadowing columns.
//! The client uses RowBinary without compression (18.16 mis-answers LZ4-compressed selects);
//! how it connects (credentials, TLS) is [`ClickHouseEndpoint`]'s.

mod endpoint;
pub mod events;
mod rows;
mod scores;
mod store;

pub use endpoint::{ClickHouseEndpoint, ConnectError, EndpointError};
pub use store::ClickHouseAnalyticsStore;

use clickhouse::Client;
use tracing::info;

use crate::failure::{seam, Failure, Result};
use tally_domain::store::StoreError;

const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        include_str!("../../../../migrations/clickhouse/0001_projection.sql"),
    ),
    (
        2,
        include_str!("../../../../migrations/clickhouse/0002_events.sql"),
    ),
    (
        3,
        include_str!("../../../../migrations/clickhouse/0003_rollups.sql"),
    ),
    (
        4,
        include_str!("../../../../migrations/clickhouse/0004_scores.sql"),
    ),
];

/// Adds columns to `table` with `alter` (an `ALTER TABLE … ADD COLUMN …, MODIFY ORDER BY …`)
/// unless `column` is already there. `ADD COLUMN IF NOT EXISTS` is not understood by
/// ClickHouse 18.16, hence the look at `system.columns`.
async fn add_columns(db: &Client, table: &str, column: &str, alter: &str) -> Result<()> {
    let present: u64 = db
        .query(&format!(
            "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = '{table}' AND name = '{column}'"
        ))
        .fetch_one()
        .await?;
    if present == 0 {
        db.query(&format!("ALTER TABLE {table} {alter}"))
            .execute()
            .await?;
        info!(table, column, "added columns to the sorting key");
    }
    Ok(())
}

/// Columns added after the first schemas (rows already stored get empty values): the prompt
/// dimensions of rollup rows (after `0003_rollups.sql`), the log epoch of rollup and
/// projection rows (rows from before log bindings belong to epoch 0), and the experiment
/// dimensions of rollup rows, each appended to its table's sorting key; then the sum of squared
/// costs of rollup rows (empty, read as 0, in rows from before it: they hold no experiment's
/// events, its only reader); and the error message of raw events (empty in events stored
/// before it).
async fn add_later_columns(db: &Client) -> Result<()> {
    add_columns(
        db,
        store::ROLLUPS,
        "prompt_id",
        "ADD COLUMN prompt_id String AFTER environment, ADD COLUMN prompt_version String AFTER prompt_id, MODIFY ORDER BY (resolution, feature, bucket, model, provider, environment, log_partition, prompt_id, prompt_version)",
    )
    .await?;
    add_columns(
        db,
        store::ROLLUPS,
        "log_epoch",
        "ADD COLUMN log_epoch UInt32 AFTER log_partition, MODIFY ORDER BY (resolution, feature, bucket, model, provider, environment, log_partition, prompt_id, prompt_version, log_epoch)",
    )
    .await?;
    add_columns(
        db,
        store::TABLE,
        "log_epoch",
        "ADD COLUMN log_epoch UInt32 AFTER log_partition, MODIFY ORDER BY (kind, resolution, feature, bucket, model, provider, environment, log_partition, log_epoch)",
    )
    .await?;
    add_columns(
        db,
        store::ROLLUPS,
        "experiment_id",
        "ADD COLUMN experiment_id String AFTER prompt_version, ADD COLUMN variant String AFTER experiment_id, MODIFY ORDER BY (resolution, feature, bucket, model, provider, environment, log_partition, prompt_id, prompt_version, log_epoch, experiment_id, variant)",
    )
    .await?;
    add_columns(
        db,
        store::ROLLUPS,
        "cost_squares",
        "ADD COLUMN cost_squares String AFTER cost_pico",
    )
    .await?;
    add_columns(
        db,
        events::EVENTS_TABLE,
        "error_message",
        "ADD COLUMN error_message String AFTER error_type, ADD COLUMN error_message_truncated UInt8 AFTER error_message",
    )
    .await
}

/// Creates the database (if missing) and applies the schema; returns statements applied.
pub async fn migrate(endpoint: &ClickHouseEndpoint, database: &str) -> Result<usize, StoreError> {
    seam(async || -> Result<usize> {
        if !database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Failure::invalid(
                "database",
                "must be letters, digits and _",
            ));
        }
        endpoint
            .server_client()
            .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
            .execute()
            .await?;
        let db = endpoint.client(database);
        for (version, sql) in MIGRATIONS {
            db.query(sql).execute().await?;
            info!(version, database, "applied clickhouse schema");
        }
        add_later_columns(&db).await?;
        let moved = ClickHouseAnalyticsStore::new(db)
            .move_legacy_rollups()
            .await?;
        if moved > 0 {
            info!(
                moved,
                "moved rollup rows of the first schema to tally_rollups"
            );
        }
        Ok(MIGRATIONS.len())
    })
    .await
}
