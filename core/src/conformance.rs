//! The conformance suites every storage implementation must pass: [`config_store`] (embedded
//! SQLite in the default test run, Postgres in the service tier) and [`analytics_store`].
//! Each starts from an empty store and panics with a description on the first deviation.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use tally_schemas::{Environment, UsageEvent};

use crate::config::{
    DeploySpec, FeatureSpec, FeatureStatus, ModelPrice, ModelSpec, PriceSpec, ProviderSpec,
};
use crate::store::{AnalyticsStore, ConfigStore, StoreError};

fn t(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn feature(name: &str, display: &str, status: FeatureStatus) -> FeatureSpec {
    FeatureSpec {
        name: name.into(),
        display_name: display.into(),
        description: Some(format!("{display} feature")),
        status,
        config: json!({"k": name}),
    }
}

fn provider(name: &str) -> ProviderSpec {
    ProviderSpec {
        name: name.into(),
        provider_type: "openai".into(),
        status: "active".into(),
        base_url: Some("http://127.0.0.1:1".into()),
        api_key_env: Some("KEY_VAR".into()),
    }
}

fn model(provider: &str, name: &str) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        provider: provider.into(),
        model_type: "llm".into(),
        version: Some("1".into()),
        capabilities: vec!["chat".into(), "tools".into()],
        status: "available".into(),
    }
}

fn price(model: &str, day: u32, input: i64) -> PriceSpec {
    PriceSpec {
        provider: "openai".into(),
        model: model.into(),
        effective_from: t(day),
        input_per_mtok_micros: input,
        output_per_mtok_micros: input * 4,
        cached_input_per_mtok_micros: Some(input / 2),
    }
}

fn deploy(feature: &str, env: Environment, model: &str, day: u32) -> DeploySpec {
    DeploySpec {
        feature: feature.into(),
        environment: env,
        provider: "openai".into(),
        model: model.into(),
        assigned_by: Some("tester".into()),
        at: t(day),
    }
}

/// Runs every check against `store`, which must be empty.
pub async fn config_store(store: &dyn ConfigStore) {
    features(store).await;
    providers_models_prices(store).await;
    deployments(store).await;
    prompts(store).await;
    budgets(store).await;
    experiments(store).await;
    api_keys(store).await;
    audit(store).await;
    reprices(store).await;
}

async fn reprices(store: &dyn ConfigStore) {
    use crate::config::RepriceSpec;
    let prices: Vec<ModelPrice> = store
        .list_prices()
        .await
        .expect("prices")
        .into_iter()
        .filter(|p| p.model == "gpt-4o")
        .collect();
    assert!(!prices.is_empty());
    let spec = |from: u32, at: u32| RepriceSpec {
        provider: "openai".into(),
        model: "gpt-4o".into(),
        from: t(from),
        requested_at: t(at),
        requested_by: Some("tester".into()),
        prices: prices.clone(),
    };
    let backwards = store.add_reprice(spec(12, 12)).await;
    assert!(
        matches!(backwards, Err(StoreError::Invalid { ref field, .. }) if field == "from"),
        "{backwards:?}"
    );
    let mut foreign = spec(1, 12);
    foreign.model = "gpt-4o-mini".into();
    assert!(
        store.add_reprice(foreign).await.is_err(),
        "prices of another model"
    );
    assert!(store.list_reprices().await.expect("list").is_empty());
    let later = store.add_reprice(spec(3, 20)).await.expect("reprice");
    let earlier = store.add_reprice(spec(1, 10)).await.expect("reprice");
    assert_eq!(later.prices, prices);
    let listed = store.list_reprices().await.expect("list");
    assert_eq!(
        listed,
        vec![earlier, later],
        "oldest request first, as stored"
    );
}

