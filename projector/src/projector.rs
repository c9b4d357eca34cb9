//! The projection loop. See the crate docs for its delivery semantics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_core::event_fingerprint;
use tally_core::rollup::fold;
use tally_core::store::{
    AnalyticsStore, EventLog, LogPosition, LogRecord, ProjectionCommit, ProjectorState, StoreError,
};
use tally_schemas::UsageEvent;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::dedup::Dedup;
use crate::metrics as m;

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// How long an event id is remembered, in seconds of log time.
    pub dedup_window_s: u32,
    /// Events folded into one commit while caught up (up to 4× this while catching up).
    /// Larger batches amortise the commit; smaller ones make results visible sooner.
    pub max_batch_events: usize,
    /// How long one read waits for new records before checking for shutdown.
    pub idle_wait: Duration,
    /// Upper bound of the retry backoff after a storage failure.
    pub max_backoff: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            dedup_window_s: 24 * 3600,
            max_batch_events: 50_000,
            idle_wait: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What the projector has done so far; published after every commit.
#[derive(Debug, Clone, Default)]
pub struct ProjectorStatus {
    pub events_applied: u64,
    pub duplicates_dropped: u64,
    pub last_commit: Option<Instant>,
    /// The last storage error, cleared by the next successful commit.
    pub last_error: Option<String>,
    /// Set once the checkpoint has been loaded and the loop is running.
    pub started: bool,
    /// The committed log position (everything before it is projected).
    pub position: LogPosition,
}

impl ProjectorStatus {
    /// Log events consumed (folded or dropped as duplicates).
    pub fn events_consumed(&self) -> u64 {
        self.events_applied + self.duplicates_dropped
    }
}

pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Arc<dyn AnalyticsStore>,
    config: ProjectorConfig,
    status: watch::Sender<ProjectorStatus>,
}

/// In-memory progress since the last load of the checkpoint.
struct Session {
    position: LogPosition,
    last_received_ms: i64,
    applied: u64,
    duplicates: u64,
    dedup: Dedup,
}

impl Session {
    fn resume(state: ProjectorState, window_s: u32) -> Session {
        Session {
            position: state.position,
            last_received_ms: state.last_received_ms,
            applied: state.events_applied,
            duplicates: state.duplicates_dropped,
            dedup: Dedup::new(window_s, state.dedup),
        }
    }

    /// Deduplicates and folds `records` into one commit (not yet applied).
    fn fold(&mut self, records: &[LogRecord]) -> ProjectionCommit {
        let mut fresh: Vec<&UsageEvent> = Vec::new();
        let mut dedup_new = Vec::new();
        let mut duplicates = 0;
        for record in records {
            let now_s = u32::try_from(record.received_at_ms.max(0) / 1000).unwrap_or(u32::MAX);
            for event in &record.events {
                let fp = event_fingerprint(&event.event_id);
                if self.dedup.first_sighting(fp, now_s) {
                    fresh.push(event);
                    dedup_new.push((fp, now_s));
                } else {
                    duplicates += 1;
                }
            }
            self.position.advance(record);
            self.last_received_ms = self.last_received_ms.max(record.received_at_ms);
        }
        self.applied += fresh.len() as u64;
        self.duplicates += duplicates;
        let now_s = u32::try_from(self.last_received_ms.max(0) / 1000).unwrap_or(u32::MAX);
        self.dedup.evict(now_s, 1);
        metrics::counter!(m::EVENTS_APPLIED).increment(fresh.len() as u64);
        metrics::counter!(m::DUPLICATES).increment(duplicates);
        ProjectionCommit {
            deltas: fold(fresh),
            dedup_new,
            dedup_horizon_s: self.dedup.horizon(now_s),
            position: self.position.clone(),
            last_received_ms: self.last_received_ms,
            events_applied: self.applied,
            duplicates_dropped: self.duplicates,
        }
    }
}

