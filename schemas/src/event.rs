//! The validated usage event, as stored in the event log and folded by the projector.
//!
//! Invariants once a value of [`UsageEvent`] exists: names are slugs, strings are bounded,
//! `cached_input_tokens <= input_tokens`, `occurred_at_us` is microseconds since the Unix epoch
//! (UTC) and `latency_us` is whole microseconds. `cost` says where the cost came from; the event
//! log only ever holds `Reported`, `Computed` or `Unpriced` (pricing happens before append), so a
//! replay reproduces exactly the numbers the live projection produced.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Deployment environment of the calling application.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub const ALL: [Environment; 3] = [Self::Development, Self::Staging, Self::Production];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }

    pub fn parse(text: &str) -> Option<Environment> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// Kind of AI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Chat,
    Completion,
    Embedding,
    Vision,
    Other,
}

/// Outcome of the call. `error` and `timeout` both count as failed requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Error,
    Timeout,
}

impl Status {
    /// The word serde writes for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Timeout => "timeout",
        }
    }
}

/// Where an event's cost came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cost {
    /// Sent by the client in `cost_usd`, in pico-dollars.
    Reported(i64),
    /// Computed from the model price in force at `occurred_at`, in pico-dollars.
    Computed(i64),
    /// No price was known for the model at `occurred_at`; counted, never as $0.
    Unpriced,
    /// Not priced yet (only between parsing and pricing; never in the log).
    Pending,
}

impl Cost {
    /// The amount in pico-dollars when the event is priced.
    pub fn picos(self) -> Option<i64> {
        match self {
            Cost::Reported(p) | Cost::Computed(p) => Some(p),
            Cost::Unpriced | Cost::Pending => None,
        }
    }
}

/// A validated usage event. See the module docs for its invariants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    pub event_id: String,
    pub occurred_at_us: i64,
    pub feature: String,
    pub model: String,
    pub provider: String,
    pub environment: Environment,
    pub operation: Operation,
    pub status: Status,
    pub error_type: Option<String>,
    /// At most 1 KiB of UTF-8 ([`crate::validate::ERROR_MESSAGE_BYTES`]).
    pub error_message: Option<String>,
    /// The message was cut to fit.
    pub error_message_truncated: bool,
    pub latency_us: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cost: Cost,
    pub user_id: Option<String>,
    pub prompt_id: Option<String>,
    pub prompt_version: Option<String>,
    pub experiment_id: Option<String>,
    pub variant: Option<String>,
    pub attributes: Vec<(String, String)>,
}

impl UsageEvent {
    /// A minimal valid event (for tests and examples): production chat success at the epoch,
    /// no tokens, no user, unpriced. Override fields with struct update syntax.
    pub fn example() -> UsageEvent {
        UsageEvent {
            event_id: "example".into(),
            occurred_at_us: 0,
            feature: "feature".into(),
            model: "model".into(),
            provider: "provider".into(),
            environment: Environment::Production,
            operation: Operation::Chat,
            status: Status::Success,
            error_type: None,
            error_message: None,
            error_message_truncated: false,
            latency_us: 0,
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            cost: Cost::Unpriced,
            user_id: None,
            prompt_id: None,
            prompt_version: None,
            experiment_id: None,
            variant: None,
            attributes: vec![],
        }
    }

    /// `occurred_at` in whole seconds since the epoch (floor).
    pub fn occurred_at_secs(&self) -> i64 {
        self.occurred_at_us.div_euclid(1_000_000)
    }

    pub fn is_failure(&self) -> bool {
        self.status != Status::Success
    }
}
