//! The three storage seams. The projector and the query API only see these traits; the embedded
//! (SQLite) and distributed (Kafka / ClickHouse / Postgres) adapters implement them, and one
//! conformance suite (`tally-conformance`) runs against each implementation.
//!
//! - [`EventLog`]: the append-only source of truth. `append` returns only once the events are
//!   durable; positions are per-partition "next offset to read", so a projector can resume from
//!   exactly where its last commit left off.
//! - [`AnalyticsStore`]: rollups plus the projector's checkpoint and dedup memory. `commit` is
//!   atomic: rollup deltas, new dedup fingerprints and the new log position become visible
//!   together or not at all, so a crash never double-counts or skips. Its checkpoints belong
//!   to one log, the one it is bound to ([`crate::log_binding`]): a commit lands only in the
//!   store's current epoch.
//! - [`ConfigStore`]: the configuration, one trait per resource group ([`CatalogStore`],
//!   [`DeploymentStore`], [`PromptStore`], [`BudgetStore`], [`ExperimentStore`], [`KeyStore`],
//!   [`AuditTrail`]); every change is written with its audit entry.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tally_schemas::{Environment, UsageEvent};
use uuid::Uuid;

use crate::access::{ApiKey, ApiKeySpec};
use crate::audit::Change;
use crate::config::{
    Assignment, AuditEntry, AuditSpec, Budget, BudgetSpec, DeploySpec, Experiment, ExperimentSpec,
    ExperimentStatus, Feature, FeatureSpec, Model, ModelPrice, ModelSpec, PriceSpec, Prompt,
    PromptContent, PromptSpec, PromptStatus, PromptVersion, Provider, ProviderSpec, Reprice,
    RepriceSpec,
};
use crate::log_binding::{Adoption, LogBinding, LogDescription};
use crate::rollup::{Resolution, Rollup, RollupKey, RollupRow};

pub use crate::error::{StoreError, StoreResult};

/// Per partition, the next offset to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition(pub BTreeMap<i32, i64>);

impl LogPosition {
    pub fn next_offset(&self, partition: i32) -> i64 {
        self.0.get(&partition).copied().unwrap_or(0)
    }

    /// Moves past `record`.
    pub fn advance(&mut self, record: &LogRecord) {
        let next = self.0.entry(record.partition).or_insert(0);
        *next = (*next).max(record.offset + 1);
    }
}

/// One appended unit of the log: the accepted events of one ingest request.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    /// When the log made the record durable (Unix ms); drives the dedup window, so replay
    /// deduplicates exactly as the live projection did.
    pub received_at_ms: i64,
    pub events: Vec<UsageEvent>,
    /// Identifies the record's content (a hash of what the log stored: for Kafka the message's
    /// key, timestamp and value). The same record read again gives the same fingerprint; a
    /// different record at the same offset (a recreated topic) another one.
    pub fingerprint: u64,
}

