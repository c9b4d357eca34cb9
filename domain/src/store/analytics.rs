//! The analytics seam: the projector's state and commits, rollup scans ([`AnalyticsStore`]).

use std::any::Any;
use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use tally_schemas::{Environment, Score, ScoreValue, UsageEvent};

use super::log::{LogPosition, Partitions};
use super::versions::RowVersions;
use crate::drilldown::EventQuery;
use crate::error::{StoreError, StoreResult};
use crate::hll::Hll;
use crate::log_binding::{Adoption, LogBinding};
use crate::rollup::{Resolution, Rollup, RollupKey, RollupRow, RollupTotal};
use crate::sketch::LatencySketch;

/// What the projector needs to resume one log partition. Everything here is a deterministic
/// function of the partition's records before `next_offset`, so two projectors that projected
/// the same prefix hold identical state (the basis of the ClickHouse fencing rule).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The next offset to read (everything before it is projected).
    pub next_offset: i64,
    /// Highest `received_at` among the applied records (Unix ms): the partition's log clock,
    /// which never runs backwards even when a producer's clock does.
    pub last_received_ms: i64,
    pub events_applied: u64,
    pub duplicates_dropped: u64,
    /// The [`LogRecord::fingerprint`] of the record before `next_offset` (0: not known, as for
    /// checkpoints written before it was kept).
    #[serde(default)]
    pub anchor: u64,
    /// The dedup memory's open set: fingerprints of event ids seen within the dedup window, with
    /// the second they were seen, not yet sealed. Not serialized with the checkpoint; stores
    /// keep them as chunks.
    #[serde(skip)]
    pub dedup: Vec<(u64, u32)>,
    /// The dedup memory's sealed generations that may still hold fingerprints within the
    /// window ([`crate::dedup`]), in no particular order, without their summaries. Not
    /// serialized with the checkpoint.
    #[serde(skip)]
    pub generations: Vec<DedupGeneration>,
}

/// A sealed generation of a partition's dedup memory ([`crate::dedup`]), as
/// [`AnalyticsStore::load_state`] lists it: without its summary, which
/// [`AnalyticsStore::dedup_summaries`] fetches (so that a start need not hold every summary of
/// the window at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupGeneration {
    /// Names the generation within its partition: a hash of what it holds and of where it was
    /// made, so two stored copies of one name are equal.
    pub id: u64,
    /// The newest second among its entries: the generation is forgotten, whole, once the
    /// dedup horizon passes it.
    pub max_seen_s: u32,
    pub entries: u64,
}

/// One generation sealed from a partition's open dedup set ([`PartitionCommit::seals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupSeal {
    pub generation: DedupGeneration,
    /// [`crate::dedup::GenerationSummary::encode`]; opaque to stores.
    pub summary: Vec<u8>,
    /// Its entries, sorted by fingerprint.
    pub entries: Vec<(u64, u32)>,
}

impl DedupSeal {
    /// Its stored blocks, numbered from 0: [`crate::dedup::BLOCK_ENTRIES`] entries each (the
    /// last may hold fewer).
    pub fn blocks(&self) -> std::slice::Chunks<'_, (u64, u32)> {
        self.entries.chunks(crate::dedup::BLOCK_ENTRIES)
    }
}

/// What the projector needs to resume: per log partition, its state. A partition that has
/// never been committed is absent (it starts at offset 0 with empty state).
#[derive(Debug, Clone, Default)]
pub struct ProjectorState {
    /// The epoch these checkpoints belong to: the store's current binding (0 when none).
    pub epoch: u32,
    pub partitions: BTreeMap<i32, PartitionState>,
    /// Per log partition, the `next_offset` of the oldest commit whose rollup rows partly
    /// landed while its checkpoint did not (only stores whose commits are not one atomic write
    /// report any). Those rows already hold every event before that offset, so the projector
    /// must not commit the partition *past* it until its checkpoint has reached it: a commit
    /// ending there (or earlier) lets the store tell, per row, what is already included.
    pub unfinished: BTreeMap<i32, i64>,
}

impl ProjectorState {
    pub fn position(&self) -> LogPosition {
        LogPosition(
            self.partitions
                .iter()
                .map(|(p, s)| (*p, s.next_offset))
                .collect(),
        )
    }
    pub fn events_applied(&self) -> u64 {
        self.partitions.values().map(|s| s.events_applied).sum()
    }
    pub fn duplicates_dropped(&self) -> u64 {
        self.partitions.values().map(|s| s.duplicates_dropped).sum()
    }
}

