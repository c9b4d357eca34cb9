//! The config-store conformance suite against the embedded (SQLite) store.

#[tokio::test]
async fn sqlite_config_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tally_storage::SqliteConfigStore::open(dir.path()).expect("open");
    tally_conformance::config_store(&store).await;
}

/// A trigger makes `audit_log` refuse inserts: every change must then fail and leave nothing.
#[tokio::test]
async fn sqlite_changes_fail_without_their_audit_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tally_storage::SqliteConfigStore::open(dir.path()).expect("open");
    let path = dir.path().join("config.db");
    let refuse = async move {
        let conn = rusqlite::Connection::open(path).expect("open config.db");
        conn.execute_batch(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
             BEGIN SELECT RAISE(ABORT, 'audit log refused'); END;",
        )
        .expect("trigger");
    };
    tally_conformance::changes_fail_without_their_audit_entry(&store, refuse).await;
}

#[tokio::test]
async fn sqlite_analytics_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tally_storage::SqliteAnalyticsStore::open(dir.path()).expect("open");
    tally_conformance::analytics_store(&store).await;
}

#[tokio::test]
async fn sqlite_sealed_dedup_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tally_storage::SqliteAnalyticsStore::open(dir.path()).expect("open");
    tally_conformance::sealed_dedup(&store).await;
}

#[tokio::test]
async fn sqlite_log_bindings_conform() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tally_storage::SqliteAnalyticsStore::open(dir.path()).expect("open");
    tally_conformance::log_bindings(&store).await;
}