async fn audit(store: &dyn ConfigStore) {
    use crate::config::AuditSpec;
    assert!(store.list_audit(10, None).await.expect("list").is_empty());
    let key = uuid::Uuid::new_v4();
    let entry = |day: u32, action: &str, before: Option<serde_json::Value>| AuditSpec {
        at: t(day),
        actor: "ops".into(),
        actor_key_id: Some(key),
        action: action.into(),
        resource: "budget:1".into(),
        before,
        after: Some(json!({"amount": day})),
    };
    let first = store
        .record_audit(entry(1, "budget.create", None))
        .await
        .expect("record");
    assert_eq!(first.before, None);
    assert_eq!(first.after, Some(json!({"amount": 1})));
    assert_eq!((first.actor_key_id, first.at), (Some(key), t(1)));
    store
        .record_audit(entry(2, "budget.update", Some(json!({"amount": 1}))))
        .await
        .expect("record");
    store
        .record_audit(entry(2, "budget.delete", Some(json!({"amount": 2}))))
        .await
        .expect("record");
    let actions = |entries: Vec<crate::config::AuditEntry>| -> Vec<String> {
        entries.into_iter().map(|e| e.action).collect()
    };
    assert_eq!(
        actions(store.list_audit(10, None).await.expect("list")),
        vec!["budget.delete", "budget.update", "budget.create"],
        "newest first; same instant: last recorded first"
    );
    assert_eq!(store.list_audit(1, None).await.expect("list").len(), 1);
    assert_eq!(
        actions(store.list_audit(10, Some(t(2))).await.expect("list")),
        vec!["budget.create"]
    );
}

fn content(text: &str, variables: &[&str], day: u32) -> crate::config::PromptContent {
    crate::config::PromptContent {
        content: text.into(),
        variables: variables.iter().map(|v| v.to_string()).collect(),
        created_by: Some("tester".into()),
        at: t(day),
    }
}

