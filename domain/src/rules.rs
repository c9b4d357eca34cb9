//! The configuration rules that depend on what is stored: when a feature, provider or model may
//! be deleted (and a notification channel), which channels a rule or budget may name, which prompt versions may change status or become active, and what is said
//! when a name, price or secret is taken or a row is missing, and that the last active admin key
//! stays.
//!
//! A store reads the facts inside its transaction (how many rows refer to a feature, the
//! version's current state) and asks here; it never words a refusal itself. So both
//! configuration stores refuse the same things with the same message, and each message exists
//! once. Rules that need only the request (a budget's amount, an experiment's transition) are
//! methods of the specs in [`crate::config`].

use chrono::{DateTime, SecondsFormat, Utc};

use crate::access::{ApiKey, Role};
use crate::config::{Model, PromptStatus, PromptVersion};
use crate::error::{StoreError, StoreResult};

/// A feature may be deleted only while nothing refers to it (`references`: its deployments,
/// prompts and experiments).
pub fn feature_deletable(name: &str, references: i64) -> StoreResult<()> {
    if references > 0 {
        return Err(StoreError::Conflict(format!(
            "feature {name} has deployments, prompts or experiments; set its status to inactive instead"
        )));
    }
    Ok(())
}

/// A provider may be deleted only once it has no models.
pub fn provider_deletable(name: &str, models: i64) -> StoreResult<()> {
    if models > 0 {
        return Err(StoreError::Conflict(format!(
            "provider {name} has {models} model(s); delete them first or set its status to inactive"
        )));
    }
    Ok(())
}

/// A model may be deleted only if it was never deployed (`deployments`: its assignments,
/// current or past).
pub fn model_deletable(model: &Model, deployments: i64) -> StoreResult<()> {
    if deployments > 0 {
        return Err(StoreError::Conflict(format!(
            "model {}/{} has been deployed; set its status to deprecated or unavailable instead",
            model.provider, model.name
        )));
    }
    Ok(())
}

/// The active version of a prompt must stay approved.
pub fn status_settable(current: &PromptVersion, status: PromptStatus) -> StoreResult<()> {
    if current.is_active && status != PromptStatus::Approved {
        return Err(StoreError::Conflict(
            "the active version must stay approved: activate another version first".into(),
        ));
    }
    Ok(())
}

/// Only an approved version of a prompt that belongs to a feature can become active; the
/// feature (`feature`, however the store identifies it) is where it becomes the active one.
pub fn activatable<F>(current: &PromptVersion, feature: Option<F>) -> StoreResult<F> {
    let feature = feature
        .ok_or_else(|| StoreError::invalid("feature", "the prompt belongs to no feature"))?;
    if current.status != PromptStatus::Approved {
        return Err(StoreError::Conflict(format!(
            "only an approved version can be active; version {} is {}",
            current.version,
            current.status.as_str()
        )));
    }
    Ok(feature)
}

/// A notification channel may be deleted only while no alert rule or budget names it
/// (`users`: how many do).
pub fn channel_deletable(id: impl std::fmt::Display, users: i64) -> StoreResult<()> {
    if users > 0 {
        return Err(StoreError::Conflict(format!(
            "notification channel {id} is named by {users} alert rule(s) or budget(s); remove it from them first"
        )));
    }
    Ok(())
}

/// Every channel a rule or budget names must exist (`exists` answers for one).
pub fn channels_exist<E>(
    named: &[uuid::Uuid],
    mut exists: impl FnMut(&uuid::Uuid) -> Result<bool, E>,
) -> Result<Result<(), StoreError>, E> {
    for id in named {
        if !exists(id)? {
            return Ok(Err(StoreError::invalid(
                "channels",
                format!("notification channel {id} does not exist"),
            )));
        }
    }
    Ok(Ok(()))
}

/// A named row (`what`: feature, provider, model, prompt) exists under `name` already.
pub fn name_taken(what: &str, name: &str) -> StoreError {
    StoreError::Conflict(format!("a {what} named {name} exists"))
}

/// A model has a price from `effective_from` already (prices are never overwritten).
pub fn price_taken(provider: &str, model: &str, effective_from: DateTime<Utc>) -> StoreError {
    StoreError::Conflict(format!(
        "model {provider}/{model} already has a price effective from {}",
        effective_from.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    ))
}

/// Another key has the same secret.
pub fn secret_taken() -> StoreError {
    StoreError::Conflict("an API key with this secret exists".into())
}

