//! `GET /analytics/spending`, `/analytics/usage` and `/analytics/performance`: finance's
//! breakdowns and the model comparison.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use tally_domain::rollup::Rollup;
use tally_http::http::{data, ApiError, Data};

use crate::aggregate::merge_sums;
use crate::aggregate::{group_rows, merge_all, priced_requests, usd, usd_per, ModelNumbers};
use crate::params::{filter_params, group_by_param, joined, window_params, GroupKey, Params};
use crate::rollups::scan;
use crate::state::QueryState;
use tally_http::auth::Access;
use tally_http::route::{Param, Route, Routes};

use crate::routes::API_BASE;
use tally_domain::window::Window;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/analytics/spending"),
            Access::ReadSpending,
            "Spending: exact totals and breakdowns by feature, provider, model, environment, hour or day",
            spending,
        )
        .query(SPENDING.clone())
        .returns::<Data<Value>>(200)
        .or_media(crate::csv::MEDIA),
    )
    .serve(
        Route::get(
            format!("{API_BASE}/analytics/usage"),
            Access::ReadMetrics,
            "Usage: requests, tokens and users, grouped",
            usage,
        )
        .query(USAGE.clone())
        .returns::<Data<Value>>(200)
        .or_media(crate::csv::MEDIA),
    )
    .serve(
        Route::get(
            format!("{API_BASE}/analytics/performance"),
            Access::ReadMetrics,
            "Performance: latency percentiles, error and timeout rates, by model",
            performance,
        )
        .query(PERFORMANCE.clone())
        .returns::<Data<Value>>(200),
    )
}

/// What spending can be grouped by: the dimensions and the day.
fn spending_keys() -> Vec<GroupKey> {
    GroupKey::ALL
        .into_iter()
        .filter(|k| *k != GroupKey::Hour)
        .collect()
}

/// `format=csv`: the rows as RFC 4180 CSV instead of JSON.
fn format_param() -> Param {
    Param::one_of("format", &["json", "csv"])
        .describe("json (default) or csv: the breakdown as RFC 4180 CSV with a header row")
}

/// Whether the request asked for CSV.
fn wants_csv(params: &Params) -> bool {
    params.get("format") == Some("csv")
}

static SPENDING: LazyLock<Vec<Param>> = LazyLock::new(|| {
    joined([
        vec![group_by_param(&spending_keys()), format_param()],
        window_params(),
        filter_params(),
    ])
});
static USAGE: LazyLock<Vec<Param>> = LazyLock::new(|| {
    joined([
        vec![group_by_param(&GroupKey::ALL), format_param()],
        window_params(),
        filter_params(),
    ])
});
static PERFORMANCE: LazyLock<Vec<Param>> =
    LazyLock::new(|| joined([window_params(), filter_params()]));

/// The rows to read for a grouping: hour groups need hour-or-finer rows.
fn spans_for(window: &Window, keys: &[GroupKey]) -> Vec<tally_domain::store::Span> {
    if keys.contains(&GroupKey::Hour) {
        window.hour_spans()
    } else {
        window.spans()
    }
}

fn keyed(keys: &[GroupKey], values: &[String]) -> Map<String, Value> {
    keys.iter()
        .zip(values)
        .map(|(k, v)| (k.name().to_string(), Value::String(v.clone())))
        .collect()
}

/// Time-keyed groups sort by time first; otherwise the largest first.
fn time_position(keys: &[GroupKey]) -> Option<usize> {
    keys.iter()
        .position(|k| matches!(k, GroupKey::Hour | GroupKey::Day))
}