/// Retention deletes the log's records received before the cutoff in bounded steps (so appends
/// wait for one step at most): across several steps it deletes exactly those, and not one record
/// received after the cutoff.
#[tokio::test]
async fn sqlite_log_prune_deletes_exactly_the_records_before_the_cutoff_in_steps() {
    use std::time::Duration;
    use tally_domain::store::{EventLog, LogPosition};
    let dir = tempfile::tempdir().expect("tempdir");
    let log = tally_storage::SqliteEventLog::open(dir.path(), 8).expect("open");
    for i in 0..700 {
        log.append(vec![sample(i)]).await.expect("append");
    }
    // Every record so far was stamped at or before `cutoff`; the next ones after it.
    let cutoff = chrono::Utc::now().timestamp_millis() + 1;
    tokio::time::sleep(Duration::from_millis(5)).await;
    for i in 700..750 {
        log.append(vec![sample(i)]).await.expect("append");
    }
    let everything = LogPosition([(0, 750)].into_iter().collect());
    assert_eq!(log.prune(cutoff, &everything).await.expect("prune"), 700);
    assert_eq!(log.prune(cutoff, &everything).await.expect("prune"), 0);
    let left = log
        .read(&LogPosition::default(), 1000, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(
        left.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (700..750).collect::<Vec<_>>()
    );
}

/// Retention deletes the drill-down's events, the scores and the experiment events of the days
/// before the cutoff in bounded steps: 300 chunks and 300 scores of the first day (more than one
/// step) and its 100 experiment events (fewer than one) all go; the second day's all stay.
#[tokio::test]
async fn sqlite_event_prune_deletes_whole_days_in_steps() {
    use tally_domain::drilldown::{EventFilter, EventQuery};
    use tally_domain::store::{
        AnalyticsStore, PartitionCommit, PartitionState, ProjectionCommit, RawRecord, RawScore,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tally_storage::SqliteAnalyticsStore::open(dir.path()).expect("open");
    let day = 1_767_225_600; // 2026-01-01T00:00:00Z
                             // One event per feature and day: each is a chunk of its own.
    let raw: Vec<RawRecord> = (0..600)
        .map(|i| {
            RawRecord::logged(
                i,
                0,
                vec![tally_schemas::UsageEvent {
                    event_id: format!("e{i}"),
                    feature: format!("f{}", i % 300),
                    occurred_at_us: (day + (i / 300) * 86_400 + 60) * 1_000_000,
                    // A hundred events of each day are in an experiment.
                    experiment_id: (i % 300 < 100).then(|| "x".to_string()),
                    variant: (i % 300 < 100).then(|| "a".to_string()),
                    ..tally_schemas::UsageEvent::example()
                }],
            )
        })
        .collect();
    // One score per event, received on the event's day.
    let scores: Vec<RawScore> = (0..600)
        .map(|i| RawScore {
            score: tally_schemas::Score::number(&format!("s{i}"), &format!("e{i}"), "q", 1),
            offset: i,
            position: 0,
            received_at_ms: (day + (i / 300) * 86_400 + 60) * 1_000,
        })
        .collect();
    store
        .commit(ProjectionCommit {
            epoch: 0,
            partitions: [(
                0,
                PartitionCommit {
                    base_offset: 0,
                    deltas: Default::default(),
                    dedup_new: Vec::new(),
                    dedup_horizon_s: 0,
                    seals: Vec::new(),
                    merged: Vec::new(),
                    retired: Vec::new(),
                    state: PartitionState {
                        next_offset: 600,
                        last_received_ms: 0,
                        events_applied: 600,
                        duplicates_dropped: 0,
                        anchor: 1,
                        dedup: Vec::new(),
                        generations: Vec::new(),
                    },
                    raw,
                    scores,
                },
            )]
            .into_iter()
            .collect(),
        })
        .await
        .expect("commit");
    let db = dir.path().join("analytics.db");
    let rows = |table: &str| {
        rusqlite::Connection::open(&db)
            .expect("open")
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .expect("count")
    };
    assert_eq!((rows("scores"), rows("experiment_events")), (600, 200));
    let count = |from_s: i64| {
        let store = &store;
        async move {
            store
                .events(&EventQuery {
                    filter: EventFilter::default(),
                    from_us: from_s * 1_000_000,
                    to_us: (from_s + 86_400) * 1_000_000,
                    after: None,
                    limit: 1_000,
                })
                .await
                .expect("events")
                .len()
        }
    };
    assert_eq!((count(day).await, count(day + 86_400).await), (300, 300));
    // A cutoff an hour into the second day: the first day ended before it.
    store.prune(day + 86_400 + 3_600).await.expect("prune");
    assert_eq!((count(day).await, count(day + 86_400).await), (0, 300));
    assert_eq!((rows("scores"), rows("experiment_events")), (300, 100));
}

/// Retention never deletes what the projector has not consumed, nor the newest record.
#[tokio::test]
async fn sqlite_log_prune_keeps_unconsumed_and_newest_records() {
    use std::time::Duration;
    use tally_domain::store::{EventLog, LogPosition};
    let dir = tempfile::tempdir().expect("tempdir");
    let log = tally_storage::SqliteEventLog::open(dir.path(), 8).expect("open");
    for i in 0..5 {
        log.append(vec![sample(i)]).await.expect("append");
    }
    let far_future = chrono::Utc::now().timestamp_millis() + 86_400_000;
    let consumed = LogPosition([(0, 3)].into_iter().collect());
    assert_eq!(
        log.prune(far_future, &consumed).await.expect("prune"),
        3,
        "offsets 0..3 were consumed"
    );
    let everything = LogPosition([(0, 5)].into_iter().collect());
    assert_eq!(
        log.prune(far_future, &everything).await.expect("prune"),
        1,
        "the newest record always stays"
    );
    let left = log
        .read(&LogPosition::default(), 100, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(left.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![4]);
    drop(log);
    let reopened = tally_storage::SqliteEventLog::open(dir.path(), 8).expect("reopen");
    assert_eq!(
        reopened.appended_events(),
        5,
        "the head survives pruning and restarts"
    );
    let receipt = reopened.append(vec![sample(9)]).await.expect("append");
    assert_eq!(receipt.offset, 5, "offsets continue, never restart");
}

fn sample(i: u32) -> tally_schemas::UsageEvent {
    use tally_schemas::event::{Cost, Operation, Status};
    tally_schemas::UsageEvent {
        event_id: format!("prune-{i}"),
        occurred_at_us: 1_767_225_600_000_000,
        feature: "f".into(),
        model: "m".into(),
        provider: "p".into(),
        environment: tally_schemas::Environment::Production,
        operation: Operation::Chat,
        status: Status::Success,
        latency_us: 1,
        input_tokens: 1,
        output_tokens: 1,
        cached_input_tokens: 0,
        cost: Cost::Unpriced,
        ..tally_schemas::UsageEvent::example()
    }
}

/// Data directories written while sketches were kept in the rollup row: opening one moves
/// them to their own table, each still with its row and its own sums and dimensions (four rows,
/// three resolutions, two days, sketches built here by hand). Retention and reset then remove
/// sketches with their rows, and a row whose sketch went missing is an error, never left out.
#[tokio::test]
async fn sqlite_analytics_store_moves_inline_sketches_to_their_table() {
    use tally_domain::hll::Hll;
    use tally_domain::rollup::Resolution;
    use tally_domain::sketch::LatencySketch;
    use tally_domain::store::{AnalyticsStore, ScanRequest, StoreError};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("analytics.db");
    let sketch = |n: u64| {
        let mut latency = LatencySketch::new();
        let mut users = Hll::new();
        for i in 0..n {
            latency.insert(1_000 * (i + 1));
            users.insert(&format!("user-{i}"));
        }
        let (mut l, mut u) = (Vec::new(), Vec::new());
        latency.encode(&mut l);
        users.encode(&mut u);
        (l, u)
    };
    let day = 1_767_225_600;
    let rows: Vec<tally_conformance::SketchedRow> = [
        (Resolution::Minute, day + 60, 3),
        (Resolution::Hour, day, 40),
        (Resolution::Day, day, 2_000),
        (Resolution::Day, day + 86_400, 5),
    ]
    .into_iter()
    .map(|(res, bucket, n)| {
        let (l, u) = sketch(n);
        (res, bucket, n, l, u)
    })
    .collect();
    // Each row's other columns, distinct per row: (errors, cost, cost squares, unpriced,
    // experiment, variant), all derived from n.
    let others = |n: u64| {
        (
            n / 2,
            i128::from(n) * 7,
            u128::from(n) * 49,
            1u64,
            format!("exp-{n}"),
            format!("v{n}"),
        )
    };
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.execute_batch(
            "CREATE TABLE rollups (resolution INTEGER NOT NULL, feature TEXT NOT NULL,
                bucket INTEGER NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
                environment TEXT NOT NULL, prompt_id TEXT NOT NULL, prompt_version TEXT NOT NULL,
                experiment_id TEXT NOT NULL, variant TEXT NOT NULL, requests INTEGER NOT NULL,
                errors INTEGER NOT NULL, timeouts INTEGER NOT NULL, latency_sum_us INTEGER NOT NULL,
                input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
                cached_input_tokens INTEGER NOT NULL, cost_pico BLOB NOT NULL,
                cost_squares BLOB NOT NULL, unpriced INTEGER NOT NULL, latency BLOB NOT NULL,
                users BLOB NOT NULL,
                PRIMARY KEY (resolution, feature, bucket, model, provider, environment, prompt_id,
                    prompt_version, experiment_id, variant)) WITHOUT ROWID;
             CREATE INDEX rollups_by_time ON rollups (resolution, bucket);",
        )
        .expect("the older table");
        for (res, bucket, n, l, u) in &rows {
            let (errors, cost, squares, unpriced, experiment, variant) = others(*n);
            conn.execute(
                "INSERT INTO rollups VALUES (?1, 'chatbot', ?2, 'gpt-4o', 'openai', 'production', '', '', ?3, ?4, ?5, ?6, 0, 0, 0, 0, 0, ?7, ?8, ?9, ?10, ?11)",
                rusqlite::params![
                    res.seconds(),
                    bucket,
                    experiment,
                    variant,
                    *n as i64,
                    errors as i64,
                    &cost.to_le_bytes()[..],
                    &squares.to_le_bytes()[..],
                    unpriced as i64,
                    l,
                    u
                ],
            )
            .expect("an older row");
        }
    }
    let all = [Resolution::Minute, Resolution::Hour, Resolution::Day];
    for _ in 0..2 {
        let store = tally_storage::SqliteAnalyticsStore::open(dir.path()).expect("open");
        tally_conformance::inline_sketches_survive(&store, &rows).await;
        let mut got: Vec<_> = AnalyticsStore::scan(&store, ScanRequest::everything(&all, false))
            .await
            .expect("sums")
            .into_iter()
            .map(|r| {
                let d = r.key.dims;
                (
                    r.rollup.requests,
                    (
                        r.rollup.errors,
                        r.rollup.cost.0,
                        r.rollup.cost_squares,
                        r.rollup.unpriced,
                        d.experiment_id,
                        d.variant,
                    ),
                )
            })
            .collect();
        got.sort_by_key(|g| g.0);
        let mut want: Vec<_> = rows.iter().map(|r| (r.2, others(r.2))).collect();
        want.sort_by_key(|w| w.0);
        assert_eq!(got, want, "every row keeps its own sums and dimensions");
    }
    let store = tally_storage::SqliteAnalyticsStore::open(dir.path()).expect("open");
    let store: &dyn AnalyticsStore = &store;
    let counts = || {
        let conn = rusqlite::Connection::open(&db).expect("open");
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect(sql);
        (
            count("SELECT count(*) FROM rollups"),
            count("SELECT count(*) FROM rollup_sketches"),
            count("SELECT count(*) FROM rollups JOIN rollup_sketches ON rollup_sketches.id = rollups.sketch_id"),
        )
    };
    assert_eq!(counts(), (4, 4, 4));
    // Retention of the first day takes its three rows and their sketches, nothing else.
    store.prune(day + 86_400).await.expect("prune");
    assert_eq!(
        counts(),
        (1, 1, 1),
        "rows, sketches, rows with their sketch"
    );
    // A row whose sketch went missing is an error when sketches are asked for, never a row
    // silently left out; its sums are still there.
    rusqlite::Connection::open(&db)
        .expect("open")
        .execute("DELETE FROM rollup_sketches", [])
        .expect("lose a sketch");
    let with = store.scan(ScanRequest::everything(&all, true)).await;
    assert!(
        matches!(with, Err(StoreError::Corrupt(ref m)) if m.contains("latency")),
        "{with:?}"
    );
    let without = store
        .scan(ScanRequest::everything(&all, false))
        .await
        .expect("sums");
    assert_eq!(without.iter().map(|r| r.rollup.requests).sum::<u64>(), 5);
    store.reset().await.expect("reset");
    assert_eq!(counts(), (0, 0, 0));
}

/// Data directories written before rollups had prompt dimensions, and before they had
/// experiment dimensions and the sum of squared costs: opening one rebuilds the rollup table
/// in the current layout; the row keeps its numbers, with empty new dimensions.
#[tokio::test]
async fn sqlite_analytics_store_upgrades_rollups_of_earlier_layouts() {
    let empty = tally_domain::rollup::Rollup::default();
    let cost = 123i128.to_le_bytes();
    let measures = "requests INTEGER NOT NULL, errors INTEGER NOT NULL, timeouts INTEGER NOT NULL,
                latency_sum_us INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL, cached_input_tokens INTEGER NOT NULL,
                cost_pico BLOB NOT NULL, unpriced INTEGER NOT NULL, latency BLOB NOT NULL,
                users BLOB NOT NULL";
    let dims = "resolution INTEGER NOT NULL, feature TEXT NOT NULL, bucket INTEGER NOT NULL,
                model TEXT NOT NULL, provider TEXT NOT NULL, environment TEXT NOT NULL";
    let layouts = [
        (
            format!("CREATE TABLE rollups ({dims}, {measures},
                PRIMARY KEY (resolution, feature, bucket, model, provider, environment)) WITHOUT ROWID"),
            "INSERT INTO rollups VALUES (86400, 'chatbot', 1767225600, 'gpt-4o', 'openai', 'production', 7, 1, 0, 700, 70, 7, 0, ?1, 0, ?2, ?3)",
            ("", ""),
        ),
        (
            format!("CREATE TABLE rollups ({dims}, prompt_id TEXT NOT NULL, prompt_version TEXT NOT NULL, {measures},
                PRIMARY KEY (resolution, feature, bucket, model, provider, environment, prompt_id, prompt_version)) WITHOUT ROWID"),
            "INSERT INTO rollups VALUES (86400, 'chatbot', 1767225600, 'gpt-4o', 'openai', 'production', 'greeter', '2', 7, 1, 0, 700, 70, 7, 0, ?1, 0, ?2, ?3)",
            ("greeter", "2"),
        ),
    ];
    for (table, row, prompt) in layouts {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let conn = rusqlite::Connection::open(dir.path().join("analytics.db")).expect("open");
            conn.execute_batch(&format!(
                "{table}; CREATE INDEX rollups_by_time ON rollups (resolution, bucket);"
            ))
            .expect("the older table");
            conn.execute(
                row,
                rusqlite::params![&cost[..], empty.encode_latency(), empty.encode_users()],
            )
            .expect("an older row");
        }
        for _ in 0..2 {
            let store = tally_storage::SqliteAnalyticsStore::open(dir.path()).expect("open");
            tally_conformance::older_rollup_keeps_its_numbers(&store, true, prompt).await;
        }
    }
}
