//! The management API end to end, on the real application: features, providers, models and
//! prices, deployments with rollback, prompts with versions, budgets and experiments — with
//! their listings, their 400/404/409/422 answers, and the audit entries every change leaves
//! (and refused requests do not).
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use serde_json::{json, Value};

fn m(p: &str) -> String {
    format!("{API}{p}")
}

/// Asserts an error answer: status, code and the field it names.
#[track_caller]
fn refused(answer: (u16, Value), status: u16, field: Option<&str>) -> Value {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    let code = body["error"]["code"].as_str().unwrap_or("");
    assert!(!code.is_empty(), "error without a code: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    if let Some(field) = field {
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    body
}

#[track_caller]
fn ok(answer: (u16, Value), status: u16) -> Value {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    body["data"].clone()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_managed_with_clear_errors_and_an_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;

    // ---- features ----
    let created = ok(
        app.send(
            "POST",
            &m("/features"),
            Some(json!({"name": "photo-tagging", "display_name": "Photo tagging", "config": {"max_tags": 5}})),
        )
        .await,
        201,
    );
    assert_eq!(created["status"], "active", "status defaults to active");
    for (body, status, field) in [
        (json!({"name": "photo-tagging"}), 409, None),
        (json!({"name": "Photo Tagging"}), 422, Some("name")),
        (json!({"display_name": "x"}), 422, Some("name")),
        (json!({"name": "x", "colour": "red"}), 422, Some("colour")),
        (
            json!({"name": "x", "status": "broken"}),
            422,
            Some("status"),
        ),
    ] {
        refused(
            app.send("POST", &m("/features"), Some(body)).await,
            status,
            field,
        );
    }
    let (status, _) = app
        .client
        .post(app.url(&m("/features")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 400, "a body that is not JSON is a 400");
    let updated = ok(
        app.send(
            "PUT",
            &m("/features/photo-tagging"),
            Some(json!({"status": "maintenance"})),
        )
        .await,
        200,
    );
    assert_eq!(
        (
            updated["status"].as_str(),
            updated["display_name"].as_str(),
            updated["config"]["max_tags"].as_i64()
        ),
        (Some("maintenance"), Some("Photo tagging"), Some(5)),
        "PUT changes what it is given and keeps the rest"
    );
    refused(
        app.send(
            "PUT",
            &m("/features/photo-tagging"),
            Some(json!({"name": "other"})),
        )
        .await,
        422,
        Some("name"),
    );
    refused(
        app.send("PUT", &m("/features/nope"), Some(json!({}))).await,
        404,
        None,
    );
    refused(app.send("GET", &m("/features/nope"), None).await, 404, None);

    // ---- providers ----
    let acme = json!({"name": "acme", "type": "custom", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "ACME_KEY"});
    let provider = ok(app.send("POST", &m("/providers"), Some(acme)).await, 201);
    assert_eq!(provider["api_key_env"], "ACME_KEY");
    for (body, field) in [
        (
            json!({"name": "leaky", "type": "openai", "api_key": "sk-live-123"}),
            "api_key",
        ),
        (
            json!({"name": "leaky", "type": "openai", "api_key_env": "sk-live-123"}),
            "api_key_env",
        ),
        (json!({"name": "leaky", "type": "azure"}), "type"),
        (
            json!({"name": "leaky", "type": "openai", "base_url": "ftp://x"}),
            "base_url",
        ),
    ] {
        refused(
            app.send("POST", &m("/providers"), Some(body)).await,
            422,
            Some(field),
        );
    }
    ok(
        app.send(
            "POST",
            &m("/providers"),
            Some(json!({"name": "zeta", "type": "openai", "status": "inactive"})),
        )
        .await,
        201,
    );
    let (status, page) = app.send("GET", &m("/providers?type=custom"), None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(names(&page["data"]), vec!["acme"]);
    let (_, page) = app
        .send("GET", &m("/providers?sort=-name&limit=1"), None)
        .await;
    assert_eq!(names(&page["data"]), vec!["zeta"]);
    assert_eq!(
        page["pagination"],
        json!({"total": 2, "limit": 1, "offset": 0})
    );
    let (_, page) = app
        .send("GET", &m("/providers?sort=-name&limit=1&offset=1"), None)
        .await;
    assert_eq!(names(&page["data"]), vec!["acme"]);
    for (query, status, field) in [
        ("/providers?type=azure", 400, Some("type")),
        ("/providers?sort=colour", 400, Some("sort")),
        ("/providers?limit=0", 400, Some("limit")),
        ("/providers?colour=red", 400, Some("colour")),
        ("/providers/leaky", 404, None),
    ] {
        refused(app.send("GET", &m(query), None).await, status, field);
    }
    let (_, every) = app.send("GET", &m("/providers"), None).await;
    assert_eq!(names(&every["data"]), vec!["acme", "zeta"]);
    assert!(
        !every.to_string().contains("sk-live"),
        "no secret ever reaches the store: {every}"
    );

    // ---- models and prices ----
    let model = |name: &str| json!({"name": name, "provider": "acme", "model_type": "llm", "capabilities": ["chat"]});
    let one = ok(
        app.send("POST", &m("/models"), Some(model("acme-1"))).await,
        201,
    );
    let two = ok(
        app.send("POST", &m("/models"), Some(model("acme-2"))).await,
        201,
    );
    let three = ok(
        app.send("POST", &m("/models"), Some(model("acme-3"))).await,
        201,
    );
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    refused(
        app.send("POST", &m("/models"), Some(model("acme-1"))).await,
        409,
        None,
    );
    refused(
        app.send(
            "POST",
            &m("/models"),
            Some(json!({"name": "x", "provider": "nobody"})),
        )
        .await,
        422,
        Some("provider"),
    );
    refused(
        app.send(
            "POST",
            &m("/models"),
            Some(json!({"name": "x", "provider": "acme", "model_type": "audio"})),
        )
        .await,
        422,
        Some("model_type"),
    );
    let (_, page) = app
        .send("GET", &m("/providers/acme/models?sort=-name"), None)
        .await;
    assert_eq!(names(&page["data"]), vec!["acme-3", "acme-2", "acme-1"]);
    refused(
        app.send("GET", &m("/providers/nobody/models"), None).await,
        404,
        None,
    );
    refused(
        app.send("GET", &m("/models/not-a-uuid"), None).await,
        400,
        Some("id"),
    );
    refused(
        app.send(
            "GET",
            &m("/models/0193a6f0-0000-7000-8000-000000000000"),
            None,
        )
        .await,
        404,
        None,
    );
    let deprecated = ok(
        app.send(
            "PUT",
            &m(&format!("/models/{}", id(&three))),
            Some(json!({"status": "deprecated"})),
        )
        .await,
        200,
    );
    assert_eq!(
        (
            deprecated["status"].as_str(),
            deprecated["capabilities"][0].as_str()
        ),
        (Some("deprecated"), Some("chat"))
    );

    let price = ok(
        app.send(
            "POST",
            &m(&format!("/models/{}/prices", id(&one))),
            Some(json!({"effective_from": "2026-01-01T00:00:00Z", "input_usd_per_mtok": "2.5", "output_usd_per_mtok": 10, "cached_input_usd_per_mtok": "1.25"})),
        )
        .await,
        201,
    );
    assert_eq!(
        (
            price["input_per_mtok_micros"].as_i64(),
            price["output_per_mtok_micros"].as_i64(),
            price["cached_input_per_mtok_micros"].as_i64()
        ),
        (Some(2_500_000), Some(10_000_000), Some(1_250_000))
    );
    assert_eq!(price["input_usd_per_mtok"], "2.50");
    refused(
        app.send(
            "POST",
            &m(&format!("/models/{}/prices", id(&one))),
            Some(json!({"effective_from": "2026-02-01T00:00:00Z", "input_usd_per_mtok": "0.0000001", "output_usd_per_mtok": 1})),
        )
        .await,
        422,
        Some("input_usd_per_mtok"),
    );
    refused(
        app.send(
            "POST",
            &m(&format!("/models/{}/prices", id(&one))),
            Some(json!({"effective_from": "2026-01-01T00:00:00Z", "input_usd_per_mtok": 3, "output_usd_per_mtok": 1})),
        )
        .await,
        409,
        None,
    );
    refused(
        app.send(
            "POST",
            &m(&format!("/models/{}/prices", id(&one))),
            Some(json!({"effective_from": "yesterday", "input_usd_per_mtok": 3, "output_usd_per_mtok": 1})),
        )
        .await,
        422,
        Some("effective_from"),
    );
    ok(
        app.send(
            "POST",
            &m(&format!("/models/{}/prices", id(&one))),
            Some(json!({"effective_from": "2027-01-01T00:00:00Z", "input_usd_per_mtok": 2, "output_usd_per_mtok": 8})),
        )
        .await,
        201,
    );
    let detail = app.data(&m(&format!("/models/{}", id(&one)))).await;
    assert_eq!(detail["prices"].as_array().unwrap().len(), 2);
    assert_eq!(
        detail["current_price"]["input_per_mtok_micros"], 2_500_000,
        "the price in force now (2026-03-10), not the future one"
    );

    // ---- deployments and rollback ----
    let deploy = |model: &Value, env: &str| {
        (
            m(&format!("/models/{}/deploy", id(model))),
            json!({"feature": "photo-tagging", "environment": env}),
        )
    };
    let (path, body) = deploy(&one, "production");
    let first = ok(app.send("POST", &path, Some(body)).await, 201);
    assert_eq!(
        (first["model"].as_str(), first["is_active"].as_bool()),
        (Some("acme-1"), Some(true))
    );
    let (path, body) = deploy(&two, "production");
    ok(app.send("POST", &path, Some(body)).await, 201);
    let (path, _) = deploy(&two, "production");
    refused(
        app.send(
            "POST",
            &path,
            Some(json!({"feature": "nope", "environment": "production"})),
        )
        .await,
        422,
        Some("feature"),
    );
    refused(
        app.send(
            "POST",
            &path,
            Some(json!({"feature": "photo-tagging", "environment": "prod"})),
        )
        .await,
        422,
        Some("environment"),
    );
    let restored = ok(
        app.send(
            "POST",
            &m("/features/photo-tagging/rollback"),
            Some(json!({"environment": "production"})),
        )
        .await,
        201,
    );
    assert_eq!(
        restored["model"], "acme-1",
        "rollback restores the previous model"
    );
    refused(
        app.send(
            "POST",
            &m("/features/photo-tagging/rollback"),
            Some(json!({"environment": "staging"})),
        )
        .await,
        409,
        None,
    );
    let feature = app.data(&m("/features/photo-tagging")).await;
    assert_eq!(feature["current_models"]["production"]["model"], "acme-1");
    let history = app
        .data(&m(
            "/features/photo-tagging/deployments?environment=production",
        ))
        .await;
    let models: Vec<(&str, bool)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["model"].as_str().unwrap(),
                a["is_active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        models,
        vec![("acme-1", true), ("acme-2", false), ("acme-1", false)],
        "full history, newest first, one active"
    );
    let (_, page) = app.send("GET", &m("/deployments?limit=2"), None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["pagination"]["total"], 3);
    let (_, page) = app
        .send("GET", &m("/deployments?is_active=true"), None)
        .await;
    assert_eq!(page["data"][0]["model"], "acme-1");
    assert_eq!(page["pagination"]["total"], 1);

    refused(
        app.send("DELETE", &m(&format!("/models/{}", id(&one))), None)
            .await,
        409,
        None,
    );
    refused(
        app.send("DELETE", &m("/features/photo-tagging"), None)
            .await,
        409,
        None,
    );
    refused(
        app.send("DELETE", &m("/providers/acme"), None).await,
        409,
        None,
    );
    ok(
        app.send("DELETE", &m(&format!("/models/{}", id(&three))), None)
            .await,
        200,
    );
    refused(
        app.send("GET", &m(&format!("/models/{}", id(&three))), None)
            .await,
        404,
        None,
    );
    ok(app.send("DELETE", &m("/providers/zeta"), None).await, 200);

    // ---- the audit trail: every change once, refused requests never ----
    let audit = app.data(&m("/audit?limit=1000")).await;
    let mut actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] != "api_key.create")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    actions.reverse();
    assert_eq!(
        actions,
        vec![
            "feature.create",
            "feature.update",
            "provider.create",
            "provider.create",
            "model.create",
            "model.create",
            "model.create",
            "model.update",
            "model_price.create",
            "model_price.create",
            "deployment.create",
            "deployment.create",
            "deployment.rollback",
            "model.delete",
            "provider.delete",
        ]
    );
    let update = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "feature.update")
        .unwrap();
    assert_eq!(
        (
            update["before"]["status"].as_str(),
            update["after"]["status"].as_str(),
            update["resource"].as_str()
        ),
        (
            Some("active"),
            Some("maintenance"),
            Some("feature:photo-tagging")
        )
    );
    assert_eq!(update["actor"], "bootstrap admin");
    let rollback = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "deployment.rollback")
        .unwrap();
    assert_eq!(
        (
            rollback["before"]["model"].as_str(),
            rollback["after"]["model"].as_str()
        ),
        (Some("acme-2"), Some("acme-1"))
    );

    // ---- a change whose audit entry cannot be written does not happen ----
    let config_db = rusqlite::Connection::open(dir.path().join("config.db")).unwrap();
    config_db
        .execute_batch(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
             BEGIN SELECT RAISE(ABORT, 'audit log refused'); END;",
        )
        .unwrap();
    let feature = app.data(&m("/features/photo-tagging")).await;
    let (status, body) = app
        .send(
            "PUT",
            &m("/features/photo-tagging"),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("internal")),
        "{body}"
    );
    assert_eq!(app.data(&m("/features/photo-tagging")).await, feature);
    assert_eq!(app.data(&m("/audit?limit=1000")).await, audit);
    config_db
        .execute_batch("DROP TRIGGER refuse_audit")
        .unwrap();
    ok(
        app.send(
            "PUT",
            &m("/features/photo-tagging"),
            Some(json!({"status": "active"})),
        )
        .await,
        200,
    );
    let latest = app.data(&m("/audit?limit=1")).await;
    assert_eq!(latest[0]["action"], "feature.update");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_budgets_and_experiments_follow_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    ok(
        app.send("POST", &m("/features"), Some(json!({"name": "chat"})))
            .await,
        201,
    );

    // ---- prompts ----
    let undeclared = refused(
        app.send(
            "POST",
            &m("/prompts"),
            Some(json!({"name": "greeter", "feature": "chat", "content": "Hello {{user}}, in {{lang}}", "variables": ["user"]})),
        )
        .await,
        422,
        Some("variables"),
    );
    assert!(
        undeclared["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lang"),
        "{undeclared}"
    );
    refused(
        app.send(
            "POST",
            &m("/prompts"),
            Some(json!({"name": "greeter", "feature": "nope", "content": "Hi"})),
        )
        .await,
        422,
        Some("feature"),
    );
    let created = ok(
        app.send(
            "POST",
            &m("/prompts"),
            Some(json!({"name": "greeter", "feature": "chat", "tags": ["support"], "content": "Hello {{user}}, in {{lang}}"})),
        )
        .await,
        201,
    );
    assert_eq!(
        created["version"]["variables"],
        json!(["user", "lang"]),
        "read from the content"
    );
    assert_eq!(created["version"]["status"], "draft");
    let pid = created["prompt"]["id"].as_str().unwrap().to_string();
    refused(
        app.send(
            "POST",
            &m("/prompts"),
            Some(json!({"name": "greeter", "content": "x"})),
        )
        .await,
        409,
        None,
    );
    let same = app
        .send(
            "PUT",
            &m(&format!("/prompts/{pid}")),
            Some(json!({"content": "Hello {{user}}, in {{lang}}"})),
        )
        .await;
    assert_eq!(
        (same.0, same.1["data"]["version"].as_i64()),
        (200, Some(1)),
        "same content, same version"
    );
    let v2 = ok(
        app.send(
            "PUT",
            &m(&format!("/prompts/{pid}")),
            Some(json!({"content": "Hi {{user}}!", "variables": ["user"]})),
        )
        .await,
        201,
    );
    assert_eq!(v2["version"], 2);
    refused(
        app.send(
            "POST",
            &m(&format!("/prompts/{pid}/versions/2/activate")),
            None,
        )
        .await,
        409,
        None,
    );
    refused(
        app.send(
            "POST",
            &m(&format!("/prompts/{pid}/versions/2/status")),
            Some(json!({"status": "live"})),
        )
        .await,
        422,
        Some("status"),
    );
    refused(
        app.send(
            "POST",
            &m(&format!("/prompts/{pid}/versions/9/status")),
            Some(json!({"status": "review"})),
        )
        .await,
        404,
        None,
    );
    ok(
        app.send(
            "POST",
            &m(&format!("/prompts/{pid}/versions/2/status")),
            Some(json!({"status": "approved"})),
        )
        .await,
        200,
    );
    let active = ok(
        app.send(
            "POST",
            &m(&format!("/prompts/{pid}/versions/2/activate")),
            None,
        )
        .await,
        200,
    );
    assert_eq!(active["is_active"], true);
    let detail = app.data(&m(&format!("/prompts/{pid}"))).await;
    assert_eq!(
        (
            detail["active"]["version"].as_i64(),
            detail["latest"]["version"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let versions = app.data(&m(&format!("/prompts/{pid}/versions"))).await;
    assert_eq!(
        versions[0]["content"], "Hello {{user}}, in {{lang}}",
        "versions are immutable"
    );
    let (_, page) = app.send("GET", &m("/prompts?tag=support"), None).await;
    assert_eq!(names(&page["data"]), vec!["greeter"]);
    let (_, page) = app.send("GET", &m("/prompts?feature=other"), None).await;
    assert_eq!(page["pagination"]["total"], 0);

    // ---- budgets ----
    let budget = ok(
        app.send(
            "POST",
            &m("/budgets"),
            Some(json!({"name": "all of it", "scope": "global", "period": "monthly", "amount_usd": "1500.50"})),
        )
        .await,
        201,
    );
    assert_eq!(
        (
            budget["amount_micros"].as_i64(),
            budget["amount_usd"].as_str(),
            budget["time_zone"].as_str()
        ),
        (Some(1_500_500_000), Some("1500.50"), Some("UTC"))
    );
    assert_eq!(budget["thresholds_percent"], json!([80, 100]));
    for (body, field) in [
        (
            json!({"name": "b", "scope": "global", "period": "monthly", "amount_usd": 5, "time_zone": "Mars/Olympus"}),
            "time_zone",
        ),
        (
            json!({"name": "b", "scope": "feature", "period": "monthly", "amount_usd": 5}),
            "scope_value",
        ),
        (
            json!({"name": "b", "scope": "global", "period": "hourly", "amount_usd": 5}),
            "period",
        ),
        (
            json!({"name": "b", "scope": "global", "period": "daily", "amount_usd": 0}),
            "amount_usd",
        ),
        (
            json!({"name": "b", "scope": "global", "period": "daily", "amount_usd": 5, "thresholds_percent": [100, 80]}),
            "thresholds_percent",
        ),
    ] {
        refused(
            app.send("POST", &m("/budgets"), Some(body)).await,
            422,
            Some(field),
        );
    }
    let bid = budget["id"].as_str().unwrap().to_string();
    let berlin = ok(
        app.send(
            "POST",
            &m("/budgets"),
            Some(json!({"name": "chat weekly", "scope": "feature", "scope_value": "chat", "period": "weekly", "amount_usd": 20, "time_zone": "Europe/Berlin"})),
        )
        .await,
        201,
    );
    let updated = ok(
        app.send(
            "PUT",
            &m(&format!("/budgets/{bid}")),
            Some(json!({"amount_usd": 2000, "thresholds_percent": [50, 90, 100]})),
        )
        .await,
        200,
    );
    assert_eq!(
        (
            updated["name"].as_str(),
            updated["amount_usd"].as_str(),
            updated["thresholds_percent"].clone()
        ),
        (Some("all of it"), Some("2000.00"), json!([50, 90, 100]))
    );
    let finance = tally::keys::create(
        app.stores.config.as_ref(),
        "fin",
        tally_domain::access::Role::Finance,
        now(),
    )
    .await
    .unwrap();
    let r = client_with_key(&finance.key)
        .get(app.url(&m("/budgets?period=weekly")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "finance reads budgets");
    let page: Value = r.json().await.unwrap();
    assert_eq!(names(&page["data"]), vec!["chat weekly"]);
    ok(
        app.send(
            "DELETE",
            &m(&format!("/budgets/{}", berlin["id"].as_str().unwrap())),
            None,
        )
        .await,
        200,
    );
    let (_, page) = app.send("GET", &m("/budgets"), None).await;
    assert_eq!(names(&page["data"]), vec!["all of it"]);

    // ---- experiments ----
    let variants = |a: u32, b: u32| json!([{"name": "control", "traffic_percent": a}, {"name": "candidate", "traffic_percent": b, "config": {"model": "acme-2"}}]);
    refused(
        app.send("POST", &m("/experiments"), Some(json!({"name": "e", "feature": "chat", "experiment_type": "model_comparison", "variants": variants(50, 40)}))).await,
        422,
        Some("variants"),
    );
    refused(
        app.send("POST", &m("/experiments"), Some(json!({"name": "e", "feature": "chat", "experiment_type": "vibes", "variants": variants(50, 50)}))).await,
        422,
        Some("experiment_type"),
    );
    refused(
        app.send("POST", &m("/experiments"), Some(json!({"name": "e", "feature": "chat", "experiment_type": "model_comparison", "variants": [{"name": "a"}]}))).await,
        422,
        Some("variants[0].traffic_percent"),
    );
    let e = ok(
        app.send("POST", &m("/experiments"), Some(json!({"name": "cheaper", "feature": "chat", "experiment_type": "model_comparison", "variants": variants(50, 50)}))).await,
        201,
    );
    assert_eq!(e["status"], "draft");
    let eid = e["id"].as_str().unwrap().to_string();
    let status = |s: &str| {
        (
            m(&format!("/experiments/{eid}/status")),
            json!({"status": s}),
        )
    };
    let (path, body) = status("completed");
    refused(app.send("POST", &path, Some(body)).await, 409, None);
    let (path, body) = status("running");
    let running = ok(app.send("POST", &path, Some(body)).await, 200);
    assert!(
        running["started_at"].is_string() && running["ended_at"].is_null(),
        "{running}"
    );
    let (path, body) = status("completed");
    let done = ok(app.send("POST", &path, Some(body)).await, 200);
    assert!(done["ended_at"].is_string(), "{done}");
    let (path, body) = status("running");
    refused(app.send("POST", &path, Some(body)).await, 409, None);
    let (_, page) = app
        .send(
            "GET",
            &m("/experiments?status=completed&feature=chat"),
            None,
        )
        .await;
    assert_eq!(names(&page["data"]), vec!["cheaper"]);

    let audit = app.data(&m("/audit?limit=1000")).await;
    let mut actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] != "api_key.create")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    actions.reverse();
    assert_eq!(
        actions,
        vec![
            "feature.create",
            "prompt.create",
            "prompt_version.create",
            "prompt_version.status",
            "prompt_version.activate",
            "budget.create",
            "budget.create",
            "budget.update",
            "budget.delete",
            "experiment.create",
            "experiment.status",
            "experiment.status",
        ]
    );
    app.stop().await;
}

/// An event of feature `chat` on `acme/acme-1` at `at` with `status` and `latency_ms`.
fn event(i: usize, at: &str, status: &str, latency_ms: u64) -> Value {
    json!({
        "event_id": format!("{at}-{i}"), "occurred_at": at, "feature": "chat",
        "model": "acme-1", "provider": "acme", "environment": "production",
        "operation": "chat", "status": status, "latency_ms": latency_ms,
        "input_tokens": 10, "output_tokens": 5,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_status_and_provider_health_come_from_recent_events() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    ok(
        app.send(
            "POST",
            &m("/providers"),
            Some(json!({"name": "acme", "type": "custom"})),
        )
        .await,
        201,
    );
    ok(
        app.send("POST", &m("/features"), Some(json!({"name": "chat"})))
            .await,
        201,
    );
    // The clock stands at 12:00:30: the last 15 minutes are 11:46–12:01, the baseline the 24 h
    // before. Baseline: 100 clean requests at 100 ms. Recent: 100 requests at 300 ms, 10
    // errors and 5 timeouts.
    let mut events: Vec<Value> = (0..100)
        .map(|i| event(i, "2026-03-10T11:00:00Z", "success", 100))
        .collect();
    events.extend((0..100).map(|i| {
        let status = match i {
            0..10 => "error",
            10..15 => "timeout",
            _ => "success",
        };
        event(i, "2026-03-10T11:55:00Z", status, 300)
    }));
    let (status, body) = app.post(&events).await;
    assert_eq!(status, 200, "{body}");
    app.wait_projected().await;

    let health = app.data(&m("/providers/acme/health")).await;
    // 100 − 2×10 (errors) − 3×5 (timeouts) − min(20, 20×(3 − 1.5)) (p95 3× its baseline) = 45.
    assert_eq!(
        (health["score"].as_u64(), health["status"].as_str()),
        (Some(45), Some("unhealthy")),
        "{health}"
    );
    assert_eq!(health["reasons"].as_array().unwrap().len(), 3, "{health}");
    assert_eq!(
        (
            health["recent"]["requests"].as_u64(),
            health["baseline"]["requests"].as_u64()
        ),
        (Some(100), Some(100))
    );
    assert_eq!(health["models"]["acme-1"]["errors"], 10);
    let earlier = app
        .data(&m(
            "/providers/acme/health?from=2026-03-10T10:00:00Z&to=2026-03-10T11:30:00Z",
        ))
        .await;
    assert_eq!(
        (earlier["score"].as_u64(), earlier["status"].as_str()),
        (Some(100), Some("healthy")),
        "the clean hour, with no baseline before it: {earlier}"
    );

    let status = app.data(&m("/features/chat/status")).await;
    assert_eq!(
        status["status"], "degraded",
        "15% of requests failed: {status}"
    );
    assert!(
        status["reasons"][0].as_str().unwrap().contains("15.0%"),
        "{status}"
    );
    assert_eq!(
        (status["requests"].as_u64(), status["timeouts"].as_u64()),
        (Some(100), Some(5))
    );
    let idle = app
        .data(&m("/features/chat/status?environment=staging"))
        .await;
    assert_eq!(idle["status"], "idle");
    ok(
        app.send(
            "PUT",
            &m("/features/chat"),
            Some(json!({"status": "maintenance"})),
        )
        .await,
        200,
    );
    let status = app.data(&m("/features/chat/status")).await;
    assert_eq!(status["status"], "maintenance", "{status}");
    refused(
        app.send("GET", &m("/features/nope/status"), None).await,
        404,
        None,
    );
    refused(
        app.send("GET", &m("/providers/nope/health"), None).await,
        404,
        None,
    );
    refused(
        app.send("GET", &m("/providers/acme/health?time_range=2w"), None)
            .await,
        400,
        Some("time_range"),
    );
    app.stop().await;
}
