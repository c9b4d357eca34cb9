//! Models: `GET|POST /models`, `GET|PUT|DELETE /models/{id}`, `GET|POST /models/{id}/prices`.
//! Prices are only ever added.

use super::*;

pub(super) fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let models = format!("{API_BASE}/models");
    let model = format!("{models}/{{id}}");
    r.serve(
        Route::get(
            &models,
            Access::ReadConfig,
            "Models, each with the price in force (and its recent numbers with include_metrics=true)",
            list_models,
        )
        .query(crate::params::joined([
            MODEL_LIST.params(),
            crate::cards::METRICS_PARAMS.clone(),
        ]))
            .returns::<Listing<ModelItem>>(200),
    )
    .serve(
        Route::post(&models, Access::Admin, "Register a model", create_model)
            .accepts_requiring::<ModelBody>(&["name", "provider"])
            .returns::<Data<Model>>(201),
    )
    .serve(
        Route::get(
            &model,
            Access::ReadConfig,
            "A model with its prices and where it serves",
            get_model,
        )
        .returns::<Data<ModelDetail>>(200),
    )
    .serve(
        Route::put(
            &model,
            Access::Admin,
            "Change a model (fields given; the rest kept)",
            update_model,
        )
        .accepts_omitting::<ModelBody>(&["name", "provider"])
        .returns::<Data<Model>>(200),
    )
    .serve(
        Route::delete(
            &model,
            Access::Admin,
            "Delete a model that was never deployed (409 otherwise)",
            delete_model,
        )
        .returns::<Data<Model>>(200),
    )
    .serve(
        Route::get(
            format!("{model}/prices"),
            Access::ReadConfig,
            "A model's prices, oldest first",
            list_prices,
        )
        .returns::<Data<Vec<PriceView>>>(200),
    )
    .serve(
        Route::post(
            format!("{model}/prices"),
            Access::Admin,
            "Add an effective-dated price (never rewrites past costs)",
            add_price,
        )
        .accepts::<PriceBody>()
        .returns::<Data<PriceView>>(201),
    )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ModelBody {
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::slug")]
    name: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::slug")]
    provider: Option<String>,
    #[schemars(with = "Option<ModelType>")]
    model_type: Option<String>,
    version: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::slugs")]
    capabilities: Option<Vec<String>>,
    #[schemars(with = "Option<ModelStatus>")]
    status: Option<String>,
}

impl ModelBody {
    fn spec(self, current: Option<&Model>) -> Result<ModelSpec, ApiError> {
        let (name, provider) = match current {
            Some(m) => {
                same_name(self.name.as_deref(), &m.name)?;
                if self.provider.as_deref().is_some_and(|p| p != m.provider) {
                    return Err(invalid(
                        "provider",
                        "cannot be changed; create the model under the other provider",
                    ));
                }
                (m.name.clone(), m.provider.clone())
            }
            None => {
                let name = self.name.ok_or_else(|| invalid("name", "is required"))?;
                slug("name", &name)?;
                let provider = self
                    .provider
                    .ok_or_else(|| invalid("provider", "is required"))?;
                (name, provider)
            }
        };
        let model_type = match self.model_type {
            Some(text) => word("model_type", &text, ModelType::parse, ModelType::NAMES)?,
            None => current.map_or(ModelType::Llm, |m| m.model_type),
        };
        let status = match self.status {
            Some(text) => word("status", &text, ModelStatus::parse, ModelStatus::NAMES)?,
            None => current.map_or(ModelStatus::Available, |m| m.status),
        };
        let capabilities = self
            .capabilities
            .or_else(|| current.map(|m| m.capabilities.clone()))
            .unwrap_or_default();
        if capabilities
            .iter()
            .any(|c| check_slug("capabilities", c).is_err())
        {
            return Err(invalid(
                "capabilities",
                "must be slugs such as chat, vision or tools",
            ));
        }
        Ok(ModelSpec {
            version: optional_text(self.version, current.and_then(|m| m.version.clone())),
            name,
            provider,
            model_type,
            capabilities,
            status,
        })
    }
}

/// A price with its amounts as exact decimal dollars too.
#[derive(Clone, Serialize, schemars::JsonSchema)]
struct PriceView {
    #[serde(flatten)]
    price: ModelPrice,
    input_usd_per_mtok: String,
    output_usd_per_mtok: String,
    cached_input_usd_per_mtok: Option<String>,
}

impl From<ModelPrice> for PriceView {
    fn from(price: ModelPrice) -> PriceView {
        PriceView {
            input_usd_per_mtok: usd_of_micros(price.input_per_mtok_micros),
            output_usd_per_mtok: usd_of_micros(price.output_per_mtok_micros),
            cached_input_usd_per_mtok: price.cached_input_per_mtok_micros.map(usd_of_micros),
            price,
        }
    }
}

