//! Deployments: `POST /models/{id}/deploy {feature, environment}`, its feature-centred twin
//! `POST /features/{name}/models {model, environment}` (the product documents' assignment
//! route; one deploy path for both), `GET /features/{name}/models` (the active assignment per
//! environment, each model with its recent numbers in that feature and environment), and
//! `GET /deployments`: every assignment ever made, newest first.

use super::*;

pub(super) fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let models = format!("{API_BASE}/models");
    let model = format!("{models}/{{id}}");
    r.serve(
        Route::post(
            format!("{model}/deploy"),
            Access::Admin,
            "Make the model the active one of a feature in an environment",
            deploy,
        )
        .accepts::<DeployBody>()
        .returns::<Data<Assignment>>(201),
    )
    .serve(
        Route::get(
            format!("{API_BASE}/features/{{name}}/models"),
            Access::ReadMetrics,
            "A feature's active model per environment, each with its recent numbers there",
            feature_models,
        )
        .query(crate::params::window_params())
        .returns::<Data<Vec<FeatureModel>>>(200),
    )
    .serve(
        Route::post(
            format!("{API_BASE}/features/{{name}}/models"),
            Access::Admin,
            "Make a model the active one of this feature in an environment (as POST /models/{id}/deploy)",
            assign,
        )
        .accepts::<AssignBody>()
        .returns::<Data<Assignment>>(201),
    )
    .serve(
        Route::get(
            format!("{API_BASE}/deployments"),
            Access::ReadConfig,
            "Every deployment, newest first",
            list_deployments,
        )
        .query(DEPLOYMENT_LIST.params())
        .returns::<Listing<Assignment>>(200),
    )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    #[schemars(schema_with = "crate::fields::slug")]
    feature: String,
    environment: Environment,
}

async fn deploy(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<DeployBody>,
) -> Result<impl IntoResponse, ApiError> {
    let model = find_model(&state, &id).await?;
    find_feature(&state, &body.feature)
        .await
        .map_err(|_| invalid("feature", format!("no feature named {}", body.feature)))?;
    let deployed = deploy_model(&state, &caller, &model, &body.feature, body.environment).await?;
    Ok((StatusCode::CREATED, data(deployed)))
}

/// The one deploy path: refuses an unavailable model, then records the assignment.
async fn deploy_model(
    state: &QueryState,
    caller: &Caller,
    model: &Model,
    feature: &str,
    environment: Environment,
) -> Result<Assignment, ApiError> {
    if model.status == ModelStatus::Unavailable {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("model {}/{} is unavailable", model.provider, model.name),
        ));
    }
    Ok(state
        .config
        .deploy(
            DeploySpec {
                feature: feature.to_string(),
                environment,
                provider: model.provider.clone(),
                model: model.name.clone(),
            },
            &change(state, caller),
        )
        .await?)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    /// The model's id, or `provider/name`.
    #[serde(default)]
    model: Option<String>,
    /// The model's id (the product documents' field; give this or `model`).
    #[serde(default)]
    model_id: Option<String>,
    environment: Environment,
    /// Only `true`: an assignment is made active (roll back or deploy another to replace it).
    #[serde(default)]
    is_active: Option<bool>,
}

async fn assign(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Body(body): Body<AssignBody>,
) -> Result<impl IntoResponse, ApiError> {
    let feature = find_feature(&state, &name).await?;
    if body.is_active == Some(false) {
        return Err(invalid(
            "is_active",
            "an assignment is always made active; deploy another model or roll back to replace it",
        ));
    }
    let (field, wanted) = match (&body.model, &body.model_id) {
        (Some(m), None) => ("model", m),
        (None, Some(m)) => ("model_id", m),
        (Some(_), Some(_)) => return Err(invalid("model", "give model or model_id, not both")),
        (None, None) => {
            return Err(invalid(
                "model",
                "is required (a model id or provider/name)",
            ))
        }
    };
    let models = state.config.list_models().await?;
    let model = models
        .iter()
        .find(|m| m.id.to_string() == *wanted || format!("{}/{}", m.provider, m.name) == *wanted)
        .ok_or_else(|| {
            invalid(
                field,
                format!("no model {wanted} (a model id or provider/name)"),
            )
        })?;
    let deployed = deploy_model(&state, &caller, model, &feature.name, body.environment).await?;
    Ok((StatusCode::CREATED, data(deployed)))
}

