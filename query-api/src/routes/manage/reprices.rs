//! Pricing a model's past events again: `POST /models/{id}/reprice?from=` and
//! `GET /models/{id}/reprices`.
//!
//! A price change never rewrites the cost of events already accepted — unless a platform
//! admin asks for it here. The request records the model's current price table and the period
//! `[from, now)`; from then on every projection counts the model's events of that period that
//! were priced from the table (not those whose client reported `cost_usd`) at what the
//! recorded table says ([`tally_domain::pricing::Repricing`]). The log itself is never
//! rewritten, so a rebuild reproduces the same numbers.
//!
//! The affected rollups are recomputed by replaying the log: at once (`"replay": "started"`)
//! when this process runs the only projector (the embedded default), during which dashboards
//! fill up again as the replay catches up; in distributed mode by `tally rebuild` with the
//! projectors stopped (`"replay": "needs_rebuild"`) — until then, only events projected after
//! the request are counted at the new cost.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tally_domain::config::{Reprice, RepriceSpec};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, ApiError, Data};
use tally_http::route::{Param, Route, Routes};

use crate::lookup::{find_model, model_prices};
use crate::params::Params;
use crate::routes::{change, API_BASE};
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let model = format!("{API_BASE}/models/{{id}}");
    r.serve(
        Route::post(
            format!("{model}/reprice"),
            Access::Admin,
            "Price the model's events since from again with its current prices, and replay",
            reprice,
        )
        .query([Param::instant("from")
            .required()
            .describe("Reprice the model's events that occurred at or after this instant")])
        .returns::<Data<RepriceAnswer>>(202),
    )
    .serve(
        Route::get(
            format!("{model}/reprices"),
            Access::ReadConfig,
            "The model's reprice requests, oldest first",
            list,
        )
        .returns::<Data<Vec<Reprice>>>(200),
    )
}

/// How the affected rollups get recomputed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayState {
    /// The projection was dropped and is being rebuilt from the log now.
    Started,
    /// Run `tally rebuild` (projectors stopped) to recompute what was projected before.
    NeedsRebuild,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RepriceAnswer {
    pub reprice: Reprice,
    pub replay: ReplayState,
}

async fn reprice(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &[Param::instant("from")])?;
    let model = find_model(&state, &id).await?;
    let from = params
        .get("from")
        .ok_or_else(|| ApiError::bad_param("from", "is required (RFC 3339)"))?;
    let from = DateTime::parse_from_rfc3339(from)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_param(
                "from",
                "must be an RFC 3339 instant, e.g. 2026-01-31T00:00:00Z",
            )
        })?;
    let prices = model_prices(&state, &model).await?;
    let recorded = state
        .config
        .add_reprice(
            RepriceSpec {
                provider: model.provider.clone(),
                model: model.name.clone(),
                from,
                requested_at: state.clock.now(),
                requested_by: Some(caller.key_name.clone()),
                prices,
            },
            &change(&state, &caller),
        )
        .await?;
    state.reprices.refresh(state.config.as_ref()).await?;
    let replay = match &state.replay {
        Some(replay) => {
            replay().await?;
            ReplayState::Started
        }
        None => ReplayState::NeedsRebuild,
    };
    Ok((
        StatusCode::ACCEPTED,
        data(RepriceAnswer {
            reprice: recorded,
            replay,
        }),
    ))
}

async fn list(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let model = find_model(&state, &id).await?;
    let requests: Vec<Reprice> = state
        .config
        .list_reprices()
        .await?
        .into_iter()
        .filter(|r| r.spec.provider == model.provider && r.spec.model == model.name)
        .collect();
    Ok(data(requests))
}
