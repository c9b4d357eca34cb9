//! A new or recreated Kafka topic against an analytics store that projected another one
//! (librdkafka's mock cluster, the SQLite analytics store): the projector refuses to read and
//! says why and what to do (`/readyz`); each documented way out leaves exact counts, checked
//! against the events sent. (Another topic then `tally adopt-topic`: `tally/tests/topic_switch.rs`.)
//! - the same topic name on a new cluster (a recreated topic, with more messages than were
//!   projected, so only its id tells), then `tally rebuild --start-clean`: the new topic alone;
//! - a broker that reports no topic ids: the same topic resumes; a recreated one is refused
//!   when it holds fewer messages than were projected, and when it holds more (the records at
//!   the checkpoints differ);
//! - two projectors of one consumer group on another topic both refuse, read after the
//!   adoption, and refuse again when the store adopts a third topic while they run; while
//!   they refuse they keep serving their group (a member joins and leaves);
//! - `tally rebuild` refuses to drop another topic's counts.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::topics::*;
use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaApiKey;
use tally::Stores;
use tally_domain::store::{AnalyticsStore, EventLog, Partitions};
use tally_projector::{Projector, ProjectorConfig, ProjectorStatus};
use tally_storage::SqliteAnalyticsStore;
use tally_storage::{KafkaLog, KafkaSettings};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_is_refused_by_its_id_and_a_clean_start_counts_it_alone() {
    let _dog = Watchdog::new(
        "a_recreated_topic_is_refused_by_its_id_and_a_clean_start_counts_it_alone",
        Duration::from_secs(240),
    );
    let dir = tempfile::tempdir().unwrap();
    let group = format!("g-{}", uuid::Uuid::new_v4().simple());
    let first = MockCluster::new(1).unwrap();
    first.create_topic("usage", 3, 1).unwrap();
    let on_first = kafka(dir.path(), &first.bootstrap_servers(), "usage", &group);
    let events_1 = corpus(600, 81);
    let app = TestApp::start_with(on_first).await;
    seed_config(&app.stores).await;
    send(&app, &events_1).await;
    app.wait_consumed(600).await;
    app.stop().await;

    // The topic deleted and created again (here: a new cluster, as after a migration or a
    // restore), and filled with more messages than were projected: only its id tells.
    let second = MockCluster::new(1).unwrap();
    second.create_topic("usage", 3, 1).unwrap();
    let on_second = kafka(dir.path(), &second.bootstrap_servers(), "usage", &group);
    let events_2 = corpus(1_800, 82);
    let app = TestApp::start_with(on_second.clone()).await;
    send(&app, &events_2).await;
    let body = refusal(&app).await;
    let message = body["pipeline"]["checkpoint_mismatch"].as_str().unwrap();
    assert_names(
        message,
        &["log \"usage\" was recreated", "tally rebuild --start-clean"],
    );
    app.stop().await;

    let stores = Stores::open(&on_second).await.unwrap();
    let report = tally::projection::rebuild(&stores, &on_second, true)
        .await
        .unwrap();
    assert_eq!(report.events_applied, 1_800);
    let audit = stores
        .config
        .list_audit(&tally_domain::store::AuditQuery::newest(10))
        .await
        .unwrap();
    assert!(
        audit.iter().any(|e| e.action == "projection.start_clean"),
        "the clean start is audited: {audit:?}"
    );
    drop(stores);
    let app = TestApp::start_with(on_second).await;
    app.wait_projected().await;
    let only_second: Vec<&Sent> = events_2.iter().collect();
    assert_eq!(counted(&app).await, expected(&only_second));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_topic_ids_the_last_projected_records_tell_a_recreated_topic() {
    let _dog = Watchdog::new(
        "without_topic_ids_the_last_projected_records_tell_a_recreated_topic",
        Duration::from_secs(240),
    );
    let dir = tempfile::tempdir().unwrap();
    let group = format!("g-{}", uuid::Uuid::new_v4().simple());
    // Metadata before version 10 carries no topic ids (brokers before Kafka 2.8).
    let old_broker = |topic: &str| {
        let cluster = MockCluster::new(1).unwrap();
        cluster
            .apiversion(RDKafkaApiKey::Metadata, None, Some(9))
            .unwrap();
        cluster.create_topic(topic, 2, 1).unwrap();
        cluster
    };
    let first = old_broker("usage");
    let on_first = kafka(dir.path(), &first.bootstrap_servers(), "usage", &group);
    let app = TestApp::start_with(on_first.clone()).await;
    seed_config(&app.stores).await;
    send(&app, &corpus(400, 91)).await;
    app.wait_consumed(400).await;
    let bindings = app.stores.analytics.bindings().await.unwrap();
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].log.id, None, "the broker reported no id");
    app.stop().await;

    // The same topic again: its records at the checkpoints are the ones projected.
    let app = TestApp::start_with(on_first).await;
    send(&app, &corpus(40, 92)).await;
    app.wait_consumed(440).await;
    app.stop().await;

    let counted_before = {
        let on_first = kafka(dir.path(), &first.bootstrap_servers(), "usage", &group);
        let app = TestApp::start_with(on_first).await;
        app.wait_projected().await;
        let c = counted(&app).await;
        app.stop().await;
        c
    };

    // Recreated with fewer messages than were projected: beyond the end.
    let second = old_broker("usage");
    let on_second = kafka(dir.path(), &second.bootstrap_servers(), "usage", &group);
    let app = TestApp::start_with(on_second).await;
    send(&app, &corpus(40, 93)).await;
    let body = refusal(&app).await;
    let message = body["pipeline"]["checkpoint_mismatch"].as_str().unwrap();
    assert_names(
        message,
        &[
            "\"usage\" (no id reported)",
            "but its end is",
            "tally adopt-topic",
        ],
    );
    app.stop().await;

    // Recreated and already holding more than was projected in every partition: the records
    // at the checkpoints are other ones.
    let third = old_broker("usage");
    let elsewhere = tempfile::tempdir().unwrap();
    let producer = TestApp::start_with(kafka_settings(
        elsewhere.path(),
        &third.bootstrap_servers(),
        "usage",
    ))
    .await;
    send(&producer, &corpus(1_200, 94)).await;
    producer.stop().await;
    let on_third = kafka(dir.path(), &third.bootstrap_servers(), "usage", &group);
    let app = TestApp::start_with(on_third.clone()).await;
    let body = refusal(&app).await;
    let message = body["pipeline"]["checkpoint_mismatch"].as_str().unwrap();
    assert_names(
        message,
        &["holds another record at offset", "it was recreated"],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        counted(&app).await,
        counted_before,
        "nothing of the recreated topic was counted"
    );
    app.stop().await;
    let stores = Stores::open(&on_third).await.unwrap();
    let plan = tally::projection::adopt_topic(&stores, &on_third)
        .await
        .unwrap();
    assert_eq!(plan.adopted.epoch, 1);
}

