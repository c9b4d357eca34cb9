//! Service tier: the analytics-store conformance suites against a real ClickHouse.
//! Run with `TALLY_TEST_CLICKHOUSE_URL=http://127.0.0.1:8123 cargo test -- --ignored`; with
//! `TALLY_TEST_CLICKHOUSE_CURRENT_URL` set too (ClickHouse 26.9 through chDB in CI), every test
//! runs against both.

/// Every ClickHouse to test against: `TALLY_TEST_CLICKHOUSE_URL` (Debian's 18.16 in CI) and,
/// when set, `TALLY_TEST_CLICKHOUSE_CURRENT_URL` (a current engine).
fn clickhouse_urls() -> Vec<String> {
    let mut urls = vec![std::env::var("TALLY_TEST_CLICKHOUSE_URL")
        .expect("TALLY_TEST_CLICKHOUSE_URL must point at ClickHouse's HTTP port")];
    match std::env::var("TALLY_TEST_CLICKHOUSE_CURRENT_URL") {
        Ok(current) => urls.push(current),
        Err(_) => eprintln!(
            "TALLY_TEST_CLICKHOUSE_CURRENT_URL is not set: only {} is tried",
            urls[0]
        ),
    }
    urls
}

/// A freshly migrated database `<prefix>_<random>` on `url`, and a store on it.
async fn migrated(url: &str, prefix: &str) -> (tally_storage::ClickHouseAnalyticsStore, String) {
    let database = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    tally_storage::analytics::clickhouse::migrate(&endpoint(url), &database)
        .await
        .expect("migrate");
    let store = tally_storage::ClickHouseAnalyticsStore::new(endpoint(url).client(&database));
    (store, database)
}

async fn drop_database(url: &str, database: &str) {
    endpoint(url)
        .server_client()
        .query(&format!("DROP DATABASE {database}"))
        .execute()
        .await
        .expect("drop");
}

#[tokio::test]
#[ignore = "service tier: needs TALLY_TEST_CLICKHOUSE_URL"]
async fn clickhouse_analytics_store_conforms() {
    for url in clickhouse_urls() {
        clickhouse_analytics_store_conforms_on(url).await;
    }
}

async fn clickhouse_analytics_store_conforms_on(url: String) {
    let (store, database) = migrated(&url, "tally_conformance").await;
    tally_conformance::analytics_store(&store).await;
    store.reset().await.expect("reset");
    tally_conformance::sealed_dedup(&store).await;

    // Raw events: a re-insert (crash between the raw insert and the projection commit)
    // collapses; retention drops whole days.
    use tally_domain::store::{AnalyticsStore, RawRecord};
    let client = endpoint(&url).client(&database);
    let day = 86_400_000_000i64;
    let base = 20_454 * day; // 2026-01-01
    let raw: Vec<RawRecord> = (0..10)
        .map(|i| {
            RawRecord::logged(
                i,
                0,
                vec![tally_schemas::UsageEvent {
                    event_id: format!("raw-{i}"),
                    occurred_at_us: base + (i % 2) * day + i * 1_000_000,
                    ..tally_schemas::UsageEvent::example()
                }],
            )
        })
        .collect();
    for _ in 0..2 {
        tally_storage::analytics::clickhouse::events::insert(&client, 0, &raw)
            .await
            .expect("insert");
    }
    assert_eq!(
        tally_storage::analytics::clickhouse::events::count(&client)
            .await
            .expect("count"),
        10
    );
    store.prune((base + day) / 1_000_000).await.expect("prune");
    assert_eq!(
        tally_storage::analytics::clickhouse::events::count(&client)
            .await
            .expect("count"),
        5,
        "the first day's partition is dropped, the second kept"
    );
    drop_database(&url, &database).await;
}

/// A commit whose rollup rows partly landed (the projector died between day inserts, before its
/// checkpoint) is reported on load, and finishing it — in one commit or several that stop at
/// its end — counts every event exactly once. A commit that runs past it is refused.
#[tokio::test]
#[ignore = "service tier: needs TALLY_TEST_CLICKHOUSE_URL"]
async fn an_unfinished_commit_is_finished_without_double_counting() {
    for url in clickhouse_urls() {
        an_unfinished_commit_is_finished_without_double_counting_on(url).await;
    }
}

