//! `GET /features/{name}/status` and `GET /providers/{name}/health`: verdicts from recent
//! events, with their reasons ([`crate::assessment`]). `time_range` (default `15m`) or
//! `from`/`to` choose "recent"; `environment` narrows it. Read from rollups only.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Serialize;
use tally_domain::config::ProviderStatus;
use tally_domain::rollup::Rollup;
use tally_domain::store::Filter;
use tally_http::auth::Access;
use tally_http::http::{data, ApiError, Data};
use tally_http::route::{Route, Routes};

use crate::aggregate::merge_all;
use crate::assessment::{feature_status, provider_health, Signals};
use crate::params::{Params, ENVIRONMENT_WINDOW};
use crate::rollups::scan;
use crate::routes::API_BASE;
use crate::state::QueryState;
use tally_domain::window::{Window, WindowInfo};

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/features/{{name}}/status"),
            Access::ReadMetrics,
            "A feature's status from its recent events, with the reasons",
            feature,
        )
        .query(ENVIRONMENT_WINDOW.clone())
        .returns::<Data<FeatureStatus>>(200),
    )
    .serve(
        Route::get(
            format!("{API_BASE}/providers/{{name}}/health"),
            Access::ReadMetrics,
            "A provider's health score from its recent events against its own baseline, with the reasons",
            provider,
        )
        .query(ENVIRONMENT_WINDOW.clone())
        .returns::<Data<ProviderHealth>>(200),
    )
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "FeatureHealth")]
struct FeatureStatus {
    feature: String,
    status: &'static str,
    reasons: Vec<String>,
    /// The status set by admins (`active`, `inactive`, `maintenance`); absent when the feature
    /// only appears in events.
    configured_status: Option<&'static str>,
    time_range: Option<String>,
    window: WindowInfo,
    #[serde(flatten)]
    signals: Signals,
}

async fn feature(
    State(state): State<QueryState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &ENVIRONMENT_WINDOW)?;
    let (window, range) = params.window(state.clock.now(), "15m")?;
    let filter = Filter {
        feature: Some(name.clone()),
        environment: params.filter()?.environment,
        ..Filter::default()
    };
    let rows = scan(&state, &filter, window.spans(), true).await?;
    let recent = merge_all(&rows);
    let configured = state
        .config
        .list_features()
        .await?
        .into_iter()
        .find(|f| f.name == name)
        .map(|f| f.status.as_str());
    if configured.is_none() && recent.requests == 0 {
        return Err(ApiError::not_found(format!(
            "feature {name} is not registered and has no events in this window"
        )));
    }
    let verdict = feature_status(&recent, configured);
    Ok(data(FeatureStatus {
        feature: name,
        status: verdict.status,
        reasons: verdict.reasons,
        configured_status: configured,
        time_range: range,
        window: window.info(),
        signals: Signals::of(&recent),
    }))
}

#[derive(Serialize, schemars::JsonSchema)]
struct ProviderHealth {
    provider: String,
    status: &'static str,
    score: Option<u32>,
    reasons: Vec<String>,
    configured_status: Option<ProviderStatus>,
    time_range: Option<String>,
    window: WindowInfo,
    recent: Signals,
    /// The 24 hours before the window.
    baseline: Signals,
    baseline_window: WindowInfo,
    /// The recent signals per model.
    models: BTreeMap<String, Signals>,
}

async fn provider(
    State(state): State<QueryState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &ENVIRONMENT_WINDOW)?;
    let (window, range) = params.window(state.clock.now(), "15m")?;
    let baseline_window = Window {
        from: window.from - 86_400,
        to: window.from,
        widened: false,
    };
    let filter = Filter {
        provider: Some(name.clone()),
        environment: params.filter()?.environment,
        ..Filter::default()
    };
    let (rows, baseline_rows) = tokio::try_join!(
        scan(&state, &filter, window.spans(), true),
        scan(&state, &filter, baseline_window.spans(), true),
    )?;
    let recent = merge_all(&rows);
    let baseline = merge_all(&baseline_rows);
    let configured = state
        .config
        .list_providers()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.status);
    if configured.is_none() && recent.requests == 0 && baseline.requests == 0 {
        return Err(ApiError::not_found(format!(
            "provider {name} is not registered and has no recent events"
        )));
    }
    let mut per_model: BTreeMap<String, Rollup> = BTreeMap::new();
    for row in &rows {
        per_model
            .entry(row.key.dims.model.clone())
            .or_default()
            .merge(&row.rollup);
    }
    let verdict = provider_health(&recent, &baseline);
    Ok(data(ProviderHealth {
        provider: name,
        status: verdict.status,
        score: verdict.score,
        reasons: verdict.reasons,
        configured_status: configured,
        time_range: range,
        window: window.info(),
        recent: Signals::of(&recent),
        baseline: Signals::of(&baseline),
        baseline_window: baseline_window.info(),
        models: per_model
            .iter()
            .map(|(m, r)| (m.clone(), Signals::of(r)))
            .collect(),
    }))
}
