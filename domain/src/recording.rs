//! The one way usage events (and scores) enter the log: priced with the price in force when each call
//! happened ([`PriceBook::price`]), then appended as one durable record. `POST /v1/events`, the
//! prompt test route and test runs all go through a [`Recorder`], so an event costs the same whichever
//! way it arrived; the projector prices what reaches the log unpriced (produced straight to the
//! broker) with the same [`PriceBook::price`].
//!
//! Two price sources, one pricing function: ingest prices with the shared [`PriceCache`]
//! (reloaded every few seconds; synchronous, so it runs where ingest parses, off the async
//! runtime), the prompt test with the prices the configuration store holds at that instant
//! (it answers with the cost, so it must not be seconds stale).

use std::sync::Arc;

use tally_schemas::{Score, UsageEvent};

use crate::error::StoreResult;
use crate::pricing::{PriceBook, PriceCache};
use crate::store::{AppendReceipt, ConfigStore, EventLog};

/// Prices and appends usage events (and appends scores); cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    log: Arc<dyn EventLog>,
    prices: Arc<PriceCache>,
}

impl Recorder {
    pub fn new(log: Arc<dyn EventLog>, prices: Arc<PriceCache>) -> Recorder {
        Recorder { log, prices }
    }

    /// Prices `events` with the cached prices.
    pub fn price<'a>(&self, events: impl IntoIterator<Item = &'a mut UsageEvent>) {
        price_with(&self.prices.current(), events);
    }

    /// Prices `events` with the prices the configuration store holds now.
    pub async fn price_now<'a>(
        &self,
        config: &dyn ConfigStore,
        events: impl IntoIterator<Item = &'a mut UsageEvent>,
    ) -> StoreResult<()> {
        price_with(&PriceBook::new(config.list_prices().await?), events);
        Ok(())
    }

    /// Appends priced events as one record; returns once they are durable.
    pub async fn append(&self, priced: Vec<UsageEvent>) -> StoreResult<AppendReceipt> {
        self.log.append(priced).await
    }

    /// Appends scores (`POST /v1/scores`); returns once they are durable. Scores carry no
    /// money, so nothing is priced.
    pub async fn append_scores(&self, scores: Vec<Score>) -> StoreResult<AppendReceipt> {
        self.log.append_scores(scores).await
    }
}

fn price_with<'a>(book: &PriceBook, events: impl IntoIterator<Item = &'a mut UsageEvent>) {
    for event in events {
        book.price(event);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::config::ModelPrice;
    use crate::log_binding::{LogDescription, LogIdentity};
    use crate::store::{LogPosition, LogRecord};
    use tally_schemas::event::Cost;

    /// A log that keeps what it is given.
    #[derive(Default)]
    struct Kept(Mutex<Vec<Vec<UsageEvent>>>);

    #[async_trait]
    impl EventLog for Kept {
        async fn append(&self, events: Vec<UsageEvent>) -> StoreResult<AppendReceipt> {
            let mut kept = self.0.lock().expect("lock");
            kept.push(events);
            Ok(AppendReceipt {
                partition: 0,
                offset: kept.len() as i64 - 1,
            })
        }
        async fn append_scores(&self, _: Vec<tally_schemas::Score>) -> StoreResult<AppendReceipt> {
            Err(crate::store::StoreError::Backend(
                "scores are not kept here".into(),
            ))
        }
        async fn read(
            &self,
            _: &LogPosition,
            _: usize,
            _: Duration,
        ) -> StoreResult<Vec<LogRecord>> {
            Ok(Vec::new())
        }
        async fn end(&self) -> StoreResult<LogPosition> {
            Ok(LogPosition::default())
        }
        async fn describe(&self) -> StoreResult<LogDescription> {
            Ok(LogDescription {
                identity: LogIdentity {
                    name: "kept".into(),
                    id: None,
                },
                partitions: Default::default(),
            })
        }
        fn appended_events(&self) -> u64 {
            self.0
                .lock()
                .expect("lock")
                .iter()
                .map(|r| r.len() as u64)
                .sum()
        }
    }

    fn event(id: &str, cost: Cost) -> UsageEvent {
        UsageEvent {
            event_id: id.into(),
            occurred_at_us: Utc
                .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
                .single()
                .expect("date")
                .timestamp_micros(),
            model: "gpt-4o".into(),
            provider: "openai".into(),
            input_tokens: 1_000,
            output_tokens: 500,
            cached_input_tokens: 0,
            cost,
            ..UsageEvent::example()
        }
    }

    #[tokio::test]
    async fn events_are_priced_at_their_time_and_appended_as_one_record() {
        let prices = Arc::new(PriceCache::default());
        // $1 and $2 per million input and output tokens from 2026-01-01.
        prices.replace(PriceBook::new(vec![ModelPrice {
            id: uuid::Uuid::nil(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            effective_from: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("date"),
            input_per_mtok_micros: 1_000_000,
            output_per_mtok_micros: 2_000_000,
            cached_input_per_mtok_micros: None,
            created_at: Utc::now(),
        }]));
        let log = Arc::new(Kept::default());
        let recorder = Recorder::new(log.clone(), prices);
        let reported = Cost::Reported(7);
        let mut events = vec![event("a", Cost::Pending), event("b", reported)];
        recorder.price(&mut events);
        let costs: Vec<Cost> = events.iter().map(|e| e.cost).collect();
        // 1,000 × $1/M + 500 × $2/M = $0.002 = 2,000,000,000 pico-dollars; a reported cost stays.
        assert_eq!(costs, vec![Cost::Computed(2_000_000_000), reported]);
        recorder.append(events).await.expect("appended");
        let kept = log.0.lock().expect("lock");
        assert_eq!(kept.len(), 1, "one record");
        let appended: Vec<Cost> = kept[0].iter().map(|e| e.cost).collect();
        assert_eq!(appended, costs, "the log holds the priced events");
    }
}
