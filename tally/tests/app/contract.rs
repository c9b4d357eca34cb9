//! The API contract: `/openapi.json` is an OpenAPI 3.1 document that lists every route the
//! application serves (and nothing else), each with a summary, its parameters, its success
//! answer and its security; and every route, called for real, answers bodies that match the
//! schemas it documents — successes and errors alike. Schemas are checked by the independent
//! checker in `common/schema.rs`.
#![allow(clippy::unwrap_used)]

use crate::common;
#[path = "../common/schema.rs"]
mod schema;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

/// The schema documented for answering `status` to `method path`, or the `default` one.
fn documented<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let responses = &doc["paths"][path][method.to_ascii_lowercase()]["responses"];
    let response = responses
        .get(status.to_string())
        .filter(|r| !r.is_null())
        .unwrap_or(&responses["default"]);
    &response["content"]["application/json"]["schema"]
}

struct Checker {
    doc: Value,
    exercised: BTreeSet<(String, String)>,
    app: TestApp,
}

impl Checker {
    /// Calls `method template` (with `{…}` filled from `fill`), and checks the body against the
    /// schema documented for the status it got. Returns the status and body.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        fill: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut path = template.to_string();
        for (k, v) in fill {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        let (status, answer) = self.app.send(method, &path, body).await;
        let path_only = template.split('?').next().unwrap();
        let schema = documented(&self.doc, method, path_only, status);
        assert!(
            !schema.is_null(),
            "{method} {path_only} answered {status}, which the contract does not describe"
        );
        let wrong = schema::violations(&self.doc, schema, &answer);
        assert!(
            wrong.is_empty(),
            "{method} {path} answered {status} off its contract: {wrong:?}\n{answer}"
        );
        if (200..300).contains(&status) {
            self.exercised
                .insert((method.to_string(), path_only.to_string()));
        }
        (status, answer)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_lists_every_route_and_answers_match_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let r = reqwest::get(app.url("/openapi.json")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the contract needs no key");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    // Every served route is documented, and only those.
    let served: BTreeSet<(String, String)> = app
        .routes
        .iter()
        .map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.clone()))
        .collect();
    let mut listed = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            listed.insert((method.clone(), path.clone()));
            let summary = op["summary"].as_str().unwrap_or("");
            assert!(!summary.is_empty(), "{method} {path} has no summary");
            let ok = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|s| s.starts_with('2'));
            assert!(ok, "{method} {path} documents no success answer");
            for param in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == param && p["in"] == "path"),
                    "{method} {path}: path parameter {param} undocumented"
                );
            }
            let public = ["/healthz", "/readyz", "/openapi.json"].contains(&path.as_str());
            assert_eq!(
                op["security"] == json!([]),
                public,
                "{method} {path}: security {}",
                op["security"]
            );
        }
    }
    assert_eq!(
        listed, served,
        "documented routes differ from served routes"
    );
    assert!(served.len() >= 50, "{}", served.len());

    let mut c = Checker {
        doc,
        exercised: BTreeSet::new(),
        app,
    };
    let events: Vec<Value> = corpus(300, 7).iter().map(|s| s.json()).collect();
    let (status, _) = c.call("POST", "/v1/events", &[], Some(json!(events))).await;
    assert_eq!(status, 200);
    let scores = corpus_scores(&corpus(300, 7));
    let (status, _) = c.call("POST", "/v1/scores", &[], Some(json!(scores))).await;
    assert_eq!(status, 200);
    c.app.wait_projected().await;

    let a = |p: &str| format!("{API}{p}");
    // Writes, in an order that leaves something for every read.
    let (_, f) = c
        .call(
            "POST",
            &a("/features"),
            &[],
            Some(json!({"name": "contract-feature"})),
        )
        .await;
    assert_eq!(f["data"]["name"], "contract-feature");
    c.call(
        "PUT",
        &a("/features/{name}"),
        &[("name", "contract-feature")],
        Some(json!({"description": "d"})),
    )
    .await;
    c.call(
        "POST",
        &a("/providers"),
        &[],
        Some(json!({"name": "contract-provider", "type": "custom"})),
    )
    .await;
    c.call(
        "PUT",
        &a("/providers/{name}"),
        &[("name", "contract-provider")],
        Some(json!({"status": "inactive"})),
    )
    .await;
    let (_, m1) = c
        .call(
            "POST",
            &a("/models"),
            &[],
            Some(json!({"name": "c-1", "provider": "contract-provider"})),
        )
        .await;
    let (_, m2) = c
        .call(
            "POST",
            &a("/models"),
            &[],
            Some(json!({"name": "c-2", "provider": "contract-provider"})),
        )
        .await;
    let m1 = m1["data"]["id"].as_str().unwrap().to_string();
    let m2 = m2["data"]["id"].as_str().unwrap().to_string();
    c.call(
        "PUT",
        &a("/models/{id}"),
        &[("id", &m2)],
        Some(json!({"status": "beta"})),
    )
    .await;
    c.call(
        "POST",
        &a("/models/{id}/prices"),
        &[("id", &m1)],
        Some(json!({"effective_from": "2026-01-01T00:00:00Z", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2})),
    )
    .await;
    let (status, _) = c
        .call(
            "POST",
            &a("/models/{id}/reprice?from=2026-01-01T00:00:00Z"),
            &[("id", &m1)],
            None,
        )
        .await;
    assert_eq!(status, 202);
    for m in [&m1, &m2] {
        c.call(
            "POST",
            &a("/models/{id}/deploy"),
            &[("id", m)],
            Some(json!({"feature": "contract-feature", "environment": "production"})),
        )
        .await;
    }
    c.call(
        "POST",
        &a("/features/{name}/models"),
        &[("name", "contract-feature")],
        Some(json!({"model": m1, "environment": "staging"})),
    )
    .await;
    c.call(
        "POST",
        &a("/features/{name}/rollback"),
        &[("name", "contract-feature")],
        Some(json!({"environment": "production"})),
    )
    .await;
    let (_, p) = c
        .call("POST", &a("/prompts"), &[], Some(json!({"name": "contract-prompt", "feature": "contract-feature", "content": "Hi {{who}}"})))
        .await;
    let pid = p["data"]["prompt"]["id"].as_str().unwrap().to_string();
    let (created, _) = c
        .call(
            "PUT",
            &a("/prompts/{id}"),
            &[("id", &pid)],
            Some(json!({"content": "Hello {{who}}"})),
        )
        .await;
    assert_eq!(created, 201, "new content is a new version");
    // The same content again answers the latest version with 200, a documented answer too.
    let (again, body) = c
        .call(
            "PUT",
            &a("/prompts/{id}"),
            &[("id", &pid)],
            Some(json!({"content": "Hello {{who}}"})),
        )
        .await;
    assert_eq!((again, &body["data"]["version"]), (200, &json!(2)));
    c.call(
        "POST",
        &a("/prompts/{id}/versions/{version}/status"),
        &[("id", &pid), ("version", "2")],
        Some(json!({"status": "approved"})),
    )
    .await;
    c.call(
        "POST",
        &a("/prompts/{id}/versions/{version}/activate"),
        &[("id", &pid), ("version", "2")],
        None,
    )
    .await;
    let (status, tried) = c
        .call(
            "POST",
            &a("/prompts/{id}/test"),
            &[("id", &pid)],
            Some(json!({"variables": {"who": "Ada"}})),
        )
        .await;
    assert_eq!(
        (status, tried["data"]["rendered"].as_str()),
        (200, Some("Hello Ada"))
    );
    let (_, b) = c
        .call(
            "POST",
            &a("/budgets"),
            &[],
            Some(
                json!({"name": "contract", "scope": "global", "period": "daily", "amount_usd": 10}),
            ),
        )
        .await;
    let bid = b["data"]["id"].as_str().unwrap().to_string();
    c.call(
        "PUT",
        &a("/budgets/{id}"),
        &[("id", &bid)],
        Some(json!({"amount_usd": "12.5"})),
    )
    .await;
    let (_, tc) = c
        .call(
            "POST",
            &a("/test-cases"),
            &[],
            Some(json!({"name": "contract", "prompt_id": pid, "variables": {"who": "Ada"}, "check": "contains", "expected": "Ada"})),
        )
        .await;
    let tcid = tc["data"]["id"].as_str().unwrap().to_string();
    c.call(
        "PUT",
        &a("/test-cases/{id}"),
        &[("id", &tcid)],
        Some(json!({"check": "regex", "expected": "^Hi"})),
    )
    .await;
    // A run of it on a local stand-in provider, followed until it finished.
    let (base_url, _) = common::standin::stand_in().await;
    std::env::set_var(common::standin::KEY_VAR, common::standin::KEY);
    c.call(
        "POST",
        &a("/providers"),
        &[],
        Some(
            json!({"name": "contract-standin", "type": "custom", "base_url": base_url,
                    "api_key_env": common::standin::KEY_VAR}),
        ),
    )
    .await;
    let (_, standin) = c
        .call(
            "POST",
            &a("/models"),
            &[],
            Some(json!({"name": "standin-1", "provider": "contract-standin"})),
        )
        .await;
    let standin = standin["data"]["id"].as_str().unwrap().to_string();
    let (status, run) = c
        .call(
            "POST",
            &a("/test-cases/execute"),
            &[],
            Some(json!({"test_case_ids": [tcid], "models": [standin]})),
        )
        .await;
    assert_eq!(status, 202, "{run}");
    let run_id = run["data"]["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, run) = c
            .call("GET", &a("/test-runs/{id}"), &[("id", &run_id)], None)
            .await;
        if run["data"]["status"] == "finished" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, e) = c
        .call(
            "POST",
            &a("/experiments"),
            &[],
            Some(json!({"name": "contract", "feature": "contract-feature", "experiment_type": "prompt_testing",
                "variants": [{"name": "a", "traffic_percent": 50}, {"name": "b", "traffic_percent": 50}]})),
        )
        .await;
    let eid = e["data"]["id"].as_str().unwrap().to_string();
    c.call(
        "POST",
        &a("/experiments/{id}/status"),
        &[("id", &eid)],
        Some(json!({"status": "running"})),
    )
    .await;
    let (_, k) = c
        .call(
            "POST",
            &a("/api-keys"),
            &[],
            Some(json!({"name": "contract", "role": "viewer"})),
        )
        .await;
    let kid = k["data"]["id"].as_str().unwrap().to_string();

    // Every read.
    let reads: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/healthz", vec![]),
        ("/readyz", vec![]),
        ("/openapi.json", vec![]),
        ("/v1/schema/usage-event", vec![]),
        ("/v1/schema/score", vec![]),
        ("/api/platform/ai-management/overview", vec![]),
        ("/api/platform/ai-management/events", vec![]),
        ("/api/platform/ai-management/features", vec![]),
        (
            "/api/platform/ai-management/features/{name}",
            vec![("name", "contract-feature")],
        ),
        (
            "/api/platform/ai-management/features/{name}/metrics",
            vec![("name", "chatbot")],
        ),
        (
            "/api/platform/ai-management/features/{name}/models",
            vec![("name", "contract-feature")],
        ),
        (
            "/api/platform/ai-management/models/{id}/performance",
            vec![("id", &m1)],
        ),
        (
            "/api/platform/ai-management/features/{name}/status",
            vec![("name", "chatbot")],
        ),
        (
            "/api/platform/ai-management/features/{name}/deployments",
            vec![("name", "contract-feature")],
        ),
        ("/api/platform/ai-management/analytics/spending", vec![]),
        ("/api/platform/ai-management/analytics/usage", vec![]),
        ("/api/platform/ai-management/analytics/performance", vec![]),
        ("/api/platform/ai-management/providers", vec![]),
        (
            "/api/platform/ai-management/providers/{name}",
            vec![("name", "contract-provider")],
        ),
        (
            "/api/platform/ai-management/providers/{name}/models",
            vec![("name", "contract-provider")],
        ),
        (
            "/api/platform/ai-management/providers/{name}/health",
            vec![("name", "openai")],
        ),
        ("/api/platform/ai-management/models", vec![]),
        ("/api/platform/ai-management/models/{id}", vec![("id", &m1)]),
        (
            "/api/platform/ai-management/models/{id}/prices",
            vec![("id", &m1)],
        ),
        (
            "/api/platform/ai-management/models/{id}/reprices",
            vec![("id", &m1)],
        ),
        ("/api/platform/ai-management/deployments", vec![]),
        ("/api/platform/ai-management/prompts", vec![]),
        (
            "/api/platform/ai-management/prompts/{id}",
            vec![("id", &pid)],
        ),
        (
            "/api/platform/ai-management/prompts/{id}/versions",
            vec![("id", &pid)],
        ),
        (
            "/api/platform/ai-management/prompts/{id}/metrics",
            vec![("id", &pid)],
        ),
        ("/api/platform/ai-management/budgets", vec![]),
        (
            "/api/platform/ai-management/budgets/{id}",
            vec![("id", &bid)],
        ),
        (
            "/api/platform/ai-management/budgets/{id}/status",
            vec![("id", &bid)],
        ),
        ("/api/platform/ai-management/analytics/budgets", vec![]),
        ("/api/platform/ai-management/experiments", vec![]),
        (
            "/api/platform/ai-management/experiments/{id}",
            vec![("id", &eid)],
        ),
        (
            "/api/platform/ai-management/experiments/{id}/results",
            vec![("id", &eid)],
        ),
        ("/api/platform/ai-management/test-cases", vec![]),
        ("/api/platform/ai-management/test-runs", vec![]),
        (
            "/api/platform/ai-management/test-cases/{id}",
            vec![("id", &tcid)],
        ),
        ("/api/platform/ai-management/api-keys", vec![]),
        ("/api/platform/ai-management/audit", vec![]),
    ];
    for (template, fill) in &reads {
        let (status, body) = c.call("GET", template, fill, None).await;
        assert_eq!(status, 200, "GET {template}: {body}");
    }
    let r = c
        .app
        .client
        .get(c.app.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        c.doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
            .get("text/plain; version=0.0.4")
            .is_some(),
        "metrics are documented as Prometheus text"
    );
    c.exercised.insert(("GET".into(), "/metrics".into()));
    let stream = a("/events/stream");
    let r = c.app.client.get(c.app.url(&stream)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let media = &c.doc["paths"][&stream]["get"]["responses"]["200"]["content"];
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
            && media.get("text/event-stream").is_some(),
        "the stream is documented as what it is: {media}"
    );
    drop(r);
    c.exercised.insert(("GET".into(), stream));

    // Errors match the shared error schema too.
    for (method, template, body, status) in [
        ("GET", a("/features/{name}"), None, 404),
        (
            "POST",
            a("/features"),
            Some(json!({"name": "Bad Name"})),
            422,
        ),
        (
            "POST",
            a("/models/{id}/deploy"),
            Some(json!({"feature": "nope", "environment": "production"})),
            422,
        ),
        ("DELETE", a("/models/{id}"), None, 409),
        ("GET", a("/providers?limit=0"), None, 400),
    ] {
        let fill = [("name", "nope"), ("id", m1.as_str())];
        let (got, answer) = c.call(method, &template, &fill, body).await;
        assert_eq!(got, status, "{method} {template}: {answer}");
    }
    let r = reqwest::get(c.app.url(&a("/overview"))).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let answer: Value = r.json().await.unwrap();
    let wrong = schema::violations(
        &c.doc,
        documented(&c.doc, "GET", &a("/overview"), 401),
        &answer,
    );
    assert!(wrong.is_empty(), "{wrong:?}");

    // Alerting: a channel (its test answers how the unreachable receiver took it), a rule, and
    // an alert recorded as the evaluator records one.
    let (_, ch) = c
        .call(
            "POST",
            &a("/notification-channels"),
            &[],
            Some(json!({"name": "contract", "type": "webhook", "url": "http://127.0.0.1:9/hook"})),
        )
        .await;
    let chid = ch["data"]["id"].as_str().unwrap().to_string();
    let (status, tried) = c
        .call(
            "POST",
            &a("/notification-channels/{id}/test"),
            &[("id", &chid)],
            None,
        )
        .await;
    assert_eq!(
        (status, tried["data"]["delivered"].clone()),
        (200, json!(false))
    );
    c.call("GET", &a("/notification-channels"), &[], None).await;
    let (_, rule) = c
        .call(
            "POST",
            &a("/alert-rules"),
            &[],
            Some(
                json!({"name": "contract", "metric": "latency_p95_ms", "comparator": "gt",
                        "threshold": 2500, "window": "15m", "channels": [chid]}),
            ),
        )
        .await;
    let rid = rule["data"]["id"].as_str().unwrap().to_string();
    c.call("GET", &a("/alert-rules"), &[], None).await;
    c.call("GET", &a("/alert-rules/{id}"), &[("id", &rid)], None)
        .await;
    c.call(
        "PUT",
        &a("/alert-rules/{id}"),
        &[("id", &rid)],
        Some(json!({"for_seconds": 300, "severity": "critical"})),
    )
    .await;
    let alert = {
        use tally_domain::alerting::{Alert, AlertKind, AlertState, Transition};
        let now = chrono::Utc::now();
        let alert = Alert {
            id: uuid::Uuid::now_v7(),
            kind: AlertKind::Rule,
            rule_id: Some(rid.parse().unwrap()),
            budget_id: None,
            key: "contract".into(),
            name: "contract".into(),
            state: AlertState::Firing,
            severity: tally_domain::config::Severity::Critical,
            labels: [("rule".to_string(), "contract".to_string())].into(),
            value: 3000.0,
            threshold: 2500.0,
            summary: "latency_p95_ms is 3000".into(),
            started_at: now,
            firing_at: Some(now),
            resolved_at: None,
            acknowledged_by: None,
            acknowledged_at: None,
            updated_at: now,
            deliveries: vec![],
        };
        let recorded = c
            .app
            .stores
            .config
            .record_transition(&Transition {
                alert: alert.clone(),
                from: None,
                deliver_to: vec![chid.parse().unwrap()],
            })
            .await
            .unwrap();
        assert!(recorded);
        alert.id.to_string()
    };
    let (_, listed) = c
        .call(
            "GET",
            &a("/analytics/alerts?state=firing&limit=5"),
            &[],
            None,
        )
        .await;
    assert!(!listed["data"][0]["deliveries"]
        .as_array()
        .unwrap()
        .is_empty());
    c.call(
        "POST",
        &a("/alerts/{id}/acknowledge"),
        &[("id", &alert)],
        None,
    )
    .await;

    // Deletes last.
    c.call("DELETE", &a("/test-cases/{id}"), &[("id", &tcid)], None)
        .await;
    c.call("DELETE", &a("/alert-rules/{id}"), &[("id", &rid)], None)
        .await;
    c.call(
        "DELETE",
        &a("/notification-channels/{id}"),
        &[("id", &chid)],
        None,
    )
    .await;
    c.call("DELETE", &a("/budgets/{id}"), &[("id", &bid)], None)
        .await;
    c.call("DELETE", &a("/api-keys/{id}"), &[("id", &kid)], None)
        .await;
    let (_, spare) = c
        .call(
            "POST",
            &a("/models"),
            &[],
            Some(json!({"name": "c-3", "provider": "contract-provider"})),
        )
        .await;
    let spare = spare["data"]["id"].as_str().unwrap().to_string();
    c.call("DELETE", &a("/models/{id}"), &[("id", &spare)], None)
        .await;
    c.call(
        "POST",
        &a("/providers"),
        &[],
        Some(json!({"name": "spare", "type": "custom"})),
    )
    .await;
    c.call(
        "DELETE",
        &a("/providers/{name}"),
        &[("name", "spare")],
        None,
    )
    .await;
    c.call("POST", &a("/features"), &[], Some(json!({"name": "spare"})))
        .await;
    c.call("DELETE", &a("/features/{name}"), &[("name", "spare")], None)
        .await;

    let served_upper: BTreeSet<(String, String)> = c
        .app
        .routes
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    let missed: Vec<_> = served_upper.difference(&c.exercised).collect();
    assert!(
        missed.is_empty(),
        "routes never answered successfully here: {missed:?}"
    );
    c.app.stop().await;
}