/// The effect of one batch on one partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionCommit {
    /// The `next_offset` this commit builds on. A store refuses the commit with
    /// [`StoreError::Conflict`] when its checkpoint for the partition says otherwise (another
    /// projector moved it: this one is fenced off and must reload).
    pub base_offset: i64,
    pub deltas: BTreeMap<RollupKey, Rollup>,
    pub dedup_new: Vec<(u64, u32)>,
    /// Fingerprints seen before this second may be forgotten (chunks, and sealed generations
    /// whose `max_seen_s` is before it).
    pub dedup_horizon_s: u32,
    /// The open dedup set sealed by this commit (it includes `dedup_new`), as one generation
    /// (several when a loaded open set was beyond the cap). When there are any, the store
    /// replaces every open chunk of the partition by these generations and their blocks, in
    /// the commit's atomic effect. Only sent to stores that
    /// [`seals_dedup`](AnalyticsStore::seals_dedup).
    pub seals: Vec<DedupSeal>,
    /// Parts of merged runs of sealed generations ([`crate::dedup::Placement`]): stored like
    /// seals, generation and blocks, but they leave the open chunks alone and are not seals of
    /// the open set (a store that tells seals by their position must not count them).
    pub merged: Vec<DedupSeal>,
    /// Sealed generations (by id) to delete with this commit: those a merged run completed by
    /// this commit replaces, and parts of merges that will not complete. Deleting one the
    /// store no longer holds is not an error.
    pub retired: Vec<u64>,
    /// The partition's state after the commit (`dedup` left empty).
    pub state: PartitionState,
    /// The events this commit counted (duplicates excluded), record by record, for stores that
    /// keep raw events ([`AnalyticsStore::keeps_raw_events`]); empty otherwise.
    pub raw: Vec<RawRecord>,
    /// The scores read (every copy: the store keeps the first of each `score_id`).
    pub scores: Vec<RawScore>,
}

/// A score with where it sits in the log: copies of one `score_id` are told apart by
/// `(offset, position)`, the first one counts.
#[derive(Debug, Clone)]
pub struct RawScore {
    pub score: Score,
    pub offset: i64,
    /// Its index within its log record.
    pub position: u32,
    pub received_at_ms: i64,
}

/// Which scores an experiment's results join ([`AnalyticsStore::experiment_scores`]): those
/// of counted events naming one of `experiment_ids` (the experiment's id and its name; of
/// `feature`, in `environment` when given) that occurred in `[from_us, to_us)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreQuery {
    pub experiment_ids: Vec<String>,
    pub feature: String,
    pub environment: Option<Environment>,
    pub from_us: i64,
    pub to_us: i64,
}

/// One score joined to its event: the event's variant (empty when it named none), the score's
/// name and value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScoredEvent {
    pub variant: String,
    pub name: String,
    pub value: ScoreValue,
}

/// The events of one log record that a commit counted, in the record's order: the record's
/// decoded events themselves, less those the dedup window dropped — kept where the decoder put
/// them, not copied one by one into another buffer (a projector batch is up to 200,000 events of
/// ~370 bytes each).
///
/// Invariant: one position and one cost flag per event, the positions ascending.
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    offset: i64,
    received_at_ms: i64,
    events: Vec<UsageEvent>,
    index: Vec<u32>,
    cost_as_logged: Vec<bool>,
}

impl RawRecord {
    /// The events of the record at `offset` that `judge` keeps, judged in order: `judge` may
    /// set an event's cost and answers `None` to drop it, else whether its cost is still the
    /// one the log holds.
    pub fn judged(
        offset: i64,
        received_at_ms: i64,
        mut events: Vec<UsageEvent>,
        mut judge: impl FnMut(&mut UsageEvent) -> Option<bool>,
    ) -> RawRecord {
        let mut index = Vec::with_capacity(events.len());
        let mut cost_as_logged = Vec::with_capacity(events.len());
        let mut position = 0u32;
        // `retain_mut` visits every event once, in order.
        events.retain_mut(|event| {
            let at = position;
            position = position.saturating_add(1);
            match judge(event) {
                Some(as_logged) => {
                    index.push(at);
                    cost_as_logged.push(as_logged);
                    true
                }
                None => false,
            }
        });
        RawRecord {
            offset,
            received_at_ms,
            events,
            index,
            cost_as_logged,
        }
    }

