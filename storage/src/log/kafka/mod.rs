//! [`EventLog`] on a Kafka topic (distributed mode).
//!
//! **Message format** (what application services may also produce directly):
//! - key: the `event_id` (UTF-8), so every copy of an event lands in one partition and the
//!   projector's per-partition dedup sees it;
//! - value: one usage event, schema v1 JSON (`GET /v1/schema/usage-event`);
//! - headers (optional): `tally-schema: usage-event/1`, and `tally-cost` = `unpriced` or
//!   `computed:<pico-dollars>` when ingest priced the event. An event with neither `cost_usd`
//!   nor `tally-cost` is priced by the projector with the price in force at `occurred_at`;
//! - timestamp: the log clock of the dedup window and of the event rules applied to the
//!   message (CreateTime, which ingest sets to its clock; or the broker's LogAppendTime when
//!   the topic is configured so).
//!
//! A score (`POST /v1/scores`) is one message too: key the `score_id`, value the score's JSON,
//! header `tally-schema: score/1` (required: without it a message is read as a usage event).
//!
//! A message that is not a valid event (or score) is skipped (counted in
//! `tally_log_invalid_messages_total` and logged with its partition and offset); it still
//! advances the position, so it never blocks a partition.
//!
//! **Producing.** An idempotent producer (`enable.idempotence`, `acks=all`); `append` returns
//! only after the broker acknowledged every event of the request, and fails (`Unavailable`)
//! if any was not acknowledged within `produce_timeout`: the caller answers 503, never 2xx,
//! and a retry is deduplicated by event id (scores: the first copy of a score id counts).
//!
//! **Consuming.** Projectors join one consumer group; the group assigns partitions, and
//! [`EventLog::ownership`] reports each assignment with a new generation. Positions come from
//! the analytics store, not from the group's committed offsets: `read` seeks a partition to the
//! position the projector asks for whenever the consumer is elsewhere (first fetch after an
//! assignment, a projector that reloaded its checkpoint). Committed offsets are only a mirror
//! for standard lag tooling ([`EventLog::projected`]). A projector that may not read (its
//! store's checkpoints belong to another log) or backs off after a failure waits in
//! [`EventLog::idle`]: it keeps polling with its partitions paused, so the group's rebalances
//! never wait for it and it keeps its membership.
//!
//! **Closing.** Dropping the log closes its consumers, waiting at most 10 s for each
//! (librdkafka's close can wait without limit, e.g. on a revocation that a member which
//! stopped polling serves only while closing); a close that takes longer goes on in the
//! background, so shutdown does not wait on the group without limit.
//!
//! **Identity.** [`EventLog::describe`] names the topic with its id (KIP-516, from librdkafka's
//! `DescribeTopics`: [`topic_id`]) and every partition's watermarks, so the projector can tell
//! whether its checkpoints belong to this topic before it seeks anywhere
//! ([`tally_domain::log_binding`]).

mod admin;
mod group;
mod message;
mod reading;
pub mod security;
mod topic_id;

pub use admin::create_topic;
pub use message::{decode_message, decode_score_message};

use admin::describe_topic;
use group::GroupContext;
use message::{
    encode_message, encode_score_message, fingerprint, COST_HEADER, SCHEMA_HEADER,
    SCORE_SCHEMA_VALUE,
};
use reading::ReadState;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tally_schemas::{Limits, Score, UsageEvent};
use tokio::sync::{watch, OnceCell};
use tracing::{info, instrument, warn};

use tally_domain::clock::Clock;
use tally_domain::log_binding::LogDescription;
use tally_domain::store::{
    AppendReceipt, EventLog, LogPosition, LogRecord, Ownership, Partitions, RecordAt, StoreError,
    StoreResult,
};

const INVALID_MESSAGES: &str = "tally_log_invalid_messages_total";
const CONSUMER_ERRORS: &str = "tally_log_consumer_errors_total";

