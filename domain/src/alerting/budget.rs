//! Where a budget stands: its current period's spending against its amount, the forecast to the
//! period's end, the thresholds crossed, and the state that follows.
//!
//! [`BudgetStatus::read`] is the only way a budget's figures are computed: the budgets route,
//! the evaluator that raises budget alerts and the Prometheus budget gauges all call it, and it
//! reads the same rollup rows (through the same window decomposition) as `/analytics/spending`,
//! so late events and reprices move a budget's numbers exactly as they move the dashboards.
//!
//! Figures (all exact in pico-dollars until they are displayed):
//! - *spend*: the priced cost of the scope's requests from the period's start to the end of the
//!   current minute (the minute `/analytics/spending` counts last).
//! - *forecast*: spend × period length ÷ time elapsed since the period's start (the period's
//!   average rate, carried to its end).
//! - *trailing forecast*: spend + (spend of the last 24 hours ÷ 24 h) × time left.
//! - *thresholds crossed*: each `t` with spend ≥ amount × t ÷ 100.
//! - *state*: `exceeded` when spend ≥ amount; otherwise `forecast_exceeded` when the forecast is
//!   over the amount; otherwise `warning` when a threshold below 100 is crossed; otherwise `ok`.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::Serialize;
use tally_schemas::{Environment, Pico};
use uuid::Uuid;

use super::period::Period;
use crate::config::{Budget, BudgetPeriod, BudgetScope};
use crate::error::StoreResult;
use crate::rollup::Rollup;
use crate::store::{AnalyticsStore, Filter, ScanRequest};
use crate::window::Window;

const PICO_PER_MICRO: i128 = 1_000_000;

named_enum!(
    /// Where a budget stands in its period.
    BudgetState { Ok => "ok", Warning => "warning", Exceeded => "exceeded", ForecastExceeded => "forecast_exceeded" }
);

/// A budget's standing in its current period.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BudgetStatus {
    pub budget_id: Uuid,
    pub name: String,
    pub scope: BudgetScope,
    pub scope_value: Option<String>,
    pub period: BudgetPeriod,
    pub time_zone: String,
    pub is_active: bool,
    /// The period's first instant, with the zone's offset then.
    pub period_start: DateTime<FixedOffset>,
    /// The next period's first instant, with the zone's offset then.
    pub period_end: DateTime<FixedOffset>,
    /// The instant the figures are for.
    pub as_of: DateTime<Utc>,
    /// Spending so far this period, exact decimal dollars.
    pub spend_usd: String,
    /// `spend_usd` as a number (rounded to the micro-dollar).
    pub spend: f64,
    pub amount_usd: String,
    /// Spend ÷ amount.
    pub utilization: f64,
    /// Spend carried to the period's end at the period's average rate so far.
    pub forecast_usd: String,
    /// Spend carried to the period's end at the last 24 hours' rate.
    pub forecast_trailing_24h_usd: String,
    pub thresholds_percent: Vec<u32>,
    /// The thresholds (percent of the amount) the spend has reached.
    pub thresholds_crossed: Vec<u32>,
    /// Requests this period counted in the scope.
    pub requests: u64,
    /// Requests in scope whose cost is unknown (no price at the time), so not in `spend`.
    pub unpriced_requests: u64,
    pub state: BudgetState,
}

/// The exact figures a status is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub spend: Pico,
    pub amount: Pico,
    pub forecast: Pico,
    pub forecast_trailing: Pico,
}

