//! Deployments: `POST /models/{id}/deploy {feature, environment}`, and `GET /deployments`: every
//! assignment ever made, newest first.

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
    if model.status == ModelStatus::Unavailable {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("model {}/{} is unavailable", model.provider, model.name),
        ));
    }
    let deployed = state
        .config
        .deploy(
            DeploySpec {
                feature: body.feature.clone(),
                environment: body.environment,
                provider: model.provider.clone(),
                model: model.name.clone(),
            },
            &change(&state, &caller),
        )
        .await?;
    Ok((StatusCode::CREATED, data(deployed)))
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