/// How to reach the topic.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`, e.g. `kafka:9092`.
    pub brokers: String,
    pub topic: String,
    /// The projectors' consumer group.
    pub group_id: String,
    /// How long `append` waits for the broker's acknowledgement before failing.
    pub produce_timeout: Duration,
    /// Event rules applied to messages (retention, future skew), evaluated at the message
    /// timestamp so a replay decides exactly as the first read did.
    pub limits: Limits,
    /// Most messages per produced record batch (`batch.num.messages`); `None` keeps
    /// librdkafka's default. `Some(1)` is for brokers that cannot serve a fetch starting
    /// inside a batch (tansu 0.6, the service tier's broker).
    pub batch_messages: Option<u32>,
    /// TLS, SASL and further librdkafka properties, on every client.
    pub security: security::KafkaSecurity,
}

impl KafkaSettings {
    pub fn new(brokers: &str, topic: &str) -> KafkaSettings {
        KafkaSettings {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group_id: "tally-projector".to_string(),
            produce_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            batch_messages: None,
            security: security::KafkaSecurity::default(),
        }
    }

    /// A client configuration for the brokers, with the security settings applied.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        self.security.apply(&mut config);
        config
    }
}

fn kafka_error(e: rdkafka::error::KafkaError) -> StoreError {
    StoreError::Unavailable(format!("kafka: {}", security::describe_error(&e)))
}

pub struct KafkaLog {
    settings: KafkaSettings,
    /// Stamps produced messages (the log clock of the dedup window and of event rules).
    clock: Arc<dyn Clock>,
    producer: FutureProducer,
    consumer: OnceCell<Arc<StreamConsumer<GroupContext>>>,
    /// For [`EventLog::describe`]: a client outside the group whose metadata requests never
    /// create the topic (a producer's may, on brokers that auto-create topics). Made on first
    /// use.
    describer: Mutex<Option<Arc<BaseConsumer>>>,
    ownership: watch::Sender<Ownership>,
    read_state: Mutex<ReadState>,
    /// Set while [`EventLog::idle`] holds the assigned partitions paused; the next `read`
    /// resumes them.
    paused: AtomicBool,
    produced: AtomicU64,
}

impl KafkaLog {
    /// Creates the producer (no broker round trip yet); the consumer joins the group on the
    /// first `read`, so an ingest-only process never becomes a group member.
    pub fn new(settings: KafkaSettings, clock: Arc<dyn Clock>) -> StoreResult<KafkaLog> {
        metrics::describe_counter!(
            INVALID_MESSAGES,
            "Messages on the events topic that are not valid usage events (skipped)."
        );
        metrics::describe_counter!(
            CONSUMER_ERRORS,
            "Errors the Kafka consumer reported (the client reconnects by itself)."
        );
        let mut config = settings.client_config();
        if let Some(n) = settings.batch_messages {
            config.set("batch.num.messages", n.to_string());
        }
        let producer: FutureProducer = config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                settings.produce_timeout.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .map_err(kafka_error)?;
        let (ownership, _) = watch::channel(Ownership {
            generation: 0,
            partitions: Partitions::Only(Default::default()),
        });
        Ok(KafkaLog {
            settings,
            clock,
            producer,
            consumer: OnceCell::new(),
            describer: Mutex::new(None),
            ownership,
            read_state: Mutex::new(ReadState::default()),
            paused: AtomicBool::new(false),
            produced: AtomicU64::new(0),
        })
    }

    async fn consumer(&self) -> StoreResult<&Arc<StreamConsumer<GroupContext>>> {
        self.consumer
            .get_or_try_init(|| async {
                let context = GroupContext {
                    topic: self.settings.topic.clone(),
                    ownership: self.ownership.clone(),
                    high_watermarks: Mutex::new(HashMap::new()),
                };
                let consumer: StreamConsumer<GroupContext> = self
                    .settings
                    .client_config()
                    .set("group.id", &self.settings.group_id)
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("session.timeout.ms", "10000")
                    .set("heartbeat.interval.ms", "1000")
                    .set("statistics.interval.ms", "2000")
                    .set("partition.assignment.strategy", "range")
                    .create_with_context(context)
                    .map_err(kafka_error)?;
                consumer
                    .subscribe(&[&self.settings.topic])
                    .map_err(kafka_error)?;
                info!(topic = %self.settings.topic, group = %self.settings.group_id, "joined the projector consumer group");
                Ok(Arc::new(consumer))
            })
            .await
    }

