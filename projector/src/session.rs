//! One projection session's state, per log partition it owns: where it stands, the dedup memory,
//! and the rollup deltas folded since the last commit. Folding a batch of records and learning
//! which commits landed are its only changes; everything in it is rebuilt from the store's
//! checkpoints when a session starts.

use std::collections::{BTreeMap, HashMap};

use tally_domain::dedup::GenerationSummary;
use tally_domain::event_fingerprint;
use tally_domain::log_binding::LogBinding;
use tally_domain::pricing::{PriceBook, Repricing};
use tally_domain::rollup::fold;
use tally_domain::store::{
    DedupGeneration, LogPosition, LogRecord, PartitionCommit, PartitionState, Partitions,
    ProjectionCommit, ProjectorState, RawRecord, RawScore,
};
use tally_schemas::event::Cost;

use crate::dedup::{Dedup, MergeBlocks, Suspects};
use crate::filter_files::FilterFiles;
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
    /// Open dedup entries that make a commit seal them (`None`: the store keeps no sealed
    /// generations).
    pub(super) seal_at: Option<usize>,
    /// Where sealed dedup summaries are mapped from (`None`: the heap).
    pub(super) files: Option<FilterFiles>,
}

/// Per partition, the newest second sealed generations hold for the batch's suspected
/// fingerprints, as read from their blocks ([`Suspects::resolve`]).
pub(super) type Confirmed = BTreeMap<i32, HashMap<u64, u32>>;

/// Per partition, the stored blocks its merges in progress read for their next step.
pub(super) type MergeReads = BTreeMap<i32, MergeBlocks>;

pub(super) fn seconds(ms: i64) -> u32 {
    u32::try_from(ms.max(0) / 1000).unwrap_or(u32::MAX)
}