impl Projector {
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Arc<dyn AnalyticsStore>,
        config: ProjectorConfig,
    ) -> (Projector, watch::Receiver<ProjectorStatus>) {
        m::describe();
        let (status, rx) = watch::channel(ProjectorStatus::default());
        (
            Projector {
                log,
                store,
                config,
                status,
            },
            rx,
        )
    }

    /// Runs until `shutdown` turns true. Storage failures are retried with capped exponential
    /// backoff, each time resuming from the last committed checkpoint.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.run_session(&mut shutdown).await {
                Ok(()) => return,
                Err(err) => {
                    warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "projector storage failure; resuming from the last checkpoint");
                    metrics::counter!(m::COMMIT_FAILURES).increment(1);
                    self.status
                        .send_modify(|s| s.last_error = Some(err.to_string()));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// One pass from the stored checkpoint until shutdown (`Ok`) or a storage error (`Err`).
    async fn run_session(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), StoreError> {
        let state = self.store.load_state(self.config.dedup_window_s).await?;
        let mut session = Session::resume(state, self.config.dedup_window_s);
        info!(
            events_applied = session.applied,
            dedup_entries = session.dedup.len(),
            "projector resumed from checkpoint"
        );
        self.status.send_modify(|s| {
            s.events_applied = session.applied;
            s.duplicates_dropped = session.duplicates;
            s.started = true;
            s.position = session.position.clone();
        });
        let mut batch = self.config.max_batch_events;
        loop {
            let records = tokio::select! {
                r = self.log.read(&session.position, batch, self.config.idle_wait) => r?,
                _ = shutdown.changed() => return Ok(()),
            };
            // Behind (a full read): larger commits, so each rollup row written absorbs more
            // events. Caught up: back to the base size for the best freshness.
            let read: usize = records.iter().map(|r| r.events.len()).sum();
            batch = if read >= batch {
                (batch * 2).min(self.config.max_batch_events * 4)
            } else {
                self.config.max_batch_events
            };
            let consumed = session.applied + session.duplicates;
            metrics::gauge!(m::LAG_EVENTS)
                .set(self.log.appended_events().saturating_sub(consumed) as f64);
            if records.is_empty() {
                if *shutdown.borrow() {
                    return Ok(());
                }
                continue;
            }
            let commit = session.fold(&records);
            let started = Instant::now();
            self.store.commit(commit).await?;
            metrics::histogram!(m::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
            metrics::counter!(m::COMMITS).increment(1);
            metrics::gauge!(m::DEDUP_ENTRIES).set(session.dedup.len() as f64);
            self.status.send_modify(|s| {
                s.events_applied = session.applied;
                s.duplicates_dropped = session.duplicates;
                s.last_commit = Some(Instant::now());
                s.last_error = None;
                s.position = session.position.clone();
            });
        }
    }
}

/// Outcome of [`rebuild`].
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub events_applied: u64,
    pub duplicates_dropped: u64,
    pub elapsed: Duration,
}

/// Drops every projection and replays the whole log; returns once the replay has caught up with
/// the log as it was when the rebuild started. The result equals the live projection exactly.
pub async fn rebuild(
    log: Arc<dyn EventLog>,
    store: Arc<dyn AnalyticsStore>,
    config: ProjectorConfig,
) -> Result<RebuildReport, StoreError> {
    let started = Instant::now();
    store.reset().await?;
    let target = log.appended_events();
    let (projector, mut status) = Projector::new(log, store, config);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(projector.run(stop_rx));
    let done = status
        .wait_for(|s| s.started && s.events_consumed() >= target)
        .await
        .map(|s| s.clone())
        .map_err(|_| StoreError::Backend("projector stopped during rebuild".into()));
    let _ = stop.send(true);
    let _ = task.await;
    let done = done?;
    Ok(RebuildReport {
        events_applied: done.events_applied,
        duplicates_dropped: done.duplicates_dropped,
        elapsed: started.elapsed(),
    })
}
