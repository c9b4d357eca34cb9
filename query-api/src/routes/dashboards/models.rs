//! `GET /models/{id}/performance`: how a registered model performs — latency percentiles,
//! success rate, cost per request, tokens and requests, in total, per feature and environment,
//! and as a time series — from the usage events that name its provider and name. The numbers
//! are [`ModelNumbers`], the same the analytics performance listing and the model cards show.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Serialize;
use tally_domain::rollup::{Rollup, RollupTotal};
use tally_domain::store::{Filter, RowFold, ScannedRow, StoreResult};
use tally_domain::window::{step_for, WindowInfo};
use tally_http::auth::Access;
use tally_http::http::{data, ApiError, Data};
use tally_http::route::{Route, Routes};

use crate::aggregate::{history_of, slot, HistoryPoint, ModelNumbers, StepTotals};
use crate::lookup::find_model;
use crate::params::{Params, ENVIRONMENT_WINDOW};
use crate::rollups::scan_stepped_into;
use crate::routes::API_BASE;
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/models/{{id}}/performance"),
            Access::ReadMetrics,
            "A model's latency, success rate, cost and usage: in total, per feature and environment, and over time",
            performance,
        )
        .query(ENVIRONMENT_WINDOW.clone())
        .returns::<Data<ModelPerformance>>(200),
    )
}

/// One feature and environment the model served.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Served {
    pub feature: String,
    pub environment: String,
    #[serde(flatten)]
    pub numbers: ModelNumbers,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Series {
    pub step_seconds: i64,
    pub data: Vec<HistoryPoint>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ModelPerformance {
    pub model_id: String,
    pub name: String,
    pub provider: String,
    pub time_range: Option<String>,
    pub window: WindowInfo,
    pub environment: Option<String>,
    pub totals: ModelNumbers,
    /// Per feature and environment, most requests first.
    pub breakdown: Vec<Served>,
    pub history: Series,
}

/// The performance view's rows as they are read: the chart's steps and the totals per feature,
/// then environment.
struct PerformanceRows {
    steps: StepTotals,
    served: BTreeMap<String, BTreeMap<&'static str, RollupTotal>>,
}

impl RowFold for PerformanceRows {
    fn add(&mut self, row: ScannedRow<'_>) -> StoreResult<()> {
        self.steps.add(&row)?;
        let dims = &row.key.dims;
        row.add_to(slot(
            slot(&mut self.served, dims.feature.as_str()),
            &dims.environment.as_str(),
        ))
    }
}

async fn performance(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &ENVIRONMENT_WINDOW)?;
    let model = find_model(&state, &id).await?;
    let (window, range) = params.window(state.clock.now(), "24h")?;
    let environment = params.filter()?.environment;
    let filter = Filter {
        provider: Some(model.provider.clone()),
        model: Some(model.name.clone()),
        environment,
        ..Filter::default()
    };
    let step = step_for(window.len_s());
    let read = PerformanceRows {
        steps: StepTotals::new(&window, step),
        served: BTreeMap::new(),
    };
    let read = scan_stepped_into(&state, &filter, &window, step, true, read).await?;
    let served: BTreeMap<(String, &'static str), Rollup> = read
        .served
        .into_iter()
        .flat_map(|(feature, environments)| {
            environments
                .into_iter()
                .map(move |(environment, total)| ((feature.clone(), environment), total.rollup()))
        })
        .collect();
    // The totals merge the breakdown's few rollups, not the rows again: merging is associative
    // and commutative, and every row is in exactly one (feature, environment) entry.
    let mut totals = Rollup::default();
    for r in served.values() {
        totals.merge(r);
    }
    let mut breakdown: Vec<(u64, Served)> = served
        .into_iter()
        .map(|((feature, environment), r)| {
            (
                r.requests,
                Served {
                    feature,
                    environment: environment.to_string(),
                    numbers: ModelNumbers::of(&r),
                },
            )
        })
        .collect();
    breakdown.sort_by_key(|(requests, _)| std::cmp::Reverse(*requests));
    Ok(data(ModelPerformance {
        model_id: model.id.to_string(),
        name: model.name.clone(),
        provider: model.provider.clone(),
        time_range: range,
        window: window.info(),
        environment: environment.map(|e| e.as_str().to_string()),
        totals: ModelNumbers::of(&totals),
        breakdown: breakdown.into_iter().map(|(_, s)| s).collect(),
        history: Series {
            step_seconds: step,
            data: history_of(&read.steps.steps()),
        },
    }))
}
