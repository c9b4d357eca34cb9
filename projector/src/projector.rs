//! The projection loop. See the crate docs for its delivery semantics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_domain::log_binding::Mismatch;
use tally_domain::pricing::{PriceCache, RepriceCache};
use tally_domain::store::{
    AnalyticsStore, EventLog, LogPosition, LogRecord, Ownership, StoreError,
};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::filter_files::FilterFiles;
use crate::guard::{self, Admission};
use crate::metrics as m;
use crate::session::{Confirmed, MergeReads, Session};
use crate::summaries::{self, Loaded};

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// How long an event id is remembered, in seconds of log time.
    pub dedup_window_s: u32,
    /// Open dedup entries per partition that make a commit seal them into a generation kept
    /// in the store with a compact filter in memory ([`crate::dedup`]); the open set is the
    /// dedup memory's only part that costs 20–30 bytes per entry. Stores that keep no sealed
    /// generations never seal.
    pub dedup_open_entries: usize,
    /// Where sealed dedup filters are mapped from, off the heap ([`FilterFiles`]); `None`
    /// keeps them in memory.
    pub dedup_files: Option<FilterFiles>,
    /// Events folded into one commit while caught up (up to 4× this while catching up).
    /// Larger batches amortise the commit; smaller ones make results visible sooner.
    pub max_batch_events: usize,
    /// How long one read waits for new records before checking for shutdown.
    pub idle_wait: Duration,
    /// Upper bound of the retry backoff after a storage failure.
    pub max_backoff: Duration,
    /// How often a running projector checks that its log is still the one its checkpoints
    /// belong to, and a refusing one checks again whether it may read.
    pub log_check_every: Duration,
    /// Prices for events that reach the log unpriced (produced straight to the broker without
    /// `cost_usd`); ingest prices everything it appends, so the embedded pipeline needs none.
    pub prices: Option<Arc<PriceCache>>,
    /// Reprice requests: the events they cover are counted at the cost they say, whatever
    /// cost the log holds ([`Repricing`]). A request takes effect on the events projected
    /// after it is loaded; the projection is replayed to apply it to what came before.
    pub reprices: Option<Arc<RepriceCache>>,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            dedup_window_s: 24 * 3600,
            dedup_open_entries: 2_000_000,
            dedup_files: None,
            max_batch_events: 50_000,
            idle_wait: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            log_check_every: Duration::from_secs(10),
            prices: None,
            reprices: None,
        }
    }
}

/// What the projector has done so far; published after every commit.
#[derive(Debug, Clone, Default)]
pub struct ProjectorStatus {
    /// Summed over the partitions this projector owns.
    pub events_applied: u64,
    pub duplicates_dropped: u64,
    pub last_commit: Option<Instant>,
    /// The last storage error, cleared by the next successful commit.
    pub last_error: Option<String>,
    /// Set once the checkpoint has been loaded and the loop is running.
    pub started: bool,
    /// The committed log position of the owned partitions (everything before it is projected).
    pub position: LogPosition,
    /// Ownership generation of the running session (changes on every rebalance).
    pub generation: u64,
    /// Set while the projector refuses to read: why, with the ways out
    /// ([`tally_domain::log_binding::Mismatch`]).
    pub checkpoint_mismatch: Option<String>,
}

impl ProjectorStatus {
    /// Log events consumed (folded or dropped as duplicates).
    pub fn events_consumed(&self) -> u64 {
        self.events_applied + self.duplicates_dropped
    }
}

#[derive(Clone)]
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Arc<dyn AnalyticsStore>,
    config: ProjectorConfig,
    status: Arc<watch::Sender<ProjectorStatus>>,
    /// The cause of the last refusal logged, so a refusal is logged once, not at every check.
    refusal_logged: Arc<std::sync::Mutex<Option<String>>>,
    /// The dedup generation the last load found listed but forgotten (0: none).
    forgotten: Arc<AtomicU64>,
}

/// Why a session ended without a storage error.
enum SessionEnd {
    Shutdown,
    /// The log's partition ownership changed: reload state for the new partitions.
    Rebalanced,
    /// The log is no longer the one the checkpoints belong to: check again before reading.
    LogChanged,
    /// The store changed while the session loaded: load again.
    Reload,
}

