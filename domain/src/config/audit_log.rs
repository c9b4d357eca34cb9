//! The audit log's entries: who changed what in the configuration, the resource before and
//! after, and when (built by [`crate::audit`]).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
