//! A log that changes under a running projector (a topic deleted and created again while it
//! reads, here an embedded log whose reported id is switched): the projector notices at its
//! next check, stops reading and reports why; after an adoption it projects the log from its
//! beginning, and the ids it had already counted are duplicates (the dedup memory was carried
//! over), so every event still counts once.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tally_domain::log_binding::LogDescription;
use tally_domain::rollup::Resolution;
use tally_domain::store::*;
use tally_projector::{Projector, ProjectorConfig, ProjectorStatus};
use tally_schemas::UsageEvent;
use tally_storage::{SqliteAnalyticsStore, SqliteEventLog};
use tokio::sync::watch;

/// The embedded log, reporting the id it is told to.
struct Switchable {
    inner: SqliteEventLog,
    id: Mutex<Option<String>>,
}

#[async_trait]
impl EventLog for Switchable {
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
}

fn events(from: u64, n: u64) -> Vec<UsageEvent> {
    (from..from + n)
        .map(|i| UsageEvent {
            event_id: format!("e{i}"),
            occurred_at_us: 1_767_225_600_000_000 + i as i64 * 1_000_000,
            input_tokens: i,
            ..UsageEvent::example()
        })
        .collect()
}

async fn wait_for(
    status: &mut watch::Receiver<ProjectorStatus>,
    what: &str,
    done: impl Fn(&ProjectorStatus) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&status.borrow()) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            status.borrow().clone()
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    }
}

async fn requests_and_tokens(store: &dyn AnalyticsStore) -> (u64, u64) {
    let rows = store
        .scan(ScanRequest::everything(&[Resolution::Day], false))
        .await
        .unwrap();
    (
        rows.iter().map(|r| r.rollup.requests).sum(),
        rows.iter().map(|r| r.rollup.input_tokens).sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_recreated_under_a_running_projector_stops_it_until_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Switchable {
        inner: SqliteEventLog::open(dir.path(), 64).unwrap(),
        id: Mutex::new(None),
    });
    let store: Arc<dyn AnalyticsStore> = Arc::new(SqliteAnalyticsStore::open(dir.path()).unwrap());
    let config = ProjectorConfig {
        idle_wait: Duration::from_millis(50),
        log_check_every: Duration::from_millis(200),
        ..ProjectorConfig::default()
    };
    let (projector, mut status) = Projector::new(log.clone(), store.clone(), config);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(projector.run(stop_rx));

    log.append(events(0, 100)).await.unwrap();
    wait_for(&mut status, "projects the first 100", |s| {
        s.events_applied == 100
    })
    .await;
    assert_eq!(
        requests_and_tokens(store.as_ref()).await,
        (100, (0..100).sum())
    );

    // The log now reports another id: the projector stops at its next check.
    *log.id.lock().unwrap() = Some("recreated".into());
    wait_for(&mut status, "refuses", |s| s.checkpoint_mismatch.is_some()).await;
    let message = status.borrow().checkpoint_mismatch.clone().unwrap();
    assert!(
        message.contains("log \"embedded\" was recreated") && message.contains("(id recreated)"),
        "{message}"
    );
    log.append(events(100, 50)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        requests_and_tokens(store.as_ref()).await,
        (100, (0..100).sum()),
        "nothing read while refusing"
    );

    // Adopted: the log is projected from its beginning; its first 100 ids were seen before.
    let plan = tally_projector::plan_adoption(log.as_ref(), store.as_ref())
        .await
        .unwrap();
    assert_eq!(plan.dedup_from, [(0, vec![0])].into_iter().collect());
    store.adopt(&plan, 86_400).await.unwrap();
    wait_for(&mut status, "projects the log again", |s| {
        s.checkpoint_mismatch.is_none() && s.events_consumed() == 150
    })
    .await;
    assert_eq!(
        (
            status.borrow().events_applied,
            status.borrow().duplicates_dropped
        ),
        (50, 100),
        "the 100 counted before are duplicates"
    );
    assert_eq!(
        requests_and_tokens(store.as_ref()).await,
        (150, (0..150).sum()),
        "every event once"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}
