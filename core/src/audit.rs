//! The audit log: every configuration change, with who made it, the resource before and after,
//! and when.
//!
//! An entry is written right after its change, not in the same transaction: should the write
//! fail, the change stands and the failure is logged (and counted in
//! `tally_audit_write_failures_total`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::config::AuditSpec;
use crate::store::ConfigStore;

const WRITE_FAILURES: &str = "tally_audit_write_failures_total";

/// Who made a change: an API key, or a local command (`cli`, `bootstrap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub key_id: Option<Uuid>,
}

impl Actor {
    /// A change made on this machine, not through the API.
    pub fn local(name: &str) -> Actor {
        Actor {
            name: name.to_string(),
            key_id: None,
        }
    }
}

impl From<&Caller> for Actor {
    fn from(caller: &Caller) -> Actor {
        Actor {
            name: caller.key_name.clone(),
            key_id: Some(caller.key_id),
        }
    }
}

/// Records that `actor` did `action` (`<resource>.<verb>`) to `resource` (`<type>:<id>`).
pub async fn record<T: Serialize>(
    config: &dyn ConfigStore,
    actor: &Actor,
    action: &str,
    resource: String,
    before: Option<&T>,
    after: Option<&T>,
    at: DateTime<Utc>,
) {
    let spec = AuditSpec {
        at,
        actor: actor.name.clone(),
        actor_key_id: actor.key_id,
        action: action.to_string(),
        resource,
        before: before.and_then(|v| serde_json::to_value(v).ok()),
        after: after.and_then(|v| serde_json::to_value(v).ok()),
    };
    if let Err(err) = config.record_audit(spec).await {
        metrics::counter!(WRITE_FAILURES).increment(1);
        tracing::error!(error = %err, action, "a configuration change was made but its audit record failed");
    }
}
