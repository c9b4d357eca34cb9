//! The event log seam: positions, records, appends and reads ([`EventLog`]).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tally_schemas::{Score, UsageEvent};

use crate::error::StoreResult;
use crate::log_binding::LogDescription;

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

/// One appended unit of the log: the accepted events of one ingest request, or the accepted
/// scores of one score request (a record holds one or the other).
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    /// When the log made the record durable (Unix ms); drives the dedup window, so replay
    /// deduplicates exactly as the live projection did.
    pub received_at_ms: i64,
    pub events: Vec<UsageEvent>,
    pub scores: Vec<Score>,
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
    /// Appends `scores` durably (as one record, or one message each); returns once they
    /// survive a crash.
    async fn append_scores(&self, scores: Vec<Score>) -> StoreResult<AppendReceipt>;
    /// Records after `from`, about `max_events` events (and scores) at most (whole records; a
    /// broker log counts messages); waits up to
    /// `wait` when nothing is there yet, then returns what there is (possibly nothing).
    async fn read(
        &self,
        from: &LogPosition,
        max_events: usize,
        wait: Duration,
    ) -> StoreResult<Vec<LogRecord>>;
    /// Waits `wait` without handing out records: what a reader does between checks while it
    /// may not read (its checkpoints belong to another log) or backs off after a failure. A
    /// member of a consumer group still serves its group meanwhile (a rebalance waits for every
    /// member), with nothing fetched; the default sleeps.
    async fn idle(&self, wait: Duration) {
        tokio::time::sleep(wait).await;
    }
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
