//! The JSON shape of a usage event as application services send it (schema version 1).
//!
//! This type is the public contract: its JSON Schema (generated from these definitions) is served
//! at `GET /v1/schema/usage-event`, and the same JSON is the Kafka message value in distributed
//! mode. Unknown fields are rejected so that a misspelt field is an error, not silent data loss.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::event::{Environment, Operation, Status};

/// One AI call made by an application. See the README for field semantics.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "UsageEvent",
    description = "One AI call made by an application (schema v1)."
)]
pub struct UsageEventV1 {
    /// Schema version; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1))]
    pub schema_version: Option<u32>,
    /// Client-chosen idempotency key (1–128 characters). Resending the same id within the dedup
    /// window counts once.
    #[schemars(schema_with = "text_128")]
    pub event_id: String,
    /// When the call happened (RFC 3339). At most 5 minutes in the future and not older than the
    /// retention window.
    #[serde(deserialize_with = "crate::timestamp::utc")]
    pub occurred_at: DateTime<Utc>,
    /// Feature slug, e.g. `photo-tagging`.
    #[schemars(schema_with = "slug")]
    pub feature: String,
    /// Model slug, e.g. `gpt-4o-mini`.
    #[schemars(schema_with = "slug")]
    pub model: String,
    /// Provider slug, e.g. `openai`.
    #[schemars(schema_with = "slug")]
    pub provider: String,
    pub environment: Environment,
    pub operation: Operation,
    pub status: Status,
    /// Provider or client error class, e.g. `rate_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "text_128")]
    pub error_type: Option<String>,
    /// What the provider or client said went wrong (any text, newlines allowed). At most
    /// [`crate::validate::ERROR_MESSAGE_BYTES`] bytes are kept: a longer message is cut at a
    /// character boundary and `error_message_truncated` set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Set when `error_message` was cut (by Tally, or by the sender before it was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message_truncated: Option<bool>,
    /// Wall-clock latency of the call in milliseconds (fractions allowed), at most a day.
    #[schemars(range(min = 0, max = 86_400_000))]
    pub latency_ms: f64,
    /// Input (prompt) tokens, including cached input tokens. Token counts are written as
    /// integers without a fraction (`100`, not `100.0`): the log keeps what was sent, and a
    /// replay decides exactly as the first read did.
    #[schemars(range(max = 1_000_000_000))]
    pub input_tokens: u64,
    /// Output (completion) tokens.
    #[schemars(range(max = 1_000_000_000))]
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache; counted inside `input_tokens`
    /// (so never more than it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1_000_000_000))]
    pub cached_input_tokens: Option<u64>,
    /// Cost in US dollars as billed, kept exactly as sent. When absent it is computed from the
    /// model price in force at `occurred_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<CostUsd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "text_256")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "text_128")]
    pub prompt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<PromptVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "text_128")]
    pub experiment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "text_128")]
    pub variant: Option<String>,
    /// Small free-form string map (at most 32 entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "attributes")]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// What `validate::check_slug` accepts, as a JSON Schema (ECMA-262) pattern, for the contract.
pub const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9._:/-]{0,127}$";

/// Text without control characters (`char::is_control`: U+0000–U+001F, U+007F–U+009F).
const NO_CONTROL: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

#[cfg(test)]
pub(crate) mod tests_support {
    /// The documented no-control-characters pattern, compiled.
    pub fn no_control() -> regex::Regex {
        regex::Regex::new(super::NO_CONTROL).expect("a regex")
    }
}

fn schema(value: serde_json::Value) -> schemars::schema::Schema {
    serde_json::from_value(value).unwrap_or(schemars::schema::Schema::Bool(true))
}

fn text(max: usize) -> schemars::schema::Schema {
    schema(
        serde_json::json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": NO_CONTROL}),
    )
}

fn text_128(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    text(128)
}

fn text_256(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    text(256)
}

fn slug(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    schema(serde_json::json!({"type": "string", "pattern": SLUG_PATTERN}))
}

