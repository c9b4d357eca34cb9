//! The catalog platform admins manage: features, providers, models with their effective-dated
//! prices, and deployments (which model serves a feature in an environment).
//!
//! - Features: `POST /features`, `GET|PUT|DELETE /features/{name}` (the listing with metrics is
//!   [`super::features`]), `GET /features/{name}/deployments?environment=`,
//!   `POST /features/{name}/rollback {environment}`.
//! - Providers: `GET|POST /providers`, `GET|PUT|DELETE /providers/{name}`,
//!   `GET /providers/{name}/models`. A provider names the *environment variable* holding its API
//!   key (`api_key_env`); a secret is never accepted, stored or returned.
//! - Models: `GET|POST /models`, `GET|PUT|DELETE /models/{id}`, `GET|POST /models/{id}/prices`,
//!   `POST /models/{id}/deploy {feature, environment}`.
//! - `GET /deployments`: every assignment ever made, newest first.
//!
//! `PUT` updates the fields it is given and keeps the others; names are identities and cannot
//! change. Deleting what history refers to (a deployed model or feature, a provider with models)
//! is a `409`: set a status instead. Prices are only ever added: a new price applies to events
//! ingested from then on whose `occurred_at` is on or after its `effective_from`; events already
//! accepted keep their cost. Every change is recorded in the audit log.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_domain::config::{
    Assignment, DeploySpec, Feature, FeatureSpec, FeatureStatus, Model, ModelPrice, ModelSpec,
    PriceSpec, Provider, ProviderSpec,
};
use tally_http::auth::{Access, Caller, Routes};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_schemas::validate::check_slug;
use tally_schemas::Environment;

