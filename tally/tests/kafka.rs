//! What only the Kafka event log has, on librdkafka's in-process mock cluster (real Kafka
//! protocol over loopback). The log's own semantics (appends, reads from a position, identity)
//! are the event-log conformance suite's (`conformance/tests/log_conformance.rs`), run against
//! both logs; here: the whole application answers the same through either log; projectors in
//! one consumer group split the partitions and count every event exactly once across a member
//! leaving; consumer lag is the brokers' high watermarks less the position; with the brokers
//! down ingest answers 503 and acknowledges nothing.
//! Its own test executable (not one of `app/`'s modules): it reads the process-wide
//! `tally_projector_lag_events` gauge, which other tests' projectors would move.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::mocking::MockCluster;
use tally_domain::clock::SystemClock;
use tally_domain::rollup::Resolution;
use tally_domain::store::{AnalyticsStore, EventLog, LogPosition, Partitions, ScanRequest};
use tally_projector::{Projector, ProjectorConfig};
use tally_schemas::event::{Cost, Status};
use tally_schemas::UsageEvent;
use tally_storage::SqliteAnalyticsStore;
use tally_storage::{KafkaLog, KafkaSettings};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_log_gives_the_same_answers_as_the_embedded_log() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("usage", 4, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let events = corpus(3000, 21);
    let sent = sent_with_duplicates(events.len());
    let mut results = Vec::new();
    for kafka in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let s = if kafka {
            kafka_settings(dir.path(), &brokers, "usage")
        } else {
            settings(dir.path())
        };
        let app = TestApp::start_with(s).await;
        seed_config(&app.stores).await;
        send_with_duplicates(&app, &events, 400).await;
        app.wait_consumed(sent).await;
        results.push(serde_json::json!(answers(&app).await));
        if kafka {
            // Everything is projected: the exported consumer lag says so.
            assert_eq!(
                app.metric("tally_projector_lag_events").await.as_deref(),
                Some("tally_projector_lag_events 0"),
                "lag gauge after catching up"
            );
        }
        app.stop().await;
    }
    assert!(
        results[0] == results[1],
        "answers differ: {}",
        first_difference(&results[0], &results[1], String::new())
    );
    let requests = results[1][0]["realtime"]["total_requests"].clone();
    assert!(
        requests.as_u64().unwrap_or(0) > 0,
        "the comparison covered real traffic: {}",
        results[1][0]
    );
}

fn event(i: u64) -> UsageEvent {
    UsageEvent {
        event_id: format!("group-{i}"),
        occurred_at_us: (1_767_225_600 + (i % 5000) as i64) * 1_000_000,
        feature: ["chatbot", "search", "photo-tagging"][(i % 3) as usize].into(),
        model: "gpt-4o".into(),
        provider: "openai".into(),
        status: if i.is_multiple_of(17) {
            Status::Error
        } else {
            Status::Success
        },
        latency_us: 1_000 + i * 7,
        input_tokens: i % 1000,
        output_tokens: i % 100,
        cost: Cost::Computed(i as i64 * 1_001),
        user_id: Some(format!("u{}", i % 50)),
        ..UsageEvent::example()
    }
}

