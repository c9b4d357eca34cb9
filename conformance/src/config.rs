//! The configuration-store suites: [`config_store`] (every resource, listing, rule and audit
//! entry) and [`changes_fail_without_their_audit_entry`] (a change and its audit entry commit
//! together). Each starts from an empty store and panics with a description on the first
//! deviation.

use chrono::{DateTime, Utc};
use serde_json::json;
use tally_domain::audit::Change;
use tally_domain::config::{
    DeploySpec, FeatureSpec, FeatureStatus, ModelPrice, ModelSpec, ModelStatus, ModelType,
    PriceSpec, ProviderSpec, ProviderStatus, ProviderType,
};
use tally_domain::store::{ConfigStore, StoreError};
use tally_schemas::Environment;

use crate::t;

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
        provider_type: ProviderType::Openai,
        status: ProviderStatus::Active,
        base_url: Some("http://127.0.0.1:1".into()),
        api_key_env: Some("KEY_VAR".into()),
    }
}

fn model(provider: &str, name: &str) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        provider: provider.into(),
        model_type: ModelType::Llm,
        version: Some("1".into()),
        capabilities: vec!["chat".into(), "tools".into()],
        status: ModelStatus::Available,
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

fn deploy(feature: &str, env: Environment, model: &str) -> DeploySpec {
    DeploySpec {
        feature: feature.into(),
        environment: env,
        provider: "openai".into(),
        model: model.into(),
    }
}

/// A change by `tester` on `day`.
fn by(day: u32) -> Change {
    Change::local("tester", t(day))
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
    last_admin_and_sessions(store).await;
    reprices(store).await;
    crate::alerting::alerting(store).await;
    test_cases(store).await;
    test_runs(store).await;
}

/// Test runs: stored whole, replaced as their calls complete, listed newest first (of one
/// prompt when asked), at most as many as asked; an id is stored once.
async fn test_runs(store: &dyn ConfigStore) {
    use tally_domain::config::{CallOutcome, Grade, RunCall, RunModel, RunStatus, TestRun};
    use tally_schemas::event::Status;
    let (p1, p2) = (uuid::Uuid::from_u128(11), uuid::Uuid::from_u128(12));
    let model = uuid::Uuid::from_u128(21);
    let run = |id: u128, prompt: uuid::Uuid, minute: u32| TestRun {
        id: uuid::Uuid::from_u128(id),
        prompt_id: Some(prompt),
        models: vec![RunModel {
            model_id: model,
            provider: "openai".into(),
            model: "gpt-4o".into(),
        }],
        calls: vec![RunCall {
            test_case_id: uuid::Uuid::from_u128(31),
            test_case: "greets".into(),
            model_id: model,
            prompt_id: prompt,
            prompt_version: 2,
            input: "Say hello to Ada".into(),
            outcome: None,
        }],
        status: RunStatus::Running,
        created_by: "admin".into(),
        created_at: t(minute),
        updated_at: t(minute),
        finished_at: None,
    };
    let (a, b, c) = (run(1, p1, 1), run(2, p2, 2), run(3, p1, 3));
    for r in [&a, &b, &c] {
        store.create_test_run(r).await.expect("create a run");
    }
    assert!(matches!(
        store.create_test_run(&a).await,
        Err(StoreError::Conflict(_))
    ));
    let mut done = a.clone();
    done.calls[0].outcome = Some(CallOutcome {
        status: Status::Success,
        output: Some("Hello, Ada".into()),
        error: None,
        latency_us: 123_456,
        input_tokens: 12,
        output_tokens: 4,
        cost_pico: Some(56_000_000),
        grade: Grade {
            passed: Some(true),
            reason: "the output equals the expected text".into(),
        },
        event_id: "test-run-1".into(),
    });
    done.status = RunStatus::Finished;
    done.finished_at = Some(t(5) + chrono::Duration::microseconds(123_456));
    store.save_test_run(&done).await.expect("save");
    assert_eq!(
        store.test_run(a.id).await.expect("get").as_ref(),
        Some(&done),
        "a run reads back as saved"
    );
    assert_eq!(
        store
            .test_run(uuid::Uuid::from_u128(99))
            .await
            .expect("get"),
        None
    );
    assert!(matches!(
        store.save_test_run(&run(99, p1, 9)).await,
        Err(StoreError::NotFound { .. })
    ));
    let ids = |runs: Vec<tally_domain::config::TestRunSummary>| {
        runs.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.list_test_runs(None, 10).await.expect("list")),
        vec![c.id, b.id, a.id]
    );
    assert_eq!(
        ids(store.list_test_runs(Some(p1), 10).await.expect("list")),
        vec![c.id, a.id]
    );
    assert_eq!(
        ids(store.list_test_runs(None, 1).await.expect("list")),
        vec![c.id]
    );
    // A listing reads the summary saved with the run.
    let listed = store.list_test_runs(Some(p1), 10).await.expect("list");
    assert_eq!(listed[1], done.summary());
    assert_eq!(listed[1].models[0].passed, 1);
}

