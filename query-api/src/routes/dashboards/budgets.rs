//! `GET /analytics/budgets` and `GET /budgets/{id}/status`: where budgets stand in their current
//! period — spend, forecasts, thresholds crossed and state — as [`BudgetStatus::read`] computes
//! them for the alert evaluator and the Prometheus gauges too.
//!
//! Readable by finance, viewers and admins (the roles that read budgets).

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use tally_domain::alerting::{BudgetState, BudgetStatus};
use tally_http::auth::Access;
use tally_http::http::{data, ApiError, Data};
use tally_http::route::{Param, Route, Routes};

use crate::lookup::find_budget;
use crate::params::Params;
use crate::routes::API_BASE;
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/analytics/budgets"),
            Access::ReadBudgets,
            "Every active budget's standing in its current period, the furthest over first",
            every_status,
        )
        .query(LIST.clone())
        .returns::<Data<Vec<BudgetStatus>>>(200),
    )
    .serve(
        Route::get(
            format!("{API_BASE}/budgets/{{id}}/status"),
            Access::ReadBudgets,
            "A budget's standing in its current period",
            one_status,
        )
        .returns::<Data<BudgetStatus>>(200),
    )
}

static LIST: LazyLock<Vec<Param>> = LazyLock::new(|| {
    vec![Param::one_of("state", BudgetState::NAMES).describe("Only budgets in this state")]
});

async fn every_status(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &LIST)?;
    let wanted = params.word("state", BudgetState::NAMES, BudgetState::parse)?;
    let now = state.clock.now();
    let mut out = Vec::new();
    for budget in state.config.list_budgets().await? {
        if !budget.spec.is_active {
            continue;
        }
        let status = BudgetStatus::read(state.analytics.as_ref(), &budget, now).await?;
        if wanted.is_none_or(|w| w == status.state) {
            out.push(status);
        }
    }
    out.sort_by(|a, b| {
        b.utilization
            .total_cmp(&a.utilization)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(data(out))
}

async fn one_status(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let budget = find_budget(&state, &id).await?;
    let now = state.clock.now();
    Ok(data(
        BudgetStatus::read(state.analytics.as_ref(), &budget, now).await?,
    ))
}