/// The parameters' types as documented, for a few routes, written out by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_documented_with_their_real_types() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let doc: Value = reqwest::get(app.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let param = |method: &str, path: &str, name: &str| -> Value {
        doc["paths"][format!("{API}{path}")][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path}: no parameter {name}"))
            .clone()
    };
    let spending = |name: &str| param("get", "/analytics/spending", name);
    assert_eq!(
        spending("time_range")["schema"]["enum"],
        json!(["5m", "15m", "1h", "24h", "7d", "30d"])
    );
    assert_eq!(spending("from")["schema"]["format"], "date-time");
    assert_eq!(spending("to")["schema"]["format"], "date-time");
    assert_eq!(
        spending("environment")["schema"]["enum"],
        json!(["development", "staging", "production"])
    );
    let group_by = spending("group_by");
    assert_eq!(group_by["style"], "form");
    assert_eq!(group_by["explode"], false);
    assert_eq!(
        group_by["schema"]["items"]["enum"],
        json!([
            "feature",
            "provider",
            "model",
            "environment",
            "prompt_id",
            "prompt_version",
            "experiment_id",
            "variant",
            "day"
        ])
    );
    let limit = param("get", "/models", "limit");
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(1000))
    );
    let sort = param("get", "/models", "sort")["schema"]["enum"].clone();
    for s in ["name", "-name", "created_at", "-created_at"] {
        assert!(sort.as_array().unwrap().contains(&json!(s)), "{s}: {sort}");
    }
    assert_eq!(
        param("get", "/features", "registered")["schema"]["enum"],
        json!(["true", "false"])
    );
    assert_eq!(
        param("get", "/models/{id}", "id")["schema"]["format"],
        "uuid"
    );
    let slug = param("get", "/features/{name}/metrics", "name")["schema"]["pattern"].clone();
    assert_eq!(slug, "^[a-z0-9][a-z0-9._:/-]{0,127}$");
    assert_eq!(
        param("post", "/models/{id}/reprice", "from")["required"],
        true
    );
    app.stop().await;
}