async fn an_unfinished_commit_is_finished_without_double_counting_on(url: String) {
    use std::collections::BTreeMap;
    use tally_domain::rollup::{fold, Resolution};
    use tally_domain::store::{
        AnalyticsStore, PartitionCommit, PartitionState, Partitions, ProjectionCommit, ScanRequest,
        StoreError,
    };
    use tally_schemas::UsageEvent;

    let (store, database) = migrated(&url, "tally_unfinished").await;

    // 30 events on partition 0, offsets 0..30, spread over three UTC days, each feature
    // touched on every day.
    let base_s = 1_767_225_600i64; // 2026-01-01
    let events: Vec<UsageEvent> = (0..30i64)
        .map(|i| UsageEvent {
            event_id: format!("unfinished-{i}"),
            occurred_at_us: (base_s + (i % 3) * 86_400 + i * 60) * 1_000_000,
            feature: if i % 2 == 0 { "chatbot" } else { "search" }.into(),
            input_tokens: 100 + i as u64,
            latency_us: 1_000 * i as u64,
            user_id: Some(format!("user-{}", i % 7)),
            ..UsageEvent::example()
        })
        .collect();
    let commit = |from: usize, to: usize| ProjectionCommit {
        epoch: 0,
        partitions: [(
            0,
            PartitionCommit {
                base_offset: from as i64,
                deltas: fold(&events[from..to]),
                dedup_new: events[from..to]
                    .iter()
                    .map(|e| (tally_domain::event_fingerprint(&e.event_id), 1_000))
                    .collect(),
                dedup_horizon_s: 0,
                seals: Vec::new(),
                merged: Vec::new(),
                retired: Vec::new(),
                state: PartitionState {
                    next_offset: to as i64,
                    last_received_ms: 1_000_000,
                    events_applied: to as u64,
                    duplicates_dropped: 0,
                    anchor: to as u64,
                    dedup: Vec::new(),
                    generations: Vec::new(),
                },
                raw: Vec::new(),
                scores: Vec::new(),
            },
        )]
        .into_iter()
        .collect(),
    };

    store.commit(commit(0, 10)).await.expect("first commit");
    // The second commit dies after its first day's rollup rows landed.
    store.fail_next_commit_after_days(1);
    let failed = store.commit(commit(10, 20)).await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );

    let state = store
        .load_state(3_600, &Partitions::All)
        .await
        .expect("load");
    assert_eq!(
        state.partitions[&0].next_offset, 10,
        "the checkpoint did not move"
    );
    assert_eq!(
        state.unfinished,
        BTreeMap::from([(0, 20)]),
        "rows ahead of the checkpoint are reported"
    );
    let only_other = store
        .load_state(3_600, &Partitions::Only([1].into_iter().collect()))
        .await
        .expect("load");
    assert!(only_other.unfinished.is_empty());

    // An adoption would leave the unfinished commit half counted: refused, nothing changed.
    let another = tally_domain::log_binding::LogDescription {
        identity: tally_domain::log_binding::LogIdentity {
            name: "another".into(),
            id: Some("X".into()),
        },
        partitions: [(0, tally_domain::log_binding::Watermarks { low: 0, high: 5 })]
            .into_iter()
            .collect(),
    };
    let stored = BTreeMap::from([(0, 10)]);
    let verdict = tally_domain::log_binding::check(None, &stored, &another);
    let plan = tally_domain::log_binding::plan_adoption(
        &verdict,
        None,
        &stored,
        &another,
        chrono::Utc::now(),
    )
    .expect("plan");
    let refused = store.adopt(&plan, 3_600).await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("did not finish")),
        "{refused:?}"
    );
    assert!(store.bindings().await.expect("bindings").is_empty());

    // Running past the unfinished commit's end cannot tell what is included: refused.
    let refused = store.commit(commit(10, 25)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );

    // Finishing it in two commits that stop at its end, then going on.
    store.commit(commit(10, 15)).await.expect("commit to 15");
    store.commit(commit(15, 20)).await.expect("commit to 20");
    let state = store
        .load_state(3_600, &Partitions::All)
        .await
        .expect("load");
    assert!(state.unfinished.is_empty());
    assert_eq!(state.partitions[&0].next_offset, 20);
    store.commit(commit(20, 30)).await.expect("commit to 30");

    let rows = store
        .scan(ScanRequest::everything(&Resolution::STORED, true))
        .await
        .expect("scan");
    for resolution in Resolution::STORED {
        let of = |r: &&tally_domain::rollup::RollupRow| r.key.resolution == resolution;
        assert_eq!(
            rows.iter()
                .filter(of)
                .map(|r| r.rollup.requests)
                .sum::<u64>(),
            30,
            "{resolution:?}: every event once"
        );
        assert_eq!(
            rows.iter()
                .filter(of)
                .map(|r| r.rollup.input_tokens)
                .sum::<u64>(),
            (0..30).map(|i| 100 + i).sum::<u64>()
        );
    }
    let got: BTreeMap<_, _> = rows.into_iter().map(|r| (r.key, r.rollup)).collect();
    assert_eq!(got, fold(&events), "sketches included");

    // Retention drops whole days of rollups: the first day goes, the other two stay.
    store.prune(base_s + 86_400).await.expect("prune");
    let left = store
        .scan(ScanRequest::everything(&[Resolution::Day], false))
        .await
        .expect("scan");
    assert_eq!(
        left.iter().map(|r| r.rollup.requests).sum::<u64>(),
        20,
        "events of the 2nd and 3rd day"
    );

    // Rollup rows of the first schema (kind 0 rows of tally_projection) are moved over by
    // `migrate`, idempotently.
    let client = endpoint(&url).client(&database);
    for sql in [
        "INSERT INTO tally_projection (kind, resolution, feature, bucket, model, provider, environment, log_partition, version, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, unpriced, latency, users, payload) SELECT 0, resolution, feature, bucket, model, provider, environment, log_partition, version, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, unpriced, latency, users, '' FROM tally_rollups",
        "TRUNCATE TABLE tally_rollups",
    ] {
        client.query(sql).execute().await.expect(sql);
    }
    for _ in 0..2 {
        tally_storage::analytics::clickhouse::migrate(&endpoint(&url), &database)
            .await
            .expect("migrate");
    }
    let moved = store
        .scan(ScanRequest::everything(&[Resolution::Day], true))
        .await
        .expect("scan");
    assert_eq!(moved.len(), left.len());
    assert_eq!(moved.iter().map(|r| r.rollup.requests).sum::<u64>(), 20);

    drop_database(&url, &database).await;
}

