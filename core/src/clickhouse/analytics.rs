//! [`AnalyticsStore`] on ClickHouse. See the module docs of [`crate::clickhouse`] for why a
//! commit has an exactly-once effect although only its last insert is atomic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use tally_schemas::{Environment, Pico};
use tracing::instrument;

use crate::hll::Hll;
use crate::rollup::{Dims, Resolution, Rollup, RollupKey, RollupRow};
use crate::sketch::LatencySketch;
use crate::store::{
    AnalyticsStore, PartitionState, Partitions, ProjectionCommit, ProjectorState, ScanRequest,
    StoreError, StoreResult,
};

/// Checkpoints and dedup chunks (unpartitioned: one commit's are one atomic insert).
const TABLE: &str = "tally_projection";
/// Rollup rows, one partition per UTC day.
pub(super) const ROLLUPS: &str = "tally_rollups";
/// Rollup rows of the first schema lived in [`TABLE`] with this kind; `migrate` moves them.
const KIND_LEGACY_ROLLUP: u8 = 0;
const KIND_CHECKPOINT: u8 = 1;
const KIND_DEDUP: u8 = 2;
/// Days (ClickHouse partitions) per rollup insert: below the `max_partitions_per_insert_block`
/// (100) of current servers.
const DAYS_PER_INSERT: usize = 50;
/// Expired dedup chunks are deleted (an asynchronous mutation) every this many commits.
const DEDUP_CLEANUP_EVERY: u64 = 200;

/// A checkpoint or dedup chunk in [`TABLE`] (the rollup columns are left empty).
#[derive(Debug, Clone, Default, Row, Serialize, Deserialize)]
struct ProjectionRow {
    kind: u8,
    resolution: u32,
    feature: String,
    bucket: i64,
    model: String,
    provider: String,
    environment: String,
    log_partition: i32,
    version: u64,
    requests: u64,
    errors: u64,
    timeouts: u64,
    latency_sum_us: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    cost_pico: String,
    unpriced: u64,
    #[serde(with = "serde_bytes")]
    latency: Vec<u8>,
    #[serde(with = "serde_bytes")]
    users: Vec<u8>,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

const COLUMNS: &str = "kind, resolution, feature, bucket, model, provider, environment, log_partition, version, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, unpriced";

/// A row of [`ROLLUPS`]: one key's merged state from one log partition's records before
/// offset `version`.
#[derive(Debug, Clone, Default, Row, Serialize, Deserialize)]
struct RollupDbRow {
    /// UTC day of `bucket`, in days since the Unix epoch (ClickHouse `Date`).
    day: u16,
    resolution: u32,
    feature: String,
    bucket: i64,
    model: String,
    provider: String,
    environment: String,
    prompt_id: String,
    prompt_version: String,
    log_partition: i32,
    version: u64,
    requests: u64,
    errors: u64,
    timeouts: u64,
    latency_sum_us: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    cost_pico: String,
    unpriced: u64,
    #[serde(with = "serde_bytes")]
    latency: Vec<u8>,
    #[serde(with = "serde_bytes")]
    users: Vec<u8>,
}

const ROLLUP_COLUMNS: &str = "day, resolution, feature, bucket, model, provider, environment, prompt_id, prompt_version, log_partition, version, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, unpriced";

pub struct ClickHouseAnalyticsStore {
    client: Client,
    commits: AtomicU64,
    /// Fault injection for tests: the next commit fails after this many rollup days landed.
    fail_after_days: AtomicUsize,
}

/// Rollup rows of one commit that landed ahead of the checkpoint: already included.
enum Stored {
    /// The row's state at a version at or before the commit's base: merge the delta into it.
    Before(Rollup),
    /// The row already holds the commit's events (an unfinished commit wrote it).
    Included,
}

impl ClickHouseAnalyticsStore {
    /// Wraps a client of a migrated database ([`super::migrate`]).
    pub fn new(client: Client) -> Self {
        ClickHouseAnalyticsStore {
            client,
            commits: AtomicU64::new(0),
            fail_after_days: AtomicUsize::new(usize::MAX),
        }
    }

    /// For fault tests: the next commit inserts its rollup rows one day at a time and fails
    /// (`Unavailable`) once `days` days have landed, before its checkpoint — what a projector
    /// killed mid-commit leaves behind.
    #[doc(hidden)]
    pub fn fail_next_commit_after_days(&self, days: usize) {
        self.fail_after_days.store(days, Ordering::SeqCst);
    }

