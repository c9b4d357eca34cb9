//! `GET /prompts/{id}/metrics`: how each version of a prompt performs, from the usage events
//! that name it (`prompt_id` and `prompt_version`).
//!
//! An event names a prompt by its id (what prompt tests record) or by its name; both count.
//! Every stored version is listed, with zeros when it had no traffic in the window; versions
//! that events name but the prompt does not have are listed too, marked `known: false`, so a
//! typo in an application's `prompt_version` shows up instead of vanishing. Events that name
//! the prompt without a version are listed under the version `""`.
//! The numbers are rollup numbers: exact counts, tokens and cost; percentiles within 1%;
//! unique users estimated.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Serialize;
use tally_domain::rollup::Rollup;
use tally_domain::store::Filter;
use tally_http::auth::Access;
use tally_http::http::{data, ApiError, Data};
use tally_http::route::{Route, Routes};

use crate::aggregate::{mean_latency_ms, pct, priced_requests, usd, usd_per, Percentiles};
use crate::lookup::find_prompt;
use crate::params::{Params, ENVIRONMENT_WINDOW};
use crate::rollups::scan;
use crate::routes::API_BASE;
use crate::state::QueryState;
use tally_domain::window::WindowInfo;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/prompts/{{id}}/metrics"),
            Access::ReadMetrics,
            "Per-version metrics of a prompt, from the usage events that name it",
            metrics,
        )
        .query(ENVIRONMENT_WINDOW.clone())
        .returns::<Data<PromptMetrics>>(200),
    )
}

/// One version's numbers in the window.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct VersionMetrics {
    /// The version as events name it (`""`: events that named the prompt but no version).
    pub version: String,
    /// Whether the prompt has this version.
    pub known: bool,
    pub status: Option<String>,
    pub is_active: bool,
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Failed (error or timeout) share of requests, 0–100.
    pub error_rate: f64,
    /// Mean latency, ms.
    pub avg_latency_ms: f64,
    #[serde(flatten)]
    pub percentiles: Percentiles,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// Exact cost of the priced requests, rounded to the micro-dollar (charts).
    pub total_cost: f64,
    /// Exact cost of the priced requests, decimal US dollars.
    pub total_cost_usd: String,
    pub avg_cost_per_request: f64,
    pub unpriced_requests: u64,
    pub unique_users: u64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PromptMetrics {
    pub prompt_id: String,
    pub name: String,
    pub time_range: Option<String>,
    pub window: WindowInfo,
    pub environment: Option<String>,
    /// Stored versions oldest first, then versions only events name.
    pub versions: Vec<VersionMetrics>,
}

async fn metrics(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &ENVIRONMENT_WINDOW)?;
    let prompt = find_prompt(&state, &id).await?;
    let (window, range) = params.window(state.clock.now(), "24h")?;
    let environment = params.filter()?.environment;
    let stored = state.config.prompt_versions(prompt.id).await?;
    let mut by_version: BTreeMap<String, Rollup> = BTreeMap::new();
    let mut names = vec![prompt.id.to_string()];
    if prompt.name != names[0] {
        names.push(prompt.name.clone());
    }
    for name in names {
        let filter = Filter {
            prompt_id: Some(name),
            environment,
            ..Filter::default()
        };
        for row in scan(&state, &filter, window.spans(), true).await? {
            by_version
                .entry(row.key.dims.prompt_version.clone())
                .or_default()
                .merge(&row.rollup);
        }
    }
    let mut versions: Vec<VersionMetrics> = stored
        .iter()
        .map(|v| {
            let text = v.version.to_string();
            let rollup = by_version.remove(&text).unwrap_or_default();
            numbers(text, Some(v), &rollup)
        })
        .collect();
    versions.extend(
        by_version
            .into_iter()
            .map(|(text, rollup)| numbers(text, None, &rollup)),
    );
    Ok(data(PromptMetrics {
        prompt_id: prompt.id.to_string(),
        name: prompt.name,
        time_range: range,
        window: window.info(),
        environment: environment.map(|e| e.as_str().to_string()),
        versions,
    }))
}

fn numbers(
    version: String,
    stored: Option<&tally_domain::config::PromptVersion>,
    r: &Rollup,
) -> VersionMetrics {
    VersionMetrics {
        version,
        known: stored.is_some(),
        status: stored.map(|v| v.status.as_str().to_string()),
        is_active: stored.is_some_and(|v| v.is_active),
        requests: r.requests,
        errors: r.errors,
        timeouts: r.timeouts,
        error_rate: pct(r.failures(), r.requests),
        avg_latency_ms: mean_latency_ms(r),
        percentiles: Percentiles::of(r),
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_input_tokens: r.cached_input_tokens,
        total_cost: usd(r.cost),
        total_cost_usd: r.cost.to_decimal_string(),
        avg_cost_per_request: usd_per(r.cost, priced_requests(r)),
        unpriced_requests: r.unpriced,
        unique_users: r.users.estimate(),
    }
}
