//! [`AnalyticsStore`] on ClickHouse. See the module docs of [`super`] for why a
//! commit has an exactly-once effect although only its last insert is atomic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

mod checkpoints;

use async_trait::async_trait;
use clickhouse::query::RowCursor;
use clickhouse::Client;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use tracing::instrument;

use checkpoints::Stored;

use super::rows::{
    binding_row, checkpoint_row, decode, encode, from_legacy, generation_id, generation_name,
    ProjectionRow, RollupDbRow, SummaryRow, BINDING_BOUND, BINDING_ID_LEARNED, BINDING_RETIRED,
    COLUMNS, GENERATION_MERGED, GENERATION_SEALED, KIND_BINDING, KIND_CHECKPOINT, KIND_DEDUP,
    KIND_DEDUP_BLOCK, KIND_DEDUP_GENERATION, KIND_LEGACY_ROLLUP, ROLLUP_COLUMNS,
};
use crate::failure::{seam, Failure, Result};
use tally_domain::log_binding::{Adoption, LogBinding};
use tally_domain::rollup::{Resolution, Rollup, RollupKey, RollupRow};
use tally_domain::store::{
    AnalyticsStore, DedupGeneration, PartitionState, Partitions, ProjectionCommit, ProjectorState,
    ScanRequest, StoreError, StoreResult,
};

/// Checkpoints and dedup chunks (unpartitioned: one commit's are one atomic insert).
pub(super) const TABLE: &str = "tally_projection";
/// Rollup rows, one partition per UTC day.
pub(super) const ROLLUPS: &str = "tally_rollups";
/// Generation names per query that reads summaries: a query stays far below ClickHouse's
/// `max_query_size` (256 KiB; a quoted name takes 23 bytes).
const NAMES_PER_QUERY: usize = 2_000;
/// Entries per dedup chunk written by an adoption.
const ADOPTED_CHUNK: usize = 1 << 20;
/// Days (ClickHouse partitions) per rollup insert: below the `max_partitions_per_insert_block`
/// (100) of current servers.
const DAYS_PER_INSERT: usize = 50;
/// Expired dedup chunks are deleted (an asynchronous mutation) every this many commits.
const DEDUP_CLEANUP_EVERY: u64 = 200;