    async fn rows<T: clickhouse::RowOwned + clickhouse::RowRead>(
        &self,
        sql: &str,
    ) -> StoreResult<Vec<T>> {
        Ok(self.client.query(sql).fetch_all::<T>().await?)
    }

    /// Stored `next_offset` per partition (absent: never committed).
    async fn stored_offsets(&self, partitions: &[i32]) -> StoreResult<BTreeMap<i32, i64>> {
        let sql = format!(
            "SELECT log_partition, max(version) FROM {TABLE} WHERE kind = {KIND_CHECKPOINT} AND log_partition IN ({}) GROUP BY log_partition",
            list(partitions)
        );
        let rows = self.client.query(&sql).fetch_all::<(i32, u64)>().await?;
        Ok(rows.into_iter().map(|(p, v)| (p, v as i64)).collect())
    }

    /// The stored rows for the keys of `commit`, per partition, fetched per resolution over
    /// the touched buckets and features (then matched exactly in memory). A row whose version
    /// is past the commit's base was written by an unfinished commit: if it already holds
    /// this commit's events it is [`Stored::Included`]; if it holds only some, the commit
    /// did not stop where the unfinished one did, and is refused (`Conflict`).
    async fn existing(
        &self,
        commit: &ProjectionCommit,
    ) -> StoreResult<BTreeMap<(i32, RollupKey), Stored>> {
        let mut out = BTreeMap::new();
        let partitions: Vec<i32> = commit.partitions.keys().copied().collect();
        for resolution in Resolution::ALL {
            let keys: Vec<&RollupKey> = commit
                .partitions
                .values()
                .flat_map(|p| p.deltas.keys())
                .filter(|k| k.resolution == resolution)
                .collect();
            let (Some(min), Some(max)) = (
                keys.iter().map(|k| k.bucket).min(),
                keys.iter().map(|k| k.bucket).max(),
            ) else {
                continue;
            };
            let features: BTreeSet<&str> = keys.iter().map(|k| k.dims.feature.as_str()).collect();
            let features = features
                .iter()
                .map(|f| quote(f))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {ROLLUP_COLUMNS}, latency, users FROM {ROLLUPS} FINAL WHERE resolution = {} AND bucket >= {min} AND bucket <= {max} AND feature IN ({features}) AND log_partition IN ({})",
                resolution.seconds(),
                list(&partitions),
            );
            for row in self.rows::<RollupDbRow>(&sql).await? {
                let partition = row.log_partition;
                let version = row.version as i64;
                let (key, rollup) = decode(row, true)?;
                let Some(pc) = commit.partitions.get(&partition) else {
                    continue;
                };
                if !pc.deltas.contains_key(&key) {
                    continue;
                }
                let stored = if version <= pc.base_offset {
                    Stored::Before(rollup)
                } else if version >= pc.state.next_offset {
                    Stored::Included
                } else {
                    return Err(StoreError::Conflict(format!(
                        "log partition {partition}: a rollup row is at offset {version}, inside this commit ({}..{}); reload and stop at the unfinished commit",
                        pc.base_offset, pc.state.next_offset
                    )));
                };
                out.insert((partition, key), stored);
            }
        }
        Ok(out)
    }

    /// Per partition in `partitions` (checkpointed at `checkpoints`), the lowest version of a
    /// rollup row past its checkpoint: the end of the oldest unfinished commit.
    async fn unfinished(
        &self,
        partitions: &Partitions,
        checkpoints: &BTreeMap<i32, i64>,
    ) -> StoreResult<BTreeMap<i32, i64>> {
        let mut conditions: Vec<String> = checkpoints
            .iter()
            .map(|(p, at)| format!("(log_partition != {p} OR version > {at})"))
            .collect();
        if let Partitions::Only(set) = partitions {
            let set: Vec<i32> = set.iter().copied().collect();
            if set.is_empty() {
                return Ok(BTreeMap::new());
            }
            conditions.push(format!("log_partition IN ({})", list(&set)));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT log_partition, min(version) FROM {ROLLUPS}{filter} GROUP BY log_partition"
        );
        let rows = self.client.query(&sql).fetch_all::<(i32, u64)>().await?;
        Ok(rows.into_iter().map(|(p, v)| (p, v as i64)).collect())
    }

