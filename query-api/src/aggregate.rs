//! Turning rollup rows into the numbers the dashboards show.
//!
//! Rates are percentages (0–100). Latencies are milliseconds. Money is reported twice: a JSON
//! number rounded to the micro-dollar (for charts) and an exact decimal string in US dollars
//! (`*_usd`, for finance). Averages of money divide exact totals once, at the end.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde::Serialize;
use tally_domain::rollup::{Rollup, RollupRow, RollupTotal};
use tally_domain::store::{ScannedRow, StoreResult};
use tally_schemas::Pico;

pub use tally_domain::measures::{error_rate, mean_latency_ms, pct, priced_requests, usd_per};

/// Merges every row (sums and sketches).
pub fn merge_all<'a>(rows: impl IntoIterator<Item = &'a RollupRow>) -> Rollup {
    let mut total = RollupTotal::new();
    for row in rows {
        total.add(&row.rollup);
    }
    total.rollup()
}

/// Merges every row's sums (counts, tokens, money), leaving the sketches out.
pub fn merge_sums(rows: &[RollupRow]) -> Rollup {
    let mut total = Rollup::default();
    for row in rows {
        total.merge_sums(&row.rollup);
    }
    total
}

pub fn usd(p: Pico) -> f64 {
    p.to_usd_f64_micro_rounded()
}

/// The health numbers shared by every per-feature and per-model summary.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HealthNumbers {
    /// Request-based availability: the share of requests that did not fail (error or timeout).
    pub uptime: f64,
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub success_rate: f64,
    /// Mean latency, ms.
    pub response_time: f64,
    pub total_requests: u64,
    pub cost_per_request: f64,
}

impl HealthNumbers {
    pub fn of(r: &Rollup) -> HealthNumbers {
        let success = r.requests - r.failures();
        HealthNumbers {
            uptime: pct(success, r.requests),
            error_rate: pct(r.failures(), r.requests),
            timeout_rate: pct(r.timeouts, r.requests),
            success_rate: pct(success, r.requests),
            response_time: mean_latency_ms(r),
            total_requests: r.requests,
            cost_per_request: usd_per(r.cost, r.requests),
        }
    }
}

/// p50 / p95 / p99 latency in ms (`None` when there were no requests).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Percentiles {
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl Percentiles {
    pub fn of(r: &Rollup) -> Percentiles {
        Percentiles {
            latency_p50_ms: r.latency.quantile_ms(0.50),
            latency_p95_ms: r.latency.quantile_ms(0.95),
            latency_p99_ms: r.latency.quantile_ms(0.99),
        }
    }
}

/// A health verdict for lists and overviews.
pub fn health_label(r: &Rollup) -> &'static str {
    if r.requests == 0 {
        return "idle";
    }
    let error_rate = pct(r.failures(), r.requests);
    let p95 = r.latency.quantile_ms(0.95).unwrap_or(0.0);
    if error_rate >= 25.0 {
        "unhealthy"
    } else if error_rate >= 5.0 || p95 > 10_000.0 {
        "degraded"
    } else {
        "healthy"
    }
}

/// Rows grouped by `keys`; each group's key is the list of its values in `keys` order.
/// Hour and day values are RFC 3339 hour starts and `YYYY-MM-DD` dates (UTC).
pub fn group_rows<'a>(
    rows: impl IntoIterator<Item = &'a RollupRow>,
    keys: &[crate::params::GroupKey],
    with_sketches: bool,
) -> std::collections::BTreeMap<Vec<String>, Rollup> {
    let key_of =
        |row: &RollupRow| -> Vec<String> { keys.iter().map(|k| key_value(row, *k)).collect() };
    if !with_sketches {
        let mut sums: std::collections::BTreeMap<Vec<String>, Rollup> =
            std::collections::BTreeMap::new();
        for row in rows {
            sums.entry(key_of(row)).or_default().merge_sums(&row.rollup);
        }
        return sums;
    }
    let mut groups: std::collections::BTreeMap<Vec<String>, RollupTotal> =
        std::collections::BTreeMap::new();
    for row in rows {
        groups.entry(key_of(row)).or_default().add(&row.rollup);
    }
    groups
        .into_iter()
        .map(|(key, total)| (key, total.rollup()))
        .collect()
}