impl Figures {
    /// The figures for `spend` so far and `spend_24h` over the last day, `now` being in
    /// `period`.
    pub fn new(
        spend: Pico,
        spend_24h: Pico,
        amount_micros: i64,
        period: &Period,
        now: DateTime<Utc>,
    ) -> Figures {
        let start_us = period.start.timestamp_micros();
        let end_us = period.end.timestamp_micros();
        let now_us = now.timestamp_micros().clamp(start_us, end_us);
        let elapsed = i128::from((now_us - start_us).max(1));
        let left = i128::from(end_us - now_us);
        let day = i128::from(Duration::days(1).num_microseconds().unwrap_or(1));
        Figures {
            spend,
            amount: Pico(i128::from(amount_micros) * PICO_PER_MICRO),
            forecast: Pico(spend.0 * i128::from(period.len_us()) / elapsed),
            forecast_trailing: Pico(spend.0 + spend_24h.0 * left / day),
        }
    }

    /// The thresholds (percent of the amount) reached.
    pub fn crossed(&self, thresholds_percent: &[u32]) -> Vec<u32> {
        thresholds_percent
            .iter()
            .copied()
            .filter(|t| self.spend.0 * 100 >= self.amount.0 * i128::from(*t))
            .collect()
    }

    pub fn state(&self, thresholds_percent: &[u32]) -> BudgetState {
        if self.spend >= self.amount {
            BudgetState::Exceeded
        } else if self.forecast > self.amount {
            BudgetState::ForecastExceeded
        } else if self.crossed(thresholds_percent).iter().any(|t| *t < 100) {
            BudgetState::Warning
        } else {
            BudgetState::Ok
        }
    }

    pub fn utilization(&self) -> f64 {
        if self.amount.0 == 0 {
            0.0
        } else {
            self.spend.0 as f64 / self.amount.0 as f64
        }
    }
}

/// The rows a budget counts: its scope as a rollup filter.
pub fn scope_filter(budget: &Budget) -> Filter {
    let value = budget.spec.scope_value.clone();
    match budget.spec.scope {
        BudgetScope::Global => Filter::default(),
        BudgetScope::Feature => Filter {
            feature: value,
            ..Filter::default()
        },
        BudgetScope::Provider => Filter {
            provider: value,
            ..Filter::default()
        },
        BudgetScope::Model => Filter {
            model: value,
            ..Filter::default()
        },
        BudgetScope::Environment => Filter {
            environment: value.as_deref().and_then(Environment::parse),
            ..Filter::default()
        },
    }
}

/// The part of `period` up to the end of `now`'s minute, as a rollup window.
pub fn spent_window(period: &Period, now: DateTime<Utc>) -> Window {
    let minute_end = Window::last(Duration::minutes(1), now).to;
    let from = period.start.timestamp().div_euclid(60) * 60;
    Window {
        from,
        to: minute_end.clamp(from, period.end.timestamp()),
        widened: false,
    }
}

impl BudgetStatus {
    /// `budget`'s status at `now`, read from `store`'s rollups.
    pub async fn read(
        store: &dyn AnalyticsStore,
        budget: &Budget,
        now: DateTime<Utc>,
    ) -> StoreResult<BudgetStatus> {
        let tz: Tz = budget.spec.time_zone.parse().unwrap_or(Tz::UTC);
        let period = Period::holding(budget.spec.period, tz, now);
        let filter = scope_filter(budget);
        let sums = |spans| {
            let request = ScanRequest {
                filter: filter.clone(),
                spans,
                with_sketches: false,
            };
            async move {
                let rows = store.scan(request).await?;
                let mut total = Rollup::default();
                rows.iter().for_each(|r| total.merge_sums(&r.rollup));
                StoreResult::Ok(total)
            }
        };
        let spent = sums(spent_window(&period, now).spans()).await?;
        let last_day = sums(Window::last(Duration::days(1), now).spans()).await?;
        let figures = Figures::new(
            spent.cost,
            last_day.cost,
            budget.spec.amount_micros,
            &period,
            now,
        );
        Ok(BudgetStatus::of(budget, &period, now, &figures, &spent))
    }

