//! Spending budgets: `GET|POST /budgets`, `GET|PUT|DELETE /budgets/{id}`.
//!
//! Readable by finance as well as viewers; changed by platform admins only. Amounts are exact
//! decimal dollars (`amount_usd`, a JSON number or string with at most 6 decimal places, stored
//! as micro-dollars); the period (daily, weekly, monthly, quarterly) runs in the budget's IANA
//! `time_zone` (default `UTC`); warning thresholds default to 80 % and 100 %; `channels` names
//! the notification channels its alerts go to. `PUT` updates the
//! fields given and keeps the others.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tally_domain::config::{Budget, BudgetPeriod, BudgetScope, BudgetSpec};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};
use tally_schemas::Environment;

use crate::dollars::{micros_from_json, usd_of_micros};
use crate::listing::{ListQuery, ListSpec, Listing};
use crate::lookup::find_budget;
use crate::routes::{change, API_BASE};
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let budgets = format!("{API_BASE}/budgets");
    let budget = format!("{budgets}/{{id}}");
    r.serve(
        Route::get(&budgets, Access::ReadBudgets, "Budgets", list)
            .query(LIST.params())
            .returns::<Listing<BudgetView>>(200),
    )
    .serve(
        Route::post(&budgets, Access::Admin, "Create a budget", create)
            .accepts_requiring::<BudgetBody>(&["name", "scope", "period", "amount_usd"])
            .body_rule(scope_value_rule())
            .returns::<Data<BudgetView>>(201),
    )
    .serve(
        Route::get(&budget, Access::ReadBudgets, "A budget", detail)
            .returns::<Data<BudgetView>>(200),
    )
    .serve(
        Route::put(
            &budget,
            Access::Admin,
            "Change a budget (fields given; the rest kept)",
            update,
        )
        .accepts::<BudgetBody>()
        .returns::<Data<BudgetView>>(200),
    )
    .serve(
        Route::delete(&budget, Access::Admin, "Delete a budget", remove)
            .returns::<Data<BudgetView>>(200),
    )
}

/// A budget with its amount as exact decimal dollars.
#[derive(Serialize, schemars::JsonSchema)]
struct BudgetView {
    #[serde(flatten)]
    budget: Budget,
    amount_usd: String,
}

impl From<Budget> for BudgetView {
    fn from(budget: Budget) -> BudgetView {
        BudgetView {
            amount_usd: usd_of_micros(budget.spec.amount_micros),
            budget,
        }
    }
}

const LIST: ListSpec = ListSpec {
    filters: &[
        (
            "scope",
            "scope",
            &["global", "feature", "provider", "model", "environment"],
        ),
        ("scope_value", "scope_value", &[]),
        (
            "period",
            "period",
            &["daily", "weekly", "monthly", "quarterly"],
        ),
        ("is_active", "is_active", &["true", "false"]),
    ],
    sorts: &["name", "amount_micros", "created_at", "updated_at"],
};

async fn list(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let query = ListQuery::parse(q, &LIST)?;
    let views: Vec<BudgetView> = state
        .config
        .list_budgets()
        .await?
        .into_iter()
        .map(BudgetView::from)
        .collect();
    Ok(axum::Json(query.apply(&views)?))
}

/// A new budget's `scope_value`: absent for a global budget, an environment's name for an
/// environment budget, the name of what it covers otherwise ([`BudgetSpec::validate`]).
fn scope_value_rule() -> Value {
    let environments: Vec<&str> = Environment::ALL.iter().map(|e| e.as_str()).collect();
    json!({"allOf": [
        {
            "if": {"properties": {"scope": {"const": "global"}}},
            "then": {"properties": {"scope_value": {"type": "null"}}},
            "else": {"required": ["scope_value"], "properties": {"scope_value": {"type": "string"}}},
        },
        {
            "if": {"properties": {"scope": {"const": "environment"}}},
            "then": {"properties": {"scope_value": {"enum": environments}}},
        },
    ]})
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct BudgetBody {
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::text")]
    name: Option<String>,
    scope: Option<BudgetScope>,
    /// `null` clears it (for a global budget).
    #[serde(default, deserialize_with = "present")]
    scope_value: Option<Option<String>>,
    period: Option<BudgetPeriod>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::time_zone")]
    time_zone: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::positive_dollars")]
    amount_usd: Option<Value>,
    /// Ascending percentages of the amount, each from 1 to 1000 (default `[80, 100]`).
    #[serde(default, deserialize_with = "tally_schemas::whole::whole_vec")]
    #[schemars(schema_with = "crate::fields::thresholds")]
    thresholds_percent: Option<Vec<u32>>,
    is_active: Option<bool>,
    /// Notification channel ids the budget's alerts go to.
    channels: Option<Vec<uuid::Uuid>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

impl BudgetBody {
    fn spec(self, current: Option<&BudgetSpec>) -> Result<BudgetSpec, ApiError> {
        let required = |field: &str| invalid(field, "is required");
        let spec = BudgetSpec {
            name: self
                .name
                .or_else(|| current.map(|c| c.name.clone()))
                .ok_or_else(|| required("name"))?,
            scope: self
                .scope
                .or(current.map(|c| c.scope))
                .ok_or_else(|| required("scope"))?,
            scope_value: match self.scope_value {
                Some(v) => v,
                None => current.and_then(|c| c.scope_value.clone()),
            },
            period: self
                .period
                .or(current.map(|c| c.period))
                .ok_or_else(|| required("period"))?,
            time_zone: self
                .time_zone
                .or_else(|| current.map(|c| c.time_zone.clone()))
                .unwrap_or_else(|| "UTC".into()),
            amount_micros: match &self.amount_usd {
                Some(v) => micros_from_json("amount_usd", v)?,
                None => current
                    .map(|c| c.amount_micros)
                    .ok_or_else(|| required("amount_usd"))?,
            },
            thresholds_percent: self
                .thresholds_percent
                .or_else(|| current.map(|c| c.thresholds_percent.clone()))
                .unwrap_or_else(|| vec![80, 100]),
            is_active: self
                .is_active
                .or(current.map(|c| c.is_active))
                .unwrap_or(true),
            channels: self
                .channels
                .or_else(|| current.map(|c| c.channels.clone()))
                .unwrap_or_default(),
        };
        // The store enforces the same rules; checking here names the API's field.
        spec.validate().map_err(|e| match e {
            tally_domain::store::StoreError::Invalid { field, reason } => {
                let field = if field == "amount" {
                    "amount_usd".to_string()
                } else {
                    field
                };
                invalid(&field, reason)
            }
            other => ApiError::from(other),
        })?;
        Ok(spec)
    }
}

async fn detail(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(data(BudgetView::from(find_budget(&state, &id).await?)))
}

async fn create(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<BudgetBody>,
) -> Result<impl IntoResponse, ApiError> {
    let created = state
        .config
        .create_budget(body.spec(None)?, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(BudgetView::from(created))))
}

async fn update(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<BudgetBody>,
) -> Result<impl IntoResponse, ApiError> {
    let before = find_budget(&state, &id).await?;
    let updated = state
        .config
        .update_budget(
            before.id,
            body.spec(Some(&before.spec))?,
            &change(&state, &caller),
        )
        .await?;
    Ok(data(BudgetView::from(updated)))
}

async fn remove(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = find_budget(&state, &id).await?.id;
    let deleted = state
        .config
        .delete_budget(id, &change(&state, &caller))
        .await?;
    Ok(data(BudgetView::from(deleted)))
}
