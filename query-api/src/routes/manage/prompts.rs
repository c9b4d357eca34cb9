//! Prompts and their versions.
//!
//! `GET|POST /prompts`, `GET /prompts/{id}`, `PUT /prompts/{id}` (new content makes a new
//! version, `201`; the same content again changes nothing, `200`), `GET /prompts/{id}/versions`,
//! `POST /prompts/{id}/versions/{version}/status {status}` (draft, review, approved, archived)
//! and `POST /prompts/{id}/versions/{version}/activate` (an approved version becomes its
//! feature's one active version).
//!
//! Versions are immutable. A version declares its variables; the content's `{{name}}`
//! placeholders must be exactly those declared (a `422` names any used but undeclared, or
//! declared but unused). When `variables` is omitted they are read from the content.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use serde::{Deserialize, Serialize};
use tally_domain::config::{Prompt, PromptContent, PromptSpec, PromptStatus, PromptVersion};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};
use tally_schemas::validate::check_slug;

use crate::listing::{ListQuery, ListSpec, Listing};
use crate::lookup::find_feature;
use crate::lookup::find_prompt;
use crate::routes::{change, API_BASE};
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let prompts = format!("{API_BASE}/prompts");
    let prompt = format!("{prompts}/{{id}}");
    let version = format!("{prompt}/versions/{{version}}");
    r.serve(
        Route::get(&prompts, Access::ReadConfig, "Prompts", list)
            .query(LIST.params())
            .returns::<Listing<Prompt>>(200),
    )
    .serve(
        Route::post(
            &prompts,
            Access::Admin,
            "Create a prompt with its first version (a draft)",
            create,
        )
        .accepts::<CreateBody>()
        .returns::<Data<Created>>(201),
    )
    .serve(
        Route::get(
            &prompt,
            Access::ReadConfig,
            "A prompt with its latest and active versions",
            detail,
        )
        .returns::<Data<Detail>>(200),
    )
    .serve(
        Route::put(
            &prompt,
            Access::Admin,
            "New content: a new version (201); the same content again: the latest (200)",
            new_version,
        )
        .accepts::<VersionBody>()
        .returns::<Data<PromptVersion>>(201)
        .or_status(200),
    )
    .serve(
        Route::get(
            format!("{prompt}/versions"),
            Access::ReadConfig,
            "A prompt's versions, oldest first",
            versions,
        )
        .returns::<Data<Vec<PromptVersion>>>(200),
    )
    .serve(
        Route::post(
            format!("{version}/status"),
            Access::Admin,
            "Move a version through review",
            set_status,
        )
        .accepts::<StatusBody>()
        .returns::<Data<PromptVersion>>(200),
    )
    .serve(
        Route::post(
            format!("{version}/activate"),
            Access::Admin,
            "Make an approved version its feature's active one",
            activate,
        )
        .returns::<Data<PromptVersion>>(200),
    )
}

/// The `{{name}}` placeholders of `content`, in order of first use. `Err` names a malformed
/// placeholder.
pub fn placeholders(content: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "has a {{ without its closing }}".to_string())?;
        let name = after[..end].trim();
        if !is_variable_name(name) {
            return Err(format!(
                "has a placeholder {{{{{name}}}}} that is not a variable name (letters, digits and _, not starting with a digit)"
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        rest = &after[end + 2..];
    }
    Ok(names)
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks `declared` against what `content` uses; returns the variables to store.
fn variables(content: &str, declared: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    if content.trim().is_empty() {
        return Err(invalid("content", "must not be empty"));
    }
    if content.chars().count() > 100_000 {
        return Err(invalid("content", "must be at most 100000 characters"));
    }
    let used = placeholders(content).map_err(|m| invalid("content", m))?;
    let Some(declared) = declared else {
        return Ok(used);
    };
    let declared_set: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
    if declared_set.len() != declared.len() {
        return Err(invalid("variables", "lists a variable twice"));
    }
    let undeclared: Vec<&str> = used
        .iter()
        .map(String::as_str)
        .filter(|u| !declared_set.contains(u))
        .collect();
    if !undeclared.is_empty() {
        return Err(invalid(
            "variables",
            format!(
                "the content uses undeclared variables: {}",
                undeclared.join(", ")
            ),
        ));
    }
    let unused: Vec<&str> = declared
        .iter()
        .map(String::as_str)
        .filter(|d| !used.iter().any(|u| u == d))
        .collect();
    if !unused.is_empty() {
        return Err(invalid(
            "variables",
            format!(
                "declares variables the content does not use: {}",
                unused.join(", ")
            ),
        ));
    }
    Ok(declared)
}

const LIST: ListSpec = ListSpec {
    filters: &[("feature", "feature", &[]), ("tag", "tags", &[])],
    sorts: &["name", "created_at", "updated_at", "latest_version"],
};

async fn list(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let query = ListQuery::parse(q, &LIST)?;
    Ok(axum::Json(
        query.apply(&state.config.list_prompts().await?)?,
    ))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "PromptCreate")]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[schemars(schema_with = "crate::fields::slug")]
    name: String,
    description: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::slug")]
    feature: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::slugs")]
    tags: Vec<String>,
    #[schemars(schema_with = "crate::fields::prompt_content")]
    content: String,
    /// The variables `content` uses, each once (read from `content` when absent).
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::variable_names")]
    variables: Option<Vec<String>>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "PromptCreated")]
