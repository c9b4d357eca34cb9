//! Experiments: variants sharing a feature's traffic, and the transitions of their status.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
        // Summed wide: shares near u32::MAX must not wrap around to 100.
        let total: u64 = self
            .variants
            .iter()
            .map(|v| u64::from(v.traffic_percent))
            .sum();
        if total != 100 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shares: &[u32]) -> ExperimentSpec {
        ExperimentSpec {
            name: "e".into(),
            description: None,
            feature: "f".into(),
            experiment_type: ExperimentType::ModelComparison,
            variants: shares
                .iter()
                .enumerate()
                .map(|(i, &traffic_percent)| Variant {
                    name: format!("v{i}"),
                    traffic_percent,
                    config: serde_json::json!({}),
                })
                .collect(),
        }
    }

    #[test]
    fn traffic_shares_sum_to_exactly_100() {
        assert!(spec(&[50, 50]).validate().is_ok());
        assert!(spec(&[50, 49]).validate().is_err());
        // 4294967295 + 101 is 100 in u32 arithmetic: refused, not wrapped.
        assert!(spec(&[u32::MAX, 101]).validate().is_err());
    }
}