async fn spending(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let params = Params::new(q, &SPENDING)?;
    let (window, range) = params.window(state.clock.now(), "30d")?;
    let keys = params.group_by(
        &spending_keys(),
        &[GroupKey::Feature, GroupKey::Provider, GroupKey::Model],
    )?;
    let rows = scan(&state, &params.filter()?, spans_for(&window, &keys), false).await?;
    let total = merge_sums(&rows);
    let mut groups: Vec<(Vec<String>, Rollup)> =
        group_rows(&rows, &keys, false).into_iter().collect();
    match time_position(&keys) {
        Some(t) => groups.sort_by(|a, b| {
            a.0[t]
                .cmp(&b.0[t])
                .then(b.1.cost.cmp(&a.1.cost))
                .then(a.0.cmp(&b.0))
        }),
        None => groups.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then(a.0.cmp(&b.0))),
    }
    if wants_csv(&params) {
        let header: Vec<String> = keys
            .iter()
            .map(|k| k.name().to_string())
            .chain(["cost_usd", "requests", "unpriced_requests"].map(String::from))
            .collect();
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|(values, r)| {
                let mut row = values.clone();
                row.extend([
                    r.cost.to_decimal_string(),
                    r.requests.to_string(),
                    r.unpriced.to_string(),
                ]);
                row
            })
            .collect();
        return Ok(crate::csv::answer(crate::csv::table(&header, &rows)));
    }
    let breakdown: Vec<Value> = groups
        .iter()
        .map(|(values, r)| {
            let mut row = keyed(&keys, values);
            row.insert("total_cost".into(), json!(usd(r.cost)));
            row.insert("total_cost_usd".into(), json!(r.cost.to_decimal_string()));
            row.insert("request_count".into(), json!(r.requests));
            row.insert(
                "avg_cost_per_request".into(),
                json!(usd_per(r.cost, priced_requests(r))),
            );
            row.insert("unpriced_requests".into(), json!(r.unpriced));
            row.insert(
                "percentage".into(),
                json!(if total.cost.0 == 0 {
                    0.0
                } else {
                    r.cost.0 as f64 * 100.0 / total.cost.0 as f64
                }),
            );
            Value::Object(row)
        })
        .collect();
    Ok(IntoResponse::into_response(data(json!({
        "time_range": range,
        "window": window.info(),
        "group_by": keys.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "total_cost": usd(total.cost),
        "total_cost_usd": total.cost.to_decimal_string(),
        "total_requests": total.requests,
        "unpriced_requests": total.unpriced,
        "avg_cost_per_request": usd_per(total.cost, priced_requests(&total)),
        "breakdown": breakdown,
    }))))
}

fn usage_numbers(r: &Rollup) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("requests".into(), json!(r.requests));
    m.insert("errors".into(), json!(r.errors));
    m.insert("timeouts".into(), json!(r.timeouts));
    m.insert("input_tokens".into(), json!(r.input_tokens));
    m.insert("output_tokens".into(), json!(r.output_tokens));
    m.insert("cached_input_tokens".into(), json!(r.cached_input_tokens));
    m.insert(
        "total_tokens".into(),
        json!(r.input_tokens + r.output_tokens),
    );
    m.insert("unique_users".into(), json!(r.users.estimate()));
    m
}

async fn usage(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let params = Params::new(q, &USAGE)?;
    let (window, range) = params.window(state.clock.now(), "7d")?;
    let keys = params.group_by(&GroupKey::ALL, &[GroupKey::Day])?;
    let rows = scan(&state, &params.filter()?, spans_for(&window, &keys), true).await?;
    let total = merge_all(&rows);
    let mut groups: Vec<(Vec<String>, Rollup)> =
        group_rows(&rows, &keys, true).into_iter().collect();
    if time_position(&keys).is_none() {
        groups.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(&b.0)));
    }
    if wants_csv(&params) {
        let names: Vec<String> = usage_numbers(&total).keys().cloned().collect();
        let header: Vec<String> = keys
            .iter()
            .map(|k| k.name().to_string())
            .chain(names.iter().cloned())
            .collect();
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|(values, r)| {
                let numbers = usage_numbers(r);
                let mut row = values.clone();
                row.extend(names.iter().map(|n| numbers[n].to_string()));
                row
            })
            .collect();
        return Ok(crate::csv::answer(crate::csv::table(&header, &rows)));
    }
    let series: Vec<Value> = groups
        .iter()
        .map(|(values, r)| {
            let mut row = keyed(&keys, values);
            row.extend(usage_numbers(r));
            Value::Object(row)
        })
        .collect();
    Ok(IntoResponse::into_response(data(json!({
        "time_range": range,
        "window": window.info(),
        "group_by": keys.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "totals": usage_numbers(&total),
        "series": series,
    }))))
}

async fn performance(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &PERFORMANCE)?;
    let (window, range) = params.window(state.clock.now(), "7d")?;
    let rows = scan(&state, &params.filter()?, window.spans(), true).await?;
    let models = state.config.list_models().await?;
    let groups = group_rows(&rows, &[GroupKey::Provider, GroupKey::Model], true);
    let mut out: Vec<(u64, Value)> = groups
        .iter()
        .map(|(k, r)| {
            let (provider, model) = (&k[0], &k[1]);
            let known = models
                .iter()
                .find(|m| &m.provider == provider && &m.name == model);
            let mut item = json!({
                "id": known.map(|m| m.id.to_string()),
                "name": model,
                "provider_name": provider,
                "model_type": known.map(|m| m.model_type),
                "registered": known.is_some(),
            });
            if let (Some(item), Ok(Value::Object(numbers))) = (
                item.as_object_mut(),
                serde_json::to_value(ModelNumbers::of(r)),
            ) {
                item.extend(numbers);
            }
            (r.requests, item)
        })
        .collect();
    out.sort_by_key(|(requests, _)| std::cmp::Reverse(*requests));
    Ok(data(json!({
        "time_range": range,
        "window": window.info(),
        "models": out.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    })))
}