    /// Every event of the record at `offset`, each at its position, priced as the log holds it.
    pub fn logged(offset: i64, received_at_ms: i64, events: Vec<UsageEvent>) -> RawRecord {
        RawRecord::judged(offset, received_at_ms, events, |_| Some(true))
    }

    /// The counted events, in the record's order.
    pub fn events(&self) -> &[UsageEvent] {
        &self.events
    }

    /// Each counted event with where it sits in the log.
    pub fn raw_events(&self) -> impl Iterator<Item = RawEvent<'_>> + Clone {
        self.events
            .iter()
            .zip(&self.index)
            .zip(&self.cost_as_logged)
            .map(|((event, &index), &cost_as_logged)| RawEvent {
                event,
                offset: self.offset,
                index,
                received_at_ms: self.received_at_ms,
                cost_as_logged,
            })
    }
}

/// A counted event with where it sits in the log (a view into its [`RawRecord`]).
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    pub event: &'a UsageEvent,
    /// The log record (or message) the event came in.
    pub offset: i64,
    /// The event's position among its record's events.
    pub index: u32,
    pub received_at_ms: i64,
    /// Whether `event.cost` is the cost the log holds (the projector prices an event that
    /// reached the log unpriced and reprices one whose price was corrected): a store that
    /// points into the log instead of copying the event keeps only the costs that differ.
    pub cost_as_logged: bool,
}

impl PartitionCommit {
    /// The counted events of [`PartitionCommit::raw`], record by record.
    pub fn raw_events(&self) -> impl Iterator<Item = RawEvent<'_>> + Clone {
        self.raw.iter().flat_map(RawRecord::raw_events)
    }
}

/// One atomic projector commit: every partition's effect becomes visible together or not at all.
#[derive(Debug, Clone, Default)]
pub struct ProjectionCommit {
    /// The epoch the commit's checkpoints belong to ([`ProjectorState::epoch`]). A store whose
    /// current epoch is another (an adoption happened meanwhile) refuses the commit
    /// ([`StoreError::Conflict`]).
    pub epoch: u32,
    pub partitions: BTreeMap<i32, PartitionCommit>,
}

impl ProjectionCommit {
    /// Rollup rows touched, summed over partitions.
    pub fn rows(&self) -> usize {
        self.partitions.values().map(|p| p.deltas.len()).sum()
    }
    pub fn dedup_entries(&self) -> usize {
        self.partitions.values().map(|p| p.dedup_new.len()).sum()
    }
}

/// Which rows a query wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    pub feature: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub environment: Option<Environment>,
    /// Rows of this `prompt_id` (empty: rows of events that named no prompt).
    pub prompt_id: Option<String>,
    pub prompt_version: Option<String>,
    /// Rows of this `experiment_id` (empty: rows of events that named no experiment).
    pub experiment_id: Option<String>,
    pub variant: Option<String>,
}

/// Rows of one resolution with bucket start in `[from, to)` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub resolution: Resolution,
    pub from: i64,
    pub to: i64,
}

impl Span {
    /// Whether the row of `resolution` starting at `bucket` is one of this span's.
    pub fn holds(&self, resolution: Resolution, bucket: i64) -> bool {
        resolution == self.resolution && bucket >= self.from && bucket < self.to
    }
}

#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub filter: Filter,
    pub spans: Vec<Span>,
    /// Whether latency and user sketches are needed (they are the expensive part).
    pub with_sketches: bool,
}

/// Which sums an [`AnalyticsStore::bucket_sums`] fills in; the others stay zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SumsOf {
    /// `requests` only.
    Requests,
    /// `requests`, `cost`, `cost_squares` and `unpriced`.
    Money,
    /// Every sum.
    All,
}

impl SumsOf {
    /// `r` with only these sums kept.
    pub fn keep(self, r: &Rollup) -> Rollup {
        match self {
            SumsOf::Requests => Rollup {
                requests: r.requests,
                ..Rollup::default()
            },
            SumsOf::Money => Rollup {
                requests: r.requests,
                cost: r.cost,
                cost_squares: r.cost_squares,
                unpriced: r.unpriced,
                ..Rollup::default()
            },
            SumsOf::All => {
                let mut all = Rollup::default();
                all.merge_sums(r);
                all
            }
        }
    }
}

/// One bucket's sums, every dimension merged ([`AnalyticsStore::bucket_sums`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSums {
    pub resolution: Resolution,
    /// Bucket start, Unix seconds.
    pub bucket: i64,
    /// Counts, tokens and money; the sketches stay empty.
    pub sums: Rollup,
}