fn kafka_log(brokers: &str, topic: &str, group: &str) -> Arc<dyn EventLog> {
    let mut k = KafkaSettings::new(brokers, topic);
    k.group_id = group.to_string();
    k.limits.retention = chrono::Duration::days(36_500);
    Arc::new(KafkaLog::new(k, Arc::new(SystemClock)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_is_the_high_watermarks_less_the_position() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("lag", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer = kafka_log(&brokers, "lag", "unused");
    producer
        .append((0..600).map(event).collect())
        .await
        .unwrap();
    let group = format!("g-{}", uuid::Uuid::new_v4().simple());
    let consumer = kafka_log(&brokers, "lag", &group);

    // Read everything, remembering where the first read left off.
    let mut position = LogPosition::default();
    let mut first: Option<(LogPosition, u64)> = None;
    let mut read = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read < 600 {
        for r in consumer
            .read(&position, 100, Duration::from_millis(500))
            .await
            .unwrap()
        {
            position.0.insert(r.partition, r.offset + 1);
            read += r.events.len() as u64;
        }
        if first.is_none() && read > 0 {
            first = Some((position.clone(), read));
        }
        assert!(Instant::now() < deadline, "read only {read} of 600");
    }
    assert_eq!(read, 600);
    let (first, first_read) = first.unwrap();
    assert!(first_read < 600);

    // The brokers' high watermarks arrive with librdkafka's statistics (every 2 s, served
    // while the consumer polls): then the lag from any position is exact.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        consumer
            .read(&position, 100, Duration::from_millis(200))
            .await
            .unwrap();
        let lags = (
            consumer.lag(&LogPosition::default()),
            consumer.lag(&first),
            consumer.lag(&position),
        );
        if lags == (Some(600), Some(600 - first_read), Some(0)) {
            break;
        }
        assert!(Instant::now() < deadline, "lag never settled: {lags:?}");
    }
    // What the projector exports as tally_projector_lag_events.
    assert_eq!(consumer.backlog(&first, first_read), 600 - first_read);
    assert_eq!(consumer.backlog(&position, 600), 0);
}

async fn totals(store: &dyn AnalyticsStore) -> (u64, u64, i128) {
    let rows = store
        .scan(ScanRequest::everything(&[Resolution::Day], false))
        .await
        .unwrap();
    rows.iter().fold((0, 0, 0), |(r, t, c), row| {
        (
            r + row.rollup.requests,
            t + row.rollup.input_tokens,
            c + row.rollup.cost.0,
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projectors_in_one_group_split_partitions_and_count_each_event_once() {
    let cluster = MockCluster::new(2).unwrap();
    cluster.create_topic("split", 6, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let group = format!("g-{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn AnalyticsStore> = Arc::new(SqliteAnalyticsStore::open(dir.path()).unwrap());
    let producer = kafka_log(&brokers, "split", "unused");

    // 12,000 distinct events, every 10th sent twice (same key, same partition).
    let distinct: Vec<UsageEvent> = (0..12_000).map(event).collect();
    let mut stream: Vec<UsageEvent> = Vec::new();
    for e in &distinct {
        stream.push(e.clone());
        if e.latency_us.is_multiple_of(10) {
            stream.push(e.clone());
        }
    }
    let want = (
        distinct.len() as u64,
        distinct.iter().map(|e| e.input_tokens).sum::<u64>(),
        distinct
            .iter()
            .map(|e| i128::from(e.cost.picos().unwrap()))
            .sum::<i128>(),
    );
    let config = ProjectorConfig {
        max_batch_events: 500,
        idle_wait: Duration::from_millis(100),
        ..ProjectorConfig::default()
    };
    let start = |log: Arc<dyn EventLog>| {
        let (projector, status) = Projector::new(log.clone(), store.clone(), config.clone());
        let (stop, stop_rx) = watch::channel(false);
        (tokio::spawn(projector.run(stop_rx)), stop, status, log)
    };
    let (task_a, stop_a, status_a, log_a) = start(kafka_log(&brokers, "split", &group));
    let (task_b, stop_b, status_b, log_b) = start(kafka_log(&brokers, "split", &group));

    let (first, rest) = stream.split_at(stream.len() / 2);
    for chunk in first.chunks(1000) {
        producer.append(chunk.to_vec()).await.unwrap();
    }
    // Both members end up owning part of the topic, and together all of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = (
            log_a.ownership().borrow().clone(),
            log_b.ownership().borrow().clone(),
        );
        if let (Partitions::Only(a), Partitions::Only(b)) = (&a.partitions, &b.partitions) {
            if !a.is_empty() && !b.is_empty() && a.len() + b.len() == 6 && a.is_disjoint(b) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the group never split: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_a.borrow().events_consumed() == 0 || status_b.borrow().events_consumed() == 0 {
        assert!(
            Instant::now() < deadline,
            "both projectors should make progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // One member leaves mid-stream; the other takes over its partitions from the checkpoints.
    drop(log_a);
    stop_a.send(true).unwrap();
    task_a.await.unwrap();
    for chunk in rest.chunks(1000) {
        producer.append(chunk.to_vec()).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = store.load_state(86_400, &Partitions::All).await.unwrap();
        let consumed = state.events_applied() + state.duplicates_dropped();
        if consumed >= stream.len() as u64 {
            assert_eq!(consumed, stream.len() as u64);
            assert_eq!(state.events_applied(), want.0);
            assert_eq!(state.partitions.len(), 6, "every partition was projected");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "projection stalled at {consumed} of {}",
            stream.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        totals(store.as_ref()).await,
        want,
        "every event counted exactly once"
    );
    let _ = status_b;
    stop_b.send(true).unwrap();
    task_b.await.unwrap();
    drop(log_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_brokers_down_ingest_answers_503_and_recovers() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("outage", 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(kafka_settings(
        dir.path(),
        &cluster.bootstrap_servers(),
        "outage",
    ))
    .await;
    seed_config(&app.stores).await;
    let events = corpus(50, 5);
    let batch: Vec<serde_json::Value> = events.iter().map(|e| e.json()).collect();
    let (status, body) = app.post(&batch[..10]).await;
    assert_eq!(status, 200, "{body}");

    cluster.broker_down(1).unwrap();
    let (status, body) = app.post(&batch[10..]).await;
    assert_eq!(
        status, 503,
        "nothing is acknowledged while the broker is down: {body}"
    );
    assert_eq!(body["error"]["code"], "unavailable", "{body}");

    cluster.broker_up(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = app.post(&batch[10..]).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "ingest never recovered: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Whatever of the failed attempt reached the broker is deduplicated by event id.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = app.get("/readyz").await;
        let projected = body["pipeline"]["events_projected"].as_u64().unwrap_or(0);
        if projected >= 50 {
            assert_eq!(projected, 50, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "not projected: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let overview = app
        .data(&format!("{API}/features/chatbot/metrics?time_range=7d"))
        .await;
    let chatbot = events.iter().filter(|e| e.feature == "chatbot").count();
    assert_eq!(overview["usage"]["total_requests"], chatbot, "{overview}");
    app.stop().await;
}
