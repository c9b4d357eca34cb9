//! Alerts as stored: what an alert rule or a budget raised, its state and times, and the
//! deliveries of its transitions to notification channels (the evaluator's outbox). Their
//! lifecycle is decided in [`crate::alerting::alerts`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Severity;

named_enum!(
    /// What raised an alert.
    AlertKind { Rule => "rule", Budget => "budget" }
);

named_enum!(
    AlertState { Pending => "pending", Firing => "firing", Resolved => "resolved" }
);

named_enum!(
    /// A delivery is `pending` until a channel accepted it (`delivered`) or its attempts ran
    /// out (`failed`).
    DeliveryStatus { Pending => "pending", Delivered => "delivered", Failed => "failed" }
);

/// One try at delivering a transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
}

/// A transition on its way to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub alert_id: Uuid,
    pub channel_id: Uuid,
    /// The transition delivered: `firing` or `resolved`.
    pub transition: AlertState,
    /// The same for every delivery (and every retry) of one transition.
    pub dedup_key: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due (while `pending`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Delivery {
    /// The dedup key of `alert`'s transition into `state`.
    pub fn dedup_key(alert: Uuid, state: AlertState) -> String {
        format!("{alert}:{state}")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    pub id: Uuid,
    pub kind: AlertKind,
    pub rule_id: Option<Uuid>,
    pub budget_id: Option<Uuid>,
    /// What the alert is about: the rule, or the budget, its period and the condition. At most
    /// one unresolved alert has a given key.
    pub key: String,
    /// The rule's or budget's name.
    pub name: String,
    pub state: AlertState,
    pub severity: Severity,
    /// What the alert is about, as labels (`rule`, `metric`, `feature`, `budget`, `period_start`,
    /// `threshold_percent`, …).
    pub labels: BTreeMap<String, String>,
    /// The measured value at the last transition.
    pub value: f64,
    pub threshold: f64,
    /// One line for people: what crossed what.
    pub summary: String,
    pub started_at: DateTime<Utc>,
    pub firing_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// Every delivery of its transitions, with every attempt.
    #[serde(default)]
    pub deliveries: Vec<Delivery>,
}

/// A change of an alert's state for a store to record: atomically, only if the alert is still
/// in `from` (`None`: no unresolved alert with its key exists), together with one pending
/// delivery per channel in `deliver_to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The alert after the change (its `deliveries` are ignored).
    pub alert: Alert,
    pub from: Option<AlertState>,
    pub deliver_to: Vec<Uuid>,
}