    /// Inserts rollup rows, at most [`DAYS_PER_INSERT`] day partitions per insert (one per
    /// insert when a fault is injected).
    async fn insert_rollups(&self, rows: Vec<RollupDbRow>) -> StoreResult<()> {
        let fail_after = self.fail_after_days.swap(usize::MAX, Ordering::SeqCst);
        let days_per_insert = if fail_after == usize::MAX {
            DAYS_PER_INSERT
        } else {
            1
        };
        let mut by_day: BTreeMap<u16, Vec<RollupDbRow>> = BTreeMap::new();
        for row in rows {
            by_day.entry(row.day).or_default().push(row);
        }
        let days: Vec<Vec<RollupDbRow>> = by_day.into_values().collect();
        for (landed, chunk) in days.chunks(days_per_insert).enumerate() {
            if landed >= fail_after {
                return Err(StoreError::Unavailable(format!(
                    "injected fault after {landed} rollup days"
                )));
            }
            let mut insert = self.client.insert::<RollupDbRow>(ROLLUPS).await?;
            for row in chunk.iter().flatten() {
                insert.write(row).await?;
            }
            insert.end().await?;
        }
        Ok(())
    }

    /// Moves rollup rows of the first schema (in [`TABLE`], kind 0) to [`ROLLUPS`]; returns
    /// rows moved. Idempotent: a move interrupted and repeated re-inserts identical rows, which
    /// collapse.
    pub(super) async fn move_legacy_rollups(&self) -> StoreResult<u64> {
        let count = format!("SELECT count() FROM {TABLE} WHERE kind = {KIND_LEGACY_ROLLUP}");
        if self.client.query(&count).fetch_one::<u64>().await? == 0 {
            return Ok(0);
        }
        let sql = format!("SELECT {COLUMNS}, latency, users, '' FROM {TABLE} FINAL WHERE kind = {KIND_LEGACY_ROLLUP}");
        let mut cursor = self.client.query(&sql).fetch::<ProjectionRow>()?;
        let mut insert = self.client.insert::<RollupDbRow>(ROLLUPS).await?;
        let mut moved = 0u64;
        while let Some(row) = cursor.next().await? {
            insert.write(&from_legacy(row)).await?;
            moved += 1;
        }
        insert.end().await?;
        let delete = format!("ALTER TABLE {TABLE} DELETE WHERE kind = {KIND_LEGACY_ROLLUP}");
        self.client.query(&delete).execute().await?;
        Ok(moved)
    }
}