async fn prices_of(state: &QueryState, model: &Model) -> Result<Vec<PriceView>, ApiError> {
    Ok(model_prices(state, model)
        .await?
        .into_iter()
        .map(PriceView::from)
        .collect())
}

#[derive(Serialize, schemars::JsonSchema)]
struct ModelDetail {
    #[serde(flatten)]
    model: Model,
    /// Oldest first.
    prices: Vec<PriceView>,
    /// The price in force now.
    current_price: Option<PriceView>,
    /// Where it serves now.
    deployments: Vec<Assignment>,
}

async fn list_models(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    crate::params::refuse_unknown(
        &q,
        &crate::params::joined([MODEL_LIST.params(), crate::cards::METRICS_PARAMS.clone()]),
    )?;
    let (metrics, q) = crate::cards::split(&state, q, "24h")?;
    let query = ListQuery::parse(q, &MODEL_LIST)?;
    let (models, prices) =
        tokio::try_join!(state.config.list_models(), state.config.list_prices())?;
    let cards = match &metrics {
        Some(asked) => Some(crate::cards::model_cards(&state, asked).await?),
        None => None,
    };
    let now = state.clock.now();
    let items: Vec<ModelItem> = models
        .into_iter()
        .map(|model| {
            let current_price = prices
                .iter()
                .filter(|p| {
                    p.provider == model.provider && p.model == model.name && p.effective_from <= now
                })
                .max_by_key(|p| p.effective_from)
                .cloned()
                .map(PriceView::from);
            let performance_metrics = metrics.as_ref().zip(cards.as_ref()).map(|(asked, cards)| {
                cards
                    .get(&(model.provider.clone(), model.name.clone()))
                    .cloned()
                    .unwrap_or_else(|| crate::cards::model_card(asked, &Default::default()))
            });
            ModelItem {
                model,
                current_price,
                performance_metrics,
            }
        })
        .collect();
    Ok(axum::Json(query.apply(&items)?))
}

/// A model in the listing, with the price in force now (the console's change-model dialog
/// and model cards show it).
#[derive(Serialize, schemars::JsonSchema)]
struct ModelItem {
    #[serde(flatten)]
    model: Model,
    current_price: Option<PriceView>,
    /// With `include_metrics=true`: the model's numbers over the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    performance_metrics: Option<crate::cards::ModelCard>,
}

async fn get_model(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let model = find_model(&state, &id).await?;
    let prices = prices_of(&state, &model).await?;
    let now = state.clock.now();
    let current_price = prices
        .iter()
        .rev()
        .find(|p| p.price.effective_from <= now)
        .cloned();
    let deployments = state
        .config
        .active_assignments()
        .await?
        .into_iter()
        .filter(|a| a.provider == model.provider && a.model == model.name)
        .collect();
    Ok(data(ModelDetail {
        model,
        prices,
        current_price,
        deployments,
    }))
}

async fn create_model(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<ModelBody>,
) -> Result<impl IntoResponse, ApiError> {
    let spec = body.spec(None)?;
    find_provider(&state, &spec.provider)
        .await
        .map_err(|_| invalid("provider", format!("no provider named {}", spec.provider)))?;
    let created = state
        .config
        .create_model(spec, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(created)))
}

async fn update_model(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<ModelBody>,
) -> Result<impl IntoResponse, ApiError> {
    let before = find_model(&state, &id).await?;
    let updated = state
        .config
        .upsert_model(body.spec(Some(&before))?, &change(&state, &caller))
        .await?;
    Ok(data(updated))
}

async fn delete_model(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let deleted = state
        .config
        .delete_model(parse_id(&id)?, &change(&state, &caller))
        .await?;
    Ok(data(deleted))
}

async fn list_prices(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let model = find_model(&state, &id).await?;
    Ok(data(prices_of(&state, &model).await?))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PriceBody {
    effective_from: DateTime<Utc>,
    /// Dollars per million tokens, as a JSON number or a decimal string.
    #[schemars(schema_with = "crate::fields::dollars")]
    input_usd_per_mtok: Value,
    #[schemars(schema_with = "crate::fields::dollars")]
    output_usd_per_mtok: Value,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::dollars")]
    cached_input_usd_per_mtok: Option<Value>,
}

async fn add_price(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<PriceBody>,
) -> Result<impl IntoResponse, ApiError> {
    let model = find_model(&state, &id).await?;
    let spec = PriceSpec {
        provider: model.provider.clone(),
        model: model.name.clone(),
        effective_from: body.effective_from,
        input_per_mtok_micros: micros_from_json("input_usd_per_mtok", &body.input_usd_per_mtok)?,
        output_per_mtok_micros: micros_from_json("output_usd_per_mtok", &body.output_usd_per_mtok)?,
        cached_input_per_mtok_micros: body
            .cached_input_usd_per_mtok
            .as_ref()
            .map(|v| micros_from_json("cached_input_usd_per_mtok", v))
            .transpose()?,
    };
    let created = state
        .config
        .add_price(spec, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(PriceView::from(created))))
}
