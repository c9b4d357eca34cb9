//! Topic administration: creating the events topic (`tally migrate`) and describing it (its
//! identity and every partition's watermarks).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientContext;
use tally_domain::log_binding::{LogDescription, LogIdentity, Watermarks};
use tally_domain::store::{StoreError, StoreResult};

use super::{kafka_error, topic_id, KafkaSettings};

/// The topic's identity and every partition's watermarks (blocking: metadata, `DescribeTopics`
/// and one offsets request per partition).
pub(super) fn describe_topic<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> StoreResult<LogDescription> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka_error)?;
    let described = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| StoreError::Unavailable(format!("kafka: no metadata for topic {topic}")))?;
    if let Some(err) = described.error() {
        return Err(StoreError::Unavailable(format!(
            "kafka: topic {topic}: {}",
            rdkafka::types::RDKafkaErrorCode::from(err)
        )));
    }
    // Any broker answers; the one leading the first partition is known to be up.
    let broker = described
        .partitions()
        .iter()
        .map(|p| p.leader())
        .find(|leader| *leader >= 0)
        .or_else(|| metadata.brokers().first().map(|b| b.id()))
        .ok_or_else(|| StoreError::Unavailable(format!("kafka: no broker for topic {topic}")))?;
    let id = topic_id::describe_topic_id(client, topic, broker, timeout)
        .map_err(|e| StoreError::Unavailable(format!("kafka: {e}")))?;
    let mut partitions = BTreeMap::new();
    for p in described.partitions() {
        let (low, high) = client
            .fetch_watermarks(topic, p.id(), timeout)
            .map_err(kafka_error)?;
        partitions.insert(p.id(), Watermarks { low, high });
    }
    Ok(LogDescription {
        identity: LogIdentity {
            name: topic.to_string(),
            id,
        },
        partitions,
    })
}

/// Creates the events topic unless it exists (`tally migrate`); `true` when it was created.
/// More partitions let more projectors share the work (one partition is never split).
pub async fn create_topic(
    settings: &KafkaSettings,
    partitions: i32,
    replication: i32,
) -> StoreResult<bool> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> =
        settings.client_config().create().map_err(kafka_error)?;
    let topic = NewTopic::new(
        &settings.topic,
        partitions,
        TopicReplication::Fixed(replication),
    );
    let options = AdminOptions::new().operation_timeout(Some(settings.produce_timeout));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(kafka_error)?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((name, code))) => Err(StoreError::Unavailable(format!(
            "creating topic {name}: {code}"
        ))),
        None => Err(StoreError::Backend("no answer to CreateTopics".into())),
    }
}
