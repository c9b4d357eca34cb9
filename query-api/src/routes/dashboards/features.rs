//! `GET /features` and `GET /features/{name}/metrics`: the per-feature dashboards.
//!
//! The listing takes the configuration listings' filters, search, sort and pagination
//! ([`crate::listing`]) over its computed items, besides `environment` and the time window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::{json, Value};
use tally_domain::config::{Assignment, Feature};
use tally_domain::rollup::Rollup;
use tally_domain::store::{BucketSums, Filter, RowFold, ScannedRow, StoreResult, SumsOf};
use tally_http::http::{data, ApiError, Data};
use tally_schemas::validate::check_slug;

use crate::aggregate::{
    history_of, merge_steps, slot, usd, HealthNumbers, Percentiles, StepTotals,
};
use crate::listing::{ListQuery, ListSpec, Pagination};
use crate::params::{environment_param, joined, refuse_unknown, window_params, Params};
use crate::rollups::{bucket_sums, scan, scan_stepped_into};
use crate::state::QueryState;
use tally_http::auth::Access;
use tally_http::route::{Param, Route, Routes};

use crate::routes::API_BASE;
use tally_domain::window::{step_for, Window, WindowInfo};

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/features"),
            Access::ReadMetrics,
            "Every feature (registered or seen in events) with its health and current models",
            list,
        )
        .query(LIST.clone())
        .returns::<FeaturePage>(200),
    )
    .serve(
        Route::get(
            format!("{API_BASE}/features/{{name}}/metrics"),
            Access::ReadMetrics,
            "A feature's dashboard: realtime health, percentiles, history, usage and costs",
            metrics,
        )
        .query(METRICS.clone())
        .returns::<Data<FeatureMetrics>>(200),
    )
}

/// The current model per environment, keyed by environment name.
fn current_models(assignments: &[Assignment], feature: &str) -> BTreeMap<&'static str, Value> {
    assignments
        .iter()
        .filter(|a| a.feature == feature && a.is_active)
        .map(|a| {
            (
                a.environment.as_str(),
                json!({"name": a.model, "provider_name": a.provider, "assigned_at": a.assigned_at}),
            )
        })
        .collect()
}

#[derive(Serialize, schemars::JsonSchema)]
struct FeatureListItem {
    id: Option<String>,
    name: String,
    display_name: String,
    status: String,
    registered: bool,
    health: &'static str,
    metrics: HealthNumbers,
    current_model: Option<Value>,
    current_models: BTreeMap<&'static str, Value>,
}

/// The listing's filters and sorts (besides `environment` and the time window, which choose
/// the events its numbers come from).
const FEATURE_LIST: ListSpec = ListSpec {
    filters: &[
        (
            "status",
            "status",
            &["active", "inactive", "maintenance", "unregistered"],
        ),
        (
            "health",
            "health",
            &["healthy", "degraded", "unhealthy", "idle"],
        ),
        ("registered", "registered", &["true", "false"]),
    ],
    sorts: &[
        "name",
        "display_name",
        "status",
        "health",
        "metrics.total_requests",
        "metrics.error_rate",
        "metrics.response_time",
        "metrics.cost_per_request",
    ],
};

/// `environment` and the window: the events the listing's numbers come from.
static LIST_WINDOW: LazyLock<Vec<Param>> = LazyLock::new(|| {
    joined([
        vec![
            environment_param(),
            Param::one_of("include_metrics", &["true", "false"]).describe(
                "Accepted as the product documents' clients send it; the metrics are always included",
            ),
        ],
        window_params(),
    ])
});
static LIST: LazyLock<Vec<Param>> =
    LazyLock::new(|| joined([LIST_WINDOW.clone(), FEATURE_LIST.params()]));
static METRICS: LazyLock<Vec<Param>> = LazyLock::new(|| {
    joined([
        vec![
            environment_param(),
            Param::text("model"),
            Param::text("provider"),
        ],
        window_params(),
    ])
});

#[derive(Serialize, schemars::JsonSchema)]
struct FeatureList {
    time_range: Option<String>,
    window: WindowInfo,
    /// The page of features asked for.
    #[schemars(with = "Vec<FeatureListItem>")]
    features: Vec<Value>,
}

/// The listing: `data.features` is one page; `pagination.total` counts every match.
#[derive(Serialize, schemars::JsonSchema)]
struct FeaturePage {
    data: FeatureList,
    pagination: Pagination,
}

