//! Budgets: an amount of spending per calendar period in a time zone, for the whole platform or
//! one feature, provider, model or environment, with the thresholds that alert; and the rules
//! both stores enforce.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tally_schemas::Environment;
use uuid::Uuid;

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
    /// Notification channels the budget's alerts go to.
    #[serde(default)]
    pub channels: Vec<Uuid>,
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
        super::distinct_channels(&self.channels)
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
