//! Reading what the projection table holds back into the projector's state: the current epoch,
//! a binding's checkpoints and dedup memory, the offsets of rows already stored, and what an
//! unfinished commit left behind.

use super::*;

/// Rollup rows of one commit that landed ahead of the checkpoint: already included.
pub(super) enum Stored {
    /// The row's state at a version at or before the commit's base: merge the delta into it.
    Before(Rollup),
    /// The row already holds the commit's events (an unfinished commit wrote it).
    Included,
}

impl ClickHouseAnalyticsStore {
    /// The stored blocks of `partition`'s sealed generations `ids`: those numbered `blocks`
    /// (rows of other generations with those numbers too: the caller picks), or all of them.
    /// A block may come twice before the table's merges collapse it; both copies are equal.
    pub(super) async fn generation_blocks(
        &self,
        partition: i32,
        ids: &[u64],
        blocks: Option<&[u32]>,
    ) -> Result<Vec<ProjectionRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let names = ids
            .iter()
            .map(|id| format!("'{}'", generation_name(*id)))
            .collect::<Vec<_>>()
            .join(", ");
        let numbered = match blocks {
            Some(blocks) if !blocks.is_empty() => format!(
                " AND resolution IN ({})",
                blocks
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => String::new(),
        };
        let sql = format!("SELECT {COLUMNS}, latency, users, payload FROM {TABLE} WHERE kind = {KIND_DEDUP_BLOCK} AND log_partition = {partition} AND feature IN ({names}){numbered}");
        self.rows::<ProjectionRow>(&sql).await
    }

    /// The epoch of the newest binding (0 when there is none: checkpoints from before
    /// bindings were recorded).
    pub(super) async fn current_epoch(&self) -> Result<u32> {
        let sql = format!("SELECT max(log_epoch) FROM {TABLE} WHERE kind = {KIND_BINDING}");
        Ok(self.client.query(&sql).fetch_one::<u32>().await?)
    }

    /// The checkpoints of `epoch` in `partitions`, with their dedup fingerprints seen within
    /// `dedup_window_s` of each partition's log clock, and unfinished commits (checkpoints
    /// alone when `dedup_window_s` is `None`).
    pub(super) async fn load_epoch(
        &self,
        epoch: u32,
        dedup_window_s: Option<u32>,
        partitions: &Partitions,
    ) -> Result<ProjectorState> {
        let sql = format!("SELECT {COLUMNS}, latency, users, payload FROM {TABLE} FINAL WHERE kind = {KIND_CHECKPOINT} AND log_epoch = {epoch}");
        let mut state = ProjectorState {
            epoch,
            ..ProjectorState::default()
        };
        for row in self.rows::<ProjectionRow>(&sql).await? {
            if !partitions.contains(row.log_partition) {
                continue;
            }
            let ps: PartitionState = serde_json::from_slice(&row.payload)
                .map_err(|e| Failure::Corrupt(format!("checkpoint: {e}")))?;
            state.partitions.insert(row.log_partition, ps);
        }
        let Some(dedup_window_s) = dedup_window_s else {
            return Ok(state);
        };
        for (partition, ps) in &mut state.partitions {
            let since_s = ((ps.last_received_ms / 1000) as u32).saturating_sub(dedup_window_s);
            let upto = ps.next_offset;
            // Sealed generations up to the checkpoint (each was inserted with the checkpoint of
            // the commit that sealed it). Every one holds true sightings of this log's prefix,
            // so one left by a fenced projector is harmless; the newest seal held everything
            // seen before it, so only chunks after it are still open.
            // Listed without their summaries (`dedup_summaries` fetches them).
            let sql = format!("SELECT feature, bucket, requests FROM {TABLE} FINAL WHERE kind = {KIND_DEDUP_GENERATION} AND log_partition = {partition} AND log_epoch = {epoch} AND bucket >= {since_s} AND version <= {upto} ORDER BY version");
            for (name, bucket, entries) in self.rows::<(String, i64, u64)>(&sql).await? {
                ps.generations.push(DedupGeneration {
                    id: generation_id(&name)?,
                    max_seen_s: u32::try_from(bucket).unwrap_or(0),
                    entries,
                });
            }
            // Seals of the open set only: parts of merged runs say nothing of the open chunks.
            let sql = format!("SELECT count(), max(version) FROM {TABLE} WHERE kind = {KIND_DEDUP_GENERATION} AND resolution = {GENERATION_SEALED} AND log_partition = {partition} AND log_epoch = {epoch} AND version <= {upto}");
            let (seals, sealed_at) = self.client.query(&sql).fetch_one::<(u64, u64)>().await?;
            // Without a seal every chunk is open (an adoption's are at version 0).
            let after = if seals == 0 {
                String::new()
            } else {
                format!(" AND version > {sealed_at}")
            };
            // Chunks beyond the checkpoint cannot exist: each was inserted with its checkpoint.
            let sql = format!("SELECT {COLUMNS}, latency, users, payload FROM {TABLE} FINAL WHERE kind = {KIND_DEDUP} AND log_partition = {partition} AND log_epoch = {epoch} AND bucket >= {since_s}{after} AND version <= {upto}");
            for chunk in self.rows::<ProjectionRow>(&sql).await? {
                crate::codec::decode_dedup_chunk(&chunk.payload, since_s, &mut ps.dedup)?;
            }
        }
        let checkpoints: BTreeMap<i32, i64> = state
            .partitions
            .iter()
            .map(|(p, s)| (*p, s.next_offset))
            .collect();
        state.unfinished = self.unfinished(epoch, partitions, &checkpoints).await?;
        Ok(state)
    }