    fn describer(&self) -> StoreResult<Arc<BaseConsumer>> {
        let mut describer = self
            .describer
            .lock()
            .map_err(|_| StoreError::Backend("kafka describer poisoned".into()))?;
        if let Some(client) = describer.as_ref() {
            return Ok(client.clone());
        }
        let client: Arc<BaseConsumer> = Arc::new(
            self.settings
                .client_config()
                .set("allow.auto.create.topics", "false")
                // Assigning a partition needs a group id; this client never joins nor commits.
                .set("group.id", format!("{}-describe", self.settings.group_id))
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "error")
                .create()
                .map_err(kafka_error)?,
        );
        *describer = Some(client.clone());
        Ok(client)
    }
}

impl KafkaLog {
    /// Produces `messages` (key, value, headers) and waits for every delivery; the receipt of
    /// the last one.
    async fn produce(
        &self,
        messages: Vec<(&[u8], Vec<u8>, rdkafka::message::OwnedHeaders)>,
    ) -> StoreResult<AppendReceipt> {
        let deadline = tokio::time::Instant::now() + self.settings.produce_timeout;
        let mut deliveries = Vec::with_capacity(messages.len());
        let timestamp = self.clock.now().timestamp_millis();
        for (key, value, headers) in &messages {
            loop {
                let record = FutureRecord::to(&self.settings.topic)
                    .key(*key)
                    .payload(value)
                    .timestamp(timestamp)
                    .headers(headers.clone());
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        _,
                    )) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(kafka_error(e)),
                }
            }
        }
        let mut receipt = AppendReceipt {
            partition: 0,
            offset: 0,
        };
        let mut failure = None;
        for delivery in futures::future::join_all(deliveries).await {
            match delivery {
                Ok(Ok(d)) => {
                    receipt = AppendReceipt {
                        partition: d.partition,
                        offset: d.offset,
                    }
                }
                Ok(Err((e, _))) => failure = Some(kafka_error(e)),
                Err(_) => {
                    failure = Some(StoreError::Unavailable(
                        "kafka producer dropped a delivery".into(),
                    ))
                }
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(receipt),
        }
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    #[instrument(name = "kafka.produce", skip_all, fields(events = events.len()), err)]
    async fn append(&self, events: Vec<UsageEvent>) -> StoreResult<AppendReceipt> {
        let messages = events
            .iter()
            .map(|event| {
                let (value, headers) = encode_message(event)?;
                Ok((event.event_id.as_bytes(), value, headers))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let receipt = self.produce(messages).await?;
        self.produced
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(receipt)
    }

    #[instrument(name = "kafka.produce_scores", skip_all, fields(scores = scores.len()), err)]
    async fn append_scores(&self, scores: Vec<Score>) -> StoreResult<AppendReceipt> {
        let messages = scores
            .iter()
            .map(|score| {
                let (value, headers) = encode_score_message(score)?;
                Ok((score.score_id.as_bytes(), value, headers))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.produce(messages).await
    }

    async fn read(
        &self,
        from: &LogPosition,
        max_events: usize,
        wait: Duration,
    ) -> StoreResult<Vec<LogRecord>> {
        let consumer = self.consumer().await?;
        if self.paused.swap(false, Ordering::AcqRel) {
            let assigned = consumer.assignment().map_err(kafka_error)?;
            consumer.resume(&assigned).map_err(kafka_error)?;
        }
        // Every received message goes straight into the buffer (no await in between), so a
        // caller that drops this future (shutdown, rebalance) loses nothing.
        let first = self.hand_out(consumer, from, max_events)?;
        if !first.is_empty() {
            return Ok(first);
        }
        match tokio::time::timeout(wait, consumer.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(m) => self.buffer_message(m)?,
        }
        while self.buffered() < max_events {
            match consumer.recv().now_or_never() {
                Some(m) => self.buffer_message(m)?,
                None => break,
            }
        }
        self.hand_out(consumer, from, max_events)
    }

    /// A member of the group keeps polling while it waits, with its partitions paused, so a
    /// rebalance never waits for it (the group's rebalance waits for every member to serve
    /// its revocation, up to `max.poll.interval.ms`) and it keeps its place in the group. A
    /// message fetched before the pause is buffered like any other. A process that has not
    /// read yet is no member: it sleeps.
    async fn idle(&self, wait: Duration) {
        let Some(consumer) = self.consumer.get() else {
            tokio::time::sleep(wait).await;
            return;
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Again after every poll: a rebalance assigns partitions unpaused.
            match consumer.assignment() {
                Ok(assigned) => match consumer.pause(&assigned) {
                    Ok(()) => self.paused.store(true, Ordering::Release),
                    Err(e) => warn!(error = %e, "could not pause the assigned partitions"),
                },
                Err(e) => warn!(error = %e, "could not list the assigned partitions"),
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            if let Ok(message) = tokio::time::timeout(left.min(IDLE_POLL), consumer.recv()).await {
                if let Err(e) = self.buffer_message(message) {
                    warn!(error = %e, "could not buffer a message received while idle");
                }
            }
        }
    }

    async fn end(&self) -> StoreResult<LogPosition> {
        let client = self.producer.client();
        let topic = self.settings.topic.clone();
        let timeout = self.settings.produce_timeout;
        let metadata = client
            .fetch_metadata(Some(&topic), timeout)
            .map_err(kafka_error)?;
        let mut end = BTreeMap::new();
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                let (low, high) = client
                    .fetch_watermarks(&topic, p.id(), timeout)
                    .map_err(kafka_error)?;
                if high > low {
                    end.insert(p.id(), high);
                }
            }
        }
        Ok(LogPosition(end))
    }

    /// One fetch outside the group: the describing client is assigned the partition at
    /// `offset` and polled until that message arrives, or a later one does (`Missing`).
    /// Anything else, a timeout included, is an error: a projector must not refuse a topic
    /// for a record it could not fetch.
    #[instrument(
        name = "kafka.fingerprint_at",
        skip_all,
        fields(partition, offset),
        err
    )]
    async fn fingerprint_at(&self, partition: i32, offset: i64) -> StoreResult<RecordAt> {
        let describer = self.describer()?;
        let topic = self.settings.topic.clone();
        let timeout = self.settings.produce_timeout;
        tokio::task::spawn_blocking(move || {
            let mut assignment = TopicPartitionList::new();
            assignment
                .add_partition_offset(&topic, partition, Offset::Offset(offset))
                .map_err(kafka_error)?;
            describer.assign(&assignment).map_err(kafka_error)?;
            let deadline = std::time::Instant::now() + timeout;
            let found = loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break Err(StoreError::Unavailable(format!(
                        "kafka: no answer fetching offset {offset} of partition {partition} within {timeout:?}"
                    )));
                }
                match describer.poll(left) {
                    Some(Ok(m)) if m.partition() == partition && m.offset() == offset => {
                        break Ok(RecordAt::Fingerprint(fingerprint(&m)))
                    }
                    Some(Ok(m)) if m.partition() == partition && m.offset() > offset => {
                        break Ok(RecordAt::Missing)
                    }
                    Some(Ok(_)) | None => {}
                    // The describer's `auto.offset.reset` is `error`: an offset outside the
                    // partition is reported, not silently replaced.
                    Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::OffsetOutOfRange
                        | rdkafka::types::RDKafkaErrorCode::AutoOffsetReset,
                    ))) => break Ok(RecordAt::Missing),
                    Some(Err(e)) => break Err(kafka_error(e)),
                }
            };
            let _ = describer.unassign();
            found
        })
        .await
        .map_err(|e| StoreError::Backend(format!("fingerprint task failed: {e}")))?
    }

    #[instrument(name = "kafka.describe", skip_all, err)]
    async fn describe(&self) -> StoreResult<LogDescription> {
        let describer = self.describer()?;
        let topic = self.settings.topic.clone();
        let timeout = self.settings.produce_timeout;
        tokio::task::spawn_blocking(move || {
            // Serve what the client queued since it was last used (errors of a broker that
            // went away, …), so nothing piles up between checks.
            while describer.poll(Duration::ZERO).is_some() {}
            describe_topic(describer.client(), &topic, timeout)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("describe task failed: {e}")))?
    }

    fn appended_events(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }

    fn ownership(&self) -> watch::Receiver<Ownership> {
        self.ownership.subscribe()
    }

    fn lag(&self, position: &LogPosition) -> Option<u64> {
        let consumer = self.consumer.get()?;
        let owned = self.ownership.borrow().partitions.clone();
        let hw = consumer.context().high_watermarks.lock().ok()?;
        Some(
            hw.iter()
                .filter(|(p, _)| owned.contains(**p))
                .map(|(p, high)| (high - position.next_offset(*p)).max(0) as u64)
                .sum(),
        )
    }

    async fn projected(&self, position: &LogPosition) {
        let Some(consumer) = self.consumer.get() else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for (p, next) in &position.0 {
            if list
                .add_partition_offset(&self.settings.topic, *p, Offset::Offset(*next))
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = consumer.commit(&list, CommitMode::Async) {
            warn!(error = %e, "could not mirror projected offsets to the consumer group");
        }
    }
}