use super::{change, parse_id, API_BASE};
use crate::dollars::{micros_from_json, usd_of_micros};
use crate::listing::{ListQuery, ListSpec, Listing};
use crate::params::Params;
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let features = format!("{API_BASE}/features");
    let feature = format!("{features}/{{name}}");
    let providers = format!("{API_BASE}/providers");
    let provider = format!("{providers}/{{name}}");
    let models = format!("{API_BASE}/models");
    let model = format!("{models}/{{id}}");
    r.route(Method::POST, &features, Access::Admin, post(create_feature))
        .doc("Register a feature")
        .accepts::<FeatureBody>()
        .returns::<Data<Feature>>(201)
        .route(Method::GET, &feature, Access::ReadConfig, get(get_feature))
        .doc("A feature with its current model per environment")
        .returns::<Data<FeatureDetail>>(200)
        .route(Method::PUT, &feature, Access::Admin, put(update_feature))
        .doc("Change a feature (fields given; the rest kept)")
        .accepts::<FeatureBody>()
        .returns::<Data<Feature>>(200)
        .route(
            Method::DELETE,
            &feature,
            Access::Admin,
            delete(delete_feature),
        )
        .doc("Delete a feature nothing refers to (409 otherwise)")
        .returns::<Data<Feature>>(200)
        .route(
            Method::GET,
            &format!("{feature}/deployments"),
            Access::ReadConfig,
            get(feature_deployments),
        )
        .doc("A feature's deployment history, newest first")
        .query(["environment"])
        .returns::<Data<Vec<Assignment>>>(200)
        .route(
            Method::POST,
            &format!("{feature}/rollback"),
            Access::Admin,
            post(rollback),
        )
        .doc("Restore the model that served before the current one")
        .accepts::<RollbackBody>()
        .returns::<Data<Assignment>>(201)
        .route(
            Method::GET,
            &providers,
            Access::ReadConfig,
            get(list_providers),
        )
        .doc("Providers")
        .query(PROVIDER_LIST.params())
        .returns::<Listing<Provider>>(200)
        .route(
            Method::POST,
            &providers,
            Access::Admin,
            post(create_provider),
        )
        .doc("Register a provider (the name of its key's environment variable, never the key)")
        .accepts::<ProviderBody>()
        .returns::<Data<Provider>>(201)
        .route(
            Method::GET,
            &provider,
            Access::ReadConfig,
            get(get_provider),
        )
        .doc("A provider")
        .returns::<Data<Provider>>(200)
        .route(Method::PUT, &provider, Access::Admin, put(update_provider))
        .doc("Change a provider (fields given; the rest kept)")
        .accepts::<ProviderBody>()
        .returns::<Data<Provider>>(200)
        .route(
            Method::DELETE,
            &provider,
            Access::Admin,
            delete(delete_provider),
        )
        .doc("Delete a provider without models (409 otherwise)")
        .returns::<Data<Provider>>(200)
        .route(
            Method::GET,
            &format!("{provider}/models"),
            Access::ReadConfig,
            get(provider_models),
        )
        .doc("A provider's models")
        .query(MODEL_LIST.params())
        .returns::<Listing<Model>>(200)
        .route(Method::GET, &models, Access::ReadConfig, get(list_models))
        .doc("Models")
        .query(MODEL_LIST.params())
        .returns::<Listing<Model>>(200)
        .route(Method::POST, &models, Access::Admin, post(create_model))
        .doc("Register a model")
        .accepts::<ModelBody>()
        .returns::<Data<Model>>(201)
        .route(Method::GET, &model, Access::ReadConfig, get(get_model))
        .doc("A model with its prices and where it serves")
        .returns::<Data<ModelDetail>>(200)
        .route(Method::PUT, &model, Access::Admin, put(update_model))
        .doc("Change a model (fields given; the rest kept)")
        .accepts::<ModelBody>()
        .returns::<Data<Model>>(200)
        .route(Method::DELETE, &model, Access::Admin, delete(delete_model))
        .doc("Delete a model that was never deployed (409 otherwise)")
        .returns::<Data<Model>>(200)
        .route(
            Method::GET,
            &format!("{model}/prices"),
            Access::ReadConfig,
            get(list_prices),
        )
        .doc("A model's prices, oldest first")
        .returns::<Data<Vec<PriceView>>>(200)
        .route(
            Method::POST,
            &format!("{model}/prices"),
            Access::Admin,
            post(add_price),
        )
        .doc("Add an effective-dated price (never rewrites past costs)")
        .accepts::<PriceBody>()
        .returns::<Data<PriceView>>(201)
        .route(
            Method::POST,
            &format!("{model}/deploy"),
            Access::Admin,
            post(deploy),
        )
        .doc("Make the model the active one of a feature in an environment")
        .accepts::<DeployBody>()
        .returns::<Data<Assignment>>(201)
        .route(
            Method::GET,
            &format!("{API_BASE}/deployments"),
            Access::ReadConfig,
            get(list_deployments),
        )
        .doc("Every deployment, newest first")
        .query(DEPLOYMENT_LIST.params())
        .returns::<Listing<Assignment>>(200)
}

fn slug(field: &'static str, value: &str) -> Result<(), ApiError> {
    check_slug(field, value).map_err(|e| invalid(field, e.reason))
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
}

/// Names are identities: a body may repeat the path's name, never change it.
fn same_name(given: Option<&str>, current: &str) -> Result<(), ApiError> {
    match given {
        Some(name) if name != current => Err(invalid(
            "name",
            "cannot be changed; create a new one and delete this one",
        )),
        _ => Ok(()),
    }
}

/// Empty text clears an optional field.
fn optional_text(given: Option<String>, current: Option<String>) -> Option<String> {
    match given {
        Some(text) if text.trim().is_empty() => None,
        Some(text) => Some(text),
        None => current,
    }
}

// ---- features ----

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FeatureBody {
    name: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
    status: Option<FeatureStatus>,
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

pub(crate) async fn find_feature(state: &QueryState, name: &str) -> Result<Feature, ApiError> {
    state
        .config
        .list_features()
        .await?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| ApiError::not_found(format!("feature {name} not found")))
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
    let environment = Params::new(q, &["environment"])?.filter()?.environment;
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

// ---- providers ----

const PROVIDER_TYPES: &[&str] = &["openai", "google", "anthropic", "custom"];
const PROVIDER_STATUSES: &[&str] = &["active", "inactive", "error"];

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    name: Option<String>,
    #[serde(rename = "type")]
    provider_type: Option<String>,
    status: Option<String>,
    base_url: Option<String>,
    api_key_env: Option<String>,
}

fn check_base_url(url: &str) -> Result<(), ApiError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !url.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(invalid("base_url", "must be an http:// or https:// URL")),
    }
}