fn list(partitions: &[i32]) -> String {
    partitions
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A ClickHouse string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn decode(row: RollupDbRow, with_sketches: bool) -> StoreResult<(RollupKey, Rollup)> {
    let resolution = Resolution::from_seconds(i64::from(row.resolution))
        .ok_or_else(|| StoreError::Corrupt(format!("resolution {}", row.resolution)))?;
    let environment = Environment::parse(&row.environment)
        .ok_or_else(|| StoreError::Corrupt(format!("environment {}", row.environment)))?;
    let cost: i128 = row
        .cost_pico
        .parse()
        .map_err(|_| StoreError::Corrupt("cost".into()))?;
    let mut rollup = Rollup {
        requests: row.requests,
        errors: row.errors,
        timeouts: row.timeouts,
        latency_sum_us: row.latency_sum_us,
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        cached_input_tokens: row.cached_input_tokens,
        cost: Pico(cost),
        unpriced: row.unpriced,
        ..Rollup::default()
    };
    if with_sketches {
        rollup.latency = LatencySketch::decode(&mut row.latency.as_slice())
            .ok_or_else(|| StoreError::Corrupt("latency sketch".into()))?;
        rollup.users = Hll::decode(&mut row.users.as_slice())
            .ok_or_else(|| StoreError::Corrupt("user sketch".into()))?;
    }
    let key = RollupKey {
        resolution,
        bucket: row.bucket,
        dims: Dims {
            feature: row.feature,
            model: row.model,
            provider: row.provider,
            environment,
            prompt_id: row.prompt_id,
            prompt_version: row.prompt_version,
        },
    };
    Ok((key, rollup))
}

/// A rollup row of the first schema, as a row of [`ROLLUPS`] (same columns, plus its day).
fn from_legacy(row: ProjectionRow) -> RollupDbRow {
    RollupDbRow {
        day: day_of(row.bucket),
        resolution: row.resolution,
        feature: row.feature,
        bucket: row.bucket,
        model: row.model,
        provider: row.provider,
        environment: row.environment,
        prompt_id: String::new(),
        prompt_version: String::new(),
        log_partition: row.log_partition,
        version: row.version,
        requests: row.requests,
        errors: row.errors,
        timeouts: row.timeouts,
        latency_sum_us: row.latency_sum_us,
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        cached_input_tokens: row.cached_input_tokens,
        cost_pico: row.cost_pico,
        unpriced: row.unpriced,
        latency: row.latency,
        users: row.users,
    }
}

/// Days since the Unix epoch of the UTC day holding `bucket` (ClickHouse `Date`).
fn day_of(bucket: i64) -> u16 {
    bucket.div_euclid(86_400).clamp(0, i64::from(u16::MAX)) as u16
}

fn encode(key: &RollupKey, r: &Rollup, partition: i32, version: u64) -> RollupDbRow {
    RollupDbRow {
        day: day_of(key.bucket),
        resolution: key.resolution.seconds() as u32,
        feature: key.dims.feature.clone(),
        bucket: key.bucket,
        model: key.dims.model.clone(),
        provider: key.dims.provider.clone(),
        environment: key.dims.environment.as_str().to_string(),
        prompt_id: key.dims.prompt_id.clone(),
        prompt_version: key.dims.prompt_version.clone(),
        log_partition: partition,
        version,
        requests: r.requests,
        errors: r.errors,
        timeouts: r.timeouts,
        latency_sum_us: r.latency_sum_us,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_input_tokens: r.cached_input_tokens,
        cost_pico: r.cost.0.to_string(),
        unpriced: r.unpriced,
        latency: r.encode_latency(),
        users: r.encode_users(),
    }
}

#[async_trait]
impl AnalyticsStore for ClickHouseAnalyticsStore {
    #[instrument(name = "clickhouse.load_state", skip_all, err)]
    async fn load_state(
        &self,
        dedup_window_s: u32,
        partitions: &Partitions,
    ) -> StoreResult<ProjectorState> {
        let sql = format!("SELECT {COLUMNS}, latency, users, payload FROM {TABLE} FINAL WHERE kind = {KIND_CHECKPOINT}");
        let mut state = ProjectorState::default();
        for row in self.rows::<ProjectionRow>(&sql).await? {
            if !partitions.contains(row.log_partition) {
                continue;
            }
            let ps: PartitionState = serde_json::from_slice(&row.payload)
                .map_err(|e| StoreError::Corrupt(format!("checkpoint: {e}")))?;
            state.partitions.insert(row.log_partition, ps);
        }
        for (partition, ps) in &mut state.partitions {
            let since_s = ((ps.last_received_ms / 1000) as u32).saturating_sub(dedup_window_s);
            // Chunks beyond the checkpoint cannot exist: each was inserted with its checkpoint.
            let sql = format!("SELECT {COLUMNS}, latency, users, payload FROM {TABLE} FINAL WHERE kind = {KIND_DEDUP} AND log_partition = {partition} AND bucket >= {since_s} AND version <= {}", ps.next_offset);
            for chunk in self.rows::<ProjectionRow>(&sql).await? {
                crate::codec::decode_dedup_chunk(&chunk.payload, since_s, &mut ps.dedup)?;
            }
        }
        let checkpoints: BTreeMap<i32, i64> = state
            .partitions
            .iter()
            .map(|(p, s)| (*p, s.next_offset))
            .collect();
        state.unfinished = self.unfinished(partitions, &checkpoints).await?;
        Ok(state)
    }

    /// In this order: fencing check, raw events, rollup rows (a day partition per part), and
    /// last the checkpoint with its dedup chunk in one atomic insert. A failure anywhere
    /// before the last insert leaves rows that are each correct for their version; the next
    /// `load_state` reports them as an unfinished commit.
    #[instrument(name = "clickhouse.commit", skip_all, fields(rows = c.rows()), err)]
    async fn commit(&self, c: ProjectionCommit) -> StoreResult<()> {
        let partitions: Vec<i32> = c.partitions.keys().copied().collect();
        let stored = self.stored_offsets(&partitions).await?;
        for (partition, pc) in &c.partitions {
            let at = stored.get(partition).copied().unwrap_or(0);
            if at != pc.base_offset {
                return Err(StoreError::Conflict(format!(
                    "log partition {partition} is at offset {at}, not {}: another projector moved it",
                    pc.base_offset
                )));
            }
        }
        // Raw events first: if the projection insert below never lands, a replay re-inserts the
        // same rows, which collapse (same sorting key).
        for (partition, pc) in &c.partitions {
            super::events::insert(&self.client, *partition, &pc.raw).await?;
        }
        let mut stored = self.existing(&c).await?;
        let mut rows = Vec::with_capacity(c.rows());
        for (partition, pc) in &c.partitions {
            let version = u64::try_from(pc.state.next_offset)
                .map_err(|_| StoreError::invalid("offset", "is negative"))?;
            for (key, delta) in &pc.deltas {
                let mut row = match stored.remove(&(*partition, key.clone())) {
                    Some(Stored::Included) => continue,
                    Some(Stored::Before(row)) => row,
                    None => Rollup::default(),
                };
                row.merge(delta);
                rows.push(encode(key, &row, *partition, version));
            }
        }
        drop(stored);
        self.insert_rollups(rows).await?;
        let mut insert = self.client.insert::<ProjectionRow>(TABLE).await?;
        for (partition, pc) in &c.partitions {
            let version = pc.state.next_offset as u64;
            if let Some(max_seen) = pc.dedup_new.iter().map(|(_, s)| *s).max() {
                insert
                    .write(&ProjectionRow {
                        kind: KIND_DEDUP,
                        feature: format!("chunk-{version}"),
                        bucket: i64::from(max_seen),
                        log_partition: *partition,
                        version,
                        cost_pico: "0".into(),
                        payload: crate::codec::encode_dedup_chunk(&pc.dedup_new),
                        ..ProjectionRow::default()
                    })
                    .await?;
            }
            insert
                .write(&ProjectionRow {
                    kind: KIND_CHECKPOINT,
                    log_partition: *partition,
                    version,
                    cost_pico: "0".into(),
                    payload: serde_json::to_vec(&pc.state)
                        .map_err(|e| StoreError::Backend(e.to_string()))?,
                    ..ProjectionRow::default()
                })
                .await?;
        }
        insert.end().await?;
        if self.commits.fetch_add(1, Ordering::Relaxed) % DEDUP_CLEANUP_EVERY
            == DEDUP_CLEANUP_EVERY - 1
        {
            for (partition, pc) in &c.partitions {
                let sql = format!(
                    "ALTER TABLE {TABLE} DELETE WHERE kind = {KIND_DEDUP} AND log_partition = {partition} AND bucket < {}",
                    pc.dedup_horizon_s
                );
                if let Err(err) = self.client.query(&sql).execute().await {
                    tracing::warn!(error = %err, "failed to schedule deletion of expired dedup chunks");
                }
            }
        }
        Ok(())
    }

    async fn scan(&self, request: ScanRequest) -> StoreResult<Vec<RollupRow>> {
        let f = &request.filter;
        let mut filters = String::new();
        for (column, value) in [
            ("feature", &f.feature),
            ("model", &f.model),
            ("provider", &f.provider),
            ("prompt_id", &f.prompt_id),
            ("prompt_version", &f.prompt_version),
        ] {
            if let Some(v) = value {
                filters.push_str(&format!(" AND {column} = {}", quote(v)));
            }
        }
        if let Some(env) = f.environment {
            filters.push_str(&format!(" AND environment = {}", quote(env.as_str())));
        }
        let sketches = if request.with_sketches {
            "latency, users"
        } else {
            "'', ''"
        };
        // One row per (key, log partition): partitions are merged here, so callers see one
        // row per key exactly as from the embedded store.
        let mut out: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
        for span in request.spans.iter().filter(|s| s.from < s.to) {
            let sql = format!(
                "SELECT {ROLLUP_COLUMNS}, {sketches} FROM {ROLLUPS} FINAL WHERE resolution = {} AND bucket >= {} AND bucket < {}{filters}",
                span.resolution.seconds(),
                span.from,
                span.to
            );
            for row in self.rows::<RollupDbRow>(&sql).await? {
                let (key, rollup) = decode(row, request.with_sketches)?;
                match out.get_mut(&key) {
                    Some(existing) => existing.merge(&rollup),
                    None => {
                        out.insert(key, rollup);
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|(key, rollup)| RollupRow { key, rollup })
            .collect())
    }

    fn keeps_raw_events(&self) -> bool {
        true
    }

    async fn ping(&self) -> StoreResult<()> {
        let sql = format!("SELECT count() FROM {TABLE} WHERE kind = {KIND_CHECKPOINT}");
        self.client.query(&sql).fetch_one::<u64>().await?;
        Ok(())
    }

    /// Drops the day partitions of raw events and rollups that ended at or before
    /// `before_s`. The count of rows is not reported (0).
    #[instrument(name = "clickhouse.prune", skip_all, err)]
    async fn prune(&self, before_s: i64) -> StoreResult<u64> {
        super::events::drop_days_before(&self.client, super::events::EVENTS_TABLE, before_s)
            .await?;
        super::events::drop_days_before(&self.client, ROLLUPS, before_s).await?;
        Ok(0)
    }

    async fn reset(&self) -> StoreResult<()> {
        for table in [TABLE, ROLLUPS, super::events::EVENTS_TABLE] {
            self.client
                .query(&format!("TRUNCATE TABLE {table}"))
                .execute()
                .await?;
        }
        Ok(())
    }
}