/// Whether `key` may be revoked while `active_admins` active `platform_admin` keys exist (the
/// store counts them, `key` included, inside the revoking transaction). Revoking the last one
/// would lock every admin out of the API and the console; the command line can always create
/// a new key, so the way out is to create one first.
pub fn revocable(key: &ApiKey, active_admins: i64) -> StoreResult<()> {
    if key.role == Role::PlatformAdmin && key.revoked_at.is_none() && active_admins <= 1 {
        return Err(StoreError::Conflict(format!(
            "API key {} is the last active platform_admin key: create another admin key before \
             revoking it (\"tally keys create\" on the command line works without one)",
            key.name
        )));
    }
    Ok(())
}

/// What is missing, named the same way by every store.
pub mod missing {
    use std::fmt::Display;

    use crate::error::StoreError;

    pub fn feature(name: impl Display) -> StoreError {
        StoreError::not_found(format!("feature {name}"))
    }
    pub fn provider(name: impl Display) -> StoreError {
        StoreError::not_found(format!("provider {name}"))
    }
    /// A model by id.
    pub fn model(id: impl Display) -> StoreError {
        StoreError::not_found(format!("model {id}"))
    }
    /// A model by provider and name.
    pub fn model_named(provider: impl Display, model: impl Display) -> StoreError {
        StoreError::not_found(format!("model {provider}/{model}"))
    }
    pub fn prompt(id: impl Display) -> StoreError {
        StoreError::not_found(format!("prompt {id}"))
    }
    pub fn prompt_version(prompt: impl Display, version: i32) -> StoreError {
        StoreError::not_found(format!("prompt {prompt} version {version}"))
    }
    pub fn budget(id: impl Display) -> StoreError {
        StoreError::not_found(format!("budget {id}"))
    }
    pub fn experiment(id: impl Display) -> StoreError {
        StoreError::not_found(format!("experiment {id}"))
    }
    pub fn test_case(id: impl Display) -> StoreError {
        StoreError::not_found(format!("test case {id}"))
    }
    pub fn test_run(id: impl Display) -> StoreError {
        StoreError::not_found(format!("test run {id}"))
    }
    pub fn channel(id: impl Display) -> StoreError {
        StoreError::not_found(format!("notification channel {id}"))
    }
    pub fn alert_rule(id: impl Display) -> StoreError {
        StoreError::not_found(format!("alert rule {id}"))
    }
    pub fn alert(id: impl Display) -> StoreError {
        StoreError::not_found(format!("alert {id}"))
    }
    pub fn api_key(id: impl Display) -> StoreError {
        StoreError::not_found(format!("API key {id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn version(status: PromptStatus, is_active: bool) -> PromptVersion {
        PromptVersion {
            id: Uuid::nil(),
            prompt_id: Uuid::nil(),
            version: 3,
            content: "Tag {{photo}}".into(),
            variables: vec!["photo".into()],
            status,
            is_active,
            created_by: None,
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    fn conflict(r: StoreResult<impl std::fmt::Debug>) -> String {
        match r {
            Err(StoreError::Conflict(m)) => m,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn deletes_are_refused_while_something_refers_to_the_row() {
        assert!(feature_deletable("tagging", 0).is_ok());
        assert!(conflict(feature_deletable("tagging", 1)).contains("set its status to inactive"));
        assert!(provider_deletable("openai", 0).is_ok());
        assert_eq!(
            conflict(provider_deletable("openai", 2)),
            "provider openai has 2 model(s); delete them first or set its status to inactive"
        );
    }

    #[test]
    fn the_active_version_stays_approved_and_only_approved_versions_activate() {
        let active = version(PromptStatus::Approved, true);
        assert!(status_settable(&active, PromptStatus::Approved).is_ok());
        assert!(conflict(status_settable(&active, PromptStatus::Draft)).contains("stay approved"));
        assert!(
            status_settable(&version(PromptStatus::Approved, false), PromptStatus::Draft).is_ok()
        );

        assert_eq!(
            activatable(&version(PromptStatus::Approved, false), Some(7)).ok(),
            Some(7)
        );
        assert_eq!(
            conflict(activatable(&version(PromptStatus::Draft, false), Some(7))),
            "only an approved version can be active; version 3 is draft"
        );
        assert!(matches!(
            activatable::<i32>(&version(PromptStatus::Approved, false), None),
            Err(StoreError::Invalid { field, .. }) if field == "feature"
        ));
    }

    #[test]
    fn a_taken_price_names_its_instant() {
        let at = DateTime::from_timestamp(1_767_225_600, 0).expect("valid");
        assert_eq!(
            price_taken("openai", "gpt-4o", at).to_string(),
            "model openai/gpt-4o already has a price effective from 2026-01-01T00:00:00Z"
        );
    }
}