async fn prompts(store: &dyn ConfigStore) {
    use crate::config::{PromptSpec, PromptStatus};
    let spec = |name: &str, feature: Option<&str>| PromptSpec {
        name: name.into(),
        description: Some("greets".into()),
        feature: feature.map(str::to_string),
        tags: vec!["support".into()],
        content: content("Hello {{name}}", &["name"], 1),
    };
    let (greeting, v1) = store
        .create_prompt(spec("greeting", Some("chatbot")))
        .await
        .expect("create");
    assert_eq!(
        (greeting.latest_version, greeting.active_version),
        (1, None)
    );
    assert_eq!(greeting.feature.as_deref(), Some("chatbot"));
    assert_eq!(
        (v1.version, v1.status, v1.is_active),
        (1, PromptStatus::Draft, false)
    );
    assert_eq!(v1.variables, vec!["name".to_string()]);
    assert!(matches!(
        store.create_prompt(spec("greeting", None)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_prompt(spec("other", Some("no-such-feature")))
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Same content: no new version. New content: version 2; versions never change.
    let (same, created) = store
        .add_prompt_version(greeting.id, content("Hello {{name}}", &["name"], 2))
        .await
        .expect("same");
    assert_eq!((same.version, created), (1, false));
    let (v2, created) = store
        .add_prompt_version(
            greeting.id,
            content("Hi {{name}}, about {{topic}}", &["name", "topic"], 3),
        )
        .await
        .expect("new");
    assert_eq!((v2.version, created, v2.created_at), (2, true, t(3)));
    let versions = store.prompt_versions(greeting.id).await.expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(
        versions[0].content, "Hello {{name}}",
        "version 1 is unchanged"
    );

    // Only an approved version can be active; one active version per feature.
    assert!(matches!(
        store.activate_prompt_version(greeting.id, 2).await,
        Err(StoreError::Conflict(_))
    ));
    for status in [PromptStatus::Review, PromptStatus::Approved] {
        store
            .set_prompt_status(greeting.id, 2, status)
            .await
            .expect("status");
    }
    store
        .set_prompt_status(greeting.id, 1, PromptStatus::Approved)
        .await
        .expect("status");
    let active = store
        .activate_prompt_version(greeting.id, 2)
        .await
        .expect("activate");
    assert!(active.is_active);
    let (farewell, _) = store
        .create_prompt(spec("farewell", Some("chatbot")))
        .await
        .expect("create");
    store
        .set_prompt_status(farewell.id, 1, PromptStatus::Approved)
        .await
        .expect("status");
    store
        .activate_prompt_version(farewell.id, 1)
        .await
        .expect("activate");
    let listed = store.list_prompts().await.expect("list");
    let by_name = |n: &str| listed.iter().find(|p| p.name == n).expect("listed").clone();
    assert_eq!(
        by_name("greeting").active_version,
        None,
        "activating farewell deactivated greeting (same feature)"
    );
    assert_eq!(by_name("greeting").latest_version, 2);
    assert_eq!(by_name("farewell").active_version, Some(1));
    assert!(matches!(
        store
            .set_prompt_status(farewell.id, 1, PromptStatus::Archived)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let (loose, _) = store
        .create_prompt(spec("loose", None))
        .await
        .expect("create");
    store
        .set_prompt_status(loose.id, 1, PromptStatus::Approved)
        .await
        .expect("status");
    assert!(matches!(
        store.activate_prompt_version(loose.id, 1).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.prompt_versions(uuid::Uuid::new_v4()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .set_prompt_status(greeting.id, 9, PromptStatus::Review)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn budgets(store: &dyn ConfigStore) {
    use crate::config::{BudgetPeriod, BudgetScope, BudgetSpec};
    let spec = BudgetSpec {
        name: "chatbot monthly".into(),
        scope: BudgetScope::Feature,
        scope_value: Some("chatbot".into()),
        period: BudgetPeriod::Monthly,
        time_zone: "Europe/Berlin".into(),
        amount_micros: 5_000_000_000,
        thresholds_percent: vec![80, 100],
        is_active: true,
    };
    let created = store
        .create_budget(spec.clone(), t(1))
        .await
        .expect("create");
    assert_eq!(created.spec, spec);
    assert_eq!((created.created_at, created.updated_at), (t(1), t(1)));
    let global = BudgetSpec {
        name: "all of it".into(),
        scope: BudgetScope::Global,
        scope_value: None,
        period: BudgetPeriod::Quarterly,
        time_zone: "UTC".into(),
        amount_micros: 90_000_000_000,
        thresholds_percent: vec![50, 80, 100],
        is_active: true,
    };
    store
        .create_budget(global.clone(), t(2))
        .await
        .expect("create");
    for (bad, field) in [
        (
            BudgetSpec {
                scope_value: None,
                ..spec.clone()
            },
            "scope_value",
        ),
        (
            BudgetSpec {
                amount_micros: 0,
                ..spec.clone()
            },
            "amount",
        ),
        (
            BudgetSpec {
                thresholds_percent: vec![100, 80],
                ..spec.clone()
            },
            "thresholds_percent",
        ),
    ] {
        match store.create_budget(bad, t(3)).await {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut changed = spec.clone();
    changed.amount_micros = 7_500_000_000;
    changed.is_active = false;
    let updated = store
        .update_budget(created.id, changed.clone(), t(4))
        .await
        .expect("update");
    assert_eq!(updated.spec, changed);
    assert_eq!((updated.created_at, updated.updated_at), (t(1), t(4)));
    assert!(matches!(
        store
            .update_budget(uuid::Uuid::new_v4(), changed.clone(), t(4))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let names: Vec<String> = store
        .list_budgets()
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.spec.name)
        .collect();
    assert_eq!(names, vec!["all of it", "chatbot monthly"]);
    store.delete_budget(created.id).await.expect("delete");
    assert!(matches!(
        store.delete_budget(created.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_budgets().await.expect("list").len(), 1);
}

async fn experiments(store: &dyn ConfigStore) {
    use crate::config::{ExperimentSpec, ExperimentStatus, ExperimentType, Variant};
    let variant = |name: &str, share: u32| Variant {
        name: name.into(),
        traffic_percent: share,
        config: json!({"model": name}),
    };
    let spec = ExperimentSpec {
        name: "4o vs mini".into(),
        description: None,
        feature: "chatbot".into(),
        experiment_type: ExperimentType::ModelComparison,
        variants: vec![variant("gpt-4o", 50), variant("gpt-4o-mini", 50)],
    };
    let draft = store
        .create_experiment(spec.clone(), t(1))
        .await
        .expect("create");
    assert_eq!(draft.spec, spec);
    assert_eq!(
        (draft.status, draft.started_at, draft.ended_at),
        (ExperimentStatus::Draft, None, None)
    );
    let uneven = ExperimentSpec {
        variants: vec![variant("a", 60), variant("b", 30)],
        ..spec.clone()
    };
    assert!(matches!(
        store.create_experiment(uneven, t(1)).await,
        Err(StoreError::Invalid { .. })
    ));
    let elsewhere = ExperimentSpec {
        feature: "no-such-feature".into(),
        ..spec.clone()
    };
    assert!(matches!(
        store.create_experiment(elsewhere, t(1)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .transition_experiment(draft.id, ExperimentStatus::Completed, t(2))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let running = store
        .transition_experiment(draft.id, ExperimentStatus::Running, t(2))
        .await
        .expect("start");
    assert_eq!((running.started_at, running.ended_at), (Some(t(2)), None));
    let done = store
        .transition_experiment(draft.id, ExperimentStatus::Completed, t(5))
        .await
        .expect("complete");
    assert_eq!(
        (done.status, done.started_at, done.ended_at, done.updated_at),
        (ExperimentStatus::Completed, Some(t(2)), Some(t(5)), t(5))
    );
    assert!(matches!(
        store
            .transition_experiment(draft.id, ExperimentStatus::Running, t(6))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let second = store
        .create_experiment(spec.clone(), t(3))
        .await
        .expect("create");
    let cancelled = store
        .transition_experiment(second.id, ExperimentStatus::Cancelled, t(4))
        .await
        .expect("cancel");
    assert_eq!(
        (cancelled.started_at, cancelled.ended_at),
        (None, Some(t(4)))
    );
    let ids: Vec<uuid::Uuid> = store
        .list_experiments()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![second.id, draft.id], "newest first");
}

async fn api_keys(store: &dyn ConfigStore) {
    use crate::access::{hash, new_key, Role};
    assert!(store.list_api_keys().await.expect("list").is_empty());
    let (secret, spec) = new_key("ci admin", Role::PlatformAdmin, t(3));
    let admin = store.create_api_key(spec.clone()).await.expect("create");
    assert_eq!(
        (
            admin.name.as_str(),
            admin.role,
            admin.created_at,
            admin.revoked_at
        ),
        ("ci admin", Role::PlatformAdmin, t(3), None)
    );
    assert_eq!(admin.prefix, secret[..14]);
    let again = store.create_api_key(spec).await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "the same secret twice: {again:?}"
    );
    let (viewer_secret, viewer) = new_key("dashboards", Role::Viewer, t(4));
    let viewer = store.create_api_key(viewer).await.expect("create");
    assert_eq!(
        store.api_key_by_hash(&hash(&secret)).await.expect("find"),
        Some(admin.clone())
    );
    assert_eq!(
        store
            .api_key_by_hash(&hash("tally_not-a-key"))
            .await
            .expect("find"),
        None
    );
    let (revoked, changed) = store.revoke_api_key(viewer.id, t(5)).await.expect("revoke");
    assert_eq!((revoked.revoked_at, changed), (Some(t(5)), true));
    let (twice, changed) = store.revoke_api_key(viewer.id, t(6)).await.expect("revoke");
    assert_eq!(
        (twice.revoked_at, changed),
        (Some(t(5)), false),
        "the first revocation stands"
    );
    assert_eq!(
        store
            .api_key_by_hash(&hash(&viewer_secret))
            .await
            .expect("find")
            .and_then(|k| k.revoked_at),
        Some(t(5)),
        "a revoked key is still found, and shows it is revoked"
    );
    let unknown = store.revoke_api_key(uuid::Uuid::new_v4(), t(6)).await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );
    assert_eq!(
        store.list_api_keys().await.expect("list"),
        vec![admin, revoked],
        "oldest first, revoked ones included"
    );
}

async fn features(store: &dyn ConfigStore) {
    assert!(
        store.list_features().await.expect("list").is_empty(),
        "store must start empty"
    );
    let created = store
        .upsert_feature(feature("chatbot", "Chatbot", FeatureStatus::Active))
        .await
        .expect("create");
    store
        .upsert_feature(feature(
            "ai-search",
            "AI Search",
            FeatureStatus::Maintenance,
        ))
        .await
        .expect("create");
    let updated = store
        .upsert_feature(feature("chatbot", "Chat Bot", FeatureStatus::Inactive))
        .await
        .expect("update");
    assert_eq!(
        updated.id, created.id,
        "an upsert keeps the feature's identity"
    );
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(
        (updated.display_name.as_str(), updated.status),
        ("Chat Bot", FeatureStatus::Inactive)
    );
    assert_eq!(updated.config, json!({"k": "chatbot"}));
    let names: Vec<String> = store
        .list_features()
        .await
        .expect("list")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        vec!["ai-search", "chatbot"],
        "features are listed by name"
    );
    let dup = store
        .create_feature(feature("chatbot", "Other", FeatureStatus::Active))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "create never overwrites: {dup:?}"
    );
    let kept = store.list_features().await.expect("list");
    assert_eq!(
        kept[1].display_name, "Chat Bot",
        "a refused create changes nothing"
    );
    let temp = store
        .create_feature(feature("temp", "Temp", FeatureStatus::Active))
        .await
        .expect("create");
    assert_eq!(temp.display_name, "Temp");
    let deleted = store.delete_feature("temp").await.expect("delete");
    assert_eq!(deleted.id, temp.id);
    let again = store.delete_feature("temp").await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    assert_eq!(store.list_features().await.expect("list").len(), 2);
}

async fn providers_models_prices(store: &dyn ConfigStore) {
    let missing = store.upsert_model(model("nobody", "m")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "a model needs its provider: {missing:?}"
    );
    let p = store
        .upsert_provider(provider("openai"))
        .await
        .expect("provider");
    assert_eq!(
        (p.base_url.as_deref(), p.api_key_env.as_deref()),
        (Some("http://127.0.0.1:1"), Some("KEY_VAR"))
    );
    store
        .upsert_provider(provider("anthropic"))
        .await
        .expect("provider");
    assert_eq!(store.list_providers().await.expect("list").len(), 2);
    let m = store
        .upsert_model(model("openai", "gpt-4o"))
        .await
        .expect("model");
    assert_eq!((m.provider.as_str(), m.capabilities.len()), ("openai", 2));
    store
        .upsert_model(model("openai", "gpt-4o-mini"))
        .await
        .expect("model");
    let again = store
        .upsert_model(model("openai", "gpt-4o"))
        .await
        .expect("model upsert");
    assert_eq!(again.id, m.id);
    assert_eq!(store.list_models().await.expect("list").len(), 2);

    let missing = store.add_price(price("no-such-model", 1, 1)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    store
        .add_price(price("gpt-4o", 10, 2_000_000))
        .await
        .expect("price");
    store
        .add_price(price("gpt-4o", 1, 2_500_000))
        .await
        .expect("price");
    let dup = store.add_price(price("gpt-4o", 10, 9)).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "one price per model and instant: {dup:?}"
    );
    let prices = store.list_prices().await.expect("prices");
    let froms: Vec<DateTime<Utc>> = prices.iter().map(|p| p.effective_from).collect();
    assert_eq!(froms, vec![t(1), t(10)], "prices are listed oldest first");
    assert_eq!(prices[0].cached_input_per_mtok_micros, Some(1_250_000));
    assert_eq!(prices[1].output_per_mtok_micros, 8_000_000);

    let dup = store.create_model(model("openai", "gpt-4o")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let dup = store.create_provider(provider("openai")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let busy = store.delete_provider("openai").await;
    assert!(
        matches!(busy, Err(StoreError::Conflict(_))),
        "a provider with models stays: {busy:?}"
    );
    store
        .create_provider(provider("spare"))
        .await
        .expect("create");
    let temp = store
        .create_model(model("spare", "temp"))
        .await
        .expect("create");
    store
        .add_price(PriceSpec {
            provider: "spare".into(),
            ..price("temp", 1, 7)
        })
        .await
        .expect("price");
    assert_eq!(
        store.delete_model(temp.id).await.expect("delete").id,
        temp.id
    );
    let prices = store.list_prices().await.expect("prices");
    assert!(
        prices.iter().all(|p| p.model != "temp"),
        "a deleted model's prices go with it"
    );
    store.delete_provider("spare").await.expect("delete");
    let gone = store.delete_model(temp.id).await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    assert_eq!(store.list_providers().await.expect("list").len(), 2);
}

async fn deployments(store: &dyn ConfigStore) {
    let unknown = store
        .deploy(deploy("nope", Environment::Production, "gpt-4o", 2))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );
    store
        .deploy(deploy("chatbot", Environment::Production, "gpt-4o", 2))
        .await
        .expect("deploy");
    store
        .deploy(deploy("chatbot", Environment::Staging, "gpt-4o-mini", 3))
        .await
        .expect("deploy");
    let second = store
        .deploy(deploy("chatbot", Environment::Production, "gpt-4o-mini", 4))
        .await
        .expect("deploy");
    assert!(second.is_active);
    let active = store.active_assignments().await.expect("active");
    assert_eq!(
        active.len(),
        2,
        "one active assignment per feature and environment: {active:?}"
    );
    let prod = active
        .iter()
        .find(|a| a.environment == Environment::Production)
        .expect("production");
    assert_eq!((prod.model.as_str(), prod.id), ("gpt-4o-mini", second.id));
    let history = store
        .assignment_history(Some("chatbot"), Some(Environment::Production))
        .await
        .expect("history");
    let models: Vec<(&str, bool)> = history
        .iter()
        .map(|a| (a.model.as_str(), a.is_active))
        .collect();
    assert_eq!(
        models,
        vec![("gpt-4o-mini", true), ("gpt-4o", false)],
        "history is newest first"
    );
    assert_eq!(history[1].assigned_at, t(2));
    assert_eq!(
        store
            .assignment_history(Some("chatbot"), None)
            .await
            .expect("all")
            .len(),
        3
    );
    let busy = store.delete_feature("chatbot").await;
    assert!(
        matches!(busy, Err(StoreError::Conflict(_))),
        "a deployed feature keeps its history: {busy:?}"
    );
    let deployed = history[1].clone();
    let models = store.list_models().await.expect("models");
    let gpt4o = models
        .iter()
        .find(|m| m.name == deployed.model)
        .expect("gpt-4o");
    let busy = store.delete_model(gpt4o.id).await;
    assert!(
        matches!(busy, Err(StoreError::Conflict(_))),
        "a model deployed in the past stays: {busy:?}"
    );
    assert_eq!(
        store
            .assignment_history(Some("chatbot"), None)
            .await
            .expect("all")
            .len(),
        3,
        "refused deletes change nothing"
    );
    store
        .deploy(deploy("ai-search", Environment::Staging, "gpt-4o", 5))
        .await
        .expect("deploy");
    let everything: Vec<(String, DateTime<Utc>)> = store
        .assignment_history(None, None)
        .await
        .expect("every feature")
        .into_iter()
        .map(|a| (a.feature, a.assigned_at))
        .collect();
    assert_eq!(
        everything,
        vec![
            ("ai-search".to_string(), t(5)),
            ("chatbot".to_string(), t(4)),
            ("chatbot".to_string(), t(3)),
            ("chatbot".to_string(), t(2)),
        ],
        "every feature's history, newest first"
    );
    assert_eq!(
        store
            .assignment_history(Some("chatbot"), None)
            .await
            .expect("chatbot")
            .len(),
        3,
        "one feature's history is only its own"
    );
}

/// Runs every analytics-store check against `store`, which must be empty.
pub async fn analytics_store(store: &dyn AnalyticsStore) {
    use crate::rollup::{fold, Resolution};
    use crate::store::{
        Filter, LogPosition, PartitionCommit, PartitionState, Partitions, ProjectionCommit,
        ScanRequest, Span, StoreError,
    };

    let state = store
        .load_state(3600, &Partitions::All)
        .await
        .expect("load");
    assert!(
        state.partitions.is_empty(),
        "an empty store starts at the beginning"
    );

    let base = 1_767_225_600; // 2026-01-01T00:00:00Z
                              // Every fourth event of the first batch happened the day before (for retention below).
    let first: Vec<UsageEvent> = (0..50)
        .map(|i| {
            sample_event(
                i,
                base + i64::from(i) * 7 - if i % 4 == 0 { 86_400 } else { 0 },
                "chatbot",
                Environment::Production,
            )
        })
        .collect();
    let second: Vec<UsageEvent> = (50..80)
        .map(|i| {
            sample_event(
                i,
                base + i64::from(i) * 7,
                if i % 2 == 0 { "chatbot" } else { "search" },
                Environment::Staging,
            )
        })
        .collect();
    // The second batch is split over log partitions 0 and 3, so rows of one key come from
    // both partitions and must be merged by the store.
    let (second_p3, second_p0): (Vec<UsageEvent>, Vec<UsageEvent>) = second
        .iter()
        .cloned()
        .partition(|e| e.output_tokens % 5 < 2);
    let part =
        |events: &[UsageEvent], base_offset: i64, seen_s: u32, horizon: u32, applied: u64| {
            PartitionCommit {
                base_offset,
                deltas: fold(events),
                dedup_new: events
                    .iter()
                    .map(|e| (crate::event_fingerprint(&e.event_id), seen_s))
                    .collect(),
                dedup_horizon_s: horizon,
                state: PartitionState {
                    next_offset: base_offset + events.len() as i64,
                    last_received_ms: i64::from(seen_s) * 1000,
                    events_applied: applied,
                    duplicates_dropped: 1,
                    dedup: Vec::new(),
                },
                raw: events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| crate::store::RawEvent {
                        event: e.clone(),
                        offset: base_offset + i as i64,
                        received_at_ms: i64::from(seen_s) * 1000,
                    })
                    .collect(),
            }
        };
    let commit1 = ProjectionCommit {
        partitions: [(0, part(&first, 0, 10_000, 0, 50))].into_iter().collect(),
    };
    store.commit(commit1.clone()).await.expect("commit 1");
    let commit2 = ProjectionCommit {
        partitions: [
            (
                0,
                part(&second_p0, 50, 20_000, 15_000, 50 + second_p0.len() as u64),
            ),
            (
                3,
                part(&second_p3, 0, 20_000, 15_000, second_p3.len() as u64),
            ),
        ]
        .into_iter()
        .collect(),
    };
    store.commit(commit2.clone()).await.expect("commit 2");

    // A commit built on a stale checkpoint (another projector moved the partition) is refused
    // and changes nothing.
    let refused = store.commit(commit1).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "stale base offset must be refused, got {refused:?}"
    );
    let refused = store.commit(commit2).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))));

    let state = store
        .load_state(5_000, &Partitions::All)
        .await
        .expect("load");
    assert_eq!(
        state.position(),
        LogPosition(
            [
                (0, 50 + second_p0.len() as i64),
                (3, second_p3.len() as i64)
            ]
            .into_iter()
            .collect()
        )
    );
    let p0 = &state.partitions[&0];
    assert_eq!(
        (
            p0.last_received_ms,
            p0.events_applied,
            p0.duplicates_dropped
        ),
        (20_000_000, 50 + second_p0.len() as u64, 1)
    );
    assert_eq!(state.events_applied(), 80);
    let fingerprints = |events: &[UsageEvent]| {
        let mut v: Vec<u64> = events
            .iter()
            .map(|e| crate::event_fingerprint(&e.event_id))
            .collect();
        v.sort_unstable();
        v
    };
    for (partition, events) in [(0, &second_p0), (3, &second_p3)] {
        let mut seen: Vec<u64> = state.partitions[&partition]
            .dedup
            .iter()
            .map(|(fp, _)| *fp)
            .collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            fingerprints(events),
            "partition {partition}: only its fingerprints inside the window come back"
        );
    }
    let only3 = store
        .load_state(5_000, &Partitions::Only([3].into_iter().collect()))
        .await
        .expect("load");
    assert_eq!(
        only3.partitions.keys().copied().collect::<Vec<_>>(),
        vec![3]
    );

    let everything = |with_sketches| ScanRequest::everything(&Resolution::ALL, with_sketches);
    let mut expected = fold(&first);
    crate::rollup::apply(&mut expected, fold(&second));
    let rows = store.scan(everything(true)).await.expect("scan");
    let got: std::collections::BTreeMap<_, _> =
        rows.into_iter().map(|r| (r.key, r.rollup)).collect();
    assert_eq!(got, expected, "commits merge into the stored rows exactly");

    let sums_only = store.scan(everything(false)).await.expect("scan");
    assert!(
        sums_only
            .iter()
            .all(|r| r.rollup.latency.is_empty() && r.rollup.users.is_empty()),
        "no sketches unless asked"
    );
    let total: u64 = sums_only
        .iter()
        .filter(|r| r.key.resolution == Resolution::Hour)
        .map(|r| r.rollup.requests)
        .sum();
    assert_eq!(total, 80);

    let filtered = store
        .scan(ScanRequest {
            filter: Filter {
                feature: Some("chatbot".into()),
                environment: Some(Environment::Staging),
                ..Filter::default()
            },
            spans: vec![Span {
                resolution: Resolution::Minute,
                from: base + 60,
                to: base + 540,
            }],
            with_sketches: false,
        })
        .await
        .expect("scan");
    let want = second
        .iter()
        .filter(|e| {
            e.feature == "chatbot" && (base + 60..base + 540).contains(&e.occurred_at_secs())
        })
        .count();
    assert_eq!(
        filtered.iter().map(|r| r.rollup.requests).sum::<u64>(),
        want as u64
    );
    assert!(filtered.iter().all(|r| r.key.dims.feature == "chatbot"
        && r.key.resolution == Resolution::Minute
        && r.key.bucket >= base + 60
        && r.key.bucket < base + 540));

    // Rows keep the prompt dimensions, and a scan filters by them.
    let version_2 = store
        .scan(ScanRequest {
            filter: Filter {
                prompt_id: Some("greeter".into()),
                prompt_version: Some("2".into()),
                ..Filter::default()
            },
            spans: vec![Span {
                resolution: Resolution::Day,
                from: base - 86_400,
                to: base + 86_400,
            }],
            with_sketches: false,
        })
        .await
        .expect("scan");
    let want = first
        .iter()
        .chain(&second)
        .filter(|e| e.prompt_version.as_deref() == Some("2"))
        .count();
    assert!(want > 0);
    assert_eq!(
        version_2.iter().map(|r| r.rollup.requests).sum::<u64>(),
        want as u64
    );
    assert!(version_2
        .iter()
        .all(|r| r.key.dims.prompt_id == "greeter" && r.key.dims.prompt_version == "2"));

    // Retention works in whole UTC days: a cutoff two minutes into 2026-01-01 removes every
    // row of 2025-12-31 (all resolutions) and nothing of 2026-01-01.
    let before = store.scan(everything(false)).await.expect("scan").len();
    store.prune(base + 120).await.expect("prune");
    let after = store.scan(everything(false)).await.expect("scan");
    let gone = expected.keys().filter(|k| k.bucket < base).count();
    assert!(gone > 0 && gone < before);
    assert_eq!(
        after.len(),
        before - gone,
        "prune drops exactly the rows of the days that ended before the cutoff"
    );
    assert!(after.iter().all(|r| r.key.bucket >= base));
    let requests_left: u64 = after
        .iter()
        .filter(|r| r.key.resolution == Resolution::Day)
        .map(|r| r.rollup.requests)
        .sum();
    assert_eq!(
        requests_left,
        80 - 13,
        "13 of the first batch were on the day before"
    );

    store.reset().await.expect("reset");
    assert!(store
        .scan(everything(false))
        .await
        .expect("scan")
        .is_empty());
    assert!(store
        .load_state(3600, &Partitions::All)
        .await
        .expect("load")
        .partitions
        .is_empty());
}

fn sample_event(i: u32, at_s: i64, feature: &str, environment: Environment) -> UsageEvent {
    use tally_schemas::event::{Cost, Operation, Status};
    UsageEvent {
        event_id: format!("conformance-{i}"),
        occurred_at_us: at_s * 1_000_000,
        feature: feature.into(),
        model: if i.is_multiple_of(3) {
            "gpt-4o".into()
        } else {
            "claude".into()
        },
        provider: if i.is_multiple_of(3) {
            "openai".into()
        } else {
            "anthropic".into()
        },
        environment,
        operation: Operation::Chat,
        status: if i.is_multiple_of(10) {
            Status::Error
        } else {
            Status::Success
        },
        latency_us: u64::from(i) * 12_345,
        input_tokens: u64::from(i) * 10,
        output_tokens: u64::from(i),
        cached_input_tokens: u64::from(i),
        cost: if i.is_multiple_of(7) {
            Cost::Unpriced
        } else {
            Cost::Computed(i64::from(i) * 1_000_003)
        },
        user_id: Some(format!("user-{}", i % 9)),
        // Every fifth names no prompt; the rest one of two versions.
        prompt_id: (!i.is_multiple_of(5)).then(|| "greeter".to_string()),
        prompt_version: (!i.is_multiple_of(5)).then(|| (1 + i % 2).to_string()),
        ..UsageEvent::example()
    }
}
