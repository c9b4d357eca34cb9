//! Projection invariants on the real embedded stores: duplicates and batching change nothing,
//! rebuild equals live, and commits that fail (before or after reaching storage) are neither
//! lost nor double-counted.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use proptest::prelude::*;
use tally_domain::log_binding::{Adoption, LogBinding};
use tally_domain::rollup::{Dims, Resolution, Rollup, RollupKey};
use tally_domain::store::*;
use tally_projector::{Projector, ProjectorConfig};
use tally_schemas::event::{Cost, Operation, Status};
use tally_schemas::{Environment, UsageEvent};
use tally_storage::{SqliteAnalyticsStore, SqliteEventLog};

fn event(
    id: u32,
    minute: i64,
    feature: u8,
    latency_us: u64,
    user: u8,
    status: u8,
    cost: i64,
) -> UsageEvent {
    UsageEvent {
        event_id: format!("e{id}"),
        occurred_at_us: (1_767_225_600 + minute * 60 + i64::from(id % 60)) * 1_000_000,
        feature: format!("f{feature}"),
        model: "m".into(),
        provider: "p".into(),
        environment: Environment::Production,
        operation: Operation::Chat,
        status: [Status::Success, Status::Error, Status::Timeout][usize::from(status % 3)],
        latency_us,
        input_tokens: u64::from(id % 97),
        output_tokens: u64::from(id % 13),
        cached_input_tokens: 0,
        cost: if cost == 0 {
            Cost::Unpriced
        } else {
            Cost::Computed(cost)
        },
        user_id: Some(format!("u{user}")),
        // A third of the events name no prompt; the rest one of two versions of one prompt.
        prompt_id: (!id.is_multiple_of(3)).then(|| "greeting".to_string()),
        prompt_version: (!id.is_multiple_of(3)).then(|| (id % 3).to_string()),
        // Half the events are in an experiment, split over two variants.
        experiment_id: id.is_multiple_of(2).then(|| "exp".to_string()),
        variant: id
            .is_multiple_of(2)
            .then(|| ["a", "b"][(id / 2 % 2) as usize].to_string()),
        ..UsageEvent::example()
    }
}

fn events_strategy() -> impl Strategy<Value = Vec<UsageEvent>> {
    prop::collection::vec(
        (
            0i64..180,
            0u8..3,
            0u64..10_000_000,
            0u8..20,
            0u8..10,
            0i64..5_000_000,
        ),
        1..150,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (m, f, l, u, s, c))| event(i as u32, m, f, l, u, s, c))
            .collect()
    })
}

/// Every stored row at every resolution.
async fn snapshot(store: &dyn AnalyticsStore) -> BTreeMap<RollupKey, Rollup> {
    let rows = store
        .scan(ScanRequest::everything(&Resolution::ALL, true))
        .await
        .unwrap();
    rows.into_iter().map(|r| (r.key, r.rollup)).collect()
}

/// Expected rows, computed by summing plain fields per key (sketches from fresh inserts).
fn expected(unique: &[UsageEvent]) -> BTreeMap<RollupKey, Rollup> {
    let mut out: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
    for e in unique {
        for resolution in Resolution::ALL {
            let key = RollupKey {
                resolution,
                bucket: e.occurred_at_secs().div_euclid(resolution.seconds())
                    * resolution.seconds(),
                dims: Dims {
                    feature: e.feature.clone(),
                    model: e.model.clone(),
                    provider: e.provider.clone(),
                    environment: e.environment,
                    prompt_id: e.prompt_id.clone().unwrap_or_default(),
                    prompt_version: e.prompt_version.clone().unwrap_or_default(),
                    experiment_id: e.experiment_id.clone().unwrap_or_default(),
                    variant: e.variant.clone().unwrap_or_default(),
                },
            };
            let r = out.entry(key).or_default();
            r.requests += 1;
            r.errors += u64::from(e.status == Status::Error);
            r.timeouts += u64::from(e.status == Status::Timeout);
            r.latency_sum_us += e.latency_us;
            r.input_tokens += e.input_tokens;
            r.output_tokens += e.output_tokens;
            match e.cost.picos() {
                Some(p) => {
                    r.cost.0 += i128::from(p);
                    r.cost_squares += (p as u128) * (p as u128);
                }
                None => r.unpriced += 1,
            }
            r.latency.insert(e.latency_us);
            r.users.insert(e.user_id.as_deref().unwrap());
        }
    }
    out
}

