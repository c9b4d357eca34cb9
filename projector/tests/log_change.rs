//! A log that changes under a running projector (a topic deleted and created again while it
//! reads, here an embedded log whose reported id is switched): the projector notices at its
//! next check, stops reading and reports why; after an adoption it projects the log from its
//! beginning, and the ids it had already counted are duplicates (the dedup memory was carried
//! over), so every event still counts once.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_domain::rollup::Resolution;
use tally_domain::store::*;
use tally_projector::{Projector, ProjectorConfig, ProjectorStatus};
use tally_schemas::UsageEvent;
use tally_storage::SqliteAnalyticsStore;
use tokio::sync::watch;

use common::WatchedLog;

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
    let log = Arc::new(WatchedLog::open(dir.path()));
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