/// Resolves when ownership changes; never, for a log whose ownership is fixed.
async fn ownership_changed(ownership: &mut watch::Receiver<Ownership>) {
    if ownership.changed().await.is_err() {
        std::future::pending::<()>().await;
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
                status: Arc::new(status),
                refusal_logged: Arc::default(),
                forgotten: Arc::default(),
            },
            rx,
        )
    }

    /// Runs like [`Projector::run`], and starts over whenever `replays` asks: stops after the
    /// current commit, drops every projection ([`AnalyticsStore::reset`]), answers the request
    /// and projects the whole log again (with the prices and reprice requests then loaded).
    /// Only for a projector that is the only one writing its store.
    pub async fn run_replayable(self, mut shutdown: watch::Receiver<bool>, mut replays: Replays) {
        let mut listening = true;
        loop {
            let (stop, stop_rx) = watch::channel(false);
            let mut task = tokio::spawn(self.clone().run(stop_rx));
            let request = loop {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => break None,
                    _ = &mut task => return,
                    r = replays.recv(), if listening => match r {
                        Some(reply) => break Some(reply),
                        None => listening = false,
                    },
                }
            };
            let _ = stop.send(true);
            let _ = task.await;
            let Some(reply) = request else { return };
            info!("replay requested: dropping the projection and projecting the log again");
            let (log, store) = (self.log.as_ref(), self.store.as_ref());
            let result = match guard::guard_rebuild(log, store).await {
                Ok(()) => guard::reset_and_bind(log, store).await,
                Err(refused) => Err(refused),
            };
            if result.is_ok() {
                self.status.send_replace(ProjectorStatus::default());
            }
            let _ = reply.send(result);
        }
    }

    /// Runs until `shutdown` turns true. Storage failures are retried with capped exponential
    /// backoff, each time resuming from the last committed checkpoint; a rebalance resumes at
    /// once from the checkpoints of the newly owned partitions.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.run_session(&mut shutdown).await {
                Ok(SessionEnd::Shutdown) => return,
                Ok(SessionEnd::Rebalanced) => {
                    info!("partition ownership changed; reloading checkpoints");
                    metrics::counter!(m::REBALANCES).increment(1);
                }
                Ok(SessionEnd::LogChanged | SessionEnd::Reload) => {}
                Err(err) => {
                    if matches!(err, StoreError::Conflict(_)) {
                        warn!(error = %err, "another projector moved a partition; reloading");
                        metrics::counter!(m::FENCED).increment(1);
                    } else {
                        warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "projector storage failure; resuming from the last checkpoint");
                        metrics::counter!(m::COMMIT_FAILURES).increment(1);
                    }
                    self.status
                        .send_modify(|s| s.last_error = Some(err.to_string()));
                    tokio::select! {
                        _ = self.log.idle(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// Reports a mismatch and reads nothing until the next check is due (or shutdown, or a
    /// rebalance, which check at once), idling on the log so that a consumer group's
    /// rebalances go on meanwhile ([`EventLog::idle`]).
    async fn refuse(
        &self,
        mismatch: Mismatch,
        shutdown: &mut watch::Receiver<bool>,
        ownership: &mut watch::Receiver<Ownership>,
    ) -> SessionEnd {
        // Logged once per cause (the offsets in the message move while events arrive).
        let cause = format!(
            "{:?} {:?} {:?}",
            mismatch.reason, mismatch.stored, mismatch.current.identity
        );
        let logged = self
            .refusal_logged
            .lock()
            .map(|mut last| last.replace(cause.clone()) == Some(cause))
            .unwrap_or(false);
        if !logged {
            error!(%mismatch, "projector refuses to read");
        }
        metrics::gauge!(m::CHECKPOINT_MISMATCH).set(1.0);
        self.status.send_modify(|s| {
            s.started = false;
            s.checkpoint_mismatch = Some(mismatch.to_string());
        });
        tokio::select! {
            _ = self.log.idle(self.config.log_check_every) => SessionEnd::LogChanged,
            _ = shutdown.changed() => SessionEnd::Shutdown,
            _ = ownership_changed(ownership) => SessionEnd::Rebalanced,
        }
    }

    /// Reads the stored blocks that may hold fingerprints of `records` which sealed dedup
    /// generations report, and settles them: per partition, the newest second each is stored
    /// with ([`crate::dedup`]). Nothing to read (no sealed generation, or no filter hit) costs
    /// no store round trip. `None` when the runtime is shutting down.
    async fn confirm(
        &self,
        session: Session,
        records: Vec<LogRecord>,
        in_flight: &mut Option<InFlight>,
    ) -> Result<Option<(Session, Vec<LogRecord>, Confirmed)>, StoreError> {
        if !session.has_sealed() {
            return Ok(Some((session, records, Confirmed::new())));
        }
        let found = tokio::task::spawn_blocking(move || {
            let suspects = session.suspects(&records);
            (session, records, suspects)
        })
        .await;
        let (session, records, suspects) = match found {
            Ok(found) => found,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => return Ok(None),
        };
        let mut confirmed = Confirmed::new();
        for partition in suspects.by_partition.keys() {
            let wanted = suspects.blocks(*partition);
            if wanted.is_empty() {
                continue;
            }
            if in_flight
                .as_ref()
                .is_some_and(|c| c.writes_any(*partition, &wanted))
            {
                self.land(in_flight).await?;
            }
            let blocks = self.store.dedup_blocks(*partition, &wanted).await?;
            metrics::counter!(m::DEDUP_BLOCK_READS).increment(wanted.len() as u64);
            confirmed.insert(*partition, suspects.resolve(*partition, &wanted, &blocks));
        }
        Ok(Some((session, records, confirmed)))
    }

    /// Reads the stored blocks the dedup merges in progress need for their next step (one part
    /// each per commit; nothing to read costs no store round trip).
    async fn merge_reads(
        &self,
        session: &Session,
        records: &[LogRecord],
        in_flight: &mut Option<InFlight>,
    ) -> Result<MergeReads, StoreError> {
        let mut reads = MergeReads::new();
        for (partition, wanted) in session.merge_reads(records) {
            if in_flight
                .as_ref()
                .is_some_and(|c| c.writes_any(partition, &wanted))
            {
                self.land(in_flight).await?;
            }
            let blocks = self.store.dedup_blocks(partition, &wanted).await?;
            metrics::counter!(m::DEDUP_MERGE_BLOCK_READS).increment(wanted.len() as u64);
            reads.insert(partition, wanted.into_iter().zip(blocks).collect());
        }
        Ok(reads)
    }

    /// One pass from the stored checkpoint until shutdown, a rebalance or a storage error.
    async fn run_session(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, StoreError> {
        let mut ownership = self.log.ownership();
        let owned = ownership.borrow_and_update().clone();
        let admission = tokio::select! {
            a = guard::admit(self.log.as_ref(), self.store.as_ref()) => a?,
            _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
        };
        let binding = match admission {
            Admission::Admitted(binding) => binding,
            Admission::Refused(mismatch) => {
                return Ok(self.refuse(mismatch, shutdown, &mut ownership).await)
            }
        };
        let state = tokio::select! {
            s = self.store.load_state(self.config.dedup_window_s, &owned.partitions) => s?,
            _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
        };
        if state.epoch != binding.epoch {
            // Re-bound between the check and the load: check again.
            return Ok(SessionEnd::LogChanged);
        }
        let seal_at = self
            .store
            .seals_dedup()
            .then_some(self.config.dedup_open_entries);
        let loaded = summaries::load(
            self.store.as_ref(),
            &state,
            &owned.partitions,
            self.config.dedup_files.as_ref(),
            summaries::BATCH_BYTES,
        );
        let loaded = tokio::select! {
            l = loaded => l?,
            _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
        };
        let sealed = match loaded {
            Loaded::Sealed(sealed) => sealed,
            Loaded::Shutdown => return Ok(SessionEnd::Shutdown),
            Loaded::Forgotten { partition, id } => {
                // Once is a deletion that landed after the listing; the same one again is not.
                let again = self.forgotten.swap(id, Ordering::Relaxed) == id;
                let what = format!("the summary of dedup generation {id:016x} (partition {partition}), which the checkpoint lists");
                if again {
                    return Err(StoreError::NotFound { what });
                }
                info!(%what, "a listed dedup generation was forgotten meanwhile; loading again");
                return Ok(SessionEnd::Reload);
            }
        };
        self.forgotten.store(0, Ordering::Relaxed);
        // Resuming fills the open set's hash tables: blocking work, done off the runtime like
        // folding.
        let (window_s, files) = (self.config.dedup_window_s, self.config.dedup_files.clone());
        let partitions = owned.partitions.clone();
        let resumed = tokio::task::spawn_blocking(move || {
            Session::resume(state, sealed, binding, partitions, window_s, seal_at, files)
        })
        .await;
        let session = match resumed {
            Ok(session) => session,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => return Ok(SessionEnd::Shutdown),
        };
        info!(
            generation = owned.generation,
            log = %session.binding.log,
            epoch = session.binding.epoch,
            partitions = session.partitions.len(),
            events_applied = session.applied(),
            dedup_entries = session.dedup_len(),
            "projector resumed from checkpoint"
        );
        metrics::gauge!(m::CHECKPOINT_MISMATCH).set(0.0);
        if let Ok(mut logged) = self.refusal_logged.lock() {
            *logged = None;
        }
        self.status.send_modify(|s| {
            s.events_applied = session.applied();
            s.duplicates_dropped = session.duplicates();
            s.started = true;
            s.position = session.position();
            s.generation = owned.generation;
            s.checkpoint_mismatch = None;
        });
        let mut in_flight = None;
        let end = self
            .project(session, shutdown, &mut ownership, &mut in_flight)
            .await;
        // Whatever ended the session, the commit on its way lands (or fails) first.
        let landed = self.land(&mut in_flight).await;
        end.and_then(|end| landed.map(|()| end))
    }

    /// Reads, folds and commits from `session` on, with one commit in flight while the next
    /// batch is read and folded; returns without waiting for the commit in `in_flight`.
    async fn project(
        &self,
        mut session: Session,
        shutdown: &mut watch::Receiver<bool>,
        ownership: &mut watch::Receiver<Ownership>,
        in_flight: &mut Option<InFlight>,
    ) -> Result<SessionEnd, StoreError> {
        let mut batch = self.config.max_batch_events;
        let mut next_log_check = Instant::now() + self.config.log_check_every;
        loop {
            if Instant::now() >= next_log_check {
                next_log_check = Instant::now() + self.config.log_check_every;
                let committed = session.committed_position();
                let fits = guard::still_fits(
                    self.log.as_ref(),
                    self.store.as_ref(),
                    &session.binding,
                    &committed,
                );
                match fits.await {
                    Ok(None) => {}
                    Ok(Some(why)) => {
                        warn!(%why, "the projector stops reading and checks its log again");
                        return Ok(SessionEnd::LogChanged);
                    }
                    Err(err) => warn!(error = %err, "could not check the log's identity"),
                }
            }
            let position = session.position();
            // With a commit in flight, short reads, so that it is reported as soon as it lands.
            let wait = match in_flight {
                Some(_) => LANDING_POLL.min(self.config.idle_wait),
                None => self.config.idle_wait,
            };
            let records = tokio::select! {
                r = self.log.read(&position, batch, wait) => r?,
                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
                _ = ownership_changed(ownership) => return Ok(SessionEnd::Rebalanced),
            };
            // Behind (a full read): larger commits, so each rollup row written absorbs more
            // events. Caught up: back to the base size for the best freshness.
            let read: usize = records.iter().map(|r| r.events.len()).sum();
            batch = if read >= batch {
                (batch * 2).min(self.config.max_batch_events * 4)
            } else {
                self.config.max_batch_events
            };
            if in_flight.as_ref().is_some_and(|c| c.task.is_finished()) {
                self.land(in_flight).await?;
            }
            let consumed = session.applied() + session.duplicates();
            let lag = self.log.backlog(&position, consumed);
            metrics::gauge!(m::LAG_EVENTS).set(lag as f64);
            if records.is_empty() {
                if *shutdown.borrow() {
                    return Ok(SessionEnd::Shutdown);
                }
                continue;
            }
            if ownership.has_changed().unwrap_or(false) {
                return Ok(SessionEnd::Rebalanced);
            }
            let book = self.config.prices.as_ref().map(|p| p.current());
            let reprices = self.config.reprices.as_ref().map(|r| r.current());
            let keep_raw = self.store.keeps_raw_events();
            let Some((settled, records, confirmed)) =
                self.confirm(session, records, in_flight).await?
            else {
                return Ok(SessionEnd::Shutdown);
            };
            session = settled;
            let merge_reads = self.merge_reads(&session, &records, in_flight).await?;
            // Folding is CPU work: it runs on a blocking thread, with the session moved there
            // and back, so the runtime keeps serving requests meanwhile.
            let folded = tokio::task::spawn_blocking(move || {
                let commit = session.fold(
                    records,
                    book.as_deref(),
                    reprices.as_deref().filter(|r| !r.is_empty()),
                    keep_raw,
                    &confirmed,
                    &merge_reads,
                );
                (session, commit)
            })
            .await;
            let commit;
            (session, commit) = match folded {
                Ok(folded) => folded,
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Err(_) => return Ok(SessionEnd::Shutdown),
            };
            if commit.partitions.is_empty() {
                continue;
            }
            let landed: Vec<(i32, i64)> = commit
                .partitions
                .iter()
                .map(|(p, c)| (*p, c.state.next_offset))
                .collect();
            let writes = commit
                .partitions
                .iter()
                .flat_map(|(p, c)| {
                    c.seals
                        .iter()
                        .chain(&c.merged)
                        .map(move |seal| (*p, seal.generation.id))
                })
                .collect();
            // The next commit builds on this one: a commit that fails ends the session, and
            // the next one reloads from the checkpoint, so nothing folded after it is kept.
            session.committed(&landed);
            metrics::gauge!(m::DEDUP_ENTRIES).set(session.dedup_len() as f64);
            metrics::gauge!(m::DEDUP_MEMORY_BYTES).set(session.dedup_memory_bytes() as f64);
            metrics::gauge!(m::DEDUP_MAPPED_BYTES).set(session.dedup_mapped_bytes() as f64);
            metrics::gauge!(m::DEDUP_RUNS).set(session.dedup_runs() as f64);
            // One commit at a time reaches the store, in order.
            self.land(in_flight).await?;
            let store = self.store.clone();
            *in_flight = Some(InFlight {
                task: tokio::spawn(async move { store.commit(commit).await }),
                started: Instant::now(),
                writes,
                applied: session.applied(),
                duplicates: session.duplicates(),
                position: session.position(),
            });
        }
    }

    /// Waits for the commit in flight, if any, and reports it landed (status, metrics, the
    /// log's mirror of the position); its error ends the session.
    async fn land(&self, in_flight: &mut Option<InFlight>) -> Result<(), StoreError> {
        let Some(commit) = in_flight.take() else {
            return Ok(());
        };
        match commit.task.await {
            Ok(result) => result?,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "the commit was cancelled by the runtime shutting down".into(),
                ))
            }
        }
        metrics::histogram!(m::COMMIT_SECONDS).record(commit.started.elapsed().as_secs_f64());
        metrics::counter!(m::COMMITS).increment(1);
        // Lag as of this commit, before anyone sees its status.
        let consumed = commit.applied + commit.duplicates;
        metrics::gauge!(m::LAG_EVENTS).set(self.log.backlog(&commit.position, consumed) as f64);
        self.log.projected(&commit.position).await;
        self.status.send_modify(|s| {
            s.events_applied = commit.applied;
            s.duplicates_dropped = commit.duplicates;
            s.last_commit = Some(Instant::now());
            s.last_error = None;
            s.position = commit.position;
        });
        Ok(())
    }
}