impl BucketSums {
    /// `rows` merged per resolution and bucket (only `sums`), ordered by resolution and bucket.
    pub fn of(rows: &[RollupRow], sums: SumsOf) -> Vec<BucketSums> {
        let mut merged: BTreeMap<(Resolution, i64), Rollup> = BTreeMap::new();
        for row in rows {
            merged
                .entry((row.key.resolution, row.key.bucket))
                .or_default()
                .merge_sums(&sums.keep(&row.rollup));
        }
        merged
            .into_iter()
            .map(|((resolution, bucket), sums)| BucketSums {
                resolution,
                bucket,
                sums,
            })
            .collect()
    }

    /// Every bucket's sums added together.
    pub fn total(buckets: &[BucketSums]) -> Rollup {
        let mut total = Rollup::default();
        for b in buckets {
            total.merge_sums(&b.sums);
        }
        total
    }
}

/// One row as [`AnalyticsStore::scan_into`] hands it to a [`RowFold`]: its sketches either
/// decoded into `rollup` or still as stored, so that a fold adding rows into totals
/// ([`ScannedRow::add_to`]) need not build a sketch per row first.
#[derive(Debug)]
pub struct ScannedRow<'a> {
    pub key: RollupKey,
    /// The row's sums; its sketches too when `sketches` is [`RowSketches::InRollup`].
    pub rollup: Rollup,
    pub sketches: RowSketches<'a>,
}

/// Where a [`ScannedRow`]'s sketches are.
#[derive(Debug, Clone, Copy)]
pub enum RowSketches<'a> {
    /// In the row's `rollup` (decoded by the store, or empty when none were asked for).
    InRollup,
    /// As stored ([`LatencySketch::encode`], [`Hll::encode`]), borrowed from the store's read.
    Encoded { latency: &'a [u8], users: &'a [u8] },
}

impl ScannedRow<'_> {
    /// The row with its sketches decoded; [`StoreError::Corrupt`] when one cannot be.
    pub fn into_row(self) -> StoreResult<RollupRow> {
        let mut rollup = self.rollup;
        if let RowSketches::Encoded { latency, users } = self.sketches {
            rollup.latency = LatencySketch::decode(&mut &*latency).ok_or_else(corrupt_latency)?;
            rollup.users = Hll::decode(&mut &*users).ok_or_else(corrupt_users)?;
        }
        Ok(RollupRow {
            key: self.key,
            rollup,
        })
    }

    /// Adds the row to `total`, its encoded sketches straight from the stored bytes: the same
    /// total as adding [`into_row`](Self::into_row)'s rollup. On an error `total` holds part of
    /// the row and is to be discarded.
    pub fn add_to(&self, total: &mut RollupTotal) -> StoreResult<()> {
        match self.sketches {
            RowSketches::InRollup => total.add(&self.rollup),
            RowSketches::Encoded { latency, users } => total
                .add_encoded(&self.rollup, latency, users)
                .map_err(|sketch| StoreError::Corrupt(sketch.into()))?,
        }
        Ok(())
    }
}

impl From<RollupRow> for ScannedRow<'static> {
    fn from(row: RollupRow) -> Self {
        ScannedRow {
            key: row.key,
            rollup: row.rollup,
            sketches: RowSketches::InRollup,
        }
    }
}

fn corrupt_latency() -> StoreError {
    StoreError::Corrupt("latency sketch".into())
}

fn corrupt_users() -> StoreError {
    StoreError::Corrupt("user sketch".into())
}