    fn of(
        budget: &Budget,
        period: &Period,
        now: DateTime<Utc>,
        figures: &Figures,
        spent: &Rollup,
    ) -> BudgetStatus {
        let spec = &budget.spec;
        BudgetStatus {
            budget_id: budget.id,
            name: spec.name.clone(),
            scope: spec.scope,
            scope_value: spec.scope_value.clone(),
            period: spec.period,
            time_zone: spec.time_zone.clone(),
            is_active: spec.is_active,
            period_start: period.start.fixed_offset(),
            period_end: period.end.fixed_offset(),
            as_of: now,
            spend_usd: figures.spend.to_decimal_string(),
            spend: figures.spend.to_usd_f64_micro_rounded(),
            amount_usd: figures.amount.to_decimal_string(),
            utilization: figures.utilization(),
            forecast_usd: figures.forecast.to_decimal_string(),
            forecast_trailing_24h_usd: figures.forecast_trailing.to_decimal_string(),
            thresholds_percent: spec.thresholds_percent.clone(),
            thresholds_crossed: figures.crossed(&spec.thresholds_percent),
            requests: spent.requests,
            unpriced_requests: spent.unpriced,
            state: figures.state(&spec.thresholds_percent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid instant")
            .with_timezone(&Utc)
    }

    fn usd(text: &str) -> Pico {
        Pico::parse_usd(text).expect("dollars")
    }

    fn april() -> Period {
        Period::holding(BudgetPeriod::Monthly, Tz::UTC, at("2026-04-10T00:00:00Z"))
    }

    #[test]
    fn forecasts_carry_the_rates_to_the_period_end() {
        // April has 30 days. On the 7th at 12:00, 6.5 days have passed: $130 so far is
        // $20 a day, $600 by the end. The last day cost $30; 23.5 days are left:
        // 130 + 30 × 23.5 = 835.
        let f = Figures::new(
            usd("130"),
            usd("30"),
            1_000_000_000,
            &april(),
            at("2026-04-07T12:00:00Z"),
        );
        assert_eq!(f.forecast, usd("600"));
        assert_eq!(f.forecast_trailing, usd("835"));
        assert_eq!(f.amount, usd("1000"));
    }

    #[test]
    fn the_state_follows_spend_then_forecast_then_thresholds() {
        let thresholds = [50, 80, 100];
        let now = at("2026-04-16T00:00:00Z"); // 15 of 30 days gone: forecast = 2 × spend
        let state = |spend: &str| {
            let f = Figures::new(usd(spend), Pico(0), 100_000_000, &april(), now);
            (f.state(&thresholds), f.crossed(&thresholds))
        };
        assert_eq!(state("20"), (BudgetState::Ok, vec![]));
        assert_eq!(state("49.999999"), (BudgetState::Ok, vec![]));
        // $50 of $100 forecasts exactly $100: not over the amount, but 50 % is crossed.
        assert_eq!(state("50"), (BudgetState::Warning, vec![50]));
        assert_eq!(state("50.01"), (BudgetState::ForecastExceeded, vec![50]));
        assert_eq!(state("100"), (BudgetState::Exceeded, vec![50, 80, 100]));
        let late = Figures::new(
            usd("85"),
            Pico(0),
            100_000_000,
            &april(),
            at("2026-04-30T23:59:00Z"),
        );
        // 85 over 29.999 days forecasts just over 85: a warning, not a forecast breach.
        assert_eq!(late.state(&thresholds), BudgetState::Warning);
        assert_eq!(late.crossed(&thresholds), vec![50, 80]);
    }

    #[test]
    fn the_spent_window_ends_with_the_current_minute_and_the_period() {
        let p = april();
        let w = spent_window(&p, at("2026-04-07T12:00:30Z"));
        assert_eq!(w.from, at("2026-04-01T00:00:00Z").timestamp());
        assert_eq!(w.to, at("2026-04-07T12:01:00Z").timestamp());
        let last = spent_window(&p, at("2026-04-30T23:59:59Z"));
        assert_eq!(last.to, at("2026-05-01T00:00:00Z").timestamp());
    }
}
