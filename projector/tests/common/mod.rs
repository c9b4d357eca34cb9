//! The embedded log as the projector's tests watch it: it can report another id (a log
//! recreated under the projector) and counts the commits reported landed (`projected`).
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tally_domain::log_binding::LogDescription;
use tally_domain::store::*;
use tally_schemas::UsageEvent;
use tally_storage::SqliteEventLog;

pub struct WatchedLog {
    inner: SqliteEventLog,
    /// The id `describe` reports instead of the log's own, when set.
    pub id: Mutex<Option<String>>,
    landed: AtomicU64,
}

impl WatchedLog {
    pub fn open(dir: &Path) -> WatchedLog {
        WatchedLog {
            inner: SqliteEventLog::open(dir, 64).unwrap(),
            id: Mutex::new(None),
            landed: AtomicU64::new(0),
        }
    }

    /// Commits the projector has reported landed.
    pub fn landed(&self) -> u64 {
        self.landed.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl EventLog for WatchedLog {
    async fn append(&self, events: Vec<UsageEvent>) -> StoreResult<AppendReceipt> {
        self.inner.append(events).await
    }
    async fn append_scores(&self, scores: Vec<tally_schemas::Score>) -> StoreResult<AppendReceipt> {
        self.inner.append_scores(scores).await
    }
    async fn read(
        &self,
        from: &LogPosition,
        max_events: usize,
        wait: Duration,
    ) -> StoreResult<Vec<LogRecord>> {
        self.inner.read(from, max_events, wait).await
    }
    async fn end(&self) -> StoreResult<LogPosition> {
        self.inner.end().await
    }
    async fn describe(&self) -> StoreResult<LogDescription> {
        let mut description = self.inner.describe().await?;
        if let Some(id) = self.id.lock().unwrap().clone() {
            description.identity.id = Some(id);
        }
        Ok(description)
    }
    fn appended_events(&self) -> u64 {
        self.inner.appended_events()
    }
    async fn projected(&self, position: &LogPosition) {
        self.landed.fetch_add(1, Ordering::SeqCst);
        self.inner.projected(position).await;
    }
}
