//! The audit log: every configuration change, with who made it, the resource before and after,
//! and when.
//!
//! Invariant: a change and its entry commit together. Every mutating [`ConfigStore`] method
//! takes the [`Change`] (who, when) and writes the entry in the change's own transaction, so a
//! change is never committed without its entry, nor an entry without its change; when the entry
//! cannot be written the change fails. Calls that change nothing (a refused request, an upsert
//! or a second revocation that leaves the resource as it was) write no entry.
//!
//! [`ConfigStore`]: crate::store::ConfigStore

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::access::ApiKey;
use crate::access::Caller;
use crate::config::{
    Alert, AlertRule, Assignment, AuditSpec, Budget, Channel, Experiment, Feature, Model,
    ModelPrice, Prompt, PromptVersion, Provider, Reprice,
};

/// Who made a change: an API key, or a local command (`cli`, `bootstrap`, `demo`).
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

/// Who makes a configuration change, and when: what every mutating store method is given, to
/// write the change's audit entry in its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub actor: Actor,
    pub at: DateTime<Utc>,
}

impl Change {
    pub fn new(actor: Actor, at: DateTime<Utc>) -> Change {
        Change { actor, at }
    }

    /// A change made on this machine by the local command `name`.
    pub fn local(name: &str, at: DateTime<Utc>) -> Change {
        Change::new(Actor::local(name), at)
    }

    /// The entry for `action` (`<type>.<verb>`) on `resource` (`<type>:<id>`).
    pub fn entry<T: Serialize + ?Sized>(
        &self,
        action: &str,
        resource: String,
        before: Option<&T>,
        after: Option<&T>,
    ) -> AuditSpec {
        AuditSpec {
            at: self.at,
            actor: self.actor.name.clone(),
            actor_key_id: self.actor.key_id,
            action: action.to_string(),
            resource,
            before: before.and_then(|v| serde_json::to_value(v).ok()),
            after: after.and_then(|v| serde_json::to_value(v).ok()),
        }
    }

    /// The entry for `verb` on an [`Audited`] resource; its type and identity come from
    /// `after`, or from `before` when it was deleted.
    pub fn on<T: Audited>(&self, verb: &str, before: Option<&T>, after: Option<&T>) -> AuditSpec {
        let resource = after.or(before).map(Audited::resource).unwrap_or_default();
        self.entry(&format!("{}.{verb}", T::KIND), resource, before, after)
    }

    /// The entry for an upsert: `None` when it left the resource as it was (ignoring
    /// `updated_at`), else `create` or `update`.
    pub fn upserted<T: Audited>(&self, before: Option<&T>, after: &T) -> Option<AuditSpec> {
        match before {
            Some(before) if same_but_updated_at(before, after) => None,
            Some(before) => Some(self.on("update", Some(before), Some(after))),
            None => Some(self.on("create", None, Some(after))),
        }
    }
}

/// The entry of a new prompt: the prompt with its first version, as the API answers it.
pub fn prompt_created(change: &Change, prompt: &Prompt, version: &PromptVersion) -> AuditSpec {
    let created = serde_json::json!({ "prompt": prompt, "version": version });
    change.entry(
        "prompt.create",
        format!("prompt:{}", prompt.id),
        None,
        Some(&created),
    )
}

/// The entry of a price added to the model `model_id`.
pub fn price_added(
    change: &Change,
    model_id: impl std::fmt::Display,
    price: &ModelPrice,
) -> AuditSpec {
    change.entry(
        "model_price.create",
        format!("model:{model_id}"),
        None,
        Some(price),
    )
}

/// The entry of a reprice request for the model `model_id`.
pub fn repriced(change: &Change, model_id: impl std::fmt::Display, reprice: &Reprice) -> AuditSpec {
    change.entry(
        "model.reprice",
        format!("model:{model_id}"),
        None,
        Some(reprice),
    )
}

/// The entry of a change to an existing row (`verb`: status, activate, …), or none when the
/// write changed nothing: such a write is not audited.
pub fn changed<T: Audited + PartialEq>(
    change: &Change,
    verb: &str,
    before: &T,
    after: &T,
) -> Option<AuditSpec> {
    (before != after).then(|| change.on(verb, Some(before), Some(after)))
}

/// Whether two versions of a resource differ in nothing but `updated_at`.
pub fn same_but_updated_at<T: Serialize>(a: &T, b: &T) -> bool {
    let strip = |v: &T| {
        let mut value = serde_json::to_value(v).ok();
        if let Some(serde_json::Value::Object(map)) = value.as_mut() {
            map.remove("updated_at");
        }
        value
    };
    strip(a) == strip(b)
}