async fn list(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    refuse_unknown(&q, &LIST)?;
    let (window_q, list_q): (HashMap<_, _>, HashMap<_, _>) = q
        .into_iter()
        .partition(|(k, _)| LIST_WINDOW.iter().any(|p| p.name == k.as_str()));
    // Dashboards have always received every feature: pages only when asked to.
    let paged = list_q.contains_key("limit");
    let listing = ListQuery::parse(list_q, &FEATURE_LIST)?.all_by_default(paged);
    let params = Params::new(window_q, &LIST_WINDOW)?;
    let (window, range) = params.window(state.clock.now(), "24h")?;
    let filter = Filter {
        environment: params.filter()?.environment,
        ..Filter::default()
    };
    let rows = scan(&state, &filter, window.spans(), true).await?;
    let features = state.config.list_features().await?;
    let assignments = state.config.active_assignments().await?;
    let mut by_feature: BTreeMap<&str, Rollup> = BTreeMap::new();
    for row in &rows {
        by_feature
            .entry(row.key.dims.feature.as_str())
            .or_default()
            .merge(&row.rollup);
    }
    let registered: HashMap<&str, &Feature> =
        features.iter().map(|f| (f.name.as_str(), f)).collect();
    let names: BTreeSet<&str> = registered
        .keys()
        .copied()
        .chain(by_feature.keys().copied())
        .collect();
    let empty = Rollup::default();
    let items: Vec<FeatureListItem> = names
        .into_iter()
        .map(|name| {
            let r = by_feature.get(name).unwrap_or(&empty);
            let f = registered.get(name);
            let models = current_models(&assignments, name);
            let current = ["production", "staging", "development"]
                .iter()
                .find_map(|e| models.get(e).cloned());
            FeatureListItem {
                id: f.map(|f| f.id.to_string()),
                name: name.to_string(),
                display_name: f.map_or_else(|| name.to_string(), |f| f.display_name.clone()),
                status: f.map_or_else(
                    || "unregistered".to_string(),
                    |f| f.status.as_str().to_string(),
                ),
                registered: f.is_some(),
                health: crate::aggregate::health_label(r),
                metrics: HealthNumbers::of(r),
                current_model: current,
                current_models: models,
            }
        })
        .collect();
    let page = listing.apply(&items)?;
    Ok(axum::Json(FeaturePage {
        data: FeatureList {
            time_range: range,
            window: window.info(),
            features: page.data,
        },
        pagination: page.pagination,
    }))
}