/// Test cases: created for an existing prompt only, with a well-formed check; listed oldest
/// first with the prompt's feature; updated and deleted, each change audited.
async fn test_cases(store: &dyn ConfigStore) {
    use std::collections::BTreeMap;
    use tally_domain::config::{CheckKind, TestCaseSpec};
    use tally_domain::store::AuditQuery;
    let greeting = store
        .list_prompts()
        .await
        .expect("prompts")
        .into_iter()
        .find(|p| p.name == "greeting")
        .expect("the prompts check made greeting");
    let spec = TestCaseSpec {
        name: "greets Ada".into(),
        description: Some("by name".into()),
        prompt_id: greeting.id,
        variables: BTreeMap::from([("name".to_string(), "Ada".to_string())]),
        check: CheckKind::Contains,
        expected: Some(json!("Ada")),
    };
    let first = store
        .create_test_case(spec.clone(), &by(7))
        .await
        .expect("create");
    assert_eq!(first.spec, spec);
    assert_eq!(first.feature.as_deref(), Some("chatbot"));
    assert_eq!((first.created_at, first.updated_at), (t(7), t(7)));
    let schema = TestCaseSpec {
        name: "answers JSON".into(),
        description: None,
        check: CheckKind::JsonSchema,
        expected: Some(json!({"type": "object", "required": ["greeting"]})),
        ..spec.clone()
    };
    let second = store
        .create_test_case(schema.clone(), &by(8))
        .await
        .expect("create");
    assert_eq!(second.spec, schema, "a schema round-trips as JSON");
    for (bad, field) in [
        (
            TestCaseSpec {
                expected: Some(json!("(unclosed")),
                check: CheckKind::Regex,
                ..spec.clone()
            },
            "expected",
        ),
        (
            TestCaseSpec {
                name: "".into(),
                ..spec.clone()
            },
            "name",
        ),
    ] {
        match store.create_test_case(bad, &by(8)).await {
            Err(StoreError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        store
            .create_test_case(
                TestCaseSpec {
                    prompt_id: uuid::Uuid::now_v7(),
                    ..spec.clone()
                },
                &by(8)
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let listed: Vec<uuid::Uuid> = store
        .list_test_cases()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, vec![first.id, second.id], "oldest first");
    let exact = TestCaseSpec {
        check: CheckKind::Exact,
        expected: Some(json!("Hello, Ada")),
        ..spec.clone()
    };
    let updated = store
        .update_test_case(first.id, exact.clone(), &by(9))
        .await
        .expect("update");
    assert_eq!(
        (updated.spec.clone(), updated.created_at, updated.updated_at),
        (exact, t(7), t(9))
    );
    assert!(matches!(
        store
            .update_test_case(uuid::Uuid::now_v7(), spec.clone(), &by(9))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let deleted = store
        .delete_test_case(second.id, &by(10))
        .await
        .expect("delete");
    assert_eq!(deleted.id, second.id);
    assert!(matches!(
        store.delete_test_case(second.id, &by(10)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_test_cases().await.expect("list"), vec![updated]);
    let actions: Vec<String> = store
        .list_audit(&AuditQuery {
            limit: 100,
            resource: Some("test_case".into()),
            ..AuditQuery::default()
        })
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "test_case.delete",
            "test_case.update",
            "test_case.create",
            "test_case.create"
        ],
        "every change audited, newest first"
    );
}

async fn reprices(store: &dyn ConfigStore) {
    use tally_domain::config::RepriceSpec;
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
    let backwards = store.add_reprice(spec(12, 12), &by(1)).await;
    assert!(
        matches!(backwards, Err(StoreError::Invalid { ref field, .. }) if field == "from"),
        "{backwards:?}"
    );
    let mut foreign = spec(1, 12);
    foreign.model = "gpt-4o-mini".into();
    assert!(
        store.add_reprice(foreign, &by(1)).await.is_err(),
        "prices of another model"
    );
    assert!(store.list_reprices().await.expect("list").is_empty());
    let later = store
        .add_reprice(spec(3, 20), &by(1))
        .await
        .expect("reprice");
    let earlier = store
        .add_reprice(spec(1, 10), &by(1))
        .await
        .expect("reprice");
    assert_eq!(later.spec.prices, prices);
    let listed = store.list_reprices().await.expect("list");
    assert_eq!(
        listed,
        vec![earlier, later],
        "oldest request first, as stored"
    );
}

/// Every change of the earlier checks is in the log once; calls that changed nothing are not.
/// Then a scripted run by another actor: each change's entry, with before and after.
async fn audit(store: &dyn ConfigStore) {
    use tally_domain::audit::Actor;
    use tally_domain::config::{AuditEntry, BudgetPeriod, BudgetScope, BudgetSpec};
    use tally_domain::store::AuditQuery;
    let everything = store
        .list_audit(&tally_domain::store::AuditQuery::newest(10_000))
        .await
        .expect("list");
    let count = |action: &str| everything.iter().filter(|e| e.action == action).count();
    assert!(everything.iter().all(|e| e.actor == "tester"));
    assert_eq!(count("api_key.revoke"), 1, "revoking twice is one change");
    // Filters, applied by the store.
    let only = |q: AuditQuery| async move { store.list_audit(&q).await.expect("filtered") };
    let revokes = only(AuditQuery {
        action: Some("api_key.revoke".into()),
        ..AuditQuery::newest(10_000)
    })
    .await;
    assert_eq!(revokes.len(), 1);
    let keys = only(AuditQuery {
        resource: Some("api_key".into()),
        ..AuditQuery::newest(10_000)
    })
    .await;
    assert_eq!(
        keys.len(),
        everything
            .iter()
            .filter(|e| e.resource.starts_with("api_key:"))
            .count()
    );
    assert!(keys.len() >= 3, "two creations and a revocation");
    let one = only(AuditQuery {
        resource: Some(revokes[0].resource.clone()),
        ..AuditQuery::newest(10_000)
    })
    .await;
    assert_eq!(one.len(), 2, "the revoked key: created, revoked");
    // Every resource, and every leading part of one, selects itself and what lies under it.
    let mut prefixes: Vec<String> = Vec::new();
    for e in &everything {
        let parts: Vec<&str> = e.resource.split(':').collect();
        for n in 1..=parts.len() {
            let p = parts[..n].join(":");
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
    }
    assert!(
        prefixes.iter().any(|p| p.matches(':').count() >= 2),
        "the log has nested resources (assignments): {prefixes:?}"
    );
    for p in &prefixes {
        let found = only(AuditQuery {
            resource: Some(p.clone()),
            ..AuditQuery::newest(10_000)
        })
        .await;
        let expected: Vec<&AuditEntry> = everything
            .iter()
            .filter(|e| e.resource == *p || e.resource.starts_with(&format!("{p}:")))
            .collect();
        assert_eq!(found.iter().collect::<Vec<_>>(), expected, "resource={p}");
    }
    let partial = only(AuditQuery {
        resource: Some("api_ke".into()),
        ..AuditQuery::newest(10_000)
    })
    .await;
    assert!(partial.is_empty(), "a type matches whole: {partial:?}");
    let nobody = only(AuditQuery {
        actor: Some("someone else".into()),
        ..AuditQuery::newest(10_000)
    })
    .await;
    assert!(nobody.is_empty());
    let limited = only(AuditQuery {
        actor: Some("tester".into()),
        ..AuditQuery::newest(2)
    })
    .await;
    assert_eq!(limited.len(), 2);
    // Paging by the last entry's id visits every entry once, also entries sharing a time.
    let mut paged: Vec<AuditEntry> = Vec::new();
    loop {
        let page = only(AuditQuery {
            before_entry: paged.last().map(|e| e.id),
            ..AuditQuery::newest(3)
        })
        .await;
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, everything, "pages of 3 by before_entry");
    assert!(
        everything.windows(2).any(|w| w[0].at == w[1].at),
        "the log has entries sharing a time, which paging by time alone would skip"
    );
    assert_eq!(
        count("api_key.create"),
        2,
        "the refused duplicate is not audited"
    );
    assert_eq!(
        count("prompt_version.create"),
        1,
        "the same content again is no version"
    );
    assert_eq!(count("budget.delete"), 1, "the second delete found nothing");
    assert_eq!(
        count("deployment.create"),
        4,
        "the deploy to an unknown feature failed"
    );

    let key = uuid::Uuid::new_v4();
    let at = |day: u32| {
        Change::new(
            Actor {
                name: "auditor".into(),
                key_id: Some(key),
            },
            t(day),
        )
    };
    let spec = feature("audited", "Audited", FeatureStatus::Active);
    let created = store
        .create_feature(spec.clone(), &at(20))
        .await
        .expect("create");
    assert!(store.create_feature(spec.clone(), &at(20)).await.is_err());
    let same = store
        .upsert_feature(spec.clone(), &at(21))
        .await
        .expect("upsert");
    assert_eq!(
        same, created,
        "an upsert that changes nothing writes nothing"
    );
    let renamed = FeatureSpec {
        display_name: "Audited (renamed)".into(),
        ..spec.clone()
    };
    let updated = store
        .upsert_feature(renamed, &at(21))
        .await
        .expect("upsert");
    let env = Environment::Production;
    assert!(matches!(
        store.rollback("audited", env, &at(22)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.rollback("no-such-feature", env, &at(22)).await,
        Err(StoreError::NotFound { .. })
    ));
    let first = store
        .deploy(deploy("audited", env, "gpt-4o"), &at(22))
        .await
        .expect("deploy");
    assert!(matches!(
        store.rollback("audited", env, &at(22)).await,
        Err(StoreError::Conflict(_))
    ));
    let second = store
        .deploy(deploy("audited", env, "gpt-4o-mini"), &at(23))
        .await
        .expect("deploy");
    let restored = store
        .rollback("audited", env, &at(24))
        .await
        .expect("rollback");
    assert_eq!(
        (
            restored.model.as_str(),
            restored.is_active,
            restored.assigned_at,
            restored.assigned_by.as_deref()
        ),
        ("gpt-4o", true, t(24), Some("auditor"))
    );
    let history = store
        .assignment_history(Some("audited"), Some(env))
        .await
        .expect("history");
    assert_eq!(
        history.iter().map(|a| a.is_active).collect::<Vec<_>>(),
        vec![true, false, false]
    );
    assert!(matches!(
        store.delete_feature("audited", &at(24)).await,
        Err(StoreError::Conflict(_))
    ));
    let budget = BudgetSpec {
        name: "audited".into(),
        scope: BudgetScope::Global,
        scope_value: None,
        period: BudgetPeriod::Daily,
        time_zone: "UTC".into(),
        amount_micros: 1_000_000,
        thresholds_percent: vec![80, 100],
        is_active: true,
        channels: vec![],
    };
    let b1 = store
        .create_budget(budget.clone(), &at(25))
        .await
        .expect("create");
    let unchanged = store
        .update_budget(b1.id, budget.clone(), &at(25))
        .await
        .expect("update");
    assert_eq!(unchanged, b1);
    let b2 = store
        .update_budget(
            b1.id,
            BudgetSpec {
                amount_micros: 2_000_000,
                ..budget.clone()
            },
            &at(25),
        )
        .await
        .expect("update");
    store.delete_budget(b1.id, &at(25)).await.expect("delete");

    fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).expect("json")
    }
    let theirs: Vec<AuditEntry> = store
        .list_audit(&tally_domain::store::AuditQuery::newest(10_000))
        .await
        .expect("list")
        .into_iter()
        .filter(|e| e.actor == "auditor")
        .collect();
    let expected = [
        ("budget.delete", "budget", Some(json(&b2)), None, 25),
        (
            "budget.update",
            "budget",
            Some(json(&b1)),
            Some(json(&b2)),
            25,
        ),
        ("budget.create", "budget", None, Some(json(&b1)), 25),
        (
            "deployment.rollback",
            "feature:audited:production",
            Some(json(&second)),
            Some(json(&restored)),
            24,
        ),
        (
            "deployment.create",
            "feature:audited:production",
            Some(json(&first)),
            Some(json(&second)),
            23,
        ),
        (
            "deployment.create",
            "feature:audited:production",
            None,
            Some(json(&first)),
            22,
        ),
        (
            "feature.update",
            "feature:audited",
            Some(json(&created)),
            Some(json(&updated)),
            21,
        ),
        (
            "feature.create",
            "feature:audited",
            None,
            Some(json(&created)),
            20,
        ),
    ];
    assert_eq!(theirs.len(), expected.len(), "{theirs:#?}");
    for (entry, (action, resource, before, after, day)) in theirs.iter().zip(expected) {
        assert_eq!(
            entry.action, action,
            "newest first; same instant: last first"
        );
        let resource = match resource {
            "budget" => format!("budget:{}", b1.id),
            other => other.to_string(),
        };
        assert_eq!(entry.resource, resource, "{action}");
        assert_eq!(
            (entry.at, entry.actor_key_id),
            (t(day), Some(key)),
            "{action}"
        );
        assert_eq!((&entry.before, &entry.after), (&before, &after), "{action}");
    }
    let newest = store
        .list_audit(&tally_domain::store::AuditQuery::newest(1))
        .await
        .expect("list");
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].action, "budget.delete");
    let older: Vec<String> = store
        .list_audit(&tally_domain::store::AuditQuery {
            before: Some(t(24)),
            ..tally_domain::store::AuditQuery::newest(10_000)
        })
        .await
        .expect("list")
        .into_iter()
        .filter(|e| e.actor == "auditor")
        .map(|e| e.action)
        .collect();
    assert_eq!(
        older,
        vec![
            "deployment.create",
            "deployment.create",
            "feature.update",
            "feature.create"
        ]
    );
}

fn content(text: &str, variables: &[&str], day: u32) -> tally_domain::config::PromptContent {
    tally_domain::config::PromptContent {
        content: text.into(),
        variables: variables.iter().map(|v| v.to_string()).collect(),
        created_by: Some("tester".into()),
        at: t(day),
    }
}

async fn prompts(store: &dyn ConfigStore) {
    use tally_domain::config::{PromptSpec, PromptStatus};
    let spec = |name: &str, feature: Option<&str>| PromptSpec {
        name: name.into(),
        description: Some("greets".into()),
        feature: feature.map(str::to_string),
        tags: vec!["support".into()],
        content: content("Hello {{name}}", &["name"], 1),
    };
    let (greeting, v1) = store
        .create_prompt(spec("greeting", Some("chatbot")), &by(1))
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
        store.create_prompt(spec("greeting", None), &by(1)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_prompt(spec("other", Some("no-such-feature")), &by(1))
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Same content: no new version. New content: version 2; versions never change.
    let (same, created) = store
        .add_prompt_version(greeting.id, content("Hello {{name}}", &["name"], 2), &by(1))
        .await
        .expect("same");
    assert_eq!((same.version, created), (1, false));
    let (v2, created) = store
        .add_prompt_version(
            greeting.id,
            content("Hi {{name}}, about {{topic}}", &["name", "topic"], 3),
            &by(1),
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
        store.activate_prompt_version(greeting.id, 2, &by(1)).await,
        Err(StoreError::Conflict(_))
    ));
    for status in [PromptStatus::Review, PromptStatus::Approved] {
        store
            .set_prompt_status(greeting.id, 2, status, &by(1))
            .await
            .expect("status");
    }
    store
        .set_prompt_status(greeting.id, 1, PromptStatus::Approved, &by(1))
        .await
        .expect("status");
    let active = store
        .activate_prompt_version(greeting.id, 2, &by(1))
        .await
        .expect("activate");
    assert!(active.is_active);
    let (farewell, _) = store
        .create_prompt(spec("farewell", Some("chatbot")), &by(1))
        .await
        .expect("create");
    store
        .set_prompt_status(farewell.id, 1, PromptStatus::Approved, &by(1))
        .await
        .expect("status");
    store
        .activate_prompt_version(farewell.id, 1, &by(1))
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
            .set_prompt_status(farewell.id, 1, PromptStatus::Archived, &by(1))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let (loose, _) = store
        .create_prompt(spec("loose", None), &by(1))
        .await
        .expect("create");
    store
        .set_prompt_status(loose.id, 1, PromptStatus::Approved, &by(1))
        .await
        .expect("status");
    assert!(matches!(
        store.activate_prompt_version(loose.id, 1, &by(1)).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.prompt_versions(uuid::Uuid::new_v4()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .set_prompt_status(greeting.id, 9, PromptStatus::Review, &by(1))
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn budgets(store: &dyn ConfigStore) {
    use tally_domain::config::{BudgetPeriod, BudgetScope, BudgetSpec};
    let spec = BudgetSpec {
        name: "chatbot monthly".into(),
        scope: BudgetScope::Feature,
        scope_value: Some("chatbot".into()),
        period: BudgetPeriod::Monthly,
        time_zone: "Europe/Berlin".into(),
        amount_micros: 5_000_000_000,
        thresholds_percent: vec![80, 100],
        is_active: true,
        channels: vec![],
    };
    let created = store
        .create_budget(spec.clone(), &by(1))
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
        channels: vec![],
    };
    store
        .create_budget(global.clone(), &by(2))
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
        match store.create_budget(bad, &by(3)).await {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut changed = spec.clone();
    changed.amount_micros = 7_500_000_000;
    changed.is_active = false;
    let updated = store
        .update_budget(created.id, changed.clone(), &by(4))
        .await
        .expect("update");
    assert_eq!(updated.spec, changed);
    assert_eq!((updated.created_at, updated.updated_at), (t(1), t(4)));
    assert!(matches!(
        store
            .update_budget(uuid::Uuid::new_v4(), changed.clone(), &by(4))
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
    store
        .delete_budget(created.id, &by(1))
        .await
        .expect("delete");
    assert!(matches!(
        store.delete_budget(created.id, &by(1)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_budgets().await.expect("list").len(), 1);
}

async fn experiments(store: &dyn ConfigStore) {
    use tally_domain::config::{ExperimentSpec, ExperimentStatus, ExperimentType, Variant};
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
        .create_experiment(spec.clone(), &by(1))
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
        store.create_experiment(uneven, &by(1)).await,
        Err(StoreError::Invalid { .. })
    ));
    let elsewhere = ExperimentSpec {
        feature: "no-such-feature".into(),
        ..spec.clone()
    };
    assert!(matches!(
        store.create_experiment(elsewhere, &by(1)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .transition_experiment(draft.id, ExperimentStatus::Completed, &by(2))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let running = store
        .transition_experiment(draft.id, ExperimentStatus::Running, &by(2))
        .await
        .expect("start");
    assert_eq!((running.started_at, running.ended_at), (Some(t(2)), None));
    let done = store
        .transition_experiment(draft.id, ExperimentStatus::Completed, &by(5))
        .await
        .expect("complete");
    assert_eq!(
        (done.status, done.started_at, done.ended_at, done.updated_at),
        (ExperimentStatus::Completed, Some(t(2)), Some(t(5)), t(5))
    );
    assert!(matches!(
        store
            .transition_experiment(draft.id, ExperimentStatus::Running, &by(6))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let second = store
        .create_experiment(spec.clone(), &by(3))
        .await
        .expect("create");
    let cancelled = store
        .transition_experiment(second.id, ExperimentStatus::Cancelled, &by(4))
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
    use tally_domain::access::{hash, new_key, Role};
    assert!(store.list_api_keys().await.expect("list").is_empty());
    let (secret, spec) = new_key("ci admin", Role::PlatformAdmin, t(3));
    let admin = store
        .create_api_key(spec.clone(), &by(1))
        .await
        .expect("create");
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
    let again = store.create_api_key(spec, &by(1)).await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "the same secret twice: {again:?}"
    );
    let (viewer_secret, viewer) = new_key("dashboards", Role::Viewer, t(4));
    let viewer = store.create_api_key(viewer, &by(1)).await.expect("create");
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
    let (revoked, changed) = store
        .revoke_api_key(viewer.id, &by(5))
        .await
        .expect("revoke");
    assert_eq!((revoked.revoked_at, changed), (Some(t(5)), true));
    let (twice, changed) = store
        .revoke_api_key(viewer.id, &by(6))
        .await
        .expect("revoke");
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
    let unknown = store.revoke_api_key(uuid::Uuid::new_v4(), &by(6)).await;
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

/// The last active admin key cannot be revoked; console sessions are found by their hash with
/// their key, end on sign-out, and end with their key.
async fn last_admin_and_sessions(store: &dyn ConfigStore) {
    use tally_domain::access::{new_key, Role};
    use tally_domain::sessions::open;
    let admins: Vec<_> = store
        .list_api_keys()
        .await
        .expect("list")
        .into_iter()
        .filter(|k| k.role == Role::PlatformAdmin && k.revoked_at.is_none())
        .collect();
    assert_eq!(admins.len(), 1, "the api_keys check leaves one admin");
    let first = admins[0].clone();
    let refused = store.revoke_api_key(first.id, &by(7)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(ref m)) if m.contains("last active platform_admin")),
        "{refused:?}"
    );
    let (_, spec) = new_key("second admin", Role::PlatformAdmin, t(7));
    let second = store.create_api_key(spec, &by(7)).await.expect("create");
    let (gone, changed) = store
        .revoke_api_key(first.id, &by(8))
        .await
        .expect("another admin remains");
    assert_eq!((gone.revoked_at, changed), (Some(t(8)), true));
    let (again, changed) = store
        .revoke_api_key(first.id, &by(9))
        .await
        .expect("revoking a revoked key again is no change, whatever remains");
    assert_eq!((again.revoked_at, changed), (Some(t(8)), false));
    let refused = store.revoke_api_key(second.id, &by(9)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );

    // Sessions.
    let (_, spec) = new_key("console viewer", Role::Viewer, t(9));
    let viewer = store.create_api_key(spec, &by(9)).await.expect("create");
    let one = open(&viewer, t(10), chrono::Duration::hours(12));
    let two = open(&second, t(10), chrono::Duration::hours(1));
    store
        .create_session(&one.hash, &one.session)
        .await
        .expect("session");
    store
        .create_session(&two.hash, &two.session)
        .await
        .expect("session");
    let orphan = open(
        &tally_domain::access::ApiKey {
            id: uuid::Uuid::new_v4(),
            ..viewer.clone()
        },
        t(10),
        chrono::Duration::hours(1),
    );
    let missing = store.create_session(&orphan.hash, &orphan.session).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "a session of an unknown key: {missing:?}"
    );
    assert_eq!(
        store.session_by_hash(&one.hash).await.expect("find"),
        Some((one.session.clone(), viewer.clone()))
    );
    assert_eq!(
        store.session_by_hash(&one.token).await.expect("find"),
        None,
        "by hash only"
    );
    assert_eq!(
        store
            .delete_expired_sessions(t(10) + chrono::Duration::minutes(90))
            .await
            .expect("expire"),
        1,
        "the one-hour session expired"
    );
    assert_eq!(store.session_by_hash(&two.hash).await.expect("find"), None);
    let (revoked, _) = store
        .revoke_api_key(viewer.id, &by(11))
        .await
        .expect("revoke");
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        store.session_by_hash(&one.hash).await.expect("find"),
        None,
        "revoking a key ends its sessions"
    );
    let three = open(&second, t(12), chrono::Duration::hours(1));
    store
        .create_session(&three.hash, &three.session)
        .await
        .expect("session");
    store.delete_session(&three.hash).await.expect("sign out");
    store.delete_session(&three.hash).await.expect("twice");
    assert_eq!(
        store.session_by_hash(&three.hash).await.expect("find"),
        None
    );
}

async fn features(store: &dyn ConfigStore) {
    assert!(
        store.list_features().await.expect("list").is_empty(),
        "store must start empty"
    );
    let created = store
        .upsert_feature(feature("chatbot", "Chatbot", FeatureStatus::Active), &by(1))
        .await
        .expect("create");
    store
        .upsert_feature(
            feature("ai-search", "AI Search", FeatureStatus::Maintenance),
            &by(1),
        )
        .await
        .expect("create");
    let updated = store
        .upsert_feature(
            feature("chatbot", "Chat Bot", FeatureStatus::Inactive),
            &by(1),
        )
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
        .create_feature(feature("chatbot", "Other", FeatureStatus::Active), &by(1))
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
        .create_feature(feature("temp", "Temp", FeatureStatus::Active), &by(1))
        .await
        .expect("create");
    assert_eq!(temp.display_name, "Temp");
    let deleted = store.delete_feature("temp", &by(1)).await.expect("delete");
    assert_eq!(deleted.id, temp.id);
    let again = store.delete_feature("temp", &by(1)).await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    assert_eq!(store.list_features().await.expect("list").len(), 2);
}

async fn providers_models_prices(store: &dyn ConfigStore) {
    let missing = store.upsert_model(model("nobody", "m"), &by(1)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "a model needs its provider: {missing:?}"
    );
    let p = store
        .upsert_provider(provider("openai"), &by(1))
        .await
        .expect("provider");
    assert_eq!(
        (p.base_url.as_deref(), p.api_key_env.as_deref()),
        (Some("http://127.0.0.1:1"), Some("KEY_VAR"))
    );
    store
        .upsert_provider(provider("anthropic"), &by(1))
        .await
        .expect("provider");
    assert_eq!(store.list_providers().await.expect("list").len(), 2);
    let m = store
        .upsert_model(model("openai", "gpt-4o"), &by(1))
        .await
        .expect("model");
    assert_eq!((m.provider.as_str(), m.capabilities.len()), ("openai", 2));
    store
        .upsert_model(model("openai", "gpt-4o-mini"), &by(1))
        .await
        .expect("model");
    let again = store
        .upsert_model(model("openai", "gpt-4o"), &by(1))
        .await
        .expect("model upsert");
    assert_eq!(again.id, m.id);
    assert_eq!(store.list_models().await.expect("list").len(), 2);

    let missing = store.add_price(price("no-such-model", 1, 1), &by(1)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    store
        .add_price(price("gpt-4o", 10, 2_000_000), &by(1))
        .await
        .expect("price");
    store
        .add_price(price("gpt-4o", 1, 2_500_000), &by(1))
        .await
        .expect("price");
    let dup = store.add_price(price("gpt-4o", 10, 9), &by(1)).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "one price per model and instant: {dup:?}"
    );
    let prices = store.list_prices().await.expect("prices");
    let froms: Vec<DateTime<Utc>> = prices.iter().map(|p| p.effective_from).collect();
    assert_eq!(froms, vec![t(1), t(10)], "prices are listed oldest first");
    assert_eq!(prices[0].cached_input_per_mtok_micros, Some(1_250_000));
    assert_eq!(prices[1].output_per_mtok_micros, 8_000_000);

    let dup = store.create_model(model("openai", "gpt-4o"), &by(1)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let dup = store.create_provider(provider("openai"), &by(1)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let busy = store.delete_provider("openai", &by(1)).await;
    assert!(
        matches!(busy, Err(StoreError::Conflict(_))),
        "a provider with models stays: {busy:?}"
    );
    store
        .create_provider(provider("spare"), &by(1))
        .await
        .expect("create");
    let temp = store
        .create_model(model("spare", "temp"), &by(1))
        .await
        .expect("create");
    store
        .add_price(
            PriceSpec {
                provider: "spare".into(),
                ..price("temp", 1, 7)
            },
            &by(1),
        )
        .await
        .expect("price");
    assert_eq!(
        store
            .delete_model(temp.id, &by(1))
            .await
            .expect("delete")
            .id,
        temp.id
    );
    let prices = store.list_prices().await.expect("prices");
    assert!(
        prices.iter().all(|p| p.model != "temp"),
        "a deleted model's prices go with it"
    );
    store
        .delete_provider("spare", &by(1))
        .await
        .expect("delete");
    let gone = store.delete_model(temp.id, &by(1)).await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    assert_eq!(store.list_providers().await.expect("list").len(), 2);
}

async fn deployments(store: &dyn ConfigStore) {
    let unknown = store
        .deploy(deploy("nope", Environment::Production, "gpt-4o"), &by(2))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );
    store
        .deploy(deploy("chatbot", Environment::Production, "gpt-4o"), &by(2))
        .await
        .expect("deploy");
    store
        .deploy(
            deploy("chatbot", Environment::Staging, "gpt-4o-mini"),
            &by(3),
        )
        .await
        .expect("deploy");
    let second = store
        .deploy(
            deploy("chatbot", Environment::Production, "gpt-4o-mini"),
            &by(4),
        )
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
    let busy = store.delete_feature("chatbot", &by(1)).await;
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
    let busy = store.delete_model(gpt4o.id, &by(1)).await;
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
        .deploy(deploy("ai-search", Environment::Staging, "gpt-4o"), &by(5))
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

/// Every configuration in `store` as JSON: what a failed change must leave as it was.
async fn snapshot(store: &dyn ConfigStore, prompt: uuid::Uuid) -> serde_json::Value {
    fn v<T: serde::Serialize>(x: T) -> serde_json::Value {
        serde_json::to_value(x).expect("json")
    }
    json!({
        "features": v(store.list_features().await.expect("features")),
        "providers": v(store.list_providers().await.expect("providers")),
        "models": v(store.list_models().await.expect("models")),
        "prices": v(store.list_prices().await.expect("prices")),
        "reprices": v(store.list_reprices().await.expect("reprices")),
        "assignments": v(store.assignment_history(None, None).await.expect("assignments")),
        "prompts": v(store.list_prompts().await.expect("prompts")),
        "versions": v(store.prompt_versions(prompt).await.expect("versions")),
        "budgets": v(store.list_budgets().await.expect("budgets")),
        "experiments": v(store.list_experiments().await.expect("experiments")),
        "test_cases": v(store.list_test_cases().await.expect("test cases")),
        "api_keys": v(store.list_api_keys().await.expect("keys")),
        "audit": v(store.list_audit(&tally_domain::store::AuditQuery::newest(10_000)).await.expect("audit")),
    })
}

/// A change and its audit entry commit together: in an empty `store`, seeds one of everything,
/// then calls `refuse_audit`, after which the backend must refuse every audit entry with an
/// error that says `audit log refused`. Every kind of change must then fail with that error
/// and leave everything as it was.
pub async fn changes_fail_without_their_audit_entry<F>(store: &dyn ConfigStore, refuse_audit: F)
where
    F: std::future::Future<Output = ()>,
{
    use tally_domain::access::{new_key, Role};
    use tally_domain::config::{
        BudgetPeriod, BudgetScope, BudgetSpec, ExperimentSpec, ExperimentStatus, ExperimentType,
        PromptSpec, PromptStatus, RepriceSpec, Variant,
    };
    let c = by(1);
    let env = Environment::Production;
    for name in ["chatbot", "spare"] {
        let spec = feature(name, name, FeatureStatus::Active);
        store.create_feature(spec, &c).await.expect("feature");
    }
    for name in ["openai", "spare"] {
        store
            .create_provider(provider(name), &c)
            .await
            .expect("provider");
    }
    for name in ["gpt-4o", "gpt-4o-mini", "spare"] {
        store
            .create_model(model("openai", name), &c)
            .await
            .expect("model");
    }
    store
        .add_price(price("gpt-4o", 1, 100), &c)
        .await
        .expect("price");
    for m in ["gpt-4o", "gpt-4o-mini"] {
        store
            .deploy(deploy("chatbot", env, m), &c)
            .await
            .expect("deploy");
    }
    let prompt_spec = |name: &str| PromptSpec {
        name: name.into(),
        description: None,
        feature: Some("chatbot".into()),
        tags: vec![],
        content: content("Hello {{name}}", &["name"], 1),
    };
    let (prompt, _) = store
        .create_prompt(prompt_spec("greeting"), &c)
        .await
        .expect("prompt");
    store
        .set_prompt_status(prompt.id, 1, PromptStatus::Approved, &c)
        .await
        .expect("approve");
    let budget_spec = BudgetSpec {
        name: "daily".into(),
        scope: BudgetScope::Global,
        scope_value: None,
        period: BudgetPeriod::Daily,
        time_zone: "UTC".into(),
        amount_micros: 1_000_000,
        thresholds_percent: vec![80, 100],
        is_active: true,
        channels: vec![],
    };
    let budget = store
        .create_budget(budget_spec.clone(), &c)
        .await
        .expect("budget");
    let experiment_spec = ExperimentSpec {
        name: "ab".into(),
        description: None,
        feature: "chatbot".into(),
        experiment_type: ExperimentType::ModelComparison,
        variants: vec![
            Variant {
                name: "a".into(),
                traffic_percent: 50,
                config: json!({}),
            },
            Variant {
                name: "b".into(),
                traffic_percent: 50,
                config: json!({}),
            },
        ],
    };
    let experiment = store
        .create_experiment(experiment_spec.clone(), &c)
        .await
        .expect("experiment");
    let case_spec = tally_domain::config::TestCaseSpec {
        name: "greets".into(),
        description: None,
        prompt_id: prompt.id,
        variables: Default::default(),
        check: tally_domain::config::CheckKind::None,
        expected: None,
    };
    let case = store
        .create_test_case(case_spec.clone(), &c)
        .await
        .expect("test case");
    let (_, key_spec) = new_key("ops", Role::Viewer, t(1));
    let key = store.create_api_key(key_spec, &c).await.expect("key");
    let spare_model = store
        .list_models()
        .await
        .expect("models")
        .into_iter()
        .find(|m| m.name == "spare")
        .expect("spare model");
    let gpt_4o_prices: Vec<ModelPrice> = store.list_prices().await.expect("prices");

    let before = snapshot(store, prompt.id).await;
    refuse_audit.await;
    let c = by(2);
    let renamed = |name: &str| FeatureSpec {
        display_name: "renamed".into(),
        ..feature(name, name, FeatureStatus::Active)
    };
    let changed_provider = ProviderSpec {
        status: ProviderStatus::Inactive,
        ..provider("openai")
    };
    let changed_model = ModelSpec {
        status: ModelStatus::Beta,
        ..model("openai", "gpt-4o")
    };
    let bigger = BudgetSpec {
        amount_micros: 2_000_000,
        ..budget_spec.clone()
    };
    let (_, another_key) = new_key("another", Role::Viewer, t(2));
    let reprice = RepriceSpec {
        provider: "openai".into(),
        model: "gpt-4o".into(),
        from: t(1),
        requested_at: t(2),
        requested_by: None,
        prices: gpt_4o_prices,
    };
    let attempts: Vec<(&str, Result<(), StoreError>)> = vec![
        (
            "create_feature",
            store.create_feature(renamed("new"), &c).await.map(drop),
        ),
        (
            "upsert_feature",
            store.upsert_feature(renamed("chatbot"), &c).await.map(drop),
        ),
        (
            "delete_feature",
            store.delete_feature("spare", &c).await.map(drop),
        ),
        (
            "create_provider",
            store.create_provider(provider("new"), &c).await.map(drop),
        ),
        (
            "upsert_provider",
            store.upsert_provider(changed_provider, &c).await.map(drop),
        ),
        (
            "delete_provider",
            store.delete_provider("spare", &c).await.map(drop),
        ),
        (
            "create_model",
            store
                .create_model(model("openai", "new"), &c)
                .await
                .map(drop),
        ),
        (
            "upsert_model",
            store.upsert_model(changed_model, &c).await.map(drop),
        ),
        (
            "delete_model",
            store.delete_model(spare_model.id, &c).await.map(drop),
        ),
        (
            "add_price",
            store.add_price(price("gpt-4o", 2, 50), &c).await.map(drop),
        ),
        (
            "add_reprice",
            store.add_reprice(reprice, &c).await.map(drop),
        ),
        (
            "deploy",
            store
                .deploy(deploy("spare", env, "gpt-4o"), &c)
                .await
                .map(drop),
        ),
        (
            "rollback",
            store.rollback("chatbot", env, &c).await.map(drop),
        ),
        (
            "create_prompt",
            store
                .create_prompt(prompt_spec("other"), &c)
                .await
                .map(drop),
        ),
        (
            "add_prompt_version",
            store
                .add_prompt_version(prompt.id, content("Hi {{name}}", &["name"], 2), &c)
                .await
                .map(drop),
        ),
        (
            "set_prompt_status",
            store
                .set_prompt_status(prompt.id, 1, PromptStatus::Archived, &c)
                .await
                .map(drop),
        ),
        (
            "activate_prompt_version",
            store
                .activate_prompt_version(prompt.id, 1, &c)
                .await
                .map(drop),
        ),
        (
            "create_budget",
            store.create_budget(budget_spec, &c).await.map(drop),
        ),
        (
            "update_budget",
            store.update_budget(budget.id, bigger, &c).await.map(drop),
        ),
        (
            "delete_budget",
            store.delete_budget(budget.id, &c).await.map(drop),
        ),
        (
            "create_experiment",
            store.create_experiment(experiment_spec, &c).await.map(drop),
        ),
        (
            "transition_experiment",
            store
                .transition_experiment(experiment.id, ExperimentStatus::Running, &c)
                .await
                .map(drop),
        ),
        (
            "create_test_case",
            store
                .create_test_case(case_spec.clone(), &c)
                .await
                .map(drop),
        ),
        (
            "update_test_case",
            store
                .update_test_case(case.id, case_spec, &c)
                .await
                .map(drop),
        ),
        (
            "delete_test_case",
            store.delete_test_case(case.id, &c).await.map(drop),
        ),
        (
            "create_api_key",
            store.create_api_key(another_key, &c).await.map(drop),
        ),
        (
            "revoke_api_key",
            store.revoke_api_key(key.id, &c).await.map(drop),
        ),
    ];
    for (what, result) in attempts {
        match result {
            Err(e) if e.to_string().contains("audit log refused") => {}
            other => panic!("{what} without its audit entry: {other:?}"),
        }
    }
    assert_eq!(
        snapshot(store, prompt.id).await,
        before,
        "a change whose audit entry failed left a trace"
    );
}