struct Created {
    prompt: Prompt,
    version: PromptVersion,
}

async fn create(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    check_slug("name", &body.name).map_err(|e| invalid("name", e.reason))?;
    if body.tags.iter().any(|t| check_slug("tags", t).is_err()) {
        return Err(invalid("tags", "must be slugs"));
    }
    if let Some(feature) = &body.feature {
        find_feature(&state, feature)
            .await
            .map_err(|_| invalid("feature", format!("no feature named {feature}")))?;
    }
    let variables = variables(&body.content, body.variables)?;
    let (prompt, version) = state
        .config
        .create_prompt(
            PromptSpec {
                name: body.name,
                description: body.description.filter(|d| !d.trim().is_empty()),
                feature: body.feature,
                tags: body.tags,
                content: PromptContent {
                    content: body.content,
                    variables,
                    created_by: Some(caller.key_name.clone()),
                    at: state.clock.now(),
                },
            },
            &change(&state, &caller),
        )
        .await?;
    let created = Created { prompt, version };
    Ok((StatusCode::CREATED, data(created)))
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "PromptDetail")]
struct Detail {
    #[serde(flatten)]
    prompt: Prompt,
    /// The newest version.
    latest: PromptVersion,
    /// The active version, when one is.
    active: Option<PromptVersion>,
}

async fn detail(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let prompt = find_prompt(&state, &id).await?;
    let versions = state.config.prompt_versions(prompt.id).await?;
    let active = versions.iter().find(|v| v.is_active).cloned();
    let latest = versions
        .into_iter()
        .last()
        .ok_or_else(|| ApiError::internal(format!("prompt {} has no versions", prompt.id)))?;
    Ok(data(Detail {
        prompt,
        latest,
        active,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "PromptVersionBody")]
#[serde(deny_unknown_fields)]
struct VersionBody {
    #[schemars(schema_with = "crate::fields::prompt_content")]
    content: String,
    /// The variables `content` uses, each once (read from `content` when absent).
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::variable_names")]
    variables: Option<Vec<String>>,
}

async fn new_version(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<VersionBody>,
) -> Result<impl IntoResponse, ApiError> {
    let prompt = find_prompt(&state, &id).await?;
    let variables = variables(&body.content, body.variables)?;
    let (version, created) = state
        .config
        .add_prompt_version(
            prompt.id,
            PromptContent {
                content: body.content,
                variables,
                created_by: Some(caller.key_name.clone()),
                at: state.clock.now(),
            },
            &change(&state, &caller),
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, data(version)))
}

async fn versions(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let prompt = find_prompt(&state, &id).await?;
    Ok(data(state.config.prompt_versions(prompt.id).await?))
}

async fn version_of(
    state: &QueryState,
    id: &str,
    version: &str,
) -> Result<PromptVersion, ApiError> {
    let prompt = find_prompt(state, id).await?;
    let number: i32 = version
        .parse()
        .map_err(|_| ApiError::bad_param("version", "must be a version number"))?;
    state
        .config
        .prompt_versions(prompt.id)
        .await?
        .into_iter()
        .find(|v| v.version == number)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "version {number} of prompt {} not found",
                prompt.id
            ))
        })
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "PromptStatusBody")]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: PromptStatus,
}

async fn set_status(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path((id, version)): Path<(String, String)>,
    Body(body): Body<StatusBody>,
) -> Result<impl IntoResponse, ApiError> {
    let before = version_of(&state, &id, &version).await?;
    let after = state
        .config
        .set_prompt_status(
            before.prompt_id,
            before.version,
            body.status,
            &change(&state, &caller),
        )
        .await?;
    Ok(data(after))
}

async fn activate(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path((id, version)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let before = version_of(&state, &id, &version).await?;
    let after = state
        .config
        .activate_prompt_version(before.prompt_id, before.version, &change(&state, &caller))
        .await?;
    Ok(data(after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_read_in_order_once() {
        assert_eq!(
            placeholders("Hi {{ name }}, tag {{photo}} for {{name}}."),
            Ok(vec!["name".to_string(), "photo".to_string()])
        );
        assert!(placeholders("{{ 1x }}").is_err());
        assert!(placeholders("open {{name").is_err());
        assert_eq!(placeholders("no variables"), Ok(vec![]));
    }

    #[test]
    fn declared_variables_must_match_the_content() {
        let ok = variables("{{a}} {{b}}", Some(vec!["b".into(), "a".into()]));
        assert_eq!(ok.ok(), Some(vec!["b".to_string(), "a".to_string()]));
        let undeclared = variables("{{a}} {{b}}", Some(vec!["a".into()])).expect_err("b");
        assert!(undeclared.message.contains(": b"), "{}", undeclared.message);
        let unused = variables("{{a}}", Some(vec!["a".into(), "z".into()])).expect_err("z");
        assert!(unused.message.ends_with(": z"), "{}", unused.message);
        assert_eq!(unused.field.as_deref(), Some("variables"));
    }
}
