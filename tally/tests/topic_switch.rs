//! The scenario in the default run (librdkafka's mock cluster, the SQLite analytics
//! store): another topic is refused until adopted, and then every event counts once. Alone in
//! its test binary (not one of `app/`'s modules), because it reads the process-wide
//! `tally_projector_checkpoint_mismatch` gauge, which the projectors of other tests would move.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::topics::*;
use common::*;
use rdkafka::mocking::MockCluster;
use tally::Stores;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_topic_is_refused_until_adopted_and_then_every_event_counts_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("usage-a", 3, 1).unwrap();
    cluster.create_topic("usage-b", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let group = format!("g-{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let on_a = kafka(dir.path(), &brokers, "usage-a", &group);
    let on_b = kafka(dir.path(), &brokers, "usage-b", &group);

    // Topic a: 1,500 events.
    let events_a = corpus(1_500, 71);
    let app = TestApp::start_with(on_a.clone()).await;
    seed_config(&app.stores).await;
    send(&app, &events_a).await;
    app.wait_consumed(1_500).await;
    let all_a: Vec<&Sent> = events_a.iter().collect();
    assert_eq!(counted(&app).await, expected(&all_a));
    let position_a = stored_offsets(&app.stores).await;
    assert_eq!(position_a.values().sum::<i64>(), 1_500);
    app.stop().await;

    // Topic b: 2,000 new events plus 300 of topic a's sent again (a producer that retried
    // across the switch). Ingest acknowledges them; the projector reads none.
    let mut events_b = corpus(2_000, 72);
    events_b.extend(events_a[..300].iter().cloned());
    let app = TestApp::start_with(on_b.clone()).await;
    send(&app, &events_b).await;
    let body = refusal(&app).await;
    let message = body["pipeline"]["checkpoint_mismatch"].as_str().unwrap();
    let stored: Vec<String> = position_a.iter().map(|(p, o)| format!("{p}:{o}")).collect();
    assert_names(
        message,
        &[
            "\"usage-a\" (id ",
            "\"usage-b\" (id ",
            &stored.join(" "),
            "tally adopt-topic",
            "tally rebuild --start-clean",
        ],
    );
    assert_eq!(
        app.metric("tally_projector_checkpoint_mismatch").await,
        Some("tally_projector_checkpoint_mismatch 1".into())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, body) = app.get("/readyz").await;
    assert_eq!(body["pipeline"]["events_projected"], 0, "{body}");
    assert_eq!(
        counted(&app).await,
        expected(&all_a),
        "nothing of topic b was counted, nothing of topic a lost"
    );
    assert_eq!(
        stored_offsets(&app.stores).await,
        position_a,
        "checkpoints untouched"
    );
    app.stop().await;

    // A rebuild would drop topic a's counts: refused, nothing dropped.
    let stores = Stores::open(&on_b).await.unwrap();
    let refused = tally::projection::rebuild(&stores, &on_b, false)
        .await
        .expect_err("a rebuild on another topic is refused");
    assert!(
        refused.to_string().contains("tally adopt-topic"),
        "{refused}"
    );
    assert_eq!(stored_offsets(&stores).await, position_a);

    // The way out: adopt topic b.
    let plan = tally::projection::adopt_topic(&stores, &on_b)
        .await
        .unwrap();
    assert_eq!(plan.adopted.log.name, "usage-b");
    assert_eq!(
        plan.dedup_from,
        (0..3).map(|p| (p, vec![p])).collect(),
        "same partitions: each keeps its namesake's dedup memory"
    );
    let audit = stores
        .config
        .list_audit(&tally_domain::store::AuditQuery::newest(10))
        .await
        .unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "projection.adopt_log")
        .expect("the adoption is audited");
    assert_eq!(
        (entry.actor.as_str(), entry.resource.as_str()),
        ("cli", "log:usage-b")
    );
    assert_eq!(entry.before.as_ref().unwrap()["log"]["name"], "usage-a");
    let again = tally::projection::adopt_topic(&stores, &on_b)
        .await
        .expect_err("adopting the bound topic again is refused");
    assert!(again.to_string().contains("nothing to adopt"), "{again}");
    drop(stores);

    let app = TestApp::start_with(on_b.clone()).await;
    app.wait_consumed(events_b.len() as u64).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["pipeline"]["checkpoint_mismatch"].is_null(), "{body}");
    assert_eq!(
        body["pipeline"]["duplicates_dropped"], 300,
        "the 300 ids of topic a sent again are duplicates: {body}"
    );
    assert_eq!(
        app.metric("tally_projector_checkpoint_mismatch").await,
        Some("tally_projector_checkpoint_mismatch 0".into())
    );
    let everything: Vec<&Sent> = events_a.iter().chain(&events_b).collect();
    assert_eq!(counted(&app).await, expected(&everything));
    let adopted_answers = serde_json::json!(answers(&app).await);
    app.stop().await;

    // The same events through one embedded log give the same answers.
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = TestApp::start(reference_dir.path()).await;
    seed_config(&reference.stores).await;
    send(&reference, &events_a).await;
    send(&reference, &events_b).await;
    reference
        .wait_consumed((events_a.len() + events_b.len()) as u64)
        .await;
    let want = serde_json::json!(answers(&reference).await);
    reference.stop().await;
    assert!(
        adopted_answers == want,
        "answers differ: {}",
        first_difference(&adopted_answers, &want, String::new())
    );
}
