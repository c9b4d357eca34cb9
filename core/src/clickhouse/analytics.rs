//! [`AnalyticsStore`] on ClickHouse. See the module docs of [`crate::clickhouse`] for why a
//! commit is atomic and exactly-once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

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

const TABLE: &str = "tally_projection";
const KIND_ROLLUP: u8 = 0;
const KIND_CHECKPOINT: u8 = 1;
const KIND_DEDUP: u8 = 2;
/// Stay well below ClickHouse's default `max_insert_block_size` (1,048,576), the limit of an
/// atomic insert.
const MAX_ROWS_PER_COMMIT: usize = 1_000_000;
/// Expired dedup chunks are deleted (an asynchronous mutation) every this many commits.
const DEDUP_CLEANUP_EVERY: u64 = 200;

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

pub struct ClickHouseAnalyticsStore {
    client: Client,
    commits: AtomicU64,
}

impl ClickHouseAnalyticsStore {
    /// Wraps a client of a migrated database ([`super::migrate`]).
    pub fn new(client: Client) -> Self {
        ClickHouseAnalyticsStore {
            client,
            commits: AtomicU64::new(0),
        }
    }

    async fn rows(&self, sql: &str) -> StoreResult<Vec<ProjectionRow>> {
        Ok(self.client.query(sql).fetch_all::<ProjectionRow>().await?)
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
    /// the touched buckets and features (then matched exactly in memory).
    async fn existing(
        &self,
        commit: &ProjectionCommit,
    ) -> StoreResult<BTreeMap<(i32, RollupKey), Rollup>> {
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
                "SELECT {COLUMNS}, latency, users, '' FROM {TABLE} FINAL WHERE kind = {KIND_ROLLUP} AND resolution = {} AND bucket >= {min} AND bucket <= {max} AND feature IN ({features}) AND log_partition IN ({})",
                resolution.seconds(),
                list(&partitions),
            );
            for row in self.rows(&sql).await? {
                let partition = row.log_partition;
                let (key, rollup) = decode(row, true)?;
                let touched = commit
                    .partitions
                    .get(&partition)
                    .is_some_and(|p| p.deltas.contains_key(&key));
                if touched {
                    out.insert((partition, key), rollup);
                }
            }
        }
        Ok(out)
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

fn decode(row: ProjectionRow, with_sketches: bool) -> StoreResult<(RollupKey, Rollup)> {
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
        },
    };
    Ok((key, rollup))
}

fn encode(key: &RollupKey, r: &Rollup, partition: i32, version: u64) -> ProjectionRow {
    ProjectionRow {
        kind: KIND_ROLLUP,
        resolution: key.resolution.seconds() as u32,
        feature: key.dims.feature.clone(),
        bucket: key.bucket,
        model: key.dims.model.clone(),
        provider: key.dims.provider.clone(),
        environment: key.dims.environment.as_str().to_string(),
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
        payload: Vec::new(),
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
        for row in self.rows(&sql).await? {
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
            for chunk in self.rows(&sql).await? {
                crate::codec::decode_dedup_chunk(&chunk.payload, since_s, &mut ps.dedup)?;
            }
        }
        Ok(state)
    }

    #[instrument(name = "clickhouse.commit", skip_all, fields(rows = c.rows()), err)]
    async fn commit(&self, c: ProjectionCommit) -> StoreResult<()> {
        if c.rows() + 2 * c.partitions.len() > MAX_ROWS_PER_COMMIT {
            return Err(StoreError::invalid("projector_batch_events", "a commit would exceed one atomic ClickHouse insert; lower TALLY_PROJECTOR_BATCH_EVENTS"));
        }
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
        let mut merged = self.existing(&c).await?;
        let mut insert = self.client.insert::<ProjectionRow>(TABLE).await?;
        for (partition, pc) in &c.partitions {
            let version = u64::try_from(pc.state.next_offset)
                .map_err(|_| StoreError::invalid("offset", "is negative"))?;
            for (key, delta) in &pc.deltas {
                let row = merged.entry((*partition, key.clone())).or_default();
                row.merge(delta);
                insert.write(&encode(key, row, *partition, version)).await?;
            }
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
        merged.clear();
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
                "SELECT {COLUMNS}, {sketches}, '' FROM {TABLE} FINAL WHERE kind = {KIND_ROLLUP} AND resolution = {} AND bucket >= {} AND bucket < {}{filters}",
                span.resolution.seconds(),
                span.from,
                span.to
            );
            for row in self.rows(&sql).await? {
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

    /// Deletes through a ClickHouse mutation and waits until it is applied (18.16 has no
    /// `mutations_sync`, so this polls `system.mutations`). The count is not reported (0).
    async fn prune(&self, before_s: i64) -> StoreResult<u64> {
        super::events::drop_before(&self.client, before_s).await?;
        let sql = format!("ALTER TABLE {TABLE} DELETE WHERE kind = {KIND_ROLLUP} AND bucket + resolution <= {before_s}");
        self.client.query(&sql).execute().await?;
        let pending = format!("SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = '{TABLE}' AND is_done = 0");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.client.query(&pending).fetch_one::<u64>().await? > 0 {
            if std::time::Instant::now() > deadline {
                return Err(StoreError::Unavailable(
                    "retention mutation still running after 60 s".into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(0)
    }

    async fn reset(&self) -> StoreResult<()> {
        for table in [TABLE, super::events::EVENTS_TABLE] {
            self.client
                .query(&format!("TRUNCATE TABLE {table}"))
                .execute()
                .await?;
        }
        Ok(())
    }
}
