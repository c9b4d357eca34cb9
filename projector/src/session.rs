//! One projection session's state, per log partition it owns: where it stands, the dedup memory,
//! and the rollup deltas folded since the last commit. Folding a batch of records and learning
//! which commits landed are its only changes; everything in it is rebuilt from the store's
//! checkpoints when a session starts.

use std::collections::BTreeMap;

use tally_domain::event_fingerprint;
use tally_domain::log_binding::LogBinding;
use tally_domain::pricing::{PriceBook, Repricing};
use tally_domain::rollup::fold;
use tally_domain::store::{
    LogPosition, LogRecord, PartitionCommit, PartitionState, Partitions, ProjectionCommit,
    ProjectorState, RawEvent,
};
use tally_schemas::event::Cost;

use crate::dedup::Dedup;
use crate::metrics as m;

/// One partition's progress since the last load of its checkpoint.
pub(super) struct PartitionSession {
    /// The `next_offset` of the last commit that landed (what the store holds).
    pub(super) committed: i64,
    /// The end of an unfinished commit the store reported: commits stop there until the
    /// checkpoint reaches it ([`ProjectorState::unfinished`]).
    pub(super) stop_at: Option<i64>,
    pub(super) state: PartitionState,
    pub(super) dedup: Dedup,
}

/// In-memory progress since the last load of the checkpoint.
pub(super) struct Session {
    /// The log binding the checkpoints belong to; commits carry its epoch.
    pub(super) binding: LogBinding,
    pub(super) owned: Partitions,
    pub(super) partitions: BTreeMap<i32, PartitionSession>,
    pub(super) window_s: u32,
}

pub(super) fn seconds(ms: i64) -> u32 {
    u32::try_from(ms.max(0) / 1000).unwrap_or(u32::MAX)
}

impl Session {
    pub(super) fn resume(
        mut state: ProjectorState,
        binding: LogBinding,
        owned: Partitions,
        window_s: u32,
    ) -> Session {
        // A partition whose first commit is unfinished has rows but no checkpoint yet.
        for p in state.unfinished.keys() {
            state.partitions.entry(*p).or_default();
        }
        let partitions = state
            .partitions
            .into_iter()
            .filter(|(p, _)| owned.contains(*p))
            .map(|(p, mut s)| {
                let dedup = Dedup::new(window_s, std::mem::take(&mut s.dedup));
                let stop_at = state
                    .unfinished
                    .get(&p)
                    .copied()
                    .filter(|end| *end > s.next_offset);
                let session = PartitionSession {
                    committed: s.next_offset,
                    stop_at,
                    state: s,
                    dedup,
                };
                (p, session)
            })
            .collect();
        Session {
            binding,
            owned,
            partitions,
            window_s,
        }
    }

    pub(super) fn position(&self) -> LogPosition {
        LogPosition(
            self.partitions
                .iter()
                .map(|(p, s)| (*p, s.state.next_offset))
                .collect(),
        )
    }

    /// The position of the last commit that landed, per partition.
    pub(super) fn committed_position(&self) -> BTreeMap<i32, i64> {
        self.partitions
            .iter()
            .map(|(p, s)| (*p, s.committed))
            .collect()
    }

    pub(super) fn applied(&self) -> u64 {
        self.partitions
            .values()
            .map(|s| s.state.events_applied)
            .sum()
    }

    pub(super) fn duplicates(&self) -> u64 {
        self.partitions
            .values()
            .map(|s| s.state.duplicates_dropped)
            .sum()
    }

    pub(super) fn dedup_len(&self) -> usize {
        self.partitions.values().map(|s| s.dedup.len()).sum()
    }

    /// Prices, deduplicates and folds `records` into one commit (not yet applied). Records of
    /// partitions not owned, or before a partition's position, are skipped.
    ///
    /// Per partition, the result depends only on the partition's records in offset order: the
    /// dedup clock is the running maximum of `received_at`, so it never goes backwards.
    pub(super) fn fold(
        &mut self,
        records: Vec<LogRecord>,
        prices: Option<&PriceBook>,
        reprices: Option<&Repricing>,
        keep_raw: bool,
    ) -> ProjectionCommit {
        let window_s = self.window_s;
        let mut by_partition: BTreeMap<i32, Vec<LogRecord>> = BTreeMap::new();
        for record in records {
            if self.owned.contains(record.partition) {
                by_partition
                    .entry(record.partition)
                    .or_default()
                    .push(record);
            }
        }
        let mut commit = ProjectionCommit {
            epoch: self.binding.epoch,
            ..ProjectionCommit::default()
        };
        let (mut applied, mut duplicates) = (0u64, 0u64);
        for (partition, mut records) in by_partition {
            let ps = self
                .partitions
                .entry(partition)
                .or_insert_with(|| PartitionSession {
                    committed: 0,
                    stop_at: None,
                    state: PartitionState::default(),
                    dedup: Dedup::new(window_s, []),
                });
            records.sort_by_key(|r| r.offset);
            // First sightings with where they sit in the log (kept for stores that want them).
            let mut fresh: Vec<RawEvent> = Vec::new();
            let mut dedup_new = Vec::new();
            let mut dups = 0u64;
            for record in records {
                if record.offset < ps.state.next_offset {
                    continue;
                }
                if ps.stop_at.is_some_and(|end| record.offset >= end) {
                    // Read again after the commit that reaches the unfinished one's end.
                    break;
                }
                let fingerprint = record.fingerprint;
                let now_ms = ps.state.last_received_ms.max(record.received_at_ms);
                let now_s = seconds(now_ms);
                for mut event in record.events {
                    let fp = event_fingerprint(&event.event_id);
                    if ps.dedup.first_sighting(fp, now_s) {
                        if let (Cost::Pending, Some(book)) = (event.cost, prices) {
                            book.price(&mut event);
                        }
                        if let Some(reprices) = reprices {
                            reprices.apply(&mut event);
                        }
                        fresh.push(RawEvent {
                            event,
                            offset: record.offset,
                            received_at_ms: record.received_at_ms,
                        });
                        dedup_new.push((fp, now_s));
                    } else {
                        dups += 1;
                    }
                }
                ps.state.next_offset = record.offset + 1;
                ps.state.last_received_ms = now_ms;
                ps.state.anchor = fingerprint;
            }
            let now_s = seconds(ps.state.last_received_ms);
            ps.dedup.evict(now_s, 1);
            ps.state.events_applied += fresh.len() as u64;
            ps.state.duplicates_dropped += dups;
            applied += fresh.len() as u64;
            duplicates += dups;
            commit.partitions.insert(
                partition,
                PartitionCommit {
                    base_offset: ps.committed,
                    deltas: fold(fresh.iter().map(|r| &r.event)),
                    dedup_new,
                    dedup_horizon_s: ps.dedup.horizon(now_s),
                    state: ps.state.clone(),
                    raw: if keep_raw { fresh } else { Vec::new() },
                },
            );
        }
        metrics::counter!(m::EVENTS_APPLIED).increment(applied);
        metrics::counter!(m::DUPLICATES).increment(duplicates);
        commit
    }

    /// Marks a commit (per partition, its new `next_offset`) as landed.
    pub(super) fn committed(&mut self, landed: &[(i32, i64)]) {
        for (partition, next_offset) in landed {
            if let Some(ps) = self.partitions.get_mut(partition) {
                ps.committed = *next_offset;
                if ps.stop_at.is_some_and(|end| end <= *next_offset) {
                    ps.stop_at = None;
                }
            }
        }
    }
}