#[derive(Serialize, schemars::JsonSchema)]
struct Realtime {
    #[serde(flatten)]
    health: HealthNumbers,
    requests_per_minute: f64,
    #[serde(flatten)]
    percentiles: Percentiles,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Usage {
    total_requests: u64,
    unique_users: u64,
    peak_usage_hour: Option<u32>,
    avg_requests_per_user: f64,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
}

#[derive(Serialize, schemars::JsonSchema)]
struct BreakdownItem {
    category: String,
    provider: String,
    model: String,
    amount: f64,
    amount_usd: String,
    percentage: f64,
    requests: u64,
    unpriced_requests: u64,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Costs {
    total_cost: f64,
    total_cost_usd: String,
    cost_trend: f64,
    previous_period_cost: f64,
    previous_period_cost_usd: String,
    unpriced_requests: u64,
    cost_breakdown: Vec<BreakdownItem>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct FeatureMetrics {
    feature: String,
    registered: bool,
    time_range: Option<String>,
    window: WindowInfo,
    realtime: Realtime,
    #[serde(flatten)]
    percentiles: Percentiles,
    historical: Value,
    usage: Usage,
    costs: Costs,
}

async fn metrics(
    State(state): State<QueryState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    check_slug("name", &name).map_err(|e| ApiError::bad_param("name", e.reason))?;
    let params = Params::new(q, &METRICS)?;
    let (window, range) = params.window(state.clock.now(), "24h")?;
    let filter = Filter {
        feature: Some(name.clone()),
        ..params.filter()?
    };
    let step = step_for(window.len_s());
    // Independent reads, run concurrently (each takes its own reader connection). Usage by hour
    // of day needs hourly buckets; the chart's rows are that fine below a step of an hour.
    let hour_spans = if step > 3600 {
        window.hour_spans()
    } else {
        Vec::new()
    };
    let previous_spans = window.previous().spans();
    let (rows, hour_sums, previous, features) = tokio::try_join!(
        scan_stepped_into(
            &state,
            &filter,
            &window,
            step,
            true,
            MetricsRows::new(&window, step, hour_spans.is_empty())
        ),
        bucket_sums(&state, &filter, &hour_spans, SumsOf::Requests),
        bucket_sums(&state, &filter, &previous_spans, SumsOf::Money),
        async { state.config.list_features().await.map_err(ApiError::from) },
    )?;
    let MetricsRows {
        steps,
        by_model,
        by_bucket,
    } = rows;
    let steps = steps.steps();
    let total = merge_steps(&steps);
    let registered = features.iter().any(|f| f.name == name);
    if !registered && total.requests == 0 {
        return Err(ApiError::not_found(format!(
            "feature {name} is not registered and has no events in this window"
        )));
    }
    let previous = BucketSums::total(&previous);
    let percentiles = Percentiles::of(&total);
    let by_hour: Vec<(i64, u64)> = if let Some(by_bucket) = by_bucket {
        by_bucket
    } else {
        hour_sums
            .iter()
            .map(|b| (b.bucket, b.sums.requests))
            .collect()
    };
    let body = FeatureMetrics {
        feature: name,
        registered,
        time_range: range.clone(),
        window: window.info(),
        realtime: Realtime {
            health: HealthNumbers::of(&total),
            requests_per_minute: total.requests as f64 / window.minutes().max(1) as f64,
            percentiles: percentiles.clone(),
        },
        percentiles,
        historical: json!({
            "timeRange": range.unwrap_or_else(|| "custom".to_string()),
            "step_seconds": step,
            "data": history_of(&steps),
        }),
        usage: usage(&total, &by_hour),
        costs: costs(&total, &previous, by_model),
    };
    Ok(data(body))
}

/// Usage numbers; `requests` are (bucket start, requests) of buckets no coarser than an hour.
fn usage(total: &Rollup, requests: &[(i64, u64)]) -> Usage {
    let mut by_hour = [0u64; 24];
    for &(bucket, n) in requests {
        by_hour[(bucket.rem_euclid(86_400) / 3600) as usize] += n;
    }
    let peak = (0..24u32)
        .filter(|&h| by_hour[h as usize] > 0)
        .max_by_key(|&h| (by_hour[h as usize], std::cmp::Reverse(h)));
    let users = total.users.estimate();
    Usage {
        total_requests: total.requests,
        unique_users: users,
        peak_usage_hour: peak,
        avg_requests_per_user: if users == 0 {
            0.0
        } else {
            total.requests as f64 / users as f64
        },
        input_tokens: total.input_tokens,
        output_tokens: total.output_tokens,
        cached_input_tokens: total.cached_input_tokens,
    }
}

/// The metrics' rows as they are read: the chart's steps, the sums per provider and model, and
/// each row's requests when they are wanted (for usage by hour, when the rows are no coarser
/// than an hour).
struct MetricsRows {
    steps: StepTotals,
    /// Sums per provider, then model.
    by_model: BTreeMap<String, BTreeMap<String, Rollup>>,
    by_bucket: Option<Vec<(i64, u64)>>,
}

impl MetricsRows {
    fn new(window: &Window, step: i64, with_buckets: bool) -> MetricsRows {
        MetricsRows {
            steps: StepTotals::new(window, step),
            by_model: BTreeMap::new(),
            by_bucket: with_buckets.then(Vec::new),
        }
    }
}

impl RowFold for MetricsRows {
    fn add(&mut self, row: ScannedRow<'_>) -> StoreResult<()> {
        self.steps.add(&row)?;
        let dims = &row.key.dims;
        slot(
            slot(&mut self.by_model, dims.provider.as_str()),
            dims.model.as_str(),
        )
        .merge_sums(&row.rollup);
        if let Some(buckets) = &mut self.by_bucket {
            buckets.push((row.key.bucket, row.rollup.requests));
        }
        Ok(())
    }
}

fn costs(
    total: &Rollup,
    previous: &Rollup,
    by_model: BTreeMap<String, BTreeMap<String, Rollup>>,
) -> Costs {
    let mut breakdown: Vec<BreakdownItem> = by_model
        .into_iter()
        .flat_map(|(provider, models)| {
            models
                .into_iter()
                .map(move |(model, r)| (provider.clone(), model, r))
        })
        .map(|(provider, model, r)| BreakdownItem {
            category: format!("{provider}/{model}"),
            provider,
            model,
            amount: usd(r.cost),
            amount_usd: r.cost.to_decimal_string(),
            percentage: if total.cost.0 == 0 {
                0.0
            } else {
                r.cost.0 as f64 * 100.0 / total.cost.0 as f64
            },
            requests: r.requests,
            unpriced_requests: r.unpriced,
        })
        .collect();
    breakdown.sort_by(|a, b| {
        b.amount
            .total_cmp(&a.amount)
            .then_with(|| a.category.cmp(&b.category))
            .then_with(|| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)))
    });
    let trend = if previous.cost.0 == 0 {
        0.0
    } else {
        (total.cost.0 - previous.cost.0) as f64 * 100.0 / previous.cost.0 as f64
    };
    Costs {
        total_cost: usd(total.cost),
        total_cost_usd: total.cost.to_decimal_string(),
        cost_trend: trend,
        previous_period_cost: usd(previous.cost),
        previous_period_cost_usd: previous.cost.to_decimal_string(),
        unpriced_requests: total.unpriced,
        cost_breakdown: breakdown,
    }
}
