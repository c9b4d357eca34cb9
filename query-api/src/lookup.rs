//! Lookups the routes share: a catalog row by the name or id a URL gives, answered as the API
//! answers a missing one (`404` naming what is missing), so every route finds things the same way.

use tally_domain::config::{
    AlertRule, Budget, Channel, Experiment, Feature, Model, ModelPrice, Prompt, Provider, TestCase,
};
use tally_http::http::ApiError;

use crate::params::parse_id;
use crate::state::QueryState;

pub async fn find_feature(state: &QueryState, name: &str) -> Result<Feature, ApiError> {
    state
        .config
        .list_features()
        .await?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| ApiError::not_found(format!("feature {name} not found")))
}

pub async fn find_provider(state: &QueryState, name: &str) -> Result<Provider, ApiError> {
    state
        .config
        .list_providers()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("provider {name} not found")))
}

pub async fn find_model(state: &QueryState, id: &str) -> Result<Model, ApiError> {
    let id = parse_id(id)?;
    state
        .config
        .list_models()
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| ApiError::not_found(format!("model {id} not found")))
}

/// The model's prices, oldest `effective_from` first.
pub async fn model_prices(state: &QueryState, model: &Model) -> Result<Vec<ModelPrice>, ApiError> {
    Ok(state
        .config
        .list_prices()
        .await?
        .into_iter()
        .filter(|p| p.provider == model.provider && p.model == model.name)
        .collect())
}

/// A prompt by the `{id}` of a URL.
pub async fn find_prompt(state: &QueryState, id: &str) -> Result<Prompt, ApiError> {
    let id = parse_id(id)?;
    state
        .config
        .list_prompts()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("prompt {id} not found")))
}

/// An experiment by the `{id}` of a URL.
pub async fn find_experiment(state: &QueryState, id: &str) -> Result<Experiment, ApiError> {
    let id = parse_id(id)?;
    state
        .config
        .list_experiments()
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ApiError::not_found(format!("experiment {id} not found")))
}

/// A test case by the `{id}` of a URL.
pub async fn find_test_case(state: &QueryState, id: &str) -> Result<TestCase, ApiError> {
    let id = parse_id(id)?;
    state
        .config
        .list_test_cases()
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found(format!("test case {id} not found")))
}

/// A budget by the `{id}` of a URL.
pub async fn find_budget(state: &QueryState, id: &str) -> Result<Budget, ApiError> {
    let id = parse_id(id)?;
    state
        .config
        .list_budgets()
        .await?
        .into_iter()
        .find(|b| b.id == id)
        .ok_or_else(|| ApiError::not_found(format!("budget {id} not found")))
}

/// An alert rule by the `{id}` of a URL.
pub async fn find_alert_rule(state: &QueryState, id: &str) -> Result<AlertRule, ApiError> {
    let id = parse_id(id)?;
    state
        .config
        .list_alert_rules()
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found(format!("alert rule {id} not found")))
}

/// A notification channel by the `{id}` of a URL.
pub async fn find_channel(state: &QueryState, id: &str) -> Result<Channel, ApiError> {
    let id = parse_id(id)?;
    state
        .config
        .list_channels()
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found(format!("notification channel {id} not found")))
}
