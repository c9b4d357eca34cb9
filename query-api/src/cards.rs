//! The numbers a configuration listing adds when asked with `include_metrics=true` (the
//! product documents' model and provider cards): each item's recent numbers in one answer,
//! from one scan of the window for every listed item. They are the numbers the dashboards
//! show for the same window — [`ModelNumbers`] as on `GET /models/{id}/performance`, a
//! provider's health as on `GET /providers/{name}/health` — computed by the same functions.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use chrono::{Datelike, TimeZone, Utc};
use serde::Serialize;
use tally_domain::rollup::Rollup;
use tally_domain::store::Filter;
use tally_domain::window::{Window, WindowInfo};
use tally_http::http::ApiError;
use tally_http::route::Param;

use crate::aggregate::{mean_latency_ms, pct, usd, ModelNumbers};
use crate::assessment::provider_health;
use crate::params::{environment_param, joined, window_params, Params};
use crate::rollups::scan;
use crate::state::QueryState;

/// `include_metrics`, and the window and environment its numbers cover.
pub static METRICS_PARAMS: LazyLock<Vec<Param>> = LazyLock::new(|| {
    joined([
        vec![Param::one_of("include_metrics", &["true", "false"])
            .describe("Add each item's recent numbers (performance_metrics)")],
        vec![environment_param()],
        window_params(),
    ])
});

/// What was asked of the metrics: the window, or nothing when `include_metrics` is not true.
pub struct MetricsQuery {
    pub window: Window,
    pub time_range: Option<String>,
    pub filter: Filter,
}

/// Splits the metrics parameters from the listing's; `Some` when `include_metrics=true`.
/// `default_range` is the window when none is named.
pub fn split(
    state: &QueryState,
    query: HashMap<String, String>,
    default_range: &str,
) -> Result<(Option<MetricsQuery>, HashMap<String, String>), ApiError> {
    let (metrics, listing): (HashMap<_, _>, HashMap<_, _>) = query
        .into_iter()
        .partition(|(k, _)| METRICS_PARAMS.iter().any(|p| p.name == k.as_str()));
    let params = Params::new(metrics, &METRICS_PARAMS)?;
    let wanted = params
        .word("include_metrics", &["true", "false"], |w| match w {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })?
        .unwrap_or(false);
    // Checked either way, so a bad window is a 400 whether or not metrics were asked for.
    let (window, time_range) = params.window(state.clock.now(), default_range)?;
    let filter = Filter {
        environment: params.filter()?.environment,
        ..Filter::default()
    };
    Ok((
        wanted.then_some(MetricsQuery {
            window,
            time_range,
            filter,
        }),
        listing,
    ))
}

/// A model card's numbers.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ModelCard {
    pub time_range: Option<String>,
    pub window: WindowInfo,
    /// Mean latency, ms (the documents' name; equals `avg_latency`).
    pub average_response_time: f64,
    /// Requests (the documents' name; equals `usage_count`).
    pub total_requests: u64,
    #[serde(flatten)]
    pub numbers: ModelNumbers,
}

/// Each (provider, model)'s card over the asked window.
pub async fn model_cards(
    state: &QueryState,
    asked: &MetricsQuery,
) -> Result<BTreeMap<(String, String), ModelCard>, ApiError> {
    let rows = scan(state, &asked.filter, asked.window.spans(), true).await?;
    let mut per_model: BTreeMap<(String, String), Rollup> = BTreeMap::new();
    for row in &rows {
        per_model
            .entry((row.key.dims.provider.clone(), row.key.dims.model.clone()))
            .or_default()
            .merge(&row.rollup);
    }
    Ok(per_model
        .into_iter()
        .map(|(key, r)| (key, model_card(asked, &r)))
        .collect())
}

/// The card of a model without events in the window is all zeros.
pub fn model_card(asked: &MetricsQuery, r: &Rollup) -> ModelCard {
    ModelCard {
        time_range: asked.time_range.clone(),
        window: asked.window.info(),
        average_response_time: mean_latency_ms(r),
        total_requests: r.requests,
        numbers: ModelNumbers::of(r),
    }
}

/// A provider card's numbers.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ProviderCard {
    pub time_range: Option<String>,
    pub window: WindowInfo,
    /// Registered models of the provider.
    pub model_count: usize,
    /// Spend this calendar month (UTC) so far, US dollars rounded to the micro-dollar.
    pub monthly_spend: f64,
    /// The same, exact decimal US dollars.
    pub monthly_spend_usd: String,
    /// The score of `GET /providers/{name}/health` for the window (against the 24 hours
    /// before it); `None` without events.
    pub health_score: Option<u32>,
    pub health_status: &'static str,
    /// Share of requests that did not fail, percent (`None` without events).
    pub uptime: Option<f64>,
    /// Mean latency, ms (`None` without events).
    pub response_time: Option<f64>,
    pub total_requests: u64,
}

/// Each provider's card (keyed by name) over the asked window; `models` counts registered
/// models per provider.
pub async fn provider_cards(
    state: &QueryState,
    asked: &MetricsQuery,
    models: &HashMap<String, usize>,
    providers: &[String],
) -> Result<BTreeMap<String, ProviderCard>, ApiError> {
    let now = state.clock.now();
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    let month = Window::between(
        month_start,
        now.max(month_start + chrono::Duration::minutes(1)),
    )?;
    let baseline = Window {
        from: asked.window.from - 86_400,
        to: asked.window.from,
        widened: false,
    };
    let (rows, baseline_rows, month_rows) = tokio::try_join!(
        scan(state, &asked.filter, asked.window.spans(), true),
        scan(state, &asked.filter, baseline.spans(), true),
        scan(state, &asked.filter, month.spans(), false),
    )?;
    let per_provider = |rows: Vec<tally_domain::rollup::RollupRow>, sketches: bool| {
        let mut out: HashMap<String, Rollup> = HashMap::new();
        for row in rows {
            let entry = out.entry(row.key.dims.provider.clone()).or_default();
            if sketches {
                entry.merge(&row.rollup);
            } else {
                entry.merge_sums(&row.rollup);
            }
        }
        out
    };
    let (recent, before, spent) = (
        per_provider(rows, true),
        per_provider(baseline_rows, true),
        per_provider(month_rows, false),
    );
    let none = Rollup::default();
    Ok(providers
        .iter()
        .map(|name| {
            let r = recent.get(name).unwrap_or(&none);
            let verdict = provider_health(r, before.get(name).unwrap_or(&none));
            let cost = spent.get(name).map(|s| s.cost).unwrap_or_default();
            (
                name.clone(),
                ProviderCard {
                    time_range: asked.time_range.clone(),
                    window: asked.window.info(),
                    model_count: models.get(name).copied().unwrap_or(0),
                    monthly_spend: usd(cost),
                    monthly_spend_usd: cost.to_decimal_string(),
                    health_score: verdict.score,
                    health_status: verdict.status,
                    uptime: (r.requests > 0).then(|| pct(r.requests - r.failures(), r.requests)),
                    response_time: (r.requests > 0).then(|| mean_latency_ms(r)),
                    total_requests: r.requests,
                },
            )
        })
        .collect())
}