/// A feature's active assignment in one environment, with the model and its numbers.
#[derive(Serialize, schemars::JsonSchema)]
struct FeatureModel {
    /// The assignment's id.
    id: String,
    feature: String,
    environment: Environment,
    model_id: Option<String>,
    is_active: bool,
    assigned_at: DateTime<Utc>,
    assigned_by: Option<String>,
    /// Always `{}`: assignments carry no overrides (the documents' field).
    config_overrides: Value,
    model: AssignedModel,
}

#[derive(Serialize, schemars::JsonSchema)]
struct AssignedModel {
    /// `None` when the assigned model is no longer registered.
    id: Option<String>,
    name: String,
    display_name: String,
    provider_name: String,
    model_type: Option<ModelType>,
    status: Option<ModelStatus>,
    /// The model's numbers in this feature and environment over the window (default 24h).
    performance_metrics: crate::cards::ModelCard,
}

async fn feature_models(
    State(state): State<QueryState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = crate::params::Params::new(q, &crate::params::window_params())?;
    let feature = find_feature(&state, &name).await?;
    let (window, time_range) = params.window(state.clock.now(), "24h")?;
    let (assignments, models) = tokio::try_join!(
        state.config.active_assignments(),
        state.config.list_models()
    )?;
    let asked = crate::cards::MetricsQuery {
        window,
        time_range,
        filter: tally_domain::store::Filter {
            feature: Some(feature.name.clone()),
            ..Default::default()
        },
    };
    let rows = crate::rollups::scan(&state, &asked.filter, window.spans(), true).await?;
    let mut out = Vec::new();
    for a in assignments
        .into_iter()
        .filter(|a| a.feature == feature.name)
    {
        let mut served = tally_domain::rollup::Rollup::default();
        for row in rows.iter().filter(|r| {
            r.key.dims.environment == a.environment
                && r.key.dims.provider == a.provider
                && r.key.dims.model == a.model
        }) {
            served.merge(&row.rollup);
        }
        let known = models
            .iter()
            .find(|m| m.provider == a.provider && m.name == a.model);
        out.push(FeatureModel {
            id: a.id.to_string(),
            feature: a.feature.clone(),
            environment: a.environment,
            model_id: known.map(|m| m.id.to_string()),
            is_active: a.is_active,
            assigned_at: a.assigned_at,
            assigned_by: a.assigned_by.clone(),
            config_overrides: Value::Object(Default::default()),
            model: AssignedModel {
                id: known.map(|m| m.id.to_string()),
                name: a.model.clone(),
                display_name: a.model.clone(),
                provider_name: a.provider.clone(),
                model_type: known.map(|m| m.model_type),
                status: known.map(|m| m.status),
                performance_metrics: crate::cards::model_card(&asked, &served),
            },
        });
    }
    out.sort_by_key(|m| std::cmp::Reverse(m.environment));
    Ok(data(out))
}

const DEPLOYMENT_LIST: ListSpec = ListSpec {
    filters: &[
        ("feature", "feature", &[]),
        (
            "environment",
            "environment",
            &["development", "staging", "production"],
        ),
        ("provider", "provider", &[]),
        ("model", "model", &[]),
        ("is_active", "is_active", &["true", "false"]),
    ],
    sorts: &["-assigned_at", "feature", "model", "environment"],
};

async fn list_deployments(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let query = ListQuery::parse(q, &DEPLOYMENT_LIST)?;
    let all = state.config.assignment_history(None, None).await?;
    Ok(axum::Json(query.apply(&all)?))
}