async fn project_until(log: Arc<dyn EventLog>, store: Arc<dyn AnalyticsStore>, consumed: u64) {
    let config = ProjectorConfig {
        max_batch_events: 37,
        idle_wait: Duration::from_millis(5),
        max_backoff: Duration::from_millis(5),
        ..ProjectorConfig::default()
    };
    let (projector, mut status) = Projector::new(log, store, config);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(projector.run(stop_rx));
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.started && s.events_consumed() >= consumed),
    )
    .await
    .unwrap()
    .unwrap();
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Every counted event through the drill-down, in pages of 7 (each page continuing after the
/// last event of the one before).
async fn drill(store: &dyn AnalyticsStore) -> Vec<UsageEvent> {
    use tally_domain::drilldown::{Cursor, EventFilter, EventQuery};
    let mut out: Vec<UsageEvent> = Vec::new();
    loop {
        let page = store
            .events(&EventQuery {
                filter: EventFilter::default(),
                from_us: 0,
                to_us: i64::MAX,
                after: out.last().map(Cursor::of),
                limit: 7,
            })
            .await
            .unwrap();
        let done = page.len() < 7;
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// The events newest first, ties by the greater id (sorted here, not by the code under test).
fn newest_first(events: &[UsageEvent]) -> Vec<UsageEvent> {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| std::cmp::Reverse((e.occurred_at_us, e.event_id.clone())));
    sorted
}

/// Appends `events` plus every 3rd one again, in chunks of `chunk`; returns events appended.
async fn append_with_duplicates(log: &dyn EventLog, events: &[UsageEvent], chunk: usize) -> u64 {
    let mut all = events.to_vec();
    all.extend(events.iter().step_by(3).cloned());
    for part in all.chunks(chunk.max(1)) {
        log.append(part.to_vec()).await.unwrap();
    }
    all.len() as u64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn duplicates_and_batching_change_nothing(events in events_strategy(), chunk in 1usize..60) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let log: Arc<dyn EventLog> = Arc::new(SqliteEventLog::open(dir.path(), 64).unwrap());
            let store: Arc<dyn AnalyticsStore> = Arc::new(SqliteAnalyticsStore::open(dir.path()).unwrap());
            let total = append_with_duplicates(log.as_ref(), &events, chunk).await;
            project_until(log.clone(), store.clone(), total).await;
            prop_assert_eq!(snapshot(store.as_ref()).await, expected(&events));
            // The drill-down holds each counted event once, newest first, paged without gaps.
            prop_assert_eq!(drill(store.as_ref()).await, newest_first(&events));

            // rebuild equals live
            let report = tally_projector::rebuild(log.clone(), store.clone(), ProjectorConfig::default()).await.unwrap();
            prop_assert_eq!(report.events_applied, events.len() as u64);
            prop_assert_eq!(snapshot(store.as_ref()).await, expected(&events));
            prop_assert_eq!(drill(store.as_ref()).await, newest_first(&events));
            Ok(())
        })?;
    }
}

/// Fails some commits: before they reach storage, or after they were applied (the outcome the
/// projector cannot tell from a lost acknowledgement).
struct Flaky {
    inner: SqliteAnalyticsStore,
    calls: AtomicU64,
}

