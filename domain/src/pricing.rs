//! Pricing an event from the effective-dated price table.
//!
//! The price in force at `occurred_at` is the one with the latest `effective_from` not after it.
//! Cost (pico-dollars) = uncached input × input price + cached input × cached price (the input
//! price when none is set) + output × output price, prices in micro-dollars per million tokens.
//! No division, no rounding. Events that carry `cost_usd` keep it; events of models without a
//! price are `Unpriced`. Pricing happens before an event is appended, so the log is
//! self-contained and replays reproduce the live numbers even after prices change.
//!
//! The one exception is asked for explicitly: a reprice request ([`crate::config::Reprice`])
//! makes the projector price a model's events of a past period again, with the price table
//! saved in the request ([`Repricing`]). The cost in the log stays as it was; what a projection
//! counts is a function of the event and the requests only, so a replay still reproduces it.

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

/// A value read often and swapped whole when the configuration changes.
#[derive(Debug, Default)]
pub struct Current<T> {
    value: std::sync::RwLock<std::sync::Arc<T>>,
}

impl<T: Default> Current<T> {
    pub fn current(&self) -> std::sync::Arc<T> {
        self.value.read().map(|b| b.clone()).unwrap_or_default()
    }

    pub fn replace(&self, value: T) {
        if let Ok(mut slot) = self.value.write() {
            *slot = std::sync::Arc::new(value);
        }
    }
}

/// The price book currently in force.
pub type PriceCache = Current<PriceBook>;

impl Current<PriceBook> {
    /// Reloads every price from the config store.
    pub async fn refresh(
        &self,
        config: &dyn crate::store::ConfigStore,
    ) -> Result<(), crate::error::StoreError> {
        let prices = config.list_prices().await?;
        self.replace(PriceBook::new(prices));
        Ok(())
    }
}

/// The reprice requests currently recorded.
pub type RepriceCache = Current<Repricing>;

impl Current<Repricing> {
    /// Reloads every reprice request from the config store.
    pub async fn refresh(
        &self,
        config: &dyn crate::store::ConfigStore,
    ) -> Result<(), crate::error::StoreError> {
        let requests = config.list_reprices().await?;
        self.replace(Repricing::new(requests));
        Ok(())
    }
}

/// One reprice request, ready for lookups.
#[derive(Debug, Clone)]
struct Window {
    from_us: i64,
    until_us: i64,
    book: PriceBook,
}

/// Reprice requests indexed by (provider, model), newest last.
#[derive(Debug, Clone, Default)]
pub struct Repricing {
    requests: HashMap<String, HashMap<String, Vec<Window>>>,
}

impl Repricing {
    /// `requests` in any order; they are applied newest first (by request time, then id).
    pub fn new(mut requests: Vec<crate::config::Reprice>) -> Repricing {
        requests.sort_by_key(|r| (r.spec.requested_at, r.id));
        let mut map: HashMap<String, HashMap<String, Vec<Window>>> = HashMap::new();
        for crate::config::Reprice { spec: r, .. } in requests {
            map.entry(r.provider)
                .or_default()
                .entry(r.model)
                .or_default()
                .push(Window {
                    from_us: r.from.timestamp_micros(),
                    until_us: r.requested_at.timestamp_micros(),
                    book: PriceBook::new(r.prices),
                });
        }
        Repricing { requests: map }
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Prices `event` again with the newest request covering it, unless its client reported
    /// the cost. Events no request covers keep the cost they were logged with.
    pub fn apply(&self, event: &mut UsageEvent) {
        if let Cost::Reported(_) = event.cost {
            return;
        }
        let Some(windows) = self
            .requests
            .get(&event.provider)
            .and_then(|models| models.get(&event.model))
        else {
            return;
        };
        let at = event.occurred_at_us;
        if let Some(w) = windows
            .iter()
            .rev()
            .find(|w| w.from_us <= at && at < w.until_us)
        {
            event.cost = Cost::Pending;
            w.book.price(event);
        }
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

    fn reprice(
        from_day: u32,
        requested_day: u32,
        prices: Vec<ModelPrice>,
    ) -> crate::config::Reprice {
        let day = |d: u32| {
            Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0)
                .single()
                .expect("date")
        };
        crate::config::Reprice {
            id: uuid::Uuid::new_v4(),
            spec: crate::config::RepriceSpec {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                from: day(from_day),
                requested_at: day(requested_day),
                requested_by: None,
                prices,
            },
        }
    }

    #[test]
    fn a_reprice_covers_its_period_and_the_newest_wins() {
        // Logged at $1 in / $2 out per million; the corrected table says $3 / $5 from day 1.
        let logged = |day: u32| {
            let mut e = event(day, 1_000_000, 0, 1_000_000);
            e.cost = Cost::Computed(3_000_000_000_000);
            e
        };
        let first = reprice(10, 20, vec![price(1, 3_000_000, 5_000_000, None)]);
        let repricing = Repricing::new(vec![first.clone()]);
        let cost_on = |r: &Repricing, day: u32| {
            let mut e = logged(day);
            r.apply(&mut e);
            e.cost
        };
        assert_eq!(cost_on(&repricing, 9), Cost::Computed(3_000_000_000_000));
        assert_eq!(cost_on(&repricing, 10), Cost::Computed(8_000_000_000_000));
        assert_eq!(cost_on(&repricing, 19), Cost::Computed(8_000_000_000_000));
        // Events from the request on were priced with the table it saw: left alone.
        assert_eq!(cost_on(&repricing, 20), Cost::Computed(3_000_000_000_000));
        // Reported costs never change; other models are not covered.
        let mut reported = logged(12);
        reported.cost = Cost::Reported(7);
        repricing.apply(&mut reported);
        assert_eq!(reported.cost, Cost::Reported(7));
        let mut other = logged(12);
        other.model = "gpt-4o-mini".into();
        repricing.apply(&mut other);
        assert_eq!(other.cost, Cost::Computed(3_000_000_000_000));
        // An unpriced event gains the price the request knows of.
        let mut unpriced = logged(12);
        unpriced.cost = Cost::Unpriced;
        repricing.apply(&mut unpriced);
        assert_eq!(unpriced.cost, Cost::Computed(8_000_000_000_000));
        // A newer request over part of the period wins there, whatever the order given.
        let second = reprice(15, 25, vec![price(1, 1_000_000, 1_000_000, None)]);
        let both = Repricing::new(vec![second, first]);
        assert_eq!(cost_on(&both, 12), Cost::Computed(8_000_000_000_000));
        assert_eq!(cost_on(&both, 16), Cost::Computed(2_000_000_000_000));
        assert_eq!(cost_on(&both, 22), Cost::Computed(2_000_000_000_000));
        // A table without a price at the event's time leaves it unpriced.
        let late_table = Repricing::new(vec![reprice(10, 20, vec![price(15, 1, 1, None)])]);
        assert_eq!(cost_on(&late_table, 12), Cost::Unpriced);
    }
}
