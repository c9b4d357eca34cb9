//! The wait for fuller batches when caught up ([`ProjectorConfig::fill_wait`]): events that
//! arrive within it are committed together, half a batch waiting ends it early, and shutdown
//! ends it at once. The expected commit counts follow from the appends each test makes.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_domain::store::*;
use tally_projector::{Projector, ProjectorConfig, ProjectorStatus};
use tally_schemas::UsageEvent;
use tally_storage::SqliteAnalyticsStore;
use tokio::sync::watch;

use common::WatchedLog;

fn event(i: u64) -> UsageEvent {
    UsageEvent {
        event_id: format!("e{i}"),
        occurred_at_us: 1_767_225_600_000_000 + i as i64 * 1_000_000,
        ..UsageEvent::example()
    }
}

async fn wait_for(status: &mut watch::Receiver<ProjectorStatus>, applied: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status.borrow().events_applied != applied {
        assert!(Instant::now() < deadline, "{:?}", status.borrow().clone());
        let _ = tokio::time::timeout(Duration::from_millis(50), status.changed()).await;
    }
}

struct Running {
    log: Arc<WatchedLog>,
    status: watch::Receiver<ProjectorStatus>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// A projector over a log that already holds one event, so that its first read takes it.
async fn start(max_batch_events: usize, fill_wait: Duration) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(WatchedLog::open(dir.path()));
    log.append(vec![event(0)]).await.unwrap();
    let store: Arc<dyn AnalyticsStore> = Arc::new(SqliteAnalyticsStore::open(dir.path()).unwrap());
    let config = ProjectorConfig {
        max_batch_events,
        fill_wait,
        idle_wait: Duration::from_millis(50),
        ..ProjectorConfig::default()
    };
    let (projector, status) = Projector::new(log.clone(), store, config);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(projector.run(stop_rx));
    Running {
        log,
        status,
        stop,
        task,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arriving_within_the_wait_are_committed_together() {
    let mut p = start(1_000, Duration::from_secs(5)).await;
    wait_for(&mut p.status, 1).await;
    assert_eq!(p.log.landed(), 1);
    // Ten appends of one event, far fewer than half a batch (500), all within the 5 s wait
    // that began with the read of the first event: one more commit, not ten.
    for i in 1..=10 {
        p.log.append(vec![event(i)]).await.unwrap();
    }
    wait_for(&mut p.status, 11).await;
    assert_eq!(p.log.landed(), 2);
    p.stop.send(true).unwrap();
    p.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_batch_waiting_ends_the_wait() {
    let mut p = start(20, Duration::from_secs(600)).await;
    wait_for(&mut p.status, 1).await;
    // Ten events are half of a 20-event batch: read without waiting out the 600 s.
    p.log.append((1..=10).map(event).collect()).await.unwrap();
    wait_for(&mut p.status, 11).await;
    assert_eq!(p.log.landed(), 2);
    p.stop.send(true).unwrap();
    p.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_wait() {
    let mut p = start(1_000, Duration::from_secs(600)).await;
    wait_for(&mut p.status, 1).await;
    // Nine events wait (fewer than half a batch) when the projector is told to stop.
    p.log.append((1..=9).map(event).collect()).await.unwrap();
    p.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), p.task)
        .await
        .expect("the projector stopped within the wait")
        .unwrap();
    assert_eq!(p.status.borrow().events_applied, 1);
}