#[async_trait]
impl AnalyticsStore for Flaky {
    async fn load_state(&self, w: u32, p: &Partitions) -> StoreResult<ProjectorState> {
        self.inner.load_state(w, p).await
    }
    async fn commit(&self, c: ProjectionCommit) -> StoreResult<()> {
        match self.calls.fetch_add(1, Ordering::SeqCst) % 4 {
            1 => Err(StoreError::Unavailable("injected: before".into())),
            3 => {
                self.inner.commit(c).await?;
                Err(StoreError::Unavailable("injected: after".into()))
            }
            _ => self.inner.commit(c).await,
        }
    }
    async fn scan(&self, r: ScanRequest) -> StoreResult<Vec<tally_domain::rollup::RollupRow>> {
        self.inner.scan(r).await
    }
    async fn events(
        &self,
        q: &tally_domain::drilldown::EventQuery,
    ) -> StoreResult<Vec<UsageEvent>> {
        self.inner.events(q).await
    }
    async fn experiment_scores(&self, q: &ScoreQuery) -> StoreResult<Vec<ScoredEvent>> {
        self.inner.experiment_scores(q).await
    }
    async fn reset(&self) -> StoreResult<()> {
        self.inner.reset().await
    }
    async fn prune(&self, before_s: i64) -> StoreResult<u64> {
        self.inner.prune(before_s).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn checkpoints(&self, p: &Partitions) -> StoreResult<ProjectorState> {
        self.inner.checkpoints(p).await
    }
    async fn bindings(&self) -> StoreResult<Vec<LogBinding>> {
        self.inner.bindings().await
    }
    async fn bind(&self, b: LogBinding) -> StoreResult<LogBinding> {
        self.inner.bind(b).await
    }
    async fn adopt(&self, a: &Adoption, w: u32) -> StoreResult<()> {
        self.inner.adopt(a, w).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_are_retried_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteEventLog::open(dir.path(), 64).unwrap());
    let store = Arc::new(Flaky {
        inner: SqliteAnalyticsStore::open(dir.path()).unwrap(),
        calls: AtomicU64::new(0),
    });
    let events: Vec<UsageEvent> = (0..2000)
        .map(|i| {
            event(
                i,
                i64::from(i % 300),
                (i % 3) as u8,
                u64::from(i) * 1000,
                (i % 50) as u8,
                (i % 10) as u8,
                i64::from(i) * 1000,
            )
        })
        .collect();
    let total = append_with_duplicates(log.as_ref(), &events, 23).await;
    project_until(log, store.clone(), total).await;
    assert!(
        store.calls.load(Ordering::SeqCst) > 8,
        "failures were injected"
    );
    let got = snapshot(store.as_ref()).await;
    let want = expected(&events);
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    // Commits that failed after they were applied did not store their events twice.
    assert_eq!(drill(store.as_ref()).await, newest_first(&events));
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let minute_requests: u64 = got
        .iter()
        .filter(|(k, _)| k.resolution == Resolution::Minute)
        .map(|(_, r)| r.requests)
        .sum();
    assert_eq!(minute_requests, ids.len() as u64);
}

/// Reports, on its first load, an unfinished commit ending at `end` on partition 0 (what the
/// ClickHouse store reports after a commit whose rollup rows partly landed), and records the
/// offset range of every commit that reaches it.
struct Unfinished {
    inner: SqliteAnalyticsStore,
    end: i64,
    loads: AtomicU64,
    ranges: std::sync::Mutex<Vec<(i64, i64)>>,
}

#[async_trait]
impl AnalyticsStore for Unfinished {
    async fn load_state(&self, w: u32, p: &Partitions) -> StoreResult<ProjectorState> {
        let mut state = self.inner.load_state(w, p).await?;
        if self.loads.fetch_add(1, Ordering::SeqCst) == 0 {
            state.unfinished.insert(0, self.end);
        }
        Ok(state)
    }
    async fn commit(&self, c: ProjectionCommit) -> StoreResult<()> {
        if let Some(pc) = c.partitions.get(&0) {
            self.ranges
                .lock()
                .unwrap()
                .push((pc.base_offset, pc.state.next_offset));
        }
        self.inner.commit(c).await
    }
    async fn scan(&self, r: ScanRequest) -> StoreResult<Vec<tally_domain::rollup::RollupRow>> {
        self.inner.scan(r).await
    }
    async fn events(
        &self,
        q: &tally_domain::drilldown::EventQuery,
    ) -> StoreResult<Vec<UsageEvent>> {
        self.inner.events(q).await
    }
    async fn experiment_scores(&self, q: &ScoreQuery) -> StoreResult<Vec<ScoredEvent>> {
        self.inner.experiment_scores(q).await
    }
    async fn reset(&self) -> StoreResult<()> {
        self.inner.reset().await
    }
    async fn prune(&self, before_s: i64) -> StoreResult<u64> {
        self.inner.prune(before_s).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn checkpoints(&self, p: &Partitions) -> StoreResult<ProjectorState> {
        self.inner.checkpoints(p).await
    }
    async fn bindings(&self) -> StoreResult<Vec<LogBinding>> {
        self.inner.bindings().await
    }
    async fn bind(&self, b: LogBinding) -> StoreResult<LogBinding> {
        self.inner.bind(b).await
    }
    async fn adopt(&self, a: &Adoption, w: u32) -> StoreResult<()> {
        self.inner.adopt(a, w).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_stops_at_an_unfinished_commit_before_going_on() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteEventLog::open(dir.path(), 64).unwrap());
    let events: Vec<UsageEvent> = (0..600)
        .map(|i| {
            event(
                i,
                i64::from(i % 90),
                (i % 3) as u8,
                u64::from(i) * 1000,
                (i % 20) as u8,
                (i % 10) as u8,
                i64::from(i) * 1000,
            )
        })
        .collect();
    // Records of 5 events: the projector's batch of 37 events would run past offset 13.
    let total = append_with_duplicates(log.as_ref(), &events, 5).await;
    let store = Arc::new(Unfinished {
        inner: SqliteAnalyticsStore::open(dir.path()).unwrap(),
        end: 13,
        loads: AtomicU64::new(0),
        ranges: std::sync::Mutex::new(Vec::new()),
    });
    project_until(log, store.clone(), total).await;
    let ranges = store.ranges.lock().unwrap().clone();
    assert!(
        ranges
            .iter()
            .all(|(base, next)| !(*base < 13 && *next > 13)),
        "no commit crosses the unfinished commit's end: {ranges:?}"
    );
    assert!(
        ranges.iter().any(|(_, next)| *next == 13),
        "a commit ends exactly there: {ranges:?}"
    );
    assert!(ranges.iter().any(|(base, _)| *base >= 13), "and it went on");
    assert_eq!(snapshot(store.as_ref()).await, expected(&events));
}
