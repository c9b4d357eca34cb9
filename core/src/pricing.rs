//! Pricing an event from the effective-dated price table.
//!
//! The price in force at `occurred_at` is the one with the latest `effective_from` not after it.
//! Cost (pico-dollars) = uncached input × input price + cached input × cached price (the input
//! price when none is set) + output × output price, prices in micro-dollars per million tokens.
//! No division, no rounding. Events that carry `cost_usd` keep it; events of models without a
//! price are `Unpriced`. Pricing happens before an event is appended, so the log is
//! self-contained and replays reproduce the live numbers even after prices change.

use std::collections::HashMap;

use tally_schemas::event::Cost;
use tally_schemas::UsageEvent;

use crate::config::ModelPrice;

/// Every known price, indexed for lookup by (provider, model, instant).
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    /// Per provider, per model: prices sorted by `effective_from` (µs since epoch). Nested so a
    /// lookup borrows the event's strings instead of allocating a key.
    prices: HashMap<String, HashMap<String, Vec<(i64, ModelPrice)>>>,
}

impl PriceBook {
    pub fn new(prices: Vec<ModelPrice>) -> PriceBook {
        let mut map: HashMap<String, HashMap<String, Vec<(i64, ModelPrice)>>> = HashMap::new();
        for p in prices {
            map.entry(p.provider.clone())
                .or_default()
                .entry(p.model.clone())
                .or_default()
                .push((p.effective_from.timestamp_micros(), p));
        }
        for list in map.values_mut().flat_map(|models| models.values_mut()) {
            list.sort_by_key(|(from, _)| *from);
        }
        PriceBook { prices: map }
    }

    /// The price in force for `provider`/`model` at `at_us`.
    pub fn price_at(&self, provider: &str, model: &str, at_us: i64) -> Option<&ModelPrice> {
        let list = self.prices.get(provider)?.get(model)?;
        let idx = list.partition_point(|(from, _)| *from <= at_us);
        idx.checked_sub(1).map(|i| &list[i].1)
    }

    /// Sets `event.cost` unless the client reported one.
    pub fn price(&self, event: &mut UsageEvent) {
        if let Cost::Reported(_) = event.cost {
            return;
        }
        event.cost = match self.price_at(&event.provider, &event.model, event.occurred_at_us) {
            Some(price) => match cost_of(event, price) {
                Some(picos) => Cost::Computed(picos),
                None => Cost::Unpriced,
            },
            None => Cost::Unpriced,
        };
    }
}

/// The price book currently in force, swapped whole when prices change.
#[derive(Debug, Default)]
pub struct PriceCache {
    book: std::sync::RwLock<std::sync::Arc<PriceBook>>,
}

impl PriceCache {
    pub fn current(&self) -> std::sync::Arc<PriceBook> {
        self.book.read().map(|b| b.clone()).unwrap_or_default()
    }

    pub fn replace(&self, book: PriceBook) {
        if let Ok(mut slot) = self.book.write() {
            *slot = std::sync::Arc::new(book);
        }
    }

    /// Reloads every price from the config store.
    pub async fn refresh(
        &self,
        config: &dyn crate::store::ConfigStore,
    ) -> Result<(), crate::store::StoreError> {
        let prices = config.list_prices().await?;
        self.replace(PriceBook::new(prices));
        Ok(())
    }
}

/// Exact cost in pico-dollars, or `None` on overflow (absurd prices).
pub fn cost_of(event: &UsageEvent, price: &ModelPrice) -> Option<i64> {
    let uncached = event.input_tokens.saturating_sub(event.cached_input_tokens);
    let cached_price = price
        .cached_input_per_mtok_micros
        .unwrap_or(price.input_per_mtok_micros);
    let total = i128::from(uncached) * i128::from(price.input_per_mtok_micros)
        + i128::from(event.cached_input_tokens) * i128::from(cached_price)
        + i128::from(event.output_tokens) * i128::from(price.output_per_mtok_micros);
    i64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use tally_schemas::event::{Operation, Status};
    use tally_schemas::Environment;

    fn price(from_day: u32, input: i64, output: i64, cached: Option<i64>) -> ModelPrice {
        ModelPrice {
            id: uuid::Uuid::nil(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            effective_from: Utc
                .with_ymd_and_hms(2026, 1, from_day, 0, 0, 0)
                .single()
                .expect("date"),
            input_per_mtok_micros: input,
            output_per_mtok_micros: output,
            cached_input_per_mtok_micros: cached,
            created_at: Utc::now(),
        }
    }

    fn event(day: u32, input: u64, cached: u64, output: u64) -> UsageEvent {
        UsageEvent {
            event_id: "e".into(),
            occurred_at_us: Utc
                .with_ymd_and_hms(2026, 1, day, 12, 0, 0)
                .single()
                .expect("date")
                .timestamp_micros(),
            feature: "chatbot".into(),
            model: "gpt-4o".into(),
            provider: "openai".into(),
            environment: Environment::Production,
            operation: Operation::Chat,
            status: Status::Success,
            latency_us: 1,
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cost: Cost::Pending,
            ..UsageEvent::example()
        }
    }

    #[test]
    fn uses_the_price_in_force_and_the_cached_rate() {
        // $2.50 / $10.00 / $1.25 per 1M tokens until Jan 10, then $2.00 / $8.00, no cached rate.
        let book = PriceBook::new(vec![
            price(10, 2_000_000, 8_000_000, None),
            price(1, 2_500_000, 10_000_000, Some(1_250_000)),
        ]);
        let mut early = event(5, 1000, 400, 200);
        book.price(&mut early);
        // 600 × 2.5e-6 + 400 × 1.25e-6 + 200 × 10e-6 = 0.0015 + 0.0005 + 0.002 = $0.004
        assert_eq!(early.cost, Cost::Computed(4_000_000_000));
        let mut late = event(10, 1000, 400, 200);
        book.price(&mut late);
        // 1000 × 2e-6 + 200 × 8e-6 = 0.002 + 0.0016 = $0.0036
        assert_eq!(late.cost, Cost::Computed(3_600_000_000));
    }

    #[test]
    fn unpriced_and_reported_costs() {
        let book = PriceBook::new(vec![price(10, 1, 1, None)]);
        let mut before_any_price = event(5, 10, 0, 10);
        book.price(&mut before_any_price);
        assert_eq!(before_any_price.cost, Cost::Unpriced);
        let mut reported = event(12, 10, 0, 10);
        reported.cost = Cost::Reported(7);
        book.price(&mut reported);
        assert_eq!(reported.cost, Cost::Reported(7));
    }
}