/// A database migrated before rollups had prompt dimensions: `migrate` adds them, then the
/// experiment dimensions and the sum of squared costs (once), and rows already stored keep
/// their numbers with empty new fields. That rows of different
/// prompts stay apart on such a table (the dimensions are in the sorting key) is what the
/// conformance suite checks, on a table every fresh migration alters the same way.
#[tokio::test]
#[ignore = "service tier: needs TALLY_TEST_CLICKHOUSE_URL"]
async fn migrate_adds_the_prompt_dimensions_to_an_older_schema() {
    for url in clickhouse_urls() {
        migrate_adds_the_prompt_dimensions_to_an_older_schema_on(url).await;
    }
}

async fn migrate_adds_the_prompt_dimensions_to_an_older_schema_on(url: String) {
    let database = format!("tally_upgrade_{}", uuid::Uuid::new_v4().simple());
    let admin = endpoint(&url).server_client();
    admin
        .query(&format!("CREATE DATABASE {database}"))
        .execute()
        .await
        .expect("database");
    let client = endpoint(&url).client(&database);
    client
        .query(include_str!("../../migrations/clickhouse/0003_rollups.sql"))
        .execute()
        .await
        .expect("the older rollup table");
    client
        .query(
            "INSERT INTO tally_rollups (day, resolution, feature, bucket, model, provider, environment, log_partition, version, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, unpriced, latency, users)
             VALUES ('2026-01-01', 86400, 'chatbot', 1767225600, 'gpt-4o', 'openai', 'production', 0, 7, 7, 1, 0, 700, 70, 7, 0, '123', 0, '', '')",
        )
        .execute()
        .await
        .expect("an older row");
    for _ in 0..2 {
        tally_storage::analytics::clickhouse::migrate(&endpoint(&url), &database)
            .await
            .expect("migrate (twice: it is idempotent)");
    }
    let store = tally_storage::ClickHouseAnalyticsStore::new(client);
    tally_conformance::older_rollup_keeps_its_numbers(&store, false, ("", "")).await;
    drop_database(&url, &database).await;
}

#[tokio::test]
#[ignore = "service tier: needs TALLY_TEST_CLICKHOUSE_URL"]
async fn clickhouse_log_bindings_conform() {
    for url in clickhouse_urls() {
        let (store, database) = migrated(&url, "tally_bindings").await;
        tally_conformance::log_bindings(&store).await;
        drop_database(&url, &database).await;
    }
}

/// The endpoint of a test server's URL.
fn endpoint(url: &str) -> tally_storage::analytics::clickhouse::ClickHouseEndpoint {
    tally_storage::analytics::clickhouse::ClickHouseEndpoint::parse(url).expect("ClickHouse URL")
}
