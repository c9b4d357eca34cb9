//! The configuration model: what platform admins manage and what pricing reads.
//!
//! Prices are effective-dated and expressed per million tokens in micro-dollars, so a price of
//! $2.50 / 1M tokens is `2_500_000`, and `tokens × price` is exactly pico-dollars.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tally_schemas::Environment;
use uuid::Uuid;

/// A closed set of words, stored and answered as text: the enum, its words (`NAMES`, in
/// declaration order), and `as_str` / `parse` between them.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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

named_enum!(
    /// Where a prompt version stands in review.
    PromptStatus { Draft => "draft", Review => "review", Approved => "approved", Archived => "archived" }
);

/// A prompt: a named text with immutable, numbered versions. At most one version of all the
/// prompts of a feature is active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Prompt {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub feature: Option<String>,
    pub tags: Vec<String>,
    pub latest_version: i32,
    pub active_version: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptSpec {
    pub name: String,
    pub description: Option<String>,
    pub feature: Option<String>,
    pub tags: Vec<String>,
    /// The first version.
    pub content: PromptContent,
}

/// What makes a version: its text and the variables it declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptContent {
    pub content: String,
    /// Names of the `{{variable}}`s the content uses.
    pub variables: Vec<String>,
    pub created_by: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptVersion {
    pub id: Uuid,
    pub prompt_id: Uuid,
    pub version: i32,
    pub content: String,
    pub variables: Vec<String>,
    pub status: PromptStatus,
    pub is_active: bool,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

named_enum!(
    /// What a budget counts the spending of.
    BudgetScope { Global => "global", Feature => "feature", Provider => "provider", Model => "model", Environment => "environment" }
);

named_enum!(
    /// The calendar period a budget resets on, in its time zone.
    BudgetPeriod { Daily => "daily", Weekly => "weekly", Monthly => "monthly", Quarterly => "quarterly" }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetSpec {
    pub name: String,
    pub scope: BudgetScope,
    /// The feature, provider, model or environment name; absent for `global`.
    pub scope_value: Option<String>,
    pub period: BudgetPeriod,
    /// IANA time zone the period's boundaries are in (e.g. `Europe/Berlin`).
    pub time_zone: String,
    /// Amount per period in micro-dollars.
    pub amount_micros: i64,
    /// Percentages of the amount that raise a warning, ascending (default 80 and 100).
    pub thresholds_percent: Vec<u32>,
    pub is_active: bool,
}

/// The IANA time zone names a budget may use (`time_zone`).
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

impl BudgetSpec {
    /// The rules both stores enforce.
    pub fn validate(&self) -> Result<(), crate::error::StoreError> {
        use crate::error::StoreError;
        if self.name.trim().is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        match (self.scope, &self.scope_value) {
            (BudgetScope::Global, Some(_)) => {
                return Err(StoreError::invalid(
                    "scope_value",
                    "must be absent for a global budget",
                ))
            }
            (BudgetScope::Environment, Some(v)) if Environment::parse(v).is_none() => {
                return Err(StoreError::invalid(
                    "scope_value",
                    "must be development, staging or production",
                ))
            }
            (s, None) if s != BudgetScope::Global => {
                return Err(StoreError::invalid(
                    "scope_value",
                    format!("names the {} the budget covers", s.as_str()),
                ))
            }
            _ => {}
        }
        if self.amount_micros <= 0 {
            return Err(StoreError::invalid("amount", "must be greater than zero"));
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(StoreError::invalid(
                "time_zone",
                "must be an IANA time zone such as UTC or Europe/Berlin",
            ));
        }
        let t = &self.thresholds_percent;
        if t.is_empty()
            || t.windows(2).any(|w| w[0] >= w[1])
            || t.iter().any(|p| *p == 0 || *p > 1000)
        {
            return Err(StoreError::invalid(
                "thresholds_percent",
                "must be ascending percentages between 1 and 1000",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Budget {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: BudgetSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

named_enum!(
    ExperimentType { ModelComparison => "model_comparison", PromptTesting => "prompt_testing", ParameterTuning => "parameter_tuning" }
);

named_enum!(
    /// draft → running → completed; draft or running → cancelled. Nothing else.
    ExperimentStatus { Draft => "draft", Running => "running", Completed => "completed", Cancelled => "cancelled" }
);

impl ExperimentStatus {
    pub fn can_become(self, next: ExperimentStatus) -> bool {
        use ExperimentStatus::*;
        matches!(
            (self, next),
            (Draft, Running) | (Running, Completed) | (Draft, Cancelled) | (Running, Cancelled)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Variant {
    pub name: String,
    /// Share of the feature's traffic, in percent; the variants' shares sum to 100.
    pub traffic_percent: u32,
    /// What the variant changes (model, prompt version, parameters).
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExperimentSpec {
    pub name: String,
    pub description: Option<String>,
    pub feature: String,
    pub experiment_type: ExperimentType,
    pub variants: Vec<Variant>,
}

impl ExperimentSpec {
    /// The rules both stores enforce.
    pub fn validate(&self) -> Result<(), crate::error::StoreError> {
        use crate::error::StoreError;
        if self.name.trim().is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        if self.variants.len() < 2 {
            return Err(StoreError::invalid(
                "variants",
                "needs at least two variants",
            ));
        }
        let mut names: Vec<&str> = self.variants.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        if names.iter().any(|n| n.trim().is_empty()) || names.windows(2).any(|w| w[0] == w[1]) {
            return Err(StoreError::invalid(
                "variants",
                "names must be non-empty and distinct",
            ));
        }
        if self.variants.iter().map(|v| v.traffic_percent).sum::<u32>() != 100 {
            return Err(StoreError::invalid(
                "variants",
                "traffic_percent must sum to 100",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Experiment {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: ExperimentSpec,
    pub status: ExperimentStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// When an experiment ran: `(started_at, ended_at)`.
pub type RunStamps = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

impl Experiment {
    /// `started_at` and `ended_at` once moved to `to` at `at` (entering `running` stamps the
    /// start, leaving it the end); `Conflict` unless [`ExperimentStatus::can_become`] allows it.
    /// Both stores apply the move through this.
    pub fn moved_to(
        &self,
        to: ExperimentStatus,
        at: DateTime<Utc>,
    ) -> Result<RunStamps, crate::error::StoreError> {
        if !self.status.can_become(to) {
            return Err(crate::error::StoreError::Conflict(format!(
                "an experiment cannot go from {} to {}",
                self.status.as_str(),
                to.as_str()
            )));
        }
        Ok(match to {
            ExperimentStatus::Running => (Some(at), None),
            _ => (self.started_at, Some(at)),
        })
    }
}

/// One configuration change: who made it, what, the resource before and after, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEntry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// The API key's name (`actor_key_id` identifies it), or the command line's `cli`.
    pub actor: String,
    pub actor_key_id: Option<Uuid>,
    /// `<resource>.<verb>`, e.g. `api_key.create`.
    pub action: String,
    /// `<type>:<id>` of what changed.
    pub resource: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditSpec {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub actor_key_id: Option<Uuid>,
    pub action: String,
    pub resource: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}
