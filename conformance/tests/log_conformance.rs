//! The event-log conformance suite against every log: the embedded SQLite log and a Kafka topic
//! on librdkafka's in-process mock cluster (default run), and a Kafka topic on a real broker
//! (service tier, `TALLY_TEST_KAFKA_BROKERS`).

use std::sync::Arc;

use tally_domain::clock::SystemClock;
use tally_storage::{KafkaLog, KafkaSettings};

fn kafka_log(brokers: &str, topic: &str) -> KafkaLog {
    let mut settings = KafkaSettings::new(brokers, topic);
    settings.group_id = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    // One message per batch: tansu 0.6 cannot serve a fetch that starts inside a batch.
    settings.batch_messages = Some(1);
    KafkaLog::new(settings, Arc::new(SystemClock)).expect("kafka log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_event_log_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = tally_storage::SqliteEventLog::open(dir.path(), 64).expect("open");
    tally_conformance::event_log(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_event_log_conforms_on_the_mock_cluster() {
    let cluster = rdkafka::mocking::MockCluster::new(3).expect("mock cluster");
    cluster.create_topic("log", 3, 1).expect("topic");
    let log = kafka_log(&cluster.bootstrap_servers(), "log");
    tally_conformance::event_log(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs TALLY_TEST_KAFKA_BROKERS"]
async fn kafka_event_log_conforms_on_a_real_broker() {
    let brokers = std::env::var("TALLY_TEST_KAFKA_BROKERS")
        .expect("TALLY_TEST_KAFKA_BROKERS must point at a Kafka-protocol broker");
    let topic = format!("log_conformance_{}", uuid::Uuid::new_v4().simple());
    let created =
        tally_storage::log::kafka::create_topic(&KafkaSettings::new(&brokers, &topic), 3, 1)
            .await
            .expect("create topic");
    assert!(created);
    tally_conformance::event_log(&kafka_log(&brokers, &topic)).await;
}