pub struct ClickHouseAnalyticsStore {
    client: Client,
    commits: AtomicU64,
    /// Fault injection for tests: the next commit fails after this many rollup days landed.
    fail_after_days: AtomicUsize,
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
    ) -> Result<Vec<T>> {
        Ok(self.client.query(sql).fetch_all::<T>().await?)
    }

    /// Inserts rollup rows, at most [`DAYS_PER_INSERT`] day partitions per insert (one per
    /// insert when a fault is injected).
    async fn insert_rollups(&self, rows: Vec<RollupDbRow>) -> Result<()> {
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
                return Err(Failure::Unavailable(format!(
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
    pub(super) async fn move_legacy_rollups(&self) -> Result<u64> {
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

#[async_trait]
impl AnalyticsStore for ClickHouseAnalyticsStore {
    #[instrument(name = "clickhouse.load_state", skip_all, err)]
    async fn load_state(
        &self,
        dedup_window_s: u32,
        partitions: &Partitions,
    ) -> StoreResult<ProjectorState> {
        seam(async || -> Result<ProjectorState> {
            let epoch = self.current_epoch().await?;
            self.load_epoch(epoch, Some(dedup_window_s), partitions)
                .await
        })
        .await
    }

    async fn checkpoints(&self, partitions: &Partitions) -> StoreResult<ProjectorState> {
        seam(async || -> Result<ProjectorState> {
            let epoch = self.current_epoch().await?;
            self.load_epoch(epoch, None, partitions).await
        })
        .await
    }

    async fn bindings(&self) -> StoreResult<Vec<LogBinding>> {
        seam(async || -> Result<Vec<LogBinding>> {
            let sql = format!("SELECT {COLUMNS}, latency, users, payload FROM {TABLE} FINAL WHERE kind = {KIND_BINDING} ORDER BY log_epoch");
            self.rows::<ProjectionRow>(&sql)
                .await?
                .iter()
                .map(|row| {
                    serde_json::from_slice(&row.payload)
                        .map_err(|e| Failure::Corrupt(format!("log binding: {e}")))
                })
                .collect()
        })
        .await
    }

    async fn bind(&self, binding: LogBinding) -> StoreResult<LogBinding> {
        seam(async || -> Result<LogBinding> {
            let revision = match self.bindings().await?.pop() {
                None => Some(BINDING_BOUND),
                Some(current)
                    if current.epoch == binding.epoch
                        && current.log.name == binding.log.name
                        && current.log.id.is_none()
                        && binding.log.id.is_some() =>
                {
                    Some(BINDING_ID_LEARNED)
                }
                _ => None,
            };
            if let Some(revision) = revision {
                let mut insert = self.client.insert::<ProjectionRow>(TABLE).await?;
                insert.write(&binding_row(&binding, revision)?).await?;
                insert.end().await?;
            }
            self.bindings()
                .await?
                .pop()
                .ok_or_else(|| Failure::Conflict("the store has no binding".into()))
        })
        .await
    }

    /// Refuses while the retired epoch has an unfinished commit (its rows would stay half
    /// counted); then writes, in one insert into the unpartitioned projection table (atomic),
    /// the adopted partitions' checkpoints and dedup chunks, the retired binding's final
    /// revision and the adopted binding. Until that insert lands nothing changed; repeating
    /// it writes identical rows.
    #[instrument(name = "clickhouse.adopt", skip_all, fields(epoch = a.adopted.epoch), err)]
    async fn adopt(&self, a: &Adoption, dedup_window_s: u32) -> StoreResult<()> {
        seam(async || -> Result<()> {
            let mut bindings = self.bindings().await?;
            let epoch = bindings.last().map_or(0, |b| b.epoch);
            if epoch != a.retired_epoch {
                return Err(Failure::Conflict(format!(
                    "the store is at epoch {epoch}, not {}: it changed since the adoption was planned",
                    a.retired_epoch
                )));
            }
            let mut stored = self
                .load_epoch(epoch, Some(dedup_window_s), &Partitions::All)
                .await?;
            // The sealed generations' entries join the open ones: an adoption hands the whole
            // dedup memory over as chunks (the new partitions' projector seals them again).
            for (partition, ps) in &mut stored.partitions {
                let since_s =
                    ((ps.last_received_ms / 1000) as u32).saturating_sub(dedup_window_s);
                let ids: Vec<u64> = ps.generations.iter().map(|g| g.id).collect();
                for block in self.generation_blocks(*partition, &ids, None).await? {
                    crate::codec::decode_dedup_chunk(&block.payload, since_s, &mut ps.dedup)?;
                }
            }
            if stored.position().0 != a.retired_position {
                return Err(Failure::Conflict(
                    "the checkpoints moved since the adoption was planned (is a projector still reading the old log?)".into(),
                ));
            }
            if let Some((partition, end)) = stored.unfinished.iter().next() {
                return Err(Failure::Conflict(format!(
                    "the last commit of log partition {partition} (up to offset {end}) did not finish: let a projector on the retired log finish it, or start clean (`tally rebuild --start-clean`)"
                )));
            }
            let mut rows = Vec::new();
            for (partition, sources) in &a.dedup_from {
                let from: Vec<&PartitionState> = sources
                    .iter()
                    .filter_map(|p| stored.partitions.get(p))
                    .collect();
                let state = PartitionState {
                    next_offset: a.start.get(partition).copied().unwrap_or(0),
                    last_received_ms: from.iter().map(|s| s.last_received_ms).max().unwrap_or(0),
                    ..PartitionState::default()
                };
                let mut entries: Vec<(u64, u32)> =
                    from.iter().flat_map(|s| s.dedup.iter().copied()).collect();
                // An id remembered by several sources is kept with its latest sighting.
                entries.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
                entries.dedup_by_key(|(fp, _)| *fp);
                for (i, chunk) in entries.chunks(ADOPTED_CHUNK).enumerate() {
                    rows.push(ProjectionRow {
                        kind: KIND_DEDUP,
                        feature: format!("adopted-{i}"),
                        bucket: i64::from(chunk.iter().map(|(_, s)| *s).max().unwrap_or(0)),
                        log_partition: *partition,
                        log_epoch: a.adopted.epoch,
                        cost_pico: "0".into(),
                        payload: crate::codec::encode_dedup_chunk(chunk),
                        ..ProjectionRow::default()
                    });
                }
                rows.push(checkpoint_row(*partition, a.adopted.epoch, &state)?);
            }
            let mut retired = bindings.pop().unwrap_or(LogBinding {
                epoch: a.retired_epoch,
                log: a.retired_log.clone(),
                bound_at: chrono::DateTime::UNIX_EPOCH,
                retired: None,
            });
            retired.retired = Some(tally_domain::log_binding::Retirement {
                at: a.adopted.bound_at,
                position: a.retired_position.clone(),
            });
            rows.push(binding_row(&retired, BINDING_RETIRED)?);
            rows.push(binding_row(&a.adopted, BINDING_BOUND)?);
            let mut insert = self.client.insert::<ProjectionRow>(TABLE).await?;
            for row in &rows {
                insert.write(row).await?;
            }
            insert.end().await?;
            // The retired epoch's fingerprints were copied; its checkpoints stay as its record.
            let sql = format!(
                "ALTER TABLE {TABLE} DELETE WHERE kind IN ({KIND_DEDUP}, {KIND_DEDUP_GENERATION}, {KIND_DEDUP_BLOCK}) AND log_epoch = {}",
                a.retired_epoch
            );
            if let Err(err) = self.client.query(&sql).execute().await {
                tracing::warn!(error = %err, "failed to schedule deletion of the retired epoch's dedup chunks");
            }
            Ok(())
        })
        .await
    }

    /// In this order: fencing check, raw events, rollup rows (a day partition per part), and
    /// last the checkpoint with its dedup chunk in one atomic insert. A failure anywhere
    /// before the last insert leaves rows that are each correct for their version; the next
    /// `load_state` reports them as an unfinished commit.
    #[instrument(name = "clickhouse.commit", skip_all, fields(rows = c.rows()), err)]
    async fn commit(&self, c: ProjectionCommit) -> StoreResult<()> {
        seam(async || -> Result<()> {
            let epoch = self.current_epoch().await?;
            if epoch != c.epoch {
                return Err(Failure::Conflict(format!(
                    "the store was bound to another log (epoch {epoch}) since this projector loaded epoch {}",
                    c.epoch
                )));
            }
            let partitions = Partitions::Only(c.partitions.keys().copied().collect());
            let stored = self.stored_offsets(epoch, &partitions).await?;
            for (partition, pc) in &c.partitions {
                let at = stored.get(partition).copied().unwrap_or(0);
                if at != pc.base_offset {
                    return Err(Failure::Conflict(format!(
                        "log partition {partition} is at offset {at}, not {}: another projector moved it",
                        pc.base_offset
                    )));
                }
            }
            // Raw events first: if the projection insert below never lands, a replay re-inserts the
            // same rows, which collapse (same sorting key).
            for (partition, pc) in &c.partitions {
                super::events::insert(&self.client, *partition, &pc.raw).await?;
                super::scores::insert(&self.client, *partition, &pc.scores).await?;
            }
            let mut stored = self.existing(&c).await?;
            let mut rows = Vec::with_capacity(c.rows());
            for (partition, pc) in &c.partitions {
                let version = u64::try_from(pc.state.next_offset)
                    .map_err(|_| Failure::invalid("offset", "is negative"))?;
                for (key, delta) in &pc.deltas {
                    let mut row = match stored.remove(&(*partition, key.clone())) {
                        Some(Stored::Included) => continue,
                        Some(Stored::Before(row)) => row,
                        None => Rollup::default(),
                    };
                    row.merge(delta);
                    rows.push(encode(key, &row, *partition, epoch, version));
                }
            }
            drop(stored);
            self.insert_rollups(rows).await?;
            let mut insert = self.client.insert::<ProjectionRow>(TABLE).await?;
            for (partition, pc) in &c.partitions {
                let version = pc.state.next_offset as u64;
                // The generations and their blocks land with the checkpoint (one insert into
                // an unpartitioned table: atomic); the open chunks before a seal are skipped
                // by every later load. Parts of merged runs are marked (`resolution` 1) so that
                // loads do not take them for seals of the open set.
                let generations = pc
                    .seals
                    .iter()
                    .map(|g| (g, GENERATION_SEALED))
                    .chain(pc.merged.iter().map(|g| (g, GENERATION_MERGED)));
                for (seal, mark) in generations {
                    let g = &seal.generation;
                    let name = generation_name(g.id);
                    insert
                        .write(&ProjectionRow {
                            kind: KIND_DEDUP_GENERATION,
                            resolution: mark,
                            feature: name.clone(),
                            bucket: i64::from(g.max_seen_s),
                            log_partition: *partition,
                            log_epoch: epoch,
                            version,
                            requests: g.entries,
                            cost_pico: "0".into(),
                            payload: seal.summary.clone(),
                            ..ProjectionRow::default()
                        })
                        .await?;
                    for (block, entries) in seal.blocks().enumerate() {
                        insert
                            .write(&ProjectionRow {
                                kind: KIND_DEDUP_BLOCK,
                                resolution: u32::try_from(block)
                                    .map_err(|_| Failure::invalid("seal", "too many blocks"))?,
                                feature: name.clone(),
                                bucket: i64::from(g.max_seen_s),
                                log_partition: *partition,
                                log_epoch: epoch,
                                version,
                                cost_pico: "0".into(),
                                payload: crate::codec::encode_dedup_chunk(entries),
                                ..ProjectionRow::default()
                            })
                            .await?;
                    }
                }
                if pc.seals.is_empty() {
                    if let Some(max_seen) = pc.dedup_new.iter().map(|(_, s)| *s).max() {
                    insert
                        .write(&ProjectionRow {
                            kind: KIND_DEDUP,
                            feature: format!("chunk-{version}"),
                            bucket: i64::from(max_seen),
                            log_partition: *partition,
                            log_epoch: epoch,
                            version,
                            cost_pico: "0".into(),
                            payload: crate::codec::encode_dedup_chunk(&pc.dedup_new),
                            ..ProjectionRow::default()
                        })
                        .await?;
                    }
                }
                insert
                    .write(&checkpoint_row(*partition, epoch, &pc.state)?)
                    .await?;
            }
            insert.end().await?;
            for (partition, pc) in &c.partitions {
                if !pc.seals.is_empty() || !pc.retired.is_empty() {
                    // Disk only (loads already skip them): the chunks a seal replaced,
                    // generations wholly before the horizon but the newest, and those retired
                    // (the projector ignores them once a merged run names them replaced).
                    let version = pc.state.next_offset;
                    let chunks = if pc.seals.is_empty() {
                        String::new()
                    } else {
                        format!("(kind = {KIND_DEDUP} AND version <= {version}) OR ")
                    };
                    let retired = if pc.retired.is_empty() {
                        String::new()
                    } else {
                        let names: Vec<String> = pc
                            .retired
                            .iter()
                            .map(|id| format!("'{}'", generation_name(*id)))
                            .collect();
                        format!(
                            " OR (kind IN ({KIND_DEDUP_GENERATION}, {KIND_DEDUP_BLOCK}) AND feature IN ({}))",
                            names.join(", ")
                        )
                    };
                    let sql = format!(
                        "ALTER TABLE {TABLE} DELETE WHERE log_partition = {partition} AND log_epoch = {epoch} AND ({chunks}(kind IN ({KIND_DEDUP_GENERATION}, {KIND_DEDUP_BLOCK}) AND bucket < {} AND version < {version}){retired})",
                        pc.dedup_horizon_s
                    );
                    if let Err(err) = self.client.query(&sql).execute().await {
                        tracing::warn!(error = %err, "failed to schedule deletion of sealed dedup chunks");
                    }
                }
            }
            if self.commits.fetch_add(1, Ordering::Relaxed) % DEDUP_CLEANUP_EVERY
                == DEDUP_CLEANUP_EVERY - 1
            {
                for (partition, pc) in &c.partitions {
                    let sql = format!(
                        "ALTER TABLE {TABLE} DELETE WHERE kind = {KIND_DEDUP} AND log_partition = {partition} AND log_epoch = {epoch} AND bucket < {}",
                        pc.dedup_horizon_s
                    );
                    if let Err(err) = self.client.query(&sql).execute().await {
                        tracing::warn!(error = %err, "failed to schedule deletion of expired dedup chunks");
                    }
                }
            }
            Ok(())
        })
        .await
    }

    fn seals_dedup(&self) -> bool {
        true
    }

    /// One query per [`NAMES_PER_QUERY`] ids, read row by row: each summary is handed over
    /// as it arrives (a query per batch of ids would read the rows' granule again each time,
    /// which on servers with fixed 8,192-row granules holds every summary of the partition).
    fn dedup_summaries<'a>(
        &'a self,
        partition: i32,
        ids: &'a [u64],
    ) -> BoxStream<'a, StoreResult<(u64, Vec<u8>)>> {
        let queries: Vec<String> = ids
            .chunks(NAMES_PER_QUERY)
            .map(|chunk| {
                let names = chunk
                    .iter()
                    .map(|id| format!("'{}'", generation_name(*id)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("SELECT feature, payload FROM {TABLE} WHERE kind = {KIND_DEDUP_GENERATION} AND log_partition = {partition} AND feature IN ({names})")
            })
            .collect();
        let state = (queries.into_iter(), None::<RowCursor<SummaryRow>>);
        futures::stream::try_unfold(state, move |(mut queries, mut cursor)| async move {
            loop {
                if let Some(rows) = cursor.as_mut() {
                    if let Some(row) = rows.next().await.map_err(Failure::from)? {
                        let id = generation_id(&row.feature)?;
                        return Ok::<_, Failure>(Some(((id, row.payload), (queries, cursor))));
                    }
                }
                let Some(sql) = queries.next() else {
                    return Ok::<_, Failure>(None);
                };
                cursor = Some(
                    self.client
                        .query(&sql)
                        .fetch::<SummaryRow>()
                        .map_err(Failure::from)?,
                );
            }
        })
        .map_err(StoreError::from)
        .boxed()
    }

    #[instrument(name = "clickhouse.dedup_blocks", skip_all, fields(blocks = wanted.len()), err)]
    async fn dedup_blocks(
        &self,
        partition: i32,
        wanted: &[(u64, u32)],
    ) -> StoreResult<Vec<Vec<(u64, u32)>>> {
        seam(async || -> Result<Vec<Vec<(u64, u32)>>> {
            let mut ids: Vec<u64> = wanted.iter().map(|(g, _)| *g).collect();
            ids.sort_unstable();
            ids.dedup();
            let numbers: BTreeSet<u32> = wanted.iter().map(|(_, b)| *b).collect();
            let numbers: Vec<u32> = numbers.into_iter().collect();
            let mut found: BTreeMap<(u64, u32), Vec<(u64, u32)>> = BTreeMap::new();
            for row in self
                .generation_blocks(partition, &ids, Some(&numbers))
                .await?
            {
                let key = (generation_id(&row.feature)?, row.resolution);
                let mut entries = Vec::with_capacity(row.payload.len() / 12);
                crate::codec::decode_dedup_chunk(&row.payload, 0, &mut entries)?;
                found.insert(key, entries);
            }
            wanted
                .iter()
                .map(|(g, b)| {
                    found
                        .get(&(*g, *b))
                        .cloned()
                        .ok_or_else(|| Failure::NotFound {
                            what: format!(
                                "dedup block {b} of generation {g:016x} (partition {partition})"
                            ),
                        })
                })
                .collect()
        })
        .await
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
            ("experiment_id", &f.experiment_id),
            ("variant", &f.variant),
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

    #[instrument(name = "clickhouse.events", skip_all, err)]
    async fn events(
        &self,
        query: &tally_domain::drilldown::EventQuery,
    ) -> StoreResult<Vec<tally_schemas::UsageEvent>> {
        super::events::query(&self.client, query).await
    }

    #[instrument(name = "clickhouse.experiment_scores", skip_all, err)]
    async fn experiment_scores(
        &self,
        query: &tally_domain::store::ScoreQuery,
    ) -> StoreResult<Vec<tally_domain::store::ScoredEvent>> {
        super::scores::query(&self.client, query).await
    }

    async fn ping(&self) -> StoreResult<()> {
        seam(async || -> Result<()> {
            let sql = format!("SELECT count() FROM {TABLE} WHERE kind = {KIND_CHECKPOINT}");
            self.client.query(&sql).fetch_one::<u64>().await?;
            Ok(())
        })
        .await
    }

    /// Drops the day partitions of raw events, scores and rollups that ended at or before
    /// `before_s`. The count of rows is not reported (0).
    #[instrument(name = "clickhouse.prune", skip_all, err)]
    async fn prune(&self, before_s: i64) -> StoreResult<u64> {
        super::events::drop_days_before(&self.client, super::events::EVENTS_TABLE, before_s)
            .await?;
        super::events::drop_days_before(&self.client, ROLLUPS, before_s).await?;
        super::events::drop_days_before(&self.client, super::scores::SCORES_TABLE, before_s)
            .await?;
        Ok(0)
    }

    async fn reset(&self) -> StoreResult<()> {
        seam(async || -> Result<()> {
            for table in [
                TABLE,
                ROLLUPS,
                super::events::EVENTS_TABLE,
                super::scores::SCORES_TABLE,
            ] {
                self.client
                    .query(&format!("TRUNCATE TABLE {table}"))
                    .execute()
                    .await?;
            }
            Ok(())
        })
        .await
    }
}