fn attributes(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    schema(serde_json::json!({
        "type": "object",
        "maxProperties": 32,
        "propertyNames": {"minLength": 1, "maxLength": 64},
        "additionalProperties": {"type": "string", "maxLength": 512},
    }))
}

/// A cost as it was written in the request: a JSON number or a decimal string. The raw text is
/// kept so the value never passes through a binary float.
#[derive(Debug, Clone)]
pub struct CostUsd(Box<RawValue>);

impl CostUsd {
    /// The decimal text without JSON string quotes.
    pub fn decimal_text(&self) -> Result<String, &'static str> {
        let raw = self.0.get().trim();
        if raw.starts_with('"') {
            serde_json::from_str::<String>(raw).map_err(|_| "must be a number or decimal string")
        } else if raw.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) {
            Ok(raw.to_string())
        } else {
            Err("must be a number or decimal string")
        }
    }

    /// Builds one from decimal text (for tests and the load generator).
    pub fn from_decimal(text: &str) -> CostUsd {
        let quoted = serde_json::to_string(text).unwrap_or_default();
        CostUsd(RawValue::from_string(quoted).unwrap_or_else(|_| zero_raw()))
    }
}

fn zero_raw() -> Box<RawValue> {
    RawValue::from_string("0".to_string()).unwrap_or_else(|_| unreachable!("0 is valid JSON"))
}

impl<'de> Deserialize<'de> for CostUsd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(CostUsd)
    }
}

impl Serialize for CostUsd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl JsonSchema for CostUsd {
    fn schema_name() -> String {
        "CostUsd".to_string()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "US dollars, at most 12 decimal places, not negative",
            "oneOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?$"}
            ]
        }))
        .unwrap_or(schemars::schema::Schema::Bool(true))
    }
}

/// A prompt version: an integer or a short string, kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptVersion(pub String);

impl<'de> Deserialize<'de> for PromptVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PromptVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a non-negative integer or a string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PromptVersion, E> {
                Ok(PromptVersion(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PromptVersion, E> {
                Ok(PromptVersion(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for PromptVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl JsonSchema for PromptVersion {
    fn schema_name() -> String {
        "EventPromptVersion".to_string()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "minLength": 1, "maxLength": 64, "pattern": NO_CONTROL}
            ]
        }))
        .unwrap_or(schemars::schema::Schema::Bool(true))
    }
}

/// The JSON Schema document for [`UsageEventV1`].
pub fn usage_event_json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(UsageEventV1);
    serde_json::to_value(schema).unwrap_or_default()
}

impl From<&crate::event::UsageEvent> for UsageEventV1 {
    /// The wire form of a validated event; validating it again gives the same event (the
    /// reported cost is kept as exact decimal text, latency survives the millisecond float).
    /// Computed or unpriced cost is not part of the wire form: the Kafka log carries it in a
    /// header.
    fn from(e: &crate::event::UsageEvent) -> Self {
        use crate::event::Cost;
        UsageEventV1 {
            schema_version: None,
            event_id: e.event_id.clone(),
            occurred_at: DateTime::from_timestamp_micros(e.occurred_at_us).unwrap_or_default(),
            feature: e.feature.clone(),
            model: e.model.clone(),
            provider: e.provider.clone(),
            environment: e.environment,
            operation: e.operation,
            status: e.status,
            error_type: e.error_type.clone(),
            error_message: e.error_message.clone(),
            error_message_truncated: e.error_message_truncated.then_some(true),
            latency_ms: e.latency_us as f64 / 1000.0,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cached_input_tokens: (e.cached_input_tokens > 0).then_some(e.cached_input_tokens),
            cost_usd: match e.cost {
                Cost::Reported(p) => Some(CostUsd::from_decimal(
                    &crate::Pico(i128::from(p)).to_decimal_string(),
                )),
                _ => None,
            },
            user_id: e.user_id.clone(),
            prompt_id: e.prompt_id.clone(),
            prompt_version: e.prompt_version.clone().map(PromptVersion),
            experiment_id: e.experiment_id.clone(),
            variant: e.variant.clone(),
            attributes: (!e.attributes.is_empty()).then(|| e.attributes.iter().cloned().collect()),
        }
    }
}
