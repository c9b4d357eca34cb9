//! [`AnalyticsStore`] on ClickHouse. See the module docs of [`crate::clickhouse`] for why a
//! commit is atomic and exactly-once.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use tally_schemas::{Environment, Pico};
use tracing::instrument;

use crate::hll::Hll;
use crate::rollup::{Dims, Resolution, Rollup, RollupKey, RollupRow};
use crate::sketch::LatencySketch;
use crate::store::{
    AnalyticsStore, LogPosition, ProjectionCommit, ProjectorState, ScanRequest, StoreError,
    StoreResult,
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

const COLUMNS: &str = "kind, resolution, feature, bucket, model, provider, environment, version, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, unpriced";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    position: LogPosition,
    last_received_ms: i64,
    events_applied: u64,
    duplicates_dropped: u64,
}

pub struct ClickHouseAnalyticsStore {
    client: Client,
}

impl ClickHouseAnalyticsStore {
    /// Wraps a client of a migrated database ([`super::migrate`]).
    pub fn new(client: Client) -> Self {
        ClickHouseAnalyticsStore { client }
    }

    async fn rows(&self, sql: &str) -> StoreResult<Vec<ProjectionRow>> {
        Ok(self.client.query(sql).fetch_all::<ProjectionRow>().await?)
    }

    async fn current_version(&self) -> StoreResult<u64> {
        let sql = format!("SELECT max(version) FROM {TABLE} WHERE kind = {KIND_CHECKPOINT}");
        Ok(self.client.query(&sql).fetch_one::<u64>().await?)
    }

    /// The stored rows for the keys of `deltas`, fetched per resolution over the touched
    /// buckets and features (then matched exactly in memory).
    async fn existing(
        &self,
        deltas: &BTreeMap<RollupKey, Rollup>,
    ) -> StoreResult<BTreeMap<RollupKey, Rollup>> {
        let mut out = BTreeMap::new();
        for resolution in Resolution::ALL {
            let keys: Vec<&RollupKey> = deltas
                .keys()
                .filter(|k| k.resolution == resolution)
                .collect();
            let (Some(min), Some(max)) = (
                keys.iter().map(|k| k.bucket).min(),
                keys.iter().map(|k| k.bucket).max(),
            ) else {
                continue;
            };
            let features: BTreeSet<&str> = keys.iter().map(|k| k.dims.feature.as_str()).collect();
            let list = features
                .iter()
                .map(|f| quote(f))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {COLUMNS}, latency, users, '' FROM {TABLE} FINAL WHERE kind = {KIND_ROLLUP} AND resolution = {} AND bucket >= {min} AND bucket <= {max} AND feature IN ({list})",
                resolution.seconds()
            );
            for row in self.rows(&sql).await? {
                let (key, rollup) = decode(row, true)?;
                if deltas.contains_key(&key) {
                    out.insert(key, rollup);
                }
            }
        }
        Ok(out)
    }
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