/// How long a read waits for records while a commit is in flight, before it checks whether
/// the commit landed.
const LANDING_POLL: Duration = Duration::from_millis(5);

/// A commit on its way to the store while the next batch is read and folded.
struct InFlight {
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
    started: Instant,
    /// The dedup generations it writes (sealed, or parts of merged runs), per partition: a
    /// read of their blocks waits for it to land.
    writes: std::collections::HashSet<(i32, u64)>,
    /// The session's counts and position once it has landed.
    applied: u64,
    duplicates: u64,
    position: LogPosition,
}

impl InFlight {
    /// Whether reading `wanted` blocks of `partition` needs this commit landed first.
    fn writes_any(&self, partition: i32, wanted: &[(u64, u32)]) -> bool {
        wanted
            .iter()
            .any(|(generation, _)| self.writes.contains(&(partition, *generation)))
    }
}

/// Where a replay request is answered, once the projection was dropped.
type ReplayReply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

/// Requests to start a projection over.
pub type Replays = tokio::sync::mpsc::Receiver<ReplayReply>;

/// Asks a [`Projector::run_replayable`] to start over.
#[derive(Clone)]
pub struct ReplayHandle {
    requests: tokio::sync::mpsc::Sender<ReplayReply>,
}

impl ReplayHandle {
    pub fn new() -> (ReplayHandle, Replays) {
        let (requests, rx) = tokio::sync::mpsc::channel(4);
        (ReplayHandle { requests }, rx)
    }