impl Session {
    /// The session `state` (a [`load_state`](tally_domain::store::AnalyticsStore::load_state))
    /// resumes, its owned partitions' sealed generations with their summaries as loaded
    /// (`sealed`, per partition; [`crate::dedup::load_summaries`]).
    pub(super) fn resume(
        mut state: ProjectorState,
        mut sealed: BTreeMap<i32, Vec<(DedupGeneration, GenerationSummary)>>,
        binding: LogBinding,
        owned: Partitions,
        window_s: u32,
        seal_at: Option<usize>,
        files: Option<FilterFiles>,
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
                let dedup = Dedup::load(
                    window_s,
                    seal_at,
                    std::mem::take(&mut s.dedup),
                    sealed.remove(&p).unwrap_or_default(),
                    files.clone(),
                );
                s.generations.clear();
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
            seal_at,
            files,
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

    pub(super) fn dedup_memory_bytes(&self) -> usize {
        self.partitions
            .values()
            .map(|s| s.dedup.memory_bytes())
            .sum()
    }

    pub(super) fn dedup_mapped_bytes(&self) -> usize {
        self.partitions
            .values()
            .map(|s| s.dedup.mapped_bytes())
            .sum()
    }

    /// Sealed dedup runs held, over the partitions.
    pub(super) fn dedup_runs(&self) -> usize {
        self.partitions.values().map(|s| s.dedup.runs()).sum()
    }

    /// Per partition with merges in progress that `records` will commit (a merge steps only
    /// with its partition's commits), the stored blocks their next steps read.
    pub(super) fn merge_reads(&self, records: &[LogRecord]) -> BTreeMap<i32, Vec<(u64, u32)>> {
        // Events each partition folds: what pays for its merges' work in this commit.
        let mut folded: BTreeMap<i32, u64> = BTreeMap::new();
        for r in records {
            if self
                .partitions
                .get(&r.partition)
                .is_some_and(|s| r.offset >= s.state.next_offset)
            {
                *folded.entry(r.partition).or_default() += r.events.len() as u64;
            }
        }
        folded
            .into_iter()
            .filter_map(|(p, events)| {
                let s = &self.partitions[&p];
                let wanted = s
                    .dedup
                    .merge_reads(seconds(s.state.last_received_ms), events);
                (!wanted.is_empty()).then_some((p, wanted))
            })
            .collect()
    }

    /// Whether some partition holds sealed dedup generations ([`Self::suspects`] is needed).
    pub(super) fn has_sealed(&self) -> bool {
        self.partitions.values().any(|s| s.dedup.has_sealed())
    }

    /// The fingerprints of `records` that sealed generations may hold, with the blocks to read
    /// to settle them. CPU-bound, like [`Self::fold`].
    pub(super) fn suspects(&self, records: &[LogRecord]) -> Suspects {
        let mut by_partition: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
        for record in records {
            let Some(ps) = self.partitions.get(&record.partition) else {
                continue;
            };
            if !ps.dedup.has_sealed() || record.offset < ps.state.next_offset {
                continue;
            }
            by_partition
                .entry(record.partition)
                .or_default()
                .extend(record.events.iter().map(|e| event_fingerprint(&e.event_id)));
        }
        let mut suspects = Suspects::default();
        for (partition, mut fps) in by_partition {
            let ps = &self.partitions[&partition];
            // The partition's clock before the batch: the earliest horizon any of its events
            // is judged at, so no generation that may still matter is left out.
            let now_s = seconds(ps.state.last_received_ms);
            // Ascending, for the filters' sake (`Dedup::suspects_in_order`).
            fps.sort_unstable();
            fps.dedup();
            let mut places: HashMap<u64, Vec<(u64, u32)>> = HashMap::new();
            ps.dedup.suspects_in_order(&fps, now_s, |i, place| {
                places.entry(fps[i]).or_default().push(place);
            });
            if !places.is_empty() {
                suspects.by_partition.insert(partition, places);
            }
        }
        suspects
    }

    /// Prices, deduplicates and folds `records` into one commit (not yet applied). Records of
    /// partitions not owned, or before a partition's position, are skipped.
    ///
    /// Per partition, the result depends only on the partition's records in offset order: the
    /// dedup clock is the running maximum of `received_at`, so it never goes backwards.
    /// CPU-bound: the projector runs it off the async runtime.
    pub(super) fn fold(
        &mut self,
        records: Vec<LogRecord>,
        prices: Option<&PriceBook>,
        reprices: Option<&Repricing>,
        keep_raw: bool,
        confirmed: &Confirmed,
        merge_reads: &MergeReads,
    ) -> ProjectionCommit {
        let mut commit = ProjectionCommit {
            epoch: self.binding.epoch,
            ..ProjectionCommit::default()
        };
        let (mut applied, mut duplicates) = (0u64, 0u64);
        let no_blocks = MergeBlocks::new();
        for (partition, records) in self.owned_by_partition(records) {
            let ps = self.partition(partition);
            let none = HashMap::new();
            let sealed_seen = confirmed.get(&partition).unwrap_or(&none);
            let read = ps.read(records, prices, reprices, sealed_seen);
            applied += read.counted() as u64;
            duplicates += read.duplicates;
            let merge_blocks = merge_reads.get(&partition).unwrap_or(&no_blocks);
            commit
                .partitions
                .insert(partition, ps.commit_part(read, keep_raw, merge_blocks));
        }
        metrics::counter!(m::EVENTS_APPLIED).increment(applied);
        metrics::counter!(m::DUPLICATES).increment(duplicates);
        commit
    }

    /// The records of owned partitions, each partition's in offset order.
    fn owned_by_partition(&self, records: Vec<LogRecord>) -> BTreeMap<i32, Vec<LogRecord>> {
        let mut by_partition: BTreeMap<i32, Vec<LogRecord>> = BTreeMap::new();
        for record in records {
            if self.owned.contains(record.partition) {
                by_partition
                    .entry(record.partition)
                    .or_default()
                    .push(record);
            }
        }
        for records in by_partition.values_mut() {
            records.sort_by_key(|r| r.offset);
        }
        by_partition
    }

    /// A partition's session, started empty the first time it is seen.
    fn partition(&mut self, partition: i32) -> &mut PartitionSession {
        let (window_s, seal_at, files) = (self.window_s, self.seal_at, &self.files);
        self.partitions
            .entry(partition)
            .or_insert_with(|| PartitionSession {
                committed: 0,
                stop_at: None,
                state: PartitionState::default(),
                dedup: Dedup::empty(window_s, seal_at).with_files(files.clone()),
            })
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

/// What reading a partition's records yielded.
struct Read {
    /// First sightings, record by record.
    fresh: Vec<RawRecord>,
    /// Their fingerprints and dedup times, for the store's dedup memory.
    dedup_new: Vec<(u64, u32)>,
    duplicates: u64,
    /// Every score read (the store keeps the first copy of each).
    scores: Vec<RawScore>,
}

impl Read {
    /// The events counted (first sightings).
    fn counted(&self) -> usize {
        self.fresh.iter().map(|r| r.events().len()).sum()
    }
}

impl PartitionSession {
    /// Reads `records` (in offset order) from this partition's position: each event seen for
    /// the first time in the dedup window is priced (when pending) and repriced, the others
    /// counted as duplicates; the position, the dedup clock and the anchor advance.
    fn read(
        &mut self,
        records: Vec<LogRecord>,
        prices: Option<&PriceBook>,
        reprices: Option<&Repricing>,
        sealed_seen: &HashMap<u64, u32>,
    ) -> Read {
        let mut read = Read {
            fresh: Vec::with_capacity(records.len()),
            dedup_new: Vec::with_capacity(records.iter().map(|r| r.events.len()).sum()),
            duplicates: 0,
            scores: Vec::new(),
        };
        for record in records {
            if record.offset < self.state.next_offset {
                continue;
            }
            if self.stop_at.is_some_and(|end| record.offset >= end) {
                // Read again after the commit that reaches the unfinished one's end.
                break;
            }
            let now_ms = self.state.last_received_ms.max(record.received_at_ms);
            let now_s = seconds(now_ms);
            // The record's events stay where the decoder put them; only duplicates leave.
            let dedup = &mut self.dedup;
            let (dedup_new, duplicates) = (&mut read.dedup_new, &mut read.duplicates);
            let counted = RawRecord::judged(
                record.offset,
                record.received_at_ms,
                record.events,
                |event| {
                    let fp = event_fingerprint(&event.event_id);
                    if !dedup.first_sighting(fp, now_s, sealed_seen.get(&fp).copied()) {
                        *duplicates += 1;
                        return None;
                    }
                    let logged_cost = event.cost;
                    if let (Cost::Pending, Some(book)) = (event.cost, prices) {
                        book.price(event);
                    }
                    if let Some(reprices) = reprices {
                        reprices.apply(event);
                    }
                    dedup_new.push((fp, now_s));
                    Some(event.cost == logged_cost)
                },
            );
            read.fresh.push(counted);
            read.scores.extend(
                record
                    .scores
                    .into_iter()
                    .enumerate()
                    .map(|(i, score)| RawScore {
                        score,
                        offset: record.offset,
                        position: u32::try_from(i).unwrap_or(u32::MAX),
                        received_at_ms: record.received_at_ms,
                    }),
            );
            self.state.next_offset = record.offset + 1;
            self.state.last_received_ms = now_ms;
            self.state.anchor = record.fingerprint;
        }
        read
    }

    /// This partition's part of the commit: the rollup deltas of what was read, the new dedup
    /// entries and horizon, a step of each dedup merge in progress (`merge_blocks`: what they
    /// read), and the state to checkpoint.
    fn commit_part(
        &mut self,
        read: Read,
        keep_raw: bool,
        merge_blocks: &MergeBlocks,
    ) -> PartitionCommit {
        let now_s = seconds(self.state.last_received_ms);
        self.dedup.evict(now_s, 1);
        let seals = self.dedup.seal_if_full(now_s, self.state.next_offset);
        let counted = read.counted() as u64;
        let events = counted + read.duplicates;
        let merged = self.dedup.merge_step(now_s, merge_blocks, events);
        self.dedup.plan_merges(now_s, self.state.next_offset);
        self.state.events_applied += counted;
        self.state.duplicates_dropped += read.duplicates;
        PartitionCommit {
            base_offset: self.committed,
            deltas: fold(read.fresh.iter().flat_map(RawRecord::events)),
            dedup_new: read.dedup_new,
            seals,
            merged: merged.parts,
            retired: merged.retired,
            dedup_horizon_s: self.dedup.horizon(now_s),
            state: self.state.clone(),
            raw: if keep_raw { read.fresh } else { Vec::new() },
            scores: read.scores,
        }
    }
}
