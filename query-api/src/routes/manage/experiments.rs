//! Experiments: `GET|POST /experiments`, `GET /experiments/{id}`,
//! `POST /experiments/{id}/status {status}`.
//!
//! An experiment starts as a draft. Only draft → running → completed and draft or running →
//! cancelled are allowed (anything else is a `409`); entering `running` stamps `started_at`,
//! leaving it `ended_at`. Variants split the feature's traffic in whole percent summing to 100.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;
use tally_domain::config::{Experiment, ExperimentSpec, ExperimentStatus, ExperimentType, Variant};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};

use crate::listing::{ListQuery, ListSpec, Listing};
use crate::lookup::{find_experiment, find_feature};
use crate::routes::{change, API_BASE};
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let experiments = format!("{API_BASE}/experiments");
    let experiment = format!("{experiments}/{{id}}");
    r.serve(
        Route::get(
            &experiments,
            Access::ReadConfig,
            "Experiments, newest first",
            list,
        )
        .query(LIST.params())
        .returns::<Listing<Experiment>>(200),
    )
    .serve(
        Route::post(
            &experiments,
            Access::Admin,
            "Create an experiment (a draft)",
            create,
        )
        .accepts::<CreateBody>()
        .returns::<Data<Experiment>>(201),
    )
    .serve(
        Route::get(&experiment, Access::ReadConfig, "An experiment", detail)
            .returns::<Data<Experiment>>(200),
    )
    .serve(
        Route::post(
            format!("{experiment}/status"),
            Access::Admin,
            "Move an experiment: draft → running → completed, or cancelled",
            transition,
        )
        .accepts::<StatusBody>()
        .returns::<Data<Experiment>>(200),
    )
}

const LIST: ListSpec = ListSpec {
    filters: &[
        ("feature", "feature", &[]),
        (
            "status",
            "status",
            &["draft", "running", "completed", "cancelled"],
        ),
        (
            "type",
            "experiment_type",
            &["model_comparison", "prompt_testing", "parameter_tuning"],
        ),
    ],
    sorts: &["-created_at", "name", "status", "started_at", "ended_at"],
};

async fn list(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let query = ListQuery::parse(q, &LIST)?;
    Ok(axum::Json(
        query.apply(&state.config.list_experiments().await?)?,
    ))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct VariantBody {
    #[schemars(schema_with = "crate::fields::text")]
    name: String,
    #[serde(deserialize_with = "tally_schemas::whole::whole")]
    #[schemars(range(min = 0, max = 100))]
    traffic_percent: u32,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::object")]
    config: Option<Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "ExperimentCreate")]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[schemars(schema_with = "crate::fields::text")]
    name: String,
    description: Option<String>,
    #[schemars(schema_with = "crate::fields::slug")]
    feature: String,
    experiment_type: ExperimentType,
    /// At least two, with distinct names; their traffic shares sum to 100.
    #[schemars(length(min = 2))]
    variants: Vec<VariantBody>,
}

async fn create(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    find_feature(&state, &body.feature)
        .await
        .map_err(|_| invalid("feature", format!("no feature named {}", body.feature)))?;
    let mut variants = Vec::with_capacity(body.variants.len());
    for (i, v) in body.variants.into_iter().enumerate() {
        let config = match v.config {
            None => Value::Object(Default::default()),
            Some(c @ Value::Object(_)) => c,
            Some(_) => {
                return Err(invalid(
                    &format!("variants[{i}].config"),
                    "must be a JSON object",
                ))
            }
        };
        variants.push(Variant {
            name: v.name,
            traffic_percent: v.traffic_percent,
            config,
        });
    }
    let spec = ExperimentSpec {
        name: body.name,
        description: body.description.filter(|d| !d.trim().is_empty()),
        feature: body.feature,
        experiment_type: body.experiment_type,
        variants,
    };
    let created = state
        .config
        .create_experiment(spec, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(created)))
}

async fn detail(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(data(find_experiment(&state, &id).await?))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "ExperimentStatusBody")]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: ExperimentStatus,
}

async fn transition(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<StatusBody>,
) -> Result<impl IntoResponse, ApiError> {
    let before = find_experiment(&state, &id).await?;
    let after = state
        .config
        .transition_experiment(before.id, body.status, &change(&state, &caller))
        .await?;
    Ok(data(after))
}