/// What [`AnalyticsStore::scan_into`] hands each row to, on whatever thread reads them; the
/// caller gets it back (a `Box<dyn Any>` downcast) with everything it folded.
pub trait RowFold: Any + Send {
    fn add(&mut self, row: ScannedRow<'_>) -> StoreResult<()>;
}

impl ScanRequest {
    /// Every stored row of `resolutions`, unfiltered (comparisons and exports).
    pub fn everything(resolutions: &[Resolution], with_sketches: bool) -> ScanRequest {
        ScanRequest {
            filter: Filter::default(),
            spans: resolutions
                .iter()
                .map(|&resolution| Span {
                    resolution,
                    from: 0,
                    to: i64::MAX / 2,
                })
                .collect(),
            with_sketches,
        }
    }
}

#[async_trait]
pub trait AnalyticsStore: Send + Sync + 'static {
    /// The checkpoint of each stored partition in `partitions`, with the dedup fingerprints
    /// seen within `dedup_window_s` of that partition's log clock: the open ones, and the
    /// sealed generations that may hold some (listed, their summaries left to
    /// [`dedup_summaries`](Self::dedup_summaries)).
    async fn load_state(
        &self,
        dedup_window_s: u32,
        partitions: &Partitions,
    ) -> StoreResult<ProjectorState>;
    /// The current epoch's checkpoints of `partitions`, without the dedup memory nor
    /// unfinished commits: what a projector checks against the log before it reads.
    async fn checkpoints(&self, partitions: &Partitions) -> StoreResult<ProjectorState>;
    /// Every log this store has been bound to, oldest first; the last is the one its
    /// checkpoints belong to. Empty until a projector first binds it.
    async fn bindings(&self) -> StoreResult<Vec<LogBinding>>;
    /// Binds the store to `binding.log` when it has no binding yet (at `binding.epoch`: 0 for
    /// a new store, the next one after a start from scratch), or records the id of the current
    /// binding's log when it was recorded without one (same epoch and name); writes nothing
    /// otherwise. Returns the current binding as stored afterwards,
    /// which the caller checks again (another projector may have bound the store first).
    async fn bind(&self, binding: LogBinding) -> StoreResult<LogBinding>;
    /// Carries out an [`Adoption`]: `Conflict` unless the current epoch is still the one it
    /// retires and that epoch's last commit finished; then every adopted partition starts at
    /// its [`Adoption::start`] with the dedup fingerprints of the partitions
    /// [`Adoption::dedup_from`] names
    /// (those seen within `dedup_window_s` of each source partition's log clock, which it
    /// takes over), the retired binding records its final position, and the adopted log is
    /// bound as the next epoch. Rollups are untouched. Atomic, or made visible by its last
    /// write (a retry after a failure redoes it).
    async fn adopt(&self, adoption: &Adoption, dedup_window_s: u32) -> StoreResult<()>;
    /// Applies a commit with an exactly-once effect, or refuses it with
    /// [`StoreError::Conflict`] when a partition's stored `next_offset` is not the commit's
    /// `base_offset`, or the store's current epoch is not the commit's. Either the commit is atomic, or a partly applied one is reported by the
    /// next [`load_state`](Self::load_state) in [`ProjectorState::unfinished`].
    async fn commit(&self, commit: ProjectionCommit) -> StoreResult<()>;
    /// Rows matching the request, in no particular order.
    async fn scan(&self, request: ScanRequest) -> StoreResult<Vec<RollupRow>>;
    /// The rows of [`scan`](Self::scan) handed to `fold` one by one instead of collected (in no
    /// particular order either); `fold` comes back with them. A store
    /// may hand the sketches over as stored ([`RowSketches::Encoded`]), which spares a fold
    /// that adds rows into totals a sketch per row. The first error `fold` returns ends the
    /// read and is returned.
    async fn scan_into(
        &self,
        request: ScanRequest,
        mut fold: Box<dyn RowFold>,
    ) -> StoreResult<Box<dyn RowFold>> {
        for row in self.scan(request).await? {
            fold.add(row.into())?;
        }
        Ok(fold)
    }
    /// The store's [`RowVersions`], when this process sees every change to its rows happen (it
    /// is their only writer): what lets a reader keep the rows of a bucket between reads and
    /// know when they changed. `None` (the default): rows may change unseen (a store other
    /// processes write), so nothing read may be kept.
    fn row_versions(&self) -> Option<&RowVersions> {
        None
    }
    /// The sums (no sketches) of the rows matching `filter` in `spans`, merged per resolution and
    /// bucket across every dimension, ordered by resolution and bucket, with only the `sums`
    /// asked for filled in: exactly [`BucketSums::of`] applied to a [`scan`](Self::scan) without
    /// sketches. A store may answer it without handing each row over (the embedded store sums in
    /// SQL, reading only the columns asked for).
    async fn bucket_sums(
        &self,
        filter: &Filter,
        spans: &[Span],
        sums: SumsOf,
    ) -> StoreResult<Vec<BucketSums>> {
        let rows = self
            .scan(ScanRequest {
                filter: filter.clone(),
                spans: spans.to_vec(),
                with_sketches: false,
            })
            .await?;
        Ok(BucketSums::of(&rows, sums))
    }
    /// Drops every rollup, the checkpoints, the dedup memory and the bindings (for rebuild).
    async fn reset(&self) -> StoreResult<()>;
    /// Retention: deletes the rollup rows of every UTC day that ended at or before `before_s`
    /// (whole days, so that a store may drop day partitions). Returns rows deleted, when the
    /// store knows.
    async fn prune(&self, before_s: i64) -> StoreResult<u64>;
    /// A round trip to the backend (for readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Whether the store keeps sealed dedup generations ([`PartitionCommit::seal`],
    /// [`dedup_blocks`](Self::dedup_blocks)). A store that does not keeps every fingerprint of
    /// the window as chunks, and the projector holds them all in memory.
    fn seals_dedup(&self) -> bool {
        false
    }
    /// The blocks `(generation id, block number)` of `partition`'s sealed dedup generations,
    /// in the order asked; `NotFound` when one is not stored (an expired generation).
    async fn dedup_blocks(
        &self,
        partition: i32,
        wanted: &[(u64, u32)],
    ) -> StoreResult<Vec<Vec<(u64, u32)>>> {
        let _ = (partition, wanted);
        Err(crate::error::StoreError::Unavailable(
            "this store keeps no sealed dedup generations".into(),
        ))
    }
    /// The encoded summaries ([`DedupSeal::summary`]) of `partition`'s sealed dedup
    /// generations `ids`, as `(id, summary)` in any order, read as the stream is polled: a
    /// store hands each over without reading the others first, so that a caller that maps
    /// them as they come never holds them all. An id whose generation the store no longer
    /// holds (forgotten since it was listed) is left out; an id may come more than once (its
    /// copies are equal).
    fn dedup_summaries<'a>(
        &'a self,
        partition: i32,
        ids: &'a [u64],
    ) -> BoxStream<'a, StoreResult<(u64, Vec<u8>)>> {
        let _ = (partition, ids);
        futures::stream::once(async {
            Err(crate::error::StoreError::Unavailable(
                "this store keeps no sealed dedup generations".into(),
            ))
        })
        .boxed()
    }
    /// Whether commits should carry the counted events themselves ([`PartitionCommit::raw`]).
    fn keeps_raw_events(&self) -> bool {
        true
    }
    /// The counted events `query` asks for, newest first ([`crate::drilldown`]), at most
    /// `query.limit` (every store keeps the events it counted, for this drill-down).
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<UsageEvent>>;
    /// The scores joined to the counted events `query` selects, in no particular order: one
    /// per `score_id` (its first copy in the log, which names the event it grades), whenever
    /// it arrived — before its event or after. An event counted more than once (the same id
    /// sent again after the dedup window) joins its scores once; should its copies name
    /// different variants, which one it counts under is unspecified.
    async fn experiment_scores(&self, query: &ScoreQuery) -> StoreResult<Vec<ScoredEvent>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_schemas::event::Cost;

    #[test]
    fn a_judged_record_keeps_its_events_in_place_with_their_positions_and_cost_flags() {
        let events: Vec<UsageEvent> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| UsageEvent {
                event_id: (*id).into(),
                cost: Cost::Pending,
                ..UsageEvent::example()
            })
            .collect();
        let buffer = events.as_ptr();
        let mut judged = Vec::new();
        // "b" and "d" are duplicates; "c" is priced (its cost is no longer the log's).
        let record = RawRecord::judged(7, 99, events, |e| {
            judged.push(e.event_id.clone());
            match e.event_id.as_str() {
                "b" | "d" => None,
                "c" => {
                    e.cost = Cost::Computed(5);
                    Some(false)
                }
                _ => Some(true),
            }
        });
        assert_eq!(judged, ["a", "b", "c", "d", "e"]);
        assert_eq!(
            record.events().as_ptr(),
            buffer,
            "the events were not moved"
        );
        let seen: Vec<(&str, i64, u32, i64, bool, Cost)> = record
            .raw_events()
            .map(|r| {
                (
                    r.event.event_id.as_str(),
                    r.offset,
                    r.index,
                    r.received_at_ms,
                    r.cost_as_logged,
                    r.event.cost,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a", 7, 0, 99, true, Cost::Pending),
                ("c", 7, 2, 99, false, Cost::Computed(5)),
                ("e", 7, 4, 99, true, Cost::Pending),
            ]
        );
        let all = RawRecord::logged(3, 0, vec![UsageEvent::example(); 2]);
        let spots: Vec<(i64, u32, bool)> = all
            .raw_events()
            .map(|r| (r.offset, r.index, r.cost_as_logged))
            .collect();
        assert_eq!(spots, [(3, 0, true), (3, 1, true)]);
    }
}