/// A resource whose changes are audited: its type (`KIND`, the action's prefix) and identity.
pub trait Audited: Serialize {
    const KIND: &'static str;
    /// `<type>:<id>`.
    fn resource(&self) -> String;
}

impl Audited for Feature {
    const KIND: &'static str = "feature";
    fn resource(&self) -> String {
        format!("feature:{}", self.name)
    }
}

impl Audited for Provider {
    const KIND: &'static str = "provider";
    fn resource(&self) -> String {
        format!("provider:{}", self.name)
    }
}

impl Audited for Model {
    const KIND: &'static str = "model";
    fn resource(&self) -> String {
        format!("model:{}", self.id)
    }
}

/// A deployment is audited on its feature and environment, whose history it extends.
impl Audited for Assignment {
    const KIND: &'static str = "deployment";
    fn resource(&self) -> String {
        format!("feature:{}:{}", self.feature, self.environment.as_str())
    }
}

impl Audited for PromptVersion {
    const KIND: &'static str = "prompt_version";
    fn resource(&self) -> String {
        format!("prompt:{}:{}", self.prompt_id, self.version)
    }
}

impl Audited for Channel {
    const KIND: &'static str = "notification_channel";
    fn resource(&self) -> String {
        format!("notification_channel:{}", self.id)
    }
}

impl Audited for AlertRule {
    const KIND: &'static str = "alert_rule";
    fn resource(&self) -> String {
        format!("alert_rule:{}", self.id)
    }
}

/// Acknowledging an alert is audited like a configuration change.
impl Audited for Alert {
    const KIND: &'static str = "alert";
    fn resource(&self) -> String {
        format!("alert:{}", self.id)
    }
}

impl Audited for Budget {
    const KIND: &'static str = "budget";
    fn resource(&self) -> String {
        format!("budget:{}", self.id)
    }
}

impl Audited for Experiment {
    const KIND: &'static str = "experiment";
    fn resource(&self) -> String {
        format!("experiment:{}", self.id)
    }
}

impl Audited for crate::config::TestCase {
    const KIND: &'static str = "test_case";
    fn resource(&self) -> String {
        format!("test_case:{}", self.id)
    }
}

impl Audited for ApiKey {
    const KIND: &'static str = "api_key";
    fn resource(&self) -> String {
        format!("api_key:{}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeatureStatus;
    use chrono::TimeZone;

    fn feature(description: &str, updated: u32) -> Feature {
        let at = |d| {
            Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0)
                .single()
                .expect("date")
        };
        Feature {
            id: Uuid::nil(),
            name: "chatbot".into(),
            display_name: "Chatbot".into(),
            description: Some(description.into()),
            status: FeatureStatus::Active,
            config: serde_json::json!({}),
            created_at: at(1),
            updated_at: at(updated),
        }
    }

    #[test]
    fn an_upsert_is_audited_as_what_it_did() {
        let change = Change::local(
            "cli",
            Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0)
                .single()
                .expect("date"),
        );
        let old = feature("old", 1);
        let created = change.upserted(None, &old).expect("created");
        assert_eq!(
            (created.action.as_str(), created.resource.as_str()),
            ("feature.create", "feature:chatbot")
        );
        assert_eq!((created.before, created.actor), (None, "cli".to_string()));
        assert_eq!(created.after.expect("after")["description"], "old");
        assert!(
            change.upserted(Some(&old), &feature("old", 2)).is_none(),
            "only updated_at moved"
        );
        let updated = change
            .upserted(Some(&old), &feature("new", 2))
            .expect("updated");
        assert_eq!(updated.action, "feature.update");
        assert_eq!(updated.before.expect("before")["description"], "old");
        assert_eq!(updated.after.expect("after")["description"], "new");
    }

    #[test]
    fn a_change_that_changed_nothing_is_not_audited() {
        let change = Change::local(
            "cli",
            Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0)
                .single()
                .expect("date"),
        );
        let old = feature("old", 1);
        assert!(changed(&change, "status", &old, &old.clone()).is_none());
        let entry = changed(&change, "status", &old, &feature("new", 1)).expect("a change");
        assert_eq!(
            (entry.action.as_str(), entry.resource.as_str()),
            ("feature.status", "feature:chatbot")
        );
        assert_eq!(entry.before.expect("before")["description"], "old");
        assert_eq!(entry.after.expect("after")["description"], "new");
    }
}
