//! Reading: the buffer of received records per partition, how a received message enters it
//! (decoded, or dropped when its partition is not owned any more or it was fetched before a
//! seek), and how records are handed out in offset order from the position asked for.

use super::*;

/// Received records not yet handed out, and where each partition's consumer stands. Reset
/// when the ownership generation changes (records of a revoked partition are re-read by its
/// next owner from that owner's checkpoint).
#[derive(Debug, Default)]
pub(super) struct ReadState {
    generation: u64,
    buffer: BTreeMap<i32, VecDeque<LogRecord>>,
    /// Per partition, the offset after the last record handed out.
    delivered_next: HashMap<i32, i64>,
    /// Per partition after a seek: (the caller's position, the offset sought). Until a
    /// message at the sought offset arrives, others were fetched before the seek.
    sought: HashMap<i32, (i64, i64)>,
}

impl ReadState {
    pub(super) fn sync(&mut self, generation: u64) {
        if self.generation != generation {
            *self = ReadState {
                generation,
                ..ReadState::default()
            };
        }
    }
}

impl KafkaLog {
    pub(super) fn state(&self) -> StoreResult<std::sync::MutexGuard<'_, ReadState>> {
        self.read_state
            .lock()
            .map_err(|_| StoreError::Backend("kafka read state poisoned".into()))
    }

    /// Records waiting in the buffer.
    pub(super) fn buffered(&self) -> usize {
        self.read_state
            .lock()
            .map(|s| s.buffer.values().map(|q| q.len()).sum())
            .unwrap_or(0)
    }

    /// Decodes one received message into the buffer (or drops it: not owned any more, or
    /// fetched before a seek).
    pub(super) fn buffer_message(
        &self,
        message: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>,
    ) -> StoreResult<()> {
        let m = match message {
            Ok(m) => m,
            Err(e) => {
                // Broker and transport errors are reported here and recovered from by the
                // client itself; positions are unaffected.
                warn!(error = %e, "kafka consumer error");
                metrics::counter!(CONSUMER_ERRORS).increment(1);
                return Ok(());
            }
        };
        let (partition, offset) = (m.partition(), m.offset());
        let ownership = self.ownership.borrow().clone();
        let mut state = self.state()?;
        state.sync(ownership.generation);
        if !ownership.partitions.contains(partition) {
            return Ok(());
        }
        if let Some((_, target)) = state.sought.get(&partition) {
            if offset != *target {
                // Fetched before the seek; the partition is being re-read from `target`.
                return Ok(());
            }
            state.sought.remove(&partition);
        }
        let received_at_ms = m.timestamp().to_millis().unwrap_or(0);
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
        };
        let (mut events, mut scores) = (Vec::new(), Vec::new());
        if header(SCHEMA_HEADER) == Some(SCORE_SCHEMA_VALUE.as_bytes()) {
            match decode_score_message(m.payload()) {
                Ok(score) => scores.push(score),
                Err(reason) => {
                    warn!(partition, offset, %reason, "skipping a message that is not a valid score");
                    metrics::counter!(INVALID_MESSAGES).increment(1);
                }
            }
        } else {
            match decode_message(
                m.payload(),
                header(COST_HEADER),
                received_at_ms,
                &self.settings.limits,
            ) {
                Ok(event) => events.push(event),
                Err(reason) => {
                    warn!(partition, offset, %reason, "skipping a message that is not a valid usage event");
                    metrics::counter!(INVALID_MESSAGES).increment(1);
                }
            }
        }
        state
            .buffer
            .entry(partition)
            .or_default()
            .push_back(LogRecord {
                partition,
                offset,
                received_at_ms,
                events,
                scores,
                fingerprint: fingerprint(&m),
            });
        Ok(())
    }

    /// Hands out buffered records that continue `from`, at most `max_events`. A partition whose
    /// buffer starts past the caller's position (the consumer is ahead: a projector that
    /// reloaded its checkpoint, a store that was reset) is sought back to that position.
    pub(super) fn hand_out(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        from: &LogPosition,
        max_events: usize,
    ) -> StoreResult<Vec<LogRecord>> {
        let generation = self.ownership.borrow().generation;
        let mut state = self.state()?;
        state.sync(generation);
        let mut out = Vec::new();
        let mut seeks = Vec::new();
        let ReadState {
            buffer,
            delivered_next,
            sought,
            ..
        } = &mut *state;
        for (partition, queue) in buffer.iter_mut() {
            let expected = from.next_offset(*partition);
            while queue.front().is_some_and(|r| r.offset < expected) {
                queue.pop_front();
            }
            let Some(front) = queue.front() else { continue };
            // Within one continuous fetch offsets may skip (transaction markers); anywhere
            // else only the exact next offset continues the caller's position.
            let continues =
                front.offset == expected || delivered_next.get(partition) == Some(&expected);
            if !continues {
                seeks.push((*partition, expected, front.offset));
                queue.clear();
                continue;
            }
            while out.len() < max_events {
                let Some(record) = queue.pop_front() else {
                    break;
                };
                delivered_next.insert(*partition, record.offset + 1);
                out.push(record);
            }
        }
        if out.is_empty() && seeks.is_empty() {
            // Nothing buffered continues the caller: where the consumer already stands past the
            // caller's position (a projector that reloaded its checkpoint while no new message
            // arrives to reveal the gap), seek back now rather than wait for the next message.
            let positions = consumer.position().map_err(kafka_error)?;
            for element in positions.elements_for_topic(&self.settings.topic) {
                let partition = element.partition();
                let Offset::Offset(at) = element.offset() else {
                    continue;
                };
                let expected = from.next_offset(partition);
                let idle = buffer.get(&partition).is_none_or(|q| q.is_empty());
                if idle && at > expected && !sought.contains_key(&partition) {
                    seeks.push((partition, expected, at));
                }
            }
        }
        for (partition, expected, received) in seeks {
            let (low, _) = consumer
                .fetch_watermarks(&self.settings.topic, partition, Duration::from_secs(5))
                .map_err(kafka_error)?;
            let target = expected.max(low);
            info!(
                partition,
                received,
                seek_to = target,
                "consumer is away from the projector's position; seeking"
            );
            consumer
                .seek(
                    &self.settings.topic,
                    partition,
                    Offset::Offset(target),
                    Duration::from_secs(5),
                )
                .map_err(kafka_error)?;
            state.sought.insert(partition, (expected, target));
            state.delivered_next.remove(&partition);
        }
        Ok(out)
    }
}
