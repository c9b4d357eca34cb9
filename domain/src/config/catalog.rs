//! The catalog: features, providers, models, their effective-dated prices and reprice requests,
//! and deployments (which model serves a feature in an environment), with the rollback rule.
//!
//! Prices are expressed per million tokens in micro-dollars, so a price of $2.50 / 1M tokens is
//! `2_500_000`, and `tokens × price` is exactly pico-dollars.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tally_schemas::Environment;
use uuid::Uuid;

named_enum!(
    /// Who runs a provider's API.
    ProviderType {
        Openai => "openai",
        Google => "google",
        Anthropic => "anthropic",
        Custom => "custom",
    }
);

named_enum!(
    /// Whether a provider is in use.
    ProviderStatus {
        Active => "active",
        Inactive => "inactive",
        Error => "error",
    }
);

named_enum!(
    /// What a model does.
    ModelType {
        Llm => "llm",
        Vision => "vision",
        Embedding => "embedding",
        Custom => "custom",
    }
);

named_enum!(
    /// Whether a model may be used.
    ModelStatus {
        Available => "available",
        Beta => "beta",
        Deprecated => "deprecated",
        Unavailable => "unavailable",
    }
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeatureStatus {
    Active,
    Inactive,
    Maintenance,
}

impl FeatureStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Maintenance => "maintenance",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Inactive, Self::Maintenance]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Feature {
    pub id: Uuid,
    pub name: String,
    pub display_name: String,
    pub description: Option<String>,
    pub status: FeatureStatus,
    pub config: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureSpec {
    pub name: String,
    pub display_name: String,
    pub description: Option<String>,
    pub status: FeatureStatus,
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Provider {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type", alias = "provider_type")]
    pub provider_type: ProviderType,
    pub status: ProviderStatus,
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key; the key itself is never stored.
    pub api_key_env: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderSpec {
    pub name: String,
    #[serde(rename = "type", alias = "provider_type")]
    pub provider_type: ProviderType,
    pub status: ProviderStatus,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Model {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub model_type: ModelType,
    pub version: Option<String>,
    pub capabilities: Vec<String>,
    pub status: ModelStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelSpec {
    pub name: String,
    pub provider: String,
    pub model_type: ModelType,
    pub version: Option<String>,
    pub capabilities: Vec<String>,
    pub status: ModelStatus,
}

/// A price in force from `effective_from` until the next price of the same model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelPrice {
    pub id: Uuid,
    pub provider: String,
    pub model: String,
    pub effective_from: DateTime<Utc>,
    pub input_per_mtok_micros: i64,
    pub output_per_mtok_micros: i64,
    /// When absent, cached input tokens are charged at the input price.
    pub cached_input_per_mtok_micros: Option<i64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PriceSpec {
    pub provider: String,
    pub model: String,
    pub effective_from: DateTime<Utc>,
    pub input_per_mtok_micros: i64,
    pub output_per_mtok_micros: i64,
    pub cached_input_per_mtok_micros: Option<i64>,
}

/// A request to price a model's past events again (`POST /models/{id}/reprice?from=`): events
/// of the model that occurred in `[from, requested_at)` and were priced from the price table
/// (not reported by the client) cost what `prices` (the model's price table when the request
/// was made) say, in every projection from now on, replays included. When several requests
/// cover an event, the newest wins. A request is immutable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reprice {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: RepriceSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RepriceSpec {
    pub provider: String,
    pub model: String,
    pub from: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    pub requested_by: Option<String>,
    /// The model's prices when the request was made, by `effective_from`.
    pub prices: Vec<ModelPrice>,
}

impl RepriceSpec {
    /// What every store checks before recording the request.
    pub fn check(&self) -> Result<(), crate::error::StoreError> {
        if self.from >= self.requested_at {
            return Err(crate::error::StoreError::invalid(
                "from",
                "must be before the time of the request",
            ));
        }
        if let Some(other) = self
            .prices
            .iter()
            .find(|p| p.provider != self.provider || p.model != self.model)
        {
            return Err(crate::error::StoreError::invalid(
                "prices",
                format!("holds a price of {}/{}", other.provider, other.model),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Assignment {
    pub id: Uuid,
    pub feature: String,
    pub environment: Environment,
    pub provider: String,
    pub model: String,
    pub is_active: bool,
    pub assigned_at: DateTime<Utc>,
    pub assigned_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySpec {
    pub feature: String,
    pub environment: Environment,
    pub provider: String,
    pub model: String,
}

/// What a rollback of (feature, environment) deploys, given that pair's assignment history
/// (newest first): the model of the newest assignment that names another model than the active
/// one. `Conflict` when nothing is active, or no other model ever served.
pub fn rollback_target(
    feature: &str,
    environment: Environment,
    history: &[Assignment],
) -> Result<DeploySpec, crate::error::StoreError> {
    let conflict = crate::error::StoreError::Conflict;
    let env = environment.as_str();
    let current = history
        .iter()
        .find(|a| a.is_active)
        .ok_or_else(|| conflict(format!("feature {feature} has no model deployed in {env}")))?;
    let previous = history
        .iter()
        .find(|a| (&a.provider, &a.model) != (&current.provider, &current.model))
        .ok_or_else(|| {
            conflict(format!(
                "feature {feature} has had no other model in {env} to roll back to"
            ))
        })?;
    Ok(DeploySpec {
        feature: feature.to_string(),
        environment,
        provider: previous.provider.clone(),
        model: previous.model.clone(),
    })
}