/// What a log holds at one offset ([`EventLog::fingerprint_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordAt {
    /// A record, with its [`LogRecord::fingerprint`].
    Fingerprint(u64),
    /// No record: the offset is past the end, or was removed.
    Missing,
    /// The log cannot fetch single records: nothing to compare.
    Unknown,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    pub partition: i32,
    pub offset: i64,
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` durably as one record; returns once they survive a crash.
    async fn append(&self, events: Vec<UsageEvent>) -> StoreResult<AppendReceipt>;
    /// Records after `from`, about `max_events` events at most (whole records); waits up to
    /// `wait` when nothing is there yet, then returns what there is (possibly nothing).
    async fn read(
        &self,
        from: &LogPosition,
        max_events: usize,
        wait: Duration,
    ) -> StoreResult<Vec<LogRecord>>;
    /// Per non-empty partition, the offset after its newest record (what a full replay must
    /// reach).
    async fn end(&self) -> StoreResult<LogPosition>;
    /// What the log holds at `offset` of `partition` now, where it can fetch one record on
    /// its own (the default cannot: [`RecordAt::Unknown`]). Used to tell a recreated topic
    /// apart where the broker reports no topic id. A record it failed to fetch is an error,
    /// never `Missing`.
    async fn fingerprint_at(&self, partition: i32, offset: i64) -> StoreResult<RecordAt> {
        let _ = (partition, offset);
        Ok(RecordAt::Unknown)
    }
    /// What this log is (for Kafka: the topic's name and id) and every partition's
    /// watermarks, empty partitions included: what checkpoints are checked against before
    /// anything is read ([`crate::log_binding::check`]).
    async fn describe(&self) -> StoreResult<LogDescription>;
    /// Events appended since the log was created (for lag reporting).
    fn appended_events(&self) -> u64;
    /// The partitions this reader owns, and when that changes. The default owns every
    /// partition forever (a log with one reader).
    fn ownership(&self) -> tokio::sync::watch::Receiver<Ownership> {
        tokio::sync::watch::channel(Ownership {
            generation: 0,
            partitions: Partitions::All,
        })
        .1
    }
    /// Events in the owned partitions after `position`, when the log can tell (a broker's
    /// high watermarks); `None` lets the caller estimate it from [`EventLog::appended_events`].
    fn lag(&self, position: &LogPosition) -> Option<u64> {
        let _ = position;
        None
    }
    /// Events not yet projected by a reader at `position` that has consumed `consumed`
    /// events: the larger of [`EventLog::lag`] (a broker's watermarks arrive every few
    /// seconds) and what this process appended beyond `consumed` (known at once), so a
    /// backlog is never reported gone too early.
    fn backlog(&self, position: &LogPosition, consumed: u64) -> u64 {
        self.lag(position)
            .unwrap_or(0)
            .max(self.appended_events().saturating_sub(consumed))
    }
    /// Tells the log that everything before `position` is durably projected. The analytics
    /// store's checkpoint stays the truth; a broker log mirrors it into its consumer group's
    /// committed offsets so standard tooling shows progress.
    async fn projected(&self, position: &LogPosition) {
        let _ = position;
    }
    /// Deletes records received before `received_before_ms` that lie before `consumed` (so only
    /// projected records go), never the newest record. Returns records deleted. Logs whose
    /// retention is enforced elsewhere (a broker's topic settings) keep the default.
    async fn prune(&self, received_before_ms: i64, consumed: &LogPosition) -> StoreResult<u64> {
        let _ = (received_before_ms, consumed);
        Ok(0)
    }
}

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
    /// Fingerprints of event ids seen within the dedup window, with the second they were seen.
    /// Not serialized with the checkpoint; stores keep them as chunks.
    #[serde(skip)]
    pub dedup: Vec<(u64, u32)>,
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

/// Which log partitions a projector reads: all of them (one projector, e.g. the embedded log),
/// or the set its consumer group assigned to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitions {
    All,
    Only(std::collections::BTreeSet<i32>),
}

impl Partitions {
    pub fn contains(&self, partition: i32) -> bool {
        match self {
            Partitions::All => true,
            Partitions::Only(set) => set.contains(&partition),
        }
    }
}

/// What a log reader owns right now. `generation` changes on every rebalance; a projector
/// that sees it change drops its uncommitted work and reloads its state for the new partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub generation: u64,
    pub partitions: Partitions,
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
    /// Fingerprints seen before this second may be forgotten.
    pub dedup_horizon_s: u32,
    /// The partition's state after the commit (`dedup` left empty).
    pub state: PartitionState,
    /// The events this commit counted (duplicates excluded), for stores that keep raw events
    /// ([`AnalyticsStore::keeps_raw_events`]); empty otherwise.
    pub raw: Vec<RawEvent>,
}

/// A counted event with where it sits in the log.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub event: UsageEvent,
    pub offset: i64,
    pub received_at_ms: i64,
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub feature: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub environment: Option<Environment>,
    /// Rows of this `prompt_id` (empty: rows of events that named no prompt).
    pub prompt_id: Option<String>,
    pub prompt_version: Option<String>,
}

/// Rows of one resolution with bucket start in `[from, to)` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub resolution: Resolution,
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub filter: Filter,
    pub spans: Vec<Span>,
    /// Whether latency and user sketches are needed (they are the expensive part).
    pub with_sketches: bool,
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
    /// seen within `dedup_window_s` of that partition's log clock.
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
    /// Drops every rollup, the checkpoints, the dedup memory and the bindings (for rebuild).
    async fn reset(&self) -> StoreResult<()>;
    /// Retention: deletes the rollup rows of every UTC day that ended at or before `before_s`
    /// (whole days, so that a store may drop day partitions). Returns rows deleted, when the
    /// store knows.
    async fn prune(&self, before_s: i64) -> StoreResult<u64>;
    /// A round trip to the backend (for readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Whether commits should carry the counted events themselves ([`PartitionCommit::raw`]).
    fn keeps_raw_events(&self) -> bool {
        false
    }
}

/// The catalog: features, providers, models, their effective-dated prices and reprice requests.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// By name.
    async fn list_features(&self) -> StoreResult<Vec<Feature>>;
    /// Creates the feature, or updates every field but its name and id. An upsert that changes
    /// nothing is not written (nor audited) and returns the feature as it was.
    async fn upsert_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature>;
    /// `Conflict` when the name is taken.
    async fn create_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature>;
    /// Deletes a feature nothing refers to, returning it: `Conflict` while any assignment
    /// (current or past), prompt or experiment refers to it (history is never cascaded away),
    /// `NotFound` when there is none.
    async fn delete_feature(&self, name: &str, change: &Change) -> StoreResult<Feature>;
    /// By name.
    async fn list_providers(&self) -> StoreResult<Vec<Provider>>;
    /// Like [`upsert_feature`](Self::upsert_feature).
    async fn upsert_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider>;
    /// `Conflict` when the name is taken.
    async fn create_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider>;
    /// Deletes a provider without models, returning it; `Conflict` while it has models.
    async fn delete_provider(&self, name: &str, change: &Change) -> StoreResult<Provider>;
    /// By provider, then name.
    async fn list_models(&self) -> StoreResult<Vec<Model>>;
    /// Like [`upsert_feature`](Self::upsert_feature).
    async fn upsert_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model>;
    /// `Conflict` when the provider already has a model of that name, `NotFound` for an
    /// unknown provider.
    async fn create_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model>;
    /// Deletes a model that was never deployed (with its prices), returning it; `Conflict`
    /// when an assignment, current or past, names it.
    async fn delete_model(&self, id: Uuid, change: &Change) -> StoreResult<Model>;
    /// `Conflict` when the model has a price effective from the same instant.
    async fn add_price(&self, spec: PriceSpec, change: &Change) -> StoreResult<ModelPrice>;
    async fn list_prices(&self) -> StoreResult<Vec<ModelPrice>>;
    /// Records a reprice request (`Invalid` when `from` is not before `requested_at`).
    async fn add_reprice(&self, spec: RepriceSpec, change: &Change) -> StoreResult<Reprice>;
    /// Every reprice request, oldest first.
    async fn list_reprices(&self) -> StoreResult<Vec<Reprice>>;
}

/// Which model serves each feature in each environment, with the history of assignments.
#[async_trait]
pub trait DeploymentStore: Send + Sync + 'static {
    /// Makes the model the active one for (feature, environment), deactivating the previous
    /// assignment in the same transaction. The assignment is made at `change.at`, by
    /// `change.actor`.
    async fn deploy(&self, spec: DeploySpec, change: &Change) -> StoreResult<Assignment>;
    /// Restores, as a new assignment, the model that served (feature, environment) before the
    /// current one: the newest earlier assignment of another model, in one transaction.
    /// `Conflict` when nothing is deployed or no other model ever was.
    async fn rollback(
        &self,
        feature: &str,
        environment: Environment,
        change: &Change,
    ) -> StoreResult<Assignment>;
    async fn active_assignments(&self) -> StoreResult<Vec<Assignment>>;
    /// Every assignment of `feature` (of every feature when `None`), newest first.
    async fn assignment_history(
        &self,
        feature: Option<&str>,
        environment: Option<Environment>,
    ) -> StoreResult<Vec<Assignment>>;
}

/// Prompts and their immutable versions, through review to the active one.
#[async_trait]
pub trait PromptStore: Send + Sync + 'static {
    /// Creates a prompt with its first version (a draft). `Conflict` when the name is taken,
    /// `NotFound` for an unknown feature.
    async fn create_prompt(
        &self,
        spec: PromptSpec,
        change: &Change,
    ) -> StoreResult<(Prompt, PromptVersion)>;
    /// By name.
    async fn list_prompts(&self) -> StoreResult<Vec<Prompt>>;
    /// Versions are immutable: a content or variable list that differs from the latest version
    /// makes a new version (a draft, `true`); the same again returns the latest (`false`).
    async fn add_prompt_version(
        &self,
        prompt: Uuid,
        content: PromptContent,
        change: &Change,
    ) -> StoreResult<(PromptVersion, bool)>;
    /// Oldest first.
    async fn prompt_versions(&self, prompt: Uuid) -> StoreResult<Vec<PromptVersion>>;
    /// Moves a version through review; the active version must stay `approved` (`Conflict`).
    async fn set_prompt_status(
        &self,
        prompt: Uuid,
        version: i32,
        status: PromptStatus,
        change: &Change,
    ) -> StoreResult<PromptVersion>;
    /// Makes an `approved` version the active one of its prompt's feature, deactivating the
    /// feature's previously active version (of any prompt) in the same transaction.
    async fn activate_prompt_version(
        &self,
        prompt: Uuid,
        version: i32,
        change: &Change,
    ) -> StoreResult<PromptVersion>;
}

/// Spending budgets.
#[async_trait]
pub trait BudgetStore: Send + Sync + 'static {
    /// `Invalid` when [`BudgetSpec::validate`] fails.
    async fn create_budget(&self, spec: BudgetSpec, change: &Change) -> StoreResult<Budget>;
    async fn update_budget(
        &self,
        id: Uuid,
        spec: BudgetSpec,
        change: &Change,
    ) -> StoreResult<Budget>;
    /// Deletes the budget, returning it.
    async fn delete_budget(&self, id: Uuid, change: &Change) -> StoreResult<Budget>;
    /// By name, then creation.
    async fn list_budgets(&self) -> StoreResult<Vec<Budget>>;
}

/// Experiments and their transitions.
#[async_trait]
pub trait ExperimentStore: Send + Sync + 'static {
    /// A draft experiment. `Invalid` when [`ExperimentSpec::validate`] fails, `NotFound` for
    /// an unknown feature.
    async fn create_experiment(
        &self,
        spec: ExperimentSpec,
        change: &Change,
    ) -> StoreResult<Experiment>;
    /// Newest first.
    async fn list_experiments(&self) -> StoreResult<Vec<Experiment>>;
    /// Only [`ExperimentStatus::can_become`] transitions (`Conflict` otherwise); entering
    /// `running` sets `started_at`, leaving it sets `ended_at` (both `change.at`).
    async fn transition_experiment(
        &self,
        id: Uuid,
        to: ExperimentStatus,
        change: &Change,
    ) -> StoreResult<Experiment>;
}

/// The audit trail: every change, and operations on what this store does not hold.
#[async_trait]
pub trait AuditTrail: Send + Sync + 'static {
    /// Records an operation on something this store does not hold (the analytics store's log
    /// bindings: an adoption, a start from scratch), which cannot share its transaction. The
    /// caller writes the entry first and then carries the operation out, so nothing is done
    /// unaudited; an operation that then fails says so, and repeating it completes it.
    async fn record_operation(&self, entry: AuditSpec) -> StoreResult<()>;
    /// Newest first: at most `limit` entries older than `before` (all when absent).
    async fn list_audit(
        &self,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<AuditEntry>>;
}

/// API keys (hashes only).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new API key: its hash, never the secret. `Conflict` when the hash exists.
    async fn create_api_key(&self, spec: ApiKeySpec, change: &Change) -> StoreResult<ApiKey>;
    /// Every key, revoked ones included, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// The key whose secret hashes to `hash`, revoked or not.
    async fn api_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>>;
    /// Revokes a key at `change.at`; revoking it again keeps the first time (and is not
    /// audited). Returns the key and whether this call revoked it. `NotFound` for an unknown
    /// id.
    async fn revoke_api_key(&self, id: Uuid, change: &Change) -> StoreResult<(ApiKey, bool)>;
}

/// The configuration store. Every method that changes something takes the [`Change`] (who,
/// when) and writes its audit entry in the same transaction (see [`crate::audit`]): the change
/// and its entry commit together or not at all.
///
/// One trait per resource group, so each adapter keeps each group in a file of its own; every
/// configuration store implements them all, and `dyn ConfigStore` offers every method.
pub trait ConfigStore:
    CatalogStore + DeploymentStore + PromptStore + BudgetStore + ExperimentStore + AuditTrail + KeyStore
{
}

impl<
        T: CatalogStore
            + DeploymentStore
            + PromptStore
            + BudgetStore
            + ExperimentStore
            + AuditTrail
            + KeyStore,
    > ConfigStore for T
{
}
