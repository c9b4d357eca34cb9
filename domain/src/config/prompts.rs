//! Prompts: named texts with immutable, numbered versions that move through review; at most one
//! version of a feature's prompts is active.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
