//! `GET /overview`: the global overview — spending, feature health, providers and their active
//! models, KPIs for the last 24 hours, recent deployments and the pipeline's state.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{Datelike, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use tally_domain::rollup::Rollup;
use tally_domain::store::{BucketSums, Filter, SumsOf};
use tally_http::http::{data, ApiError, Data};

use crate::aggregate::{health_label, merge_all, usd, HealthNumbers, Percentiles};
use crate::rollups::{bucket_sums, scan};
use crate::state::QueryState;
use tally_http::auth::Access;
use tally_http::route::{Route, Routes};

use crate::routes::API_BASE;
use tally_domain::window::Window;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/overview"),
            Access::ReadMetrics,
            "The platform at a glance: totals, features, providers, recent activity and alerts",
            overview,
        )
        .returns::<Data<Value>>(200),
    )
}

async fn cost_between(state: &QueryState, from: i64, to: i64) -> Result<Rollup, ApiError> {
    let window = Window {
        from,
        to,
        widened: false,
    };
    Ok(BucketSums::total(
        &bucket_sums(state, &Filter::default(), &window.spans(), SumsOf::Money).await?,
    ))
}

fn money(r: &Rollup) -> Value {
    json!({"total_cost": usd(r.cost), "total_cost_usd": r.cost.to_decimal_string(), "requests": r.requests, "unpriced_requests": r.unpriced})
}

async fn overview(State(state): State<QueryState>) -> Result<impl IntoResponse, ApiError> {
    let now = state.clock.now();
    let last24 = Window::last(Duration::hours(24), now);

    let end = last24.to;
    let day_start = end - 60 - (end - 60).rem_euclid(86_400);
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .map_or(day_start, |t| t.timestamp());
    // Independent reads, run concurrently.
    let everything = Filter::default();
    let (rows, today, month, last30, prev30, features, providers, assignments) = tokio::try_join!(
        scan(&state, &everything, last24.spans(), true),
        cost_between(&state, day_start, end),
        cost_between(&state, month_start, end),
        cost_between(&state, end - 30 * 86_400, end),
        cost_between(&state, end - 60 * 86_400, end - 30 * 86_400),
        async { state.config.list_features().await.map_err(ApiError::from) },
        async { state.config.list_providers().await.map_err(ApiError::from) },
        async {
            state
                .config
                .active_assignments()
                .await
                .map_err(ApiError::from)
        },
    )?;
    let total = merge_all(&rows);
    let trend = if prev30.cost.0 == 0 {
        0.0
    } else {
        (last30.cost.0 - prev30.cost.0) as f64 * 100.0 / prev30.cost.0 as f64
    };

    let mut by_feature: BTreeMap<&str, Rollup> = BTreeMap::new();
    let mut by_provider: BTreeMap<&str, Rollup> = BTreeMap::new();
    for row in &rows {
        by_feature
            .entry(&row.key.dims.feature)
            .or_default()
            .merge(&row.rollup);
        by_provider
            .entry(&row.key.dims.provider)
            .or_default()
            .merge(&row.rollup);
    }
    let empty = Rollup::default();
    let feature_names: BTreeSet<&str> = features
        .iter()
        .map(|f| f.name.as_str())
        .chain(by_feature.keys().copied())
        .collect();
    let feature_health: Vec<Value> = feature_names
        .into_iter()
        .map(|name| {
            let r = by_feature.get(name).unwrap_or(&empty);
            let f = features.iter().find(|f| f.name == name);
            json!({
                "name": name,
                "display_name": f.map_or(name, |f| f.display_name.as_str()),
                "registered": f.is_some(),
                "status": f.map_or("unregistered", |f| f.status.as_str()),
                "health": health_label(r),
                "requests_24h": r.requests,
                "error_rate": HealthNumbers::of(r).error_rate,
                "latency_p95_ms": r.latency.quantile_ms(0.95),
                "cost_24h": usd(r.cost),
            })
        })
        .collect();
    let provider_names: BTreeSet<&str> = providers
        .iter()
        .map(|p| p.name.as_str())
        .chain(by_provider.keys().copied())
        .collect();
    let provider_summary: Vec<Value> = provider_names
        .into_iter()
        .map(|name| {
            let r = by_provider.get(name).unwrap_or(&empty);
            let p = providers.iter().find(|p| p.name == name);
            let active: BTreeSet<&str> = assignments
                .iter()
                .filter(|a| a.provider == name)
                .map(|a| a.model.as_str())
                .collect();
            let h = HealthNumbers::of(r);
            json!({
                "name": name,
                "type": p.map(|p| p.provider_type.as_str()),
                "status": p.map_or("unregistered", |p| p.status.as_str()),
                "active_models": active,
                "requests_24h": r.requests,
                "uptime": h.uptime,
                "error_rate": h.error_rate,
                "response_time": h.response_time,
                "cost_24h": usd(r.cost),
            })
        })
        .collect();
    let mut recent = assignments.clone();
    recent.sort_by_key(|a| std::cmp::Reverse(a.assigned_at));
    let activities: Vec<Value> = recent
        .iter()
        .take(10)
        .map(|a| json!({"type": "deployment", "feature": a.feature, "environment": a.environment, "model": a.model, "provider": a.provider, "at": a.assigned_at}))
        .collect();
    let health = HealthNumbers::of(&total);
    Ok(data(json!({
        "generated_at": now,
        "window": last24.info(),
        "spending": {
            "today": money(&today),
            "month_to_date": money(&month),
            "last_30_days": money(&last30),
            "previous_30_days": money(&prev30),
            "trend": trend,
        },
        "kpis": {
            "requests_24h": total.requests,
            "error_rate": health.error_rate,
            "success_rate": health.success_rate,
            "response_time": health.response_time,
            "latency": Percentiles::of(&total),
            "cost_24h": usd(total.cost),
            "cost_24h_usd": total.cost.to_decimal_string(),
            "unique_users_24h": total.users.estimate(),
            "tokens_24h": total.input_tokens + total.output_tokens,
            "unpriced_requests_24h": total.unpriced,
        },
        "features": feature_health,
        "providers": provider_summary,
        "activities": activities,
        "pipeline": (state.pipeline)(),
    })))
}