fn check_env_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "api_key_env",
            "must be the name of an environment variable (A-Z, 0-9 and _), not the key itself",
        ))
    }
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
        let provider_type = self
            .provider_type
            .or_else(|| current.map(|p| p.provider_type.clone()))
            .ok_or_else(|| {
                invalid(
                    "type",
                    "is required: one of openai, google, anthropic, custom",
                )
            })?;
        one_of("type", &provider_type, PROVIDER_TYPES)?;
        let status = self
            .status
            .or_else(|| current.map(|p| p.status.clone()))
            .unwrap_or_else(|| "active".into());
        one_of("status", &status, PROVIDER_STATUSES)?;
        let base_url = optional_text(self.base_url, current.and_then(|p| p.base_url.clone()));
        if let Some(url) = &base_url {
            check_base_url(url)?;
        }
        let api_key_env = optional_text(
            self.api_key_env,
            current.and_then(|p| p.api_key_env.clone()),
        );
        if let Some(env) = &api_key_env {
            check_env_name(env)?;
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

pub(crate) async fn find_provider(state: &QueryState, name: &str) -> Result<Provider, ApiError> {
    state
        .config
        .list_providers()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("provider {name} not found")))
}

const PROVIDER_LIST: ListSpec = ListSpec {
    filters: &[
        ("type", "type", PROVIDER_TYPES),
        ("status", "status", PROVIDER_STATUSES),
    ],
    sorts: &["name", "type", "status", "created_at", "updated_at"],
};

async fn list_providers(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let query = ListQuery::parse(q, &PROVIDER_LIST)?;
    Ok(axum::Json(
        query.apply(&state.config.list_providers().await?)?,
    ))
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

// ---- models and prices ----

const MODEL_TYPES: &[&str] = &["llm", "vision", "embedding", "custom"];
const MODEL_STATUSES: &[&str] = &["available", "beta", "deprecated", "unavailable"];

const MODEL_LIST: ListSpec = ListSpec {
    filters: &[
        ("provider", "provider", &[]),
        ("type", "model_type", MODEL_TYPES),
        ("status", "status", MODEL_STATUSES),
        ("capability", "capabilities", &[]),
    ],
    sorts: &[
        "name",
        "provider",
        "model_type",
        "status",
        "created_at",
        "updated_at",
    ],
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ModelBody {
    name: Option<String>,
    provider: Option<String>,
    model_type: Option<String>,
    version: Option<String>,
    capabilities: Option<Vec<String>>,
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
        let model_type = self
            .model_type
            .or_else(|| current.map(|m| m.model_type.clone()))
            .unwrap_or_else(|| "llm".into());
        one_of("model_type", &model_type, MODEL_TYPES)?;
        let status = self
            .status
            .or_else(|| current.map(|m| m.status.clone()))
            .unwrap_or_else(|| "available".into());
        one_of("status", &status, MODEL_STATUSES)?;
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

pub(crate) async fn find_model(state: &QueryState, id: &str) -> Result<Model, ApiError> {
    let id = parse_id(id)?;
    state
        .config
        .list_models()
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| ApiError::not_found(format!("model {id} not found")))
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

/// The model's prices, oldest `effective_from` first.
pub(crate) async fn model_prices(
    state: &QueryState,
    model: &Model,
) -> Result<Vec<ModelPrice>, ApiError> {
    Ok(state
        .config
        .list_prices()
        .await?
        .into_iter()
        .filter(|p| p.provider == model.provider && p.model == model.name)
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
    let query = ListQuery::parse(q, &MODEL_LIST)?;
    Ok(axum::Json(query.apply(&state.config.list_models().await?)?))
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
    input_usd_per_mtok: Value,
    output_usd_per_mtok: Value,
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
    // Events this process records from now on are priced with it at once (other processes
    // reload within seconds). The price is stored either way; a failed reload only delays it.
    if let Err(err) = state.recorder.reload_prices(state.config.as_ref()).await {
        tracing::warn!(error = %err, "reloading prices after a new one; it applies at the next periodic reload");
    }
    Ok((StatusCode::CREATED, data(PriceView::from(created))))
}

// ---- deployments ----

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeployBody {
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
    if model.status == "unavailable" {
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