fn kafka_log(brokers: &str, topic: &str, group: &str) -> Arc<dyn EventLog> {
    let mut k = KafkaSettings::new(brokers, topic);
    k.group_id = group.to_string();
    k.limits.retention = chrono::Duration::days(36_500);
    Arc::new(KafkaLog::new(k, Arc::new(tally_domain::clock::SystemClock)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projectors_of_one_group_refuse_another_topic_at_every_session() {
    let dog = Watchdog::new(
        "projectors_of_one_group_refuse_another_topic_at_every_session",
        Duration::from_secs(240),
    );
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["old", "new", "newer"] {
        cluster.create_topic(topic, 4, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn AnalyticsStore> = Arc::new(SqliteAnalyticsStore::open(dir.path()).unwrap());
    let config = ProjectorConfig {
        max_batch_events: 200,
        idle_wait: Duration::from_millis(100),
        log_check_every: Duration::from_millis(300),
        ..ProjectorConfig::default()
    };
    let events = |prefix: &str, n: u64| -> Vec<tally_schemas::UsageEvent> {
        (0..n)
            .map(|i| tally_schemas::UsageEvent {
                event_id: format!("{prefix}-{i}"),
                occurred_at_us: 1_767_225_600_000_000 + i as i64 * 1_000_000,
                input_tokens: i,
                ..tally_schemas::UsageEvent::example()
            })
            .collect()
    };
    let totals = || async {
        let rows = store
            .scan(tally_domain::store::ScanRequest::everything(
                &[tally_domain::rollup::Resolution::Day],
                false,
            ))
            .await
            .unwrap();
        (
            rows.iter().map(|r| r.rollup.requests).sum::<u64>(),
            rows.iter().map(|r| r.rollup.input_tokens).sum::<u64>(),
        )
    };
    // The store projects topic "old" to its end.
    dog.stage("project the old topic");
    let old_log = kafka_log(&brokers, "old", "old-group");
    old_log.append(events("old", 800)).await.unwrap();
    tally_projector::rebuild(old_log.clone(), store.clone(), config.clone())
        .await
        .unwrap();
    drop(old_log);

    // Two members of a group on topic "new": neither reads.
    dog.stage("two members refuse the new topic");
    let producer = kafka_log(&brokers, "new", "unused");
    producer.append(events("new", 1_200)).await.unwrap();
    let group = format!("g-{}", uuid::Uuid::new_v4().simple());
    let start = || {
        let log = kafka_log(&brokers, "new", &group);
        let (projector, status) = Projector::new(log.clone(), store.clone(), config.clone());
        let (stop, stop_rx) = watch::channel(false);
        (tokio::spawn(projector.run(stop_rx)), stop, status, log)
    };
    let members = [start(), start()];
    let all_refuse = |members: &[(_, _, watch::Receiver<ProjectorStatus>, _)]| {
        members
            .iter()
            .all(|(_, _, status, _)| status.borrow().checkpoint_mismatch.is_some())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !all_refuse(&members) {
        assert!(Instant::now() < deadline, "both members should refuse");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (_, _, status, _) in &members {
        assert_eq!(status.borrow().events_consumed(), 0);
    }
    assert_eq!(totals().await, (800, (0..800).sum()));

    // Adopted while they wait: they take it up at their next check, split the partitions and
    // count every event of the new topic once.
    dog.stage("adopt the new topic, the group reads it");
    let plan = tally_projector::plan_adoption(producer.as_ref(), store.as_ref())
        .await
        .unwrap();
    store.adopt(&plan, 86_400).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = store.load_state(86_400, &Partitions::All).await.unwrap();
        if state.events_applied() >= 1_200 {
            assert_eq!(state.events_applied(), 1_200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not read the new topic"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let want = (2_000, (0..800).sum::<u64>() + (0..1_200).sum::<u64>());
    assert_eq!(
        totals().await,
        want,
        "800 of the old topic, 1,200 of the new"
    );
    for (_, _, status, _) in &members {
        assert!(status.borrow().checkpoint_mismatch.is_none());
        assert!(
            status.borrow().events_consumed() > 0,
            "both members read part of the topic"
        );
    }

    // The store adopts a third topic while the members run: whatever they are assigned at
    // their next session (a member joining forces a rebalance), they refuse, and what reaches
    // their topic now is not counted.
    dog.stage("adopt a third topic while the members run");
    let newer = kafka_log(&brokers, "newer", "unused");
    newer.append(events("newer", 10)).await.unwrap();
    let plan = tally_projector::plan_adoption(newer.as_ref(), store.as_ref())
        .await
        .unwrap();
    store.adopt(&plan, 86_400).await.unwrap();
    let joiner = kafka_log(&brokers, "new", &group);
    let _ = joiner
        .read(
            &tally_domain::store::LogPosition::default(),
            1,
            Duration::from_secs(2),
        )
        .await;
    producer.append(events("late", 300)).await.unwrap();
    dog.stage("both members refuse the third topic");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !all_refuse(&members) {
        assert!(
            Instant::now() < deadline,
            "both members should refuse the re-bound store"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        totals().await,
        want,
        "nothing of topic new counted any more"
    );
    assert_eq!(
        store
            .checkpoints(&Partitions::All)
            .await
            .unwrap()
            .position()
            .0,
        (0..4).map(|p| (p, 0)).collect(),
        "the third topic's checkpoints are untouched"
    );
    dog.stage("close the joiner");
    drop(joiner);

    // Refusing members keep serving their group (a rebalance waits for every member): one
    // joining is given its share while they keep theirs, and when it leaves they take its
    // share back. A member that stopped polling would be dropped from the group instead.
    dog.stage("a member joins the refusing group");
    let owned = |log: &Arc<dyn EventLog>| match log.ownership().borrow().partitions.clone() {
        Partitions::Only(owned) => owned,
        Partitions::All => panic!("a group member owns what it is assigned"),
    };
    let split = |logs: &[&Arc<dyn EventLog>]| {
        let shares: Vec<_> = logs.iter().map(|log| owned(log)).collect();
        let all: std::collections::BTreeSet<i32> = shares.iter().flatten().copied().collect();
        let whole = all == (0..4).collect() && shares.iter().map(|s| s.len()).sum::<usize>() == 4;
        (whole && shares.iter().all(|s| !s.is_empty()), shares)
    };
    let newcomer = kafka_log(&brokers, "new", &group);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = newcomer
            .read(
                &tally_domain::store::LogPosition::default(),
                1,
                Duration::from_millis(200),
            )
            .await;
        let (shared, shares) = split(&[&newcomer, &members[0].3, &members[1].3]);
        if shared {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the joining member and both refusing members should share the 4 partitions: {shares:?}"
        );
    }
    dog.stage("the member leaves the refusing group");
    drop(newcomer);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (shared, shares) = split(&[&members[0].3, &members[1].3]);
        if shared {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refusing members should take the 4 partitions back: {shares:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(all_refuse(&members));
    assert_eq!(totals().await, want, "still nothing of topic new counted");

    for (task, stop, _, log) in members {
        dog.stage("stop a member");
        stop.send(true).unwrap();
        task.await.unwrap();
        dog.stage("drop a member's log");
        let dropping = Instant::now();
        drop(log);
        eprintln!("a member's log dropped in {:?}", dropping.elapsed());
    }
}