    /// Stored `next_offset` per partition of `epoch` in `partitions` (absent: never
    /// committed).
    pub(super) async fn stored_offsets(
        &self,
        epoch: u32,
        partitions: &Partitions,
    ) -> Result<BTreeMap<i32, i64>> {
        let only = match partitions {
            Partitions::All => String::new(),
            Partitions::Only(set) if set.is_empty() => return Ok(BTreeMap::new()),
            Partitions::Only(set) => format!(
                " AND log_partition IN ({})",
                list(&set.iter().copied().collect::<Vec<_>>())
            ),
        };
        let sql = format!(
            "SELECT log_partition, max(version) FROM {TABLE} WHERE kind = {KIND_CHECKPOINT} AND log_epoch = {epoch}{only} GROUP BY log_partition"
        );
        let rows = self.client.query(&sql).fetch_all::<(i32, u64)>().await?;
        Ok(rows.into_iter().map(|(p, v)| (p, v as i64)).collect())
    }

    /// The stored rows for the keys of `commit`, per partition, fetched per resolution over
    /// the touched buckets and features (then matched exactly in memory). A row whose version
    /// is past the commit's base was written by an unfinished commit: if it already holds
    /// this commit's events it is [`Stored::Included`]; if it holds only some, the commit
    /// did not stop where the unfinished one did, and is refused (`Conflict`).
    pub(super) async fn existing(
        &self,
        commit: &ProjectionCommit,
    ) -> Result<BTreeMap<(i32, RollupKey), Stored>> {
        let mut out = BTreeMap::new();
        let partitions: Vec<i32> = commit.partitions.keys().copied().collect();
        for resolution in Resolution::STORED {
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
                "SELECT {ROLLUP_COLUMNS}, latency, users FROM {ROLLUPS} FINAL WHERE resolution = {} AND bucket >= {min} AND bucket <= {max} AND feature IN ({features}) AND log_partition IN ({}) AND log_epoch = {}",
                resolution.seconds(),
                list(&partitions),
                commit.epoch,
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
                    return Err(Failure::Conflict(format!(
                        "log partition {partition}: a rollup row is at offset {version}, inside this commit ({}..{}); reload and stop at the unfinished commit",
                        pc.base_offset, pc.state.next_offset
                    )));
                };
                out.insert((partition, key), stored);
            }
        }
        Ok(out)
    }

    /// Per partition of `epoch` in `partitions` (checkpointed at `checkpoints`), the lowest
    /// version of a rollup row past its checkpoint: the end of the oldest unfinished commit.
    pub(super) async fn unfinished(
        &self,
        epoch: u32,
        partitions: &Partitions,
        checkpoints: &BTreeMap<i32, i64>,
    ) -> Result<BTreeMap<i32, i64>> {
        let mut conditions: Vec<String> = vec![format!("log_epoch = {epoch}")];
        conditions.extend(
            checkpoints
                .iter()
                .map(|(p, at)| format!("(log_partition != {p} OR version > {at})")),
        );
        if let Partitions::Only(set) = partitions {
            let set: Vec<i32> = set.iter().copied().collect();
            if set.is_empty() {
                return Ok(BTreeMap::new());
            }
            conditions.push(format!("log_partition IN ({})", list(&set)));
        }
        let sql = format!(
            "SELECT log_partition, min(version) FROM {ROLLUPS} WHERE {} GROUP BY log_partition",
            conditions.join(" AND ")
        );
        let rows = self.client.query(&sql).fetch_all::<(i32, u64)>().await?;
        Ok(rows.into_iter().map(|(p, v)| (p, v as i64)).collect())
    }
}