fn key_value(row: &RollupRow, key: crate::params::GroupKey) -> String {
    use crate::params::GroupKey;
    let d = &row.key.dims;
    match key {
        GroupKey::Feature => d.feature.clone(),
        GroupKey::Provider => d.provider.clone(),
        GroupKey::Model => d.model.clone(),
        GroupKey::Environment => d.environment.as_str().to_string(),
        GroupKey::PromptId => d.prompt_id.clone(),
        GroupKey::PromptVersion => d.prompt_version.clone(),
        GroupKey::ExperimentId => d.experiment_id.clone(),
        GroupKey::Variant => d.variant.clone(),
        GroupKey::Hour => {
            chrono::DateTime::from_timestamp(row.key.bucket.div_euclid(3600) * 3600, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        }
        GroupKey::Day => {
            chrono::DateTime::from_timestamp(row.key.bucket.div_euclid(86_400) * 86_400, 0)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        }
    }
}

/// One step of a time series.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HistoryPoint {
    pub timestamp: String,
    /// Mean latency, ms (0 for a step without requests).
    pub response_time: f64,
    /// Latency percentiles of the step (`null` for a step without requests).
    #[serde(flatten)]
    pub percentiles: Percentiles,
    pub error_rate: f64,
    pub throughput: u64,
    pub cost: f64,
}

/// The window's steps of `step` seconds (start, rows merged), totalled as the rows come
/// ([`crate::rollups::scan_stepped_into`]), each row added to the step its bucket falls in
/// straight from its stored sketches (rows must be no coarser than `step`:
/// [`tally_domain::window::Window::stepped_spans`]).
pub struct StepTotals {
    starts: Vec<i64>,
    step: i64,
    totals: Vec<RollupTotal>,
}

impl StepTotals {
    pub fn new(window: &tally_domain::window::Window, step: i64) -> StepTotals {
        let starts = window.steps(step);
        StepTotals {
            totals: vec![RollupTotal::new(); starts.len()],
            starts,
            step,
        }
    }

    /// Adds `row` to the step its bucket falls in.
    pub fn add(&mut self, row: &ScannedRow<'_>) -> StoreResult<()> {
        match self.slot(row.key.bucket) {
            Some(slot) => row.add_to(slot),
            None => Ok(()),
        }
    }

    fn slot(&mut self, bucket: i64) -> Option<&mut RollupTotal> {
        let first = *self.starts.first()?;
        let idx = usize::try_from((bucket - first).div_euclid(self.step)).unwrap_or(0);
        self.totals.get_mut(idx)
    }

    /// Every step's start and total.
    pub fn steps(self) -> Vec<(i64, Rollup)> {
        self.starts
            .into_iter()
            .zip(self.totals.into_iter().map(RollupTotal::rollup))
            .collect()
    }
}

/// The value of `key` in `map`, a default one inserted first when there is none (the key is
/// copied only then): for totals kept per dimension while rows stream by.
pub fn slot<'m, K, Q, V>(map: &'m mut BTreeMap<K, V>, key: &Q) -> &'m mut V
where
    K: Ord + Borrow<Q>,
    Q: Ord + ToOwned<Owned = K> + ?Sized,
    V: Default,
{
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Every step merged: the whole window, when the steps came from rows of
/// [`tally_domain::window::Window::stepped_spans`] (merging is associative and commutative, so
/// this equals merging the rows themselves, at a step's cost instead of a row's).
pub fn merge_steps(steps: &[(i64, Rollup)]) -> Rollup {
    let mut total = RollupTotal::new();
    for (_, r) in steps {
        total.add(r);
    }
    total.rollup()
}

/// A time series: one point per step ([`StepTotals::steps`]).
pub fn history_of(steps: &[(i64, Rollup)]) -> Vec<HistoryPoint> {
    steps
        .iter()
        .map(|(t, r)| HistoryPoint {
            timestamp: chrono::DateTime::from_timestamp(*t, 0)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            response_time: mean_latency_ms(r),
            percentiles: Percentiles::of(r),
            error_rate: pct(r.failures(), r.requests),
            throughput: r.requests,
            cost: usd(r.cost),
        })
        .collect()
}

/// A model's numbers over a window: the performance view, the model cards and the analytics
/// performance listing all show these.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ModelNumbers {
    pub usage_count: u64,
    /// Mean latency, ms.
    pub avg_latency: f64,
    #[serde(flatten)]
    pub percentiles: Percentiles,
    pub success_rate: f64,
    pub error_rate: f64,
    pub timeout_rate: f64,
    /// Exact cost over the priced requests, US dollars (display).
    pub avg_cost_per_request: f64,
    /// Exact cost rounded to the micro-dollar (charts).
    pub total_cost: f64,
    /// Exact cost, decimal US dollars.
    pub total_cost_usd: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub unpriced_requests: u64,
    pub unique_users: u64,
}

impl ModelNumbers {
    pub fn of(r: &Rollup) -> ModelNumbers {
        ModelNumbers {
            usage_count: r.requests,
            avg_latency: mean_latency_ms(r),
            percentiles: Percentiles::of(r),
            success_rate: pct(r.requests - r.failures(), r.requests),
            error_rate: pct(r.failures(), r.requests),
            timeout_rate: pct(r.timeouts, r.requests),
            avg_cost_per_request: usd_per(r.cost, priced_requests(r)),
            total_cost: usd(r.cost),
            total_cost_usd: r.cost.to_decimal_string(),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            unpriced_requests: r.unpriced,
            unique_users: r.users.estimate(),
        }
    }
}