    /// Returns once the projection has been dropped and the replay has begun.
    pub async fn replay(&self) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Unavailable("the projector is not running".into());
        self.requests.send(reply).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
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
/// Refused (`Conflict`, nothing dropped) when the store's checkpoints belong to another log or
/// it also holds what retired logs counted ([`crate::guard_rebuild`]): [`start_clean`] is the
/// explicit way to drop those.
pub async fn rebuild(
    log: Arc<dyn EventLog>,
    store: Arc<dyn AnalyticsStore>,
    config: ProjectorConfig,
) -> Result<RebuildReport, StoreError> {
    guard::guard_rebuild(log.as_ref(), store.as_ref()).await?;
    start_clean(log, store, config).await
}

/// [`rebuild`] without its guard: drops everything the store holds, whatever log it came from
/// (the bindings too), binds the store to `log` and projects it alone from its beginning.
pub async fn start_clean(
    log: Arc<dyn EventLog>,
    store: Arc<dyn AnalyticsStore>,
    config: ProjectorConfig,
) -> Result<RebuildReport, StoreError> {
    start_clean_watching(log, store, config, |_| {}).await
}

/// [`start_clean`], calling `observe` with the projector's status after every commit (for a
/// progress report; it runs on the waiting task and must not block).
pub async fn start_clean_watching(
    log: Arc<dyn EventLog>,
    store: Arc<dyn AnalyticsStore>,
    config: ProjectorConfig,
    mut observe: impl FnMut(&ProjectorStatus),
) -> Result<RebuildReport, StoreError> {
    let started = Instant::now();
    guard::reset_and_bind(log.as_ref(), store.as_ref()).await?;
    let target = log.end().await?;
    let (projector, mut status) = Projector::new(log, store, config);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(projector.run(stop_rx));
    let finished = |s: &ProjectorStatus| {
        s.checkpoint_mismatch.is_some()
            || s.started
                && target
                    .0
                    .iter()
                    .all(|(p, end)| s.position.next_offset(*p) >= *end)
    };
    let done = loop {
        let now = status.borrow_and_update().clone();
        observe(&now);
        if finished(&now) {
            break Ok(now);
        }
        if status.changed().await.is_err() {
            break Err(StoreError::Backend(
                "projector stopped during rebuild".into(),
            ));
        }
    };
    let _ = stop.send(true);
    let _ = task.await;
    let done = done?;
    if let Some(mismatch) = done.checkpoint_mismatch {
        // The log changed while it was replayed (another projector re-bound the store).
        return Err(StoreError::Conflict(mismatch));
    }
    Ok(RebuildReport {
        events_applied: done.events_applied,
        duplicates_dropped: done.duplicates_dropped,
        elapsed: started.elapsed(),
    })
}