/// How often an idle member re-pauses what it is assigned ([`EventLog::idle`]); callbacks are
/// served as they come.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// How long dropping a [`KafkaLog`] waits for each of its consumers to close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

impl Drop for KafkaLog {
    fn drop(&mut self) {
        // Deliver what is queued (already acknowledged requests were delivered before their
        // acknowledgement; this only shortens shutdown of in-flight ones).
        let _ = self.producer.flush(Duration::from_secs(1));
        if let Some(consumer) = self.consumer.take() {
            close_within(consumer, "group consumer", CLOSE_WAIT);
        }
        if let Some(describer) = self.describer.get_mut().ok().and_then(Option::take) {
            close_within(describer, "describing client", CLOSE_WAIT);
        }
    }
}

/// Drops a Kafka client on a thread of its own and waits for it at most `wait`. Dropping a
/// consumer that has a group id leaves the group, and rust-rdkafka then polls until librdkafka
/// reports the consumer closed, with no limit; the case seen (a thread dump of a stalled
/// test): a revocation the consumer had not served runs in that poll, and its unassign waits
/// forever for librdkafka's group thread. Past `wait` the close goes on in the background (its
/// thread is left behind), and a Kafka broker evicts a member that stopped heartbeating after
/// `session.timeout.ms`. When no thread can be started, the client is left open rather than
/// closed here without a limit.
fn close_within<T: Send + 'static>(client: T, what: &'static str, wait: Duration) {
    let (hand, take) = std::sync::mpsc::channel::<T>();
    let (closed, done) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            if let Ok(client) = take.recv() {
                drop(client);
                let _ = closed.send(());
            }
        });
    if let Err(err) = spawned {
        warn!(error = %err, what, "could not start a thread to close a Kafka client; it is left open");
        std::mem::forget(client);
        return;
    }
    if hand.send(client).is_err() {
        return;
    }
    match done.recv_timeout(wait) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => warn!(
            what,
            wait_s = wait.as_secs(),
            "a Kafka client did not close in time; it goes on closing in the background"
        ),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            warn!(what, "closing a Kafka client failed (its thread panicked)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_schemas::event::Cost;

    const NOW_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    /// A client whose close blocks until the test lets it finish (or 5 s pass, so a
    /// `close_within` that waited for it fails instead of hanging).
    struct StuckClose {
        release: std::sync::mpsc::Receiver<()>,
        closed: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Drop for StuckClose {
        fn drop(&mut self) {
            let _ = self.release.recv_timeout(Duration::from_secs(5));
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_close_that_does_not_finish_is_left_to_finish_in_the_background() {
        let (release, on_release) = std::sync::mpsc::channel();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = StuckClose {
            release: on_release,
            closed: closed.clone(),
        };
        close_within(client, "test client", Duration::from_millis(50));
        assert!(
            !closed.load(Ordering::SeqCst),
            "returned while the close was still blocked"
        );
        release.send(()).expect("the close still runs");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !closed.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "the close finishes");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_close_that_finishes_is_waited_for() {
        let (release, on_release) = std::sync::mpsc::channel();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Released a little later: a `close_within` that did not wait returns before.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let _ = release.send(());
        });
        let client = StuckClose {
            release: on_release,
            closed: closed.clone(),
        };
        close_within(client, "test client", Duration::from_secs(30));
        assert!(closed.load(Ordering::SeqCst));
    }

    fn value(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"event_id":"e1","occurred_at":"2025-12-31T23:59:00Z","feature":"chatbot","model":"gpt-4o","provider":"openai","environment":"production","operation":"chat","status":"success","latency_ms":12.5,"input_tokens":100,"output_tokens":7{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn messages_decode_with_the_cost_ingest_computed() {
        let limits = Limits::default();
        let e = decode_message(Some(&value("")), Some(b"computed:1234"), NOW_MS, &limits)
            .expect("valid");
        assert_eq!(
            (e.event_id.as_str(), e.latency_us, e.cost),
            ("e1", 12_500, Cost::Computed(1234))
        );
        let e =
            decode_message(Some(&value("")), Some(b"unpriced"), NOW_MS, &limits).expect("valid");
        assert_eq!(e.cost, Cost::Unpriced);
        let e = decode_message(Some(&value("")), None, NOW_MS, &limits).expect("valid");
        assert_eq!(e.cost, Cost::Pending, "priced by the projector");
        let e = decode_message(
            Some(&value(r#","cost_usd":"0.000001""#)),
            Some(b"computed:99"),
            NOW_MS,
            &limits,
        )
        .expect("valid");
        assert_eq!(
            e.cost,
            Cost::Reported(1_000_000),
            "a reported cost wins over the header"
        );
    }

    #[test]
    fn invalid_messages_say_why() {
        let limits = Limits::default();
        let err = decode_message(Some(b"not json"), None, NOW_MS, &limits).expect_err("invalid");
        assert!(!err.is_empty());
        let err = decode_message(Some(&value("")), Some(b"free"), NOW_MS, &limits)
            .expect_err("bad header");
        assert!(err.contains("tally-cost"), "{err}");
        // Rules are applied at the message timestamp: a year later the event is too old.
        let err = decode_message(Some(&value("")), None, NOW_MS + 365 * 86_400_000, &limits)
            .expect_err("outside retention");
        assert!(err.starts_with("occurred_at"), "{err}");
        assert!(decode_message(None, None, NOW_MS, &limits).is_err());
    }

    #[test]
    fn the_wire_form_round_trips_through_validation() {
        let limits = Limits::default();
        let mut event = UsageEvent {
            event_id: "rt".into(),
            occurred_at_us: (NOW_MS - 60_000) * 1000 + 123,
            latency_us: 86_399_999_999,
            input_tokens: 10,
            cached_input_tokens: 4,
            cost: Cost::Reported(123_456_789_012),
            user_id: Some("u".into()),
            prompt_version: Some("7".into()),
            attributes: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            ..UsageEvent::example()
        };
        let (value, _) = encode_message(&event).expect("encode");
        let back = decode_message(Some(&value), None, NOW_MS, &limits).expect("decode");
        assert_eq!(back, event);
        event.cost = Cost::Computed(5);
        let (value, _) = encode_message(&event).expect("encode");
        let back =
            decode_message(Some(&value), Some(b"computed:5"), NOW_MS, &limits).expect("decode");
        assert_eq!(back, event);
    }
}