/// What the contract declares, the server takes: every documented value of every enumerated
/// query parameter, and both bounds of every bounded integer one, sent alone to each JSON route
/// without path parameters, are answered without a 400 — and one past an upper bound is a 400
/// naming the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_parameter_value_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let doc: Value = reqwest::get(app.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut tried = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let Some(op) = ops.get("get") else { continue };
        let json_answer = op["responses"]["200"]["content"]
            .get("application/json")
            .is_some();
        if path.contains('{') || !json_answer {
            continue;
        }
        for p in op["parameters"].as_array().cloned().unwrap_or_default() {
            let name = p["name"].as_str().unwrap();
            let schema = &p["schema"];
            let mut values: Vec<(String, bool)> = Vec::new();
            let listed = schema["enum"]
                .as_array()
                .or_else(|| schema["items"]["enum"].as_array());
            for v in listed.into_iter().flatten() {
                values.push((v.as_str().unwrap().to_string(), true));
            }
            if schema["type"] == "integer" {
                if let Some(min) = schema["minimum"].as_u64() {
                    values.push((min.to_string(), true));
                }
                if let Some(max) = schema["maximum"].as_u64().filter(|m| *m < 1 << 53) {
                    values.push((max.to_string(), true));
                    values.push(((max + 1).to_string(), false));
                }
            }
            for (value, valid) in values {
                let url = format!("{path}?{name}={value}");
                let (status, body) = app.send("GET", &url, None).await;
                tried += 1;
                if valid {
                    assert_ne!(status, 400, "GET {url}: documented as valid: {body}");
                } else {
                    assert_eq!(status, 400, "GET {url}: beyond the documented bound");
                    assert_eq!(body["error"]["field"], name, "GET {url}: {body}");
                }
            }
        }
    }
    assert!(tried > 100, "only {tried} requests");
    app.stop().await;
}