fn encode(key: &RollupKey, r: &Rollup, version: u64) -> ProjectionRow {
    ProjectionRow {
        kind: KIND_ROLLUP,
        resolution: key.resolution.seconds() as u32,
        feature: key.dims.feature.clone(),
        bucket: key.bucket,
        model: key.dims.model.clone(),
        provider: key.dims.provider.clone(),
        environment: key.dims.environment.as_str().to_string(),
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
    async fn load_state(&self, dedup_window_s: u32) -> StoreResult<ProjectorState> {
        let sql = format!("SELECT {COLUMNS}, latency, users, payload FROM {TABLE} FINAL WHERE kind = {KIND_CHECKPOINT}");
        let Some(row) = self.rows(&sql).await?.into_iter().next() else {
            return Ok(ProjectorState::default());
        };
        let cp: Checkpoint = serde_json::from_slice(&row.payload)
            .map_err(|e| StoreError::Corrupt(format!("checkpoint: {e}")))?;
        let since_s = ((cp.last_received_ms / 1000) as u32).saturating_sub(dedup_window_s);
        let sql = format!("SELECT {COLUMNS}, latency, users, payload FROM {TABLE} FINAL WHERE kind = {KIND_DEDUP} AND bucket >= {since_s}");
        let mut dedup = Vec::new();
        for chunk in self.rows(&sql).await? {
            crate::codec::decode_dedup_chunk(&chunk.payload, since_s, &mut dedup)?;
        }
        Ok(ProjectorState {
            position: cp.position,
            last_received_ms: cp.last_received_ms,
            events_applied: cp.events_applied,
            duplicates_dropped: cp.duplicates_dropped,
            dedup,
        })
    }

    #[instrument(name = "clickhouse.commit", skip_all, fields(rows = c.deltas.len()), err)]
    async fn commit(&self, c: ProjectionCommit) -> StoreResult<()> {
        if c.deltas.len() + 2 > MAX_ROWS_PER_COMMIT {
            return Err(StoreError::invalid("projector_batch_events", "a commit would exceed one atomic ClickHouse insert; lower TALLY_PROJECTOR_BATCH_EVENTS"));
        }
        let version = self.current_version().await? + 1;
        let mut merged = self.existing(&c.deltas).await?;
        crate::rollup::apply(&mut merged, c.deltas);
        let checkpoint = Checkpoint {
            position: c.position,
            last_received_ms: c.last_received_ms,
            events_applied: c.events_applied,
            duplicates_dropped: c.duplicates_dropped,
        };
        let mut insert = self.client.insert::<ProjectionRow>(TABLE).await?;
        for (key, rollup) in &merged {
            insert.write(&encode(key, rollup, version)).await?;
        }
        if let Some(max_seen) = c.dedup_new.iter().map(|(_, s)| *s).max() {
            insert
                .write(&ProjectionRow {
                    kind: KIND_DEDUP,
                    feature: format!("chunk-{version}"),
                    bucket: i64::from(max_seen),
                    version,
                    cost_pico: "0".into(),
                    payload: crate::codec::encode_dedup_chunk(&c.dedup_new),
                    ..ProjectionRow::default()
                })
                .await?;
        }
        insert
            .write(&ProjectionRow {
                kind: KIND_CHECKPOINT,
                version,
                cost_pico: "0".into(),
                payload: serde_json::to_vec(&checkpoint)
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
                ..ProjectionRow::default()
            })
            .await?;
        insert.end().await?;
        if version % DEDUP_CLEANUP_EVERY == 0 {
            let sql = format!(
                "ALTER TABLE {TABLE} DELETE WHERE kind = {KIND_DEDUP} AND bucket < {}",
                c.dedup_horizon_s
            );
            if let Err(err) = self.client.query(&sql).execute().await {
                tracing::warn!(error = %err, "failed to schedule deletion of expired dedup chunks");
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
        let mut out = Vec::new();
        for span in request.spans.iter().filter(|s| s.from < s.to) {
            let sql = format!(
                "SELECT {COLUMNS}, {sketches}, '' FROM {TABLE} FINAL WHERE kind = {KIND_ROLLUP} AND resolution = {} AND bucket >= {} AND bucket < {}{filters}",
                span.resolution.seconds(),
                span.from,
                span.to
            );
            for row in self.rows(&sql).await? {
                let (key, rollup) = decode(row, request.with_sketches)?;
                out.push(RollupRow { key, rollup });
            }
        }
        Ok(out)
    }

    async fn ping(&self) -> StoreResult<()> {
        let sql = format!("SELECT count() FROM {TABLE} WHERE kind = {KIND_CHECKPOINT}");
        self.client.query(&sql).fetch_one::<u64>().await?;
        Ok(())
    }

    /// Deletes through a ClickHouse mutation and waits until it is applied (18.16 has no
    /// `mutations_sync`, so this polls `system.mutations`). The count is not reported (0).
    async fn prune(&self, before_s: i64) -> StoreResult<u64> {
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
        self.client
            .query(&format!("TRUNCATE TABLE {TABLE}"))
            .execute()
            .await?;
        Ok(())
    }
}
