//! Providers: `GET|POST /providers`, `GET|PUT|DELETE /providers/{name}`,
//! `GET /providers/{name}/models`. A provider names the *environment variable* holding its API
//! key (`api_key_env`); a secret is never accepted, stored or returned.

use super::*;

pub(super) fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let providers = format!("{API_BASE}/providers");
    let provider = format!("{providers}/{{name}}");
    r.serve(
        Route::get(
            &providers,
            Access::ReadConfig,
            "Providers (with their cards' numbers with include_metrics=true)",
            list_providers,
        )
        .query(crate::params::joined([
            PROVIDER_LIST.params(),
            crate::cards::METRICS_PARAMS.clone(),
        ]))
        .returns::<Listing<ProviderItem>>(200),
    )
    .serve(
        Route::post(
            &providers,
            Access::Admin,
            "Register a provider (the name of its key's environment variable, never the key)",
            create_provider,
        )
        .accepts_requiring::<ProviderBody>(&["name", "type"])
        .returns::<Data<Provider>>(201),
    )
    .serve(
        Route::get(&provider, Access::ReadConfig, "A provider", get_provider)
            .returns::<Data<Provider>>(200),
    )
    .serve(
        Route::put(
            &provider,
            Access::Admin,
            "Change a provider (fields given; the rest kept)",
            update_provider,
        )
        .accepts_omitting::<ProviderBody>(&["name"])
        .returns::<Data<Provider>>(200),
    )
    .serve(
        Route::delete(
            &provider,
            Access::Admin,
            "Delete a provider without models (409 otherwise)",
            delete_provider,
        )
        .returns::<Data<Provider>>(200),
    )
    .serve(
        Route::get(
            format!("{provider}/models"),
            Access::ReadConfig,
            "A provider's models",
            provider_models,
        )
        .query(MODEL_LIST.params())
        .returns::<Listing<Model>>(200),
    )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::slug")]
    name: Option<String>,
    #[serde(rename = "type")]
    #[schemars(with = "Option<ProviderType>")]
    provider_type: Option<String>,
    #[schemars(with = "Option<ProviderStatus>")]
    status: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::http_url")]
    base_url: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::env_name")]
    api_key_env: Option<String>,
}

impl ProviderBody {
    fn spec(self, current: Option<&Provider>) -> Result<ProviderSpec, ApiError> {
        let name = match current {
            Some(p) => {
                same_name(self.name.as_deref(), &p.name)?;
                p.name.clone()
            }
            None => {
                let name = self.name.ok_or_else(|| invalid("name", "is required"))?;
                slug("name", &name)?;
                name
            }
        };
        let provider_type = match self.provider_type {
            Some(text) => word("type", &text, ProviderType::parse, ProviderType::NAMES)?,
            None => current.map(|p| p.provider_type).ok_or_else(|| {
                invalid(
                    "type",
                    format!("is required: one of {}", ProviderType::NAMES.join(", ")),
                )
            })?,
        };
        let status = match self.status {
            Some(text) => word(
                "status",
                &text,
                ProviderStatus::parse,
                ProviderStatus::NAMES,
            )?,
            None => current.map_or(ProviderStatus::Active, |p| p.status),
        };
        let base_url = optional_text(self.base_url, current.and_then(|p| p.base_url.clone()));
        if let Some(url) = &base_url {
            tally_domain::config::http_url("base_url", url)?;
        }
        let api_key_env = optional_text(
            self.api_key_env,
            current.and_then(|p| p.api_key_env.clone()),
        );
        if let Some(env) = &api_key_env {
            tally_domain::config::env_name("api_key_env", env, "key")?;
        }
        Ok(ProviderSpec {
            name,
            provider_type,
            status,
            base_url,
            api_key_env,
        })
    }
}

/// Refuses a secret before the body is read, with a message saying what to do instead.
fn no_secrets(body: &Value) -> Result<(), ApiError> {
    for field in ["api_key", "key", "secret", "token"] {
        if body.get(field).is_some() {
            return Err(invalid(
                field,
                "secrets are never stored: put the key in an environment variable of the servers and send its name as api_key_env",
            ));
        }
    }
    Ok(())
}

const PROVIDER_LIST: ListSpec = ListSpec {
    filters: &[
        ("type", "type", ProviderType::NAMES),
        ("status", "status", ProviderStatus::NAMES),
    ],
    sorts: &["name", "type", "status", "created_at", "updated_at"],
};

async fn list_providers(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    crate::params::refuse_unknown(
        &q,
        &crate::params::joined([PROVIDER_LIST.params(), crate::cards::METRICS_PARAMS.clone()]),
    )?;
    // The health route's default window, so a card's score is the score that route shows.
    let (metrics, q) = crate::cards::split(&state, q, "15m")?;
    let query = ListQuery::parse(q, &PROVIDER_LIST)?;
    let providers = state.config.list_providers().await?;
    let mut cards = match &metrics {
        Some(asked) => {
            let mut models: HashMap<String, usize> = HashMap::new();
            for m in state.config.list_models().await? {
                *models.entry(m.provider).or_default() += 1;
            }
            let names: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
            crate::cards::provider_cards(&state, asked, &models, &names).await?
        }
        None => BTreeMap::new(),
    };
    let items: Vec<ProviderItem> = providers
        .into_iter()
        .map(|provider| ProviderItem {
            card: cards.remove(&provider.name),
            provider,
        })
        .collect();
    Ok(axum::Json(query.apply(&items)?))
}

/// A provider in the listing; with `include_metrics=true`, its card's numbers beside it (as the
/// product documents' provider cards read them).
#[derive(Serialize, schemars::JsonSchema)]
struct ProviderItem {
    #[serde(flatten)]
    provider: Provider,
    #[serde(flatten)]
    card: Option<crate::cards::ProviderCard>,
}

async fn get_provider(
    State(state): State<QueryState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(data(find_provider(&state, &name).await?))
}

async fn create_provider(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<Value>,
) -> Result<impl IntoResponse, ApiError> {
    no_secrets(&body)?;
    let body: ProviderBody = tally_http::http::parse_body(body)?;
    let created = state
        .config
        .create_provider(body.spec(None)?, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(created)))
}

async fn update_provider(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> Result<impl IntoResponse, ApiError> {
    no_secrets(&body)?;
    let body: ProviderBody = tally_http::http::parse_body(body)?;
    let before = find_provider(&state, &name).await?;
    let updated = state
        .config
        .upsert_provider(body.spec(Some(&before))?, &change(&state, &caller))
        .await?;
    Ok(data(updated))
}

async fn delete_provider(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let deleted = state
        .config
        .delete_provider(&name, &change(&state, &caller))
        .await?;
    Ok(data(deleted))
}

async fn provider_models(
    State(state): State<QueryState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let query = ListQuery::parse(q, &MODEL_LIST)?;
    find_provider(&state, &name).await?;
    let models: Vec<Model> = state
        .config
        .list_models()
        .await?
        .into_iter()
        .filter(|m| m.provider == name)
        .collect();
    Ok(axum::Json(query.apply(&models)?))
}
