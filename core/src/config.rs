//! The configuration model: what platform admins manage and what pricing reads.
//!
//! Prices are effective-dated and expressed per million tokens in micro-dollars, so a price of
//! $2.50 / 1M tokens is `2_500_000`, and `tokens × price` is exactly pico-dollars.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tally_schemas::Environment;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    pub display_name: String,
    pub description: Option<String>,
    pub status: FeatureStatus,
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    pub id: Uuid,
    pub name: String,
    /// openai | google | anthropic | custom
    pub provider_type: String,
    /// active | inactive | error
    pub status: String,
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key; the key itself is never stored.
    pub api_key_env: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderSpec {
    pub name: String,
    pub provider_type: String,
    pub status: String,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    /// llm | vision | embedding | custom
    pub model_type: String,
    pub version: Option<String>,
    pub capabilities: Vec<String>,
    /// available | beta | deprecated | unavailable
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    pub provider: String,
    pub model_type: String,
    pub version: Option<String>,
    pub capabilities: Vec<String>,
    pub status: String,
}

/// A price in force from `effective_from` until the next price of the same model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceSpec {
    pub provider: String,
    pub model: String,
    pub effective_from: DateTime<Utc>,
    pub input_per_mtok_micros: i64,
    pub output_per_mtok_micros: i64,
    pub cached_input_per_mtok_micros: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub assigned_by: Option<String>,
    pub at: DateTime<Utc>,
}
