//! `GET /experiments/{id}/results`: how an experiment's variants compare, from the usage
//! events that name it (`experiment_id` and `variant`).
//!
//! An event of the experiment's feature names the experiment by its id or by its name; both
//! count (events of other features do not, whatever they name). The window defaults to
//! the experiment's run (from `started_at`, or its creation while a draft, to `ended_at` or
//! now; at most the longest window the API serves, ending there); `from`/`to` or
//! `time_range` choose another. The numbers are rollup numbers
//! ([`tally_domain::experiment_results`] computes every interval, test and verdict from them):
//! exact counts, tokens and costs; percentiles and log-latency within 1 %; unique users
//! estimated. Scores (`POST /v1/scores`) join the variant's events that occurred in the
//! window, whenever the scores arrived ([`tally_domain::store::AnalyticsStore::experiment_scores`]),
//! and are summed exactly ([`tally_domain::experiment_scores`]).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use chrono::Duration;
use serde::Serialize;
use tally_domain::experiment_results::{analyse, Analysis, VariantTraffic};
use tally_domain::experiment_scores;
use tally_domain::rollup::Rollup;
use tally_domain::store::{Filter, ScoreQuery};
use tally_domain::window::{Window, WindowInfo, MAX_WINDOW_DAYS};
use tally_http::auth::Access;
use tally_http::http::{data, ApiError, Data};
use tally_http::route::{Route, Routes};

use crate::lookup::find_experiment;
use crate::params::{Params, ENVIRONMENT_WINDOW};
use crate::rollups::scan;
use crate::routes::API_BASE;
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/experiments/{{id}}/results"),
            Access::ReadMetrics,
            "An experiment's variants compared: intervals, tests, verdicts and the sample-ratio check",
            results,
        )
        .query(ENVIRONMENT_WINDOW.clone())
        .returns::<Data<ExperimentResults>>(200),
    )
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ExperimentResults {
    pub experiment_id: String,
    pub name: String,
    pub feature: String,
    pub status: String,
    /// The named range when one was asked for; `None` for the run's own window or from/to.
    pub time_range: Option<String>,
    pub window: WindowInfo,
    pub environment: Option<String>,
    #[serde(flatten)]
    pub analysis: Analysis,
}

async fn results(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &ENVIRONMENT_WINDOW)?;
    let experiment = find_experiment(&state, &id).await?;
    let now = state.clock.now();
    let asked = ["time_range", "timeRange", "from", "to"]
        .iter()
        .any(|p| params.get(p).is_some());
    let (window, range) = if asked {
        params.window(now, "24h")?
    } else {
        let end = experiment.ended_at.unwrap_or(now).min(now);
        let start = experiment
            .started_at
            .unwrap_or(experiment.created_at)
            .max(end - Duration::days(MAX_WINDOW_DAYS))
            .min(end - Duration::minutes(1));
        (Window::between(start, end)?, None)
    };
    let environment = params.filter()?.environment;
    let mut by_variant: BTreeMap<String, Rollup> = BTreeMap::new();
    let mut names = vec![experiment.id.to_string()];
    if experiment.spec.name != names[0] {
        names.push(experiment.spec.name.clone());
    }
    // One query for both names, so an event is joined once whichever name it used.
    let scored = state
        .analytics
        .experiment_scores(&ScoreQuery {
            experiment_ids: names.clone(),
            feature: experiment.spec.feature.clone(),
            environment,
            from_us: window.from.saturating_mul(1_000_000),
            to_us: window.to.saturating_mul(1_000_000),
        })
        .await?;
    let scores = experiment_scores::by_variant(&scored);
    for name in names {
        // Within the experiment's feature: names are not unique across features.
        let filter = Filter {
            feature: Some(experiment.spec.feature.clone()),
            experiment_id: Some(name),
            environment,
            ..Filter::default()
        };
        for row in scan(&state, &filter, window.spans(), true).await? {
            by_variant
                .entry(row.key.dims.variant.clone())
                .or_default()
                .merge(&row.rollup);
        }
    }
    let none = Rollup::default();
    let mut variants: Vec<VariantTraffic<'_>> = experiment
        .spec
        .variants
        .iter()
        .map(|v| VariantTraffic {
            name: &v.name,
            traffic_percent: Some(v.traffic_percent),
            rollup: by_variant.get(&v.name).unwrap_or(&none),
            scores: scores.get(&v.name),
        })
        .collect();
    variants.extend(
        by_variant
            .iter()
            .filter(|(name, _)| !experiment.spec.variants.iter().any(|v| &v.name == *name))
            .map(|(name, rollup)| VariantTraffic {
                name,
                traffic_percent: None,
                rollup,
                scores: scores.get(name),
            }),
    );
    let analysis = analyse(&variants);
    Ok(data(ExperimentResults {
        experiment_id: experiment.id.to_string(),
        name: experiment.spec.name.clone(),
        feature: experiment.spec.feature.clone(),
        status: experiment.status.as_str().to_string(),
        time_range: range,
        window: window.info(),
        environment: environment.map(|e| e.as_str().to_string()),
        analysis,
    }))
}
