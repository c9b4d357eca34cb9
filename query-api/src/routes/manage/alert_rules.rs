//! Alert rules: `GET|POST /alert-rules`, `GET|PUT|DELETE /alert-rules/{id}`.
//!
//! A rule compares a metric of a scope over a window with a threshold
//! (`{name, metric, scope, comparator, threshold, window, min_requests, for_seconds, severity,
//! channels}`); the evaluator (`tally-alerting`) turns it into alerts. Viewers read rules;
//! platform admins change them. `PUT` updates the fields given and keeps the others. Unknown
//! words, a threshold that is not a finite number (or not a percentage for `error_rate`) and a
//! channel that does not exist are `422`s naming the field.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use serde::Deserialize;
use tally_domain::config::{
    AlertMetric, AlertRule, AlertRuleSpec, Comparator, RuleScope, RuleWindow, Severity,
};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};
use uuid::Uuid;

use crate::lookup::find_alert_rule;
use crate::routes::{change, API_BASE};
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let rules = format!("{API_BASE}/alert-rules");
    let rule = format!("{rules}/{{id}}");
    r.serve(
        Route::get(&rules, Access::ReadConfig, "Alert rules, by name", list)
            .returns::<Data<Vec<AlertRule>>>(200),
    )
    .serve(
        Route::post(&rules, Access::Admin, "Create an alert rule", create)
            .accepts_requiring::<RuleBody>(&["name", "metric", "comparator", "threshold", "window"])
            .body_rule(threshold_rule())
            .returns::<Data<AlertRule>>(201),
    )
    .serve(
        Route::get(&rule, Access::ReadConfig, "An alert rule", detail)
            .returns::<Data<AlertRule>>(200),
    )
    .serve(
        Route::put(
            &rule,
            Access::Admin,
            "Change an alert rule (fields given; the rest kept)",
            update,
        )
        .accepts::<RuleBody>()
        .body_rule(threshold_rule())
        .returns::<Data<AlertRule>>(200),
    )
    .serve(
        Route::delete(&rule, Access::Admin, "Delete an alert rule", remove)
            .returns::<Data<AlertRule>>(200),
    )
}

/// An `error_rate` threshold is a percentage ([`AlertRuleSpec::validate`]).
fn threshold_rule() -> serde_json::Value {
    serde_json::json!({
        "if": {"properties": {"metric": {"const": "error_rate"}}, "required": ["metric"]},
        "then": {"properties": {"threshold": {"maximum": 100}}},
    })
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::text")]
    name: Option<String>,
    metric: Option<AlertMetric>,
    /// Which traffic: any of `feature`, `model`, `provider`, `environment` (none: all).
    scope: Option<RuleScope>,
    comparator: Option<Comparator>,
    /// In the metric's unit: percent for `error_rate` (0–100), milliseconds, US dollars,
    /// requests per minute.
    #[schemars(range(min = 0))]
    threshold: Option<f64>,
    window: Option<RuleWindow>,
    /// Fewer requests in the window is no data: the rule does not fire (default 1).
    #[schemars(range(max = 1_000_000_000))]
    min_requests: Option<u64>,
    /// Seconds the condition must hold before the alert fires (default 0: at once).
    #[schemars(range(max = 604_800))]
    for_seconds: Option<u64>,
    /// Default `warning`.
    severity: Option<Severity>,
    /// Notification channel ids (default none).
    channels: Option<Vec<Uuid>>,
}

impl RuleBody {
    fn spec(self, current: Option<&AlertRuleSpec>) -> Result<AlertRuleSpec, ApiError> {
        fn need<T: Clone>(
            field: &str,
            given: Option<T>,
            current: Option<&T>,
        ) -> Result<T, ApiError> {
            given
                .or_else(|| current.cloned())
                .ok_or_else(|| invalid(field, "is required"))
        }
        let spec = AlertRuleSpec {
            name: need("name", self.name, current.map(|c| &c.name))?,
            metric: need("metric", self.metric, current.map(|c| &c.metric))?,
            scope: self
                .scope
                .or_else(|| current.map(|c| c.scope.clone()))
                .unwrap_or_default(),
            comparator: need(
                "comparator",
                self.comparator,
                current.map(|c| &c.comparator),
            )?,
            threshold: need("threshold", self.threshold, current.map(|c| &c.threshold))?,
            window: need("window", self.window, current.map(|c| &c.window))?,
            min_requests: self
                .min_requests
                .or(current.map(|c| c.min_requests))
                .unwrap_or(1),
            for_seconds: self
                .for_seconds
                .or(current.map(|c| c.for_seconds))
                .unwrap_or(0),
            severity: self
                .severity
                .or(current.map(|c| c.severity))
                .unwrap_or(Severity::Warning),
            channels: self
                .channels
                .or_else(|| current.map(|c| c.channels.clone()))
                .unwrap_or_default(),
        };
        // The store enforces the same rules; checking first answers before any write.
        spec.validate()?;
        Ok(spec)
    }
}

async fn list(State(state): State<QueryState>) -> Result<impl IntoResponse, ApiError> {
    Ok(data(state.config.list_alert_rules().await?))
}

async fn detail(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(data(find_alert_rule(&state, &id).await?))
}

async fn create(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<RuleBody>,
) -> Result<impl IntoResponse, ApiError> {
    let created = state
        .config
        .create_alert_rule(body.spec(None)?, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(created)))
}

async fn update(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<RuleBody>,
) -> Result<impl IntoResponse, ApiError> {
    let before = find_alert_rule(&state, &id).await?;
    let updated = state
        .config
        .update_alert_rule(
            before.id,
            body.spec(Some(&before.spec))?,
            &change(&state, &caller),
        )
        .await?;
    Ok(data(updated))
}

async fn remove(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = find_alert_rule(&state, &id).await?.id;
    Ok(data(
        state
            .config
            .delete_alert_rule(id, &change(&state, &caller))
            .await?,
    ))
}
