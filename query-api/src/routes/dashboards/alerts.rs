//! `GET /analytics/alerts` (what rules and budgets raised, newest first, with every delivery
//! attempt) and `POST /alerts/{id}/acknowledge`.
//!
//! Viewers and admins see every alert; finance sees budget alerts only (asking finance's key
//! for rule alerts is a `403`). Filters: `state`, `severity`, `kind`, `since` (alerts changed at
//! or after it), `limit` (1–1000, default 100).

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use tally_domain::access::Role;
use tally_domain::alerting::{Alert, AlertKind, AlertState};
use tally_domain::config::Severity;
use tally_domain::store::AlertQuery;
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, ApiError, Data};
use tally_http::route::{Param, Route, Routes};

use crate::params::{limit_param, Params};
use crate::routes::{change, parse_id, API_BASE};
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/analytics/alerts"),
            Access::ReadBudgets,
            "Alerts raised by rules and budgets, newest first, with their deliveries (finance: budget alerts)",
            list,
        )
        .query(LIST.clone())
        .returns::<Data<Vec<Alert>>>(200),
    )
    .serve(
        Route::post(
            format!("{API_BASE}/alerts/{{id}}/acknowledge"),
            Access::Admin,
            "Acknowledge an alert (who and when; the first acknowledgement stays)",
            acknowledge,
        )
        .returns::<Data<Alert>>(200),
    )
}

static LIST: LazyLock<Vec<Param>> = LazyLock::new(|| {
    vec![
        Param::one_of("state", AlertState::NAMES).describe("Only alerts in this state"),
        Param::one_of("severity", Severity::NAMES).describe("Only alerts of this severity"),
        Param::one_of("kind", AlertKind::NAMES).describe("Only alerts of rules or of budgets"),
        Param::instant("since").describe("Only alerts changed at or after this instant"),
        limit_param(1000),
    ]
});

async fn list(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &LIST)?;
    let mut kind = params.word("kind", AlertKind::NAMES, AlertKind::parse)?;
    if caller.role == Role::Finance {
        if kind == Some(AlertKind::Rule) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a finance key sees budget alerts only (kind=budget)",
            )
            .with_field("kind"));
        }
        kind = Some(AlertKind::Budget);
    }
    let query = AlertQuery {
        id: None,
        states: params
            .word("state", AlertState::NAMES, AlertState::parse)?
            .into_iter()
            .collect(),
        severity: params.word("severity", Severity::NAMES, Severity::parse)?,
        kind,
        since: params.instant("since")?,
        limit: Some(u32::try_from(params.limit(100, 1000)?).unwrap_or(1000)),
    };
    Ok(data(state.config.list_alerts(&query).await?))
}

async fn acknowledge(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    Ok(data(
        state
            .config
            .acknowledge_alert(id, &change(&state, &caller))
            .await?,
    ))
}
