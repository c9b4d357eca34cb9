//! Features: `POST /features`, `GET|PUT|DELETE /features/{name}` (the listing with metrics is
//! `routes::dashboards::features`), `GET /features/{name}/deployments?environment=`,
//! `POST /features/{name}/rollback {environment}`.

use super::*;

pub(super) fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let features = format!("{API_BASE}/features");
    let feature = format!("{features}/{{name}}");
    r.serve(
        Route::post(
            &features,
            Access::Admin,
            "Register a feature",
            create_feature,
        )
        .accepts_requiring::<FeatureBody>(&["name"])
        .returns::<Data<Feature>>(201),
    )
    .serve(
        Route::get(
            &feature,
            Access::ReadConfig,
            "A feature with its current model per environment",
            get_feature,
        )
        .returns::<Data<FeatureDetail>>(200),
    )
    .serve(
        Route::put(
            &feature,
            Access::Admin,
            "Change a feature (fields given; the rest kept)",
            update_feature,
        )
        .accepts_omitting::<FeatureBody>(&["name"])
        .returns::<Data<Feature>>(200),
    )
    .serve(
        Route::delete(
            &feature,
            Access::Admin,
            "Delete a feature nothing refers to (409 otherwise)",
            delete_feature,
        )
        .returns::<Data<Feature>>(200),
    )
    .serve(
        Route::get(
            format!("{feature}/deployments"),
            Access::ReadConfig,
            "A feature's deployment history, newest first",
            feature_deployments,
        )
        .query([environment_param()])
        .returns::<Data<Vec<Assignment>>>(200),
    )
    .serve(
        Route::post(
            format!("{feature}/rollback"),
            Access::Admin,
            "Restore the model that served before the current one",
            rollback,
        )
        .accepts::<RollbackBody>()
        .returns::<Data<Assignment>>(201),
    )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FeatureBody {
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::slug")]
    name: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::display_name")]
    display_name: Option<String>,
    description: Option<String>,
    status: Option<FeatureStatus>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::object")]
    config: Option<Value>,
}

impl FeatureBody {
    /// The feature after applying this body to `current` (or to nothing, when creating).
    fn spec(self, current: Option<&Feature>) -> Result<FeatureSpec, ApiError> {
        let name = match current {
            Some(f) => {
                same_name(self.name.as_deref(), &f.name)?;
                f.name.clone()
            }
            None => {
                let name = self
                    .name
                    .ok_or_else(|| invalid("name", "is required (a slug such as photo-tagging)"))?;
                slug("name", &name)?;
                name
            }
        };
        let display_name = self
            .display_name
            .or_else(|| current.map(|f| f.display_name.clone()))
            .unwrap_or_else(|| name.clone());
        if display_name.trim().is_empty() || display_name.chars().count() > 200 {
            return Err(invalid("display_name", "must be 1 to 200 characters"));
        }
        let config = match self.config {
            Some(c @ Value::Object(_)) => c,
            Some(_) => return Err(invalid("config", "must be a JSON object")),
            None => current.map_or_else(|| Value::Object(Default::default()), |f| f.config.clone()),
        };
        Ok(FeatureSpec {
            description: optional_text(
                self.description,
                current.and_then(|f| f.description.clone()),
            ),
            status: self
                .status
                .or(current.map(|f| f.status))
                .unwrap_or(FeatureStatus::Active),
            name,
            display_name,
            config,
        })
    }
}

#[derive(Serialize, schemars::JsonSchema)]
struct FeatureDetail {
    #[serde(flatten)]
    feature: Feature,
    /// The active assignment per environment.
    current_models: BTreeMap<&'static str, Assignment>,
}

async fn get_feature(
    State(state): State<QueryState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let feature = find_feature(&state, &name).await?;
    let current_models = state
        .config
        .active_assignments()
        .await?
        .into_iter()
        .filter(|a| a.feature == name)
        .map(|a| (a.environment.as_str(), a))
        .collect();
    Ok(data(FeatureDetail {
        feature,
        current_models,
    }))
}

async fn create_feature(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<FeatureBody>,
) -> Result<impl IntoResponse, ApiError> {
    let created = state
        .config
        .create_feature(body.spec(None)?, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(created)))
}

async fn update_feature(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Body(body): Body<FeatureBody>,
) -> Result<impl IntoResponse, ApiError> {
    let before = find_feature(&state, &name).await?;
    let updated = state
        .config
        .upsert_feature(body.spec(Some(&before))?, &change(&state, &caller))
        .await?;
    Ok(data(updated))
}

async fn delete_feature(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let deleted = state
        .config
        .delete_feature(&name, &change(&state, &caller))
        .await?;
    Ok(data(deleted))
}

async fn feature_deployments(
    State(state): State<QueryState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let environment = Params::new(q, &[environment_param()])?
        .filter()?
        .environment;
    find_feature(&state, &name).await?;
    Ok(data(
        state
            .config
            .assignment_history(Some(&name), environment)
            .await?,
    ))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    environment: Environment,
}

/// Restores, as a new assignment, the model that served before the current one (the newest
/// earlier assignment of another model). `409` when there is none.
async fn rollback(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Body(body): Body<RollbackBody>,
) -> Result<impl IntoResponse, ApiError> {
    let restored = state
        .config
        .rollback(&name, body.environment, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(restored)))
}
