//! Test cases run across models against a local stand-in provider: every case on every model,
//! each output graded by its case's check, each call recorded as a `development` usage event,
//! and the run's numbers per model computed here from what the stand-in answers.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::standin::{register, stand_in};
use common::*;
use serde_json::{json, Value};

fn m(p: &str) -> String {
    format!("{API}{p}")
}

/// Polls the run until it finished.
async fn finished(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = app.data(&m(&format!("/test-runs/{id}"))).await;
        if run["status"] == "finished" {
            return run;
        }
        assert_eq!(run["status"], "running", "{run}");
        assert!(Instant::now() < deadline, "the run did not finish: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_run_on_every_model_are_graded_counted_and_summed() {
    let (base_url, seen) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let post = |path: &str, body: Value| {
        let app = &app;
        let path = m(path);
        async move { app.send("POST", &path, Some(body)).await }
    };
    assert_eq!(post("/features", json!({"name": "chat"})).await.0, 201);
    // $1 / $2 / $0.50 per million input / output / cached input tokens, for both models.
    let price = json!({"effective_from": "2026-01-01T00:00:00Z", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2, "cached_input_usd_per_mtok": "0.5"});
    let models = register(&app, &base_url, &["standin-1", "standin-2"], Some(price)).await;
    let (good, broken) = (models[0].clone(), models[1].clone());
    let id_of = |body: &Value| body["data"]["id"].as_str().unwrap().to_string();
    let (status, p) = post(
        "/prompts",
        json!({"name": "greeter", "feature": "chat", "content": "Say hello to {{name}}"}),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let pid = p["data"]["prompt"]["id"].as_str().unwrap().to_string();
    let case = |name: &str, who: &str, check: &str, expected: Option<Value>| {
        let mut body =
            json!({"name": name, "prompt_id": pid, "variables": {"name": who}, "check": check});
        if let Some(e) = expected {
            body["expected"] = e;
        }
        body
    };
    let mut cases = Vec::new();
    for body in [
        case(
            "exact",
            "Ada",
            "exact",
            Some(json!("echo: Say hello to Ada")),
        ),
        case("contains", "Bob", "contains", Some(json!("Bob"))),
        case(
            "regex",
            "carol",
            "regex",
            Some(json!("^echo: Say hello to [A-Z]")),
        ),
        case(
            "schema",
            "Dan",
            "json_schema",
            Some(json!({"type": "object"})),
        ),
        case("recorded", "Eve", "none", None),
    ] {
        let (status, created) = post("/test-cases", body).await;
        assert_eq!(status, 201, "{created}");
        cases.push(id_of(&created));
    }

    // Refusals name the field and call nobody.
    let (_, misfit) = post(
        "/test-cases",
        json!({"name": "misfit", "prompt_id": pid, "variables": {"nom": "x"}, "check": "none"}),
    )
    .await;
    let misfit = id_of(&misfit);
    let (_, silent) = post("/providers", json!({"name": "silent", "type": "custom"})).await;
    assert!(silent["data"]["id"].is_string(), "{silent}");
    let unreachable = id_of(
        &post("/models", json!({"name": "quiet-1", "provider": "silent"}))
            .await
            .1,
    );
    for (body, field, words) in [
        (json!({"prompt_id": pid, "models": []}), "models", "1 to 10"),
        (
            json!({"models": [good]}),
            "test_case_ids",
            "give test_case_ids",
        ),
        (
            json!({"test_case_ids": [uuid::Uuid::new_v4()], "models": [good]}),
            "test_case_ids",
            "no test case",
        ),
        (
            json!({"test_case_ids": [misfit], "models": [good]}),
            "test_case_ids",
            "missing: name",
        ),
        (
            json!({"prompt_id": pid, "models": [good], "prompt_version": 9}),
            "prompt_version",
            "no version 9",
        ),
        (
            json!({"prompt_id": pid, "models": [unreachable]}),
            "models",
            "cannot be called",
        ),
        (
            json!({"prompt_id": pid, "models": [good, good]}),
            "models",
            "twice",
        ),
        (
            json!({"prompt_id": pid, "models": [good], "colour": "red"}),
            "colour",
            "",
        ),
    ] {
        let (status, refused) = post("/test-cases/execute", body.clone()).await;
        assert_eq!(
            (status, refused["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}: {refused}"
        );
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains(words),
            "{body}: {refused}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused run calls nobody"
    );

    // Five cases on two models: the stand-in echoes on standin-1 and fails on standin-2.
    let (status, started) = post(
        "/test-cases/execute",
        json!({"test_case_ids": cases, "models": [good, broken]}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["data"]["calls_total"], 10);
    let run_id = started["data"]["id"].as_str().unwrap().to_string();
    let run = finished(&app, &run_id).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        10,
        "every case on every model, once"
    );
    let [echo, failing] = &run["models"].as_array().unwrap()[..] else {
        panic!("two models: {run}")
    };
    // standin-1: exact and contains pass, regex ("carol" is lowercase) and schema (not JSON)
    // fail, the none check is recorded only: 2 of 4 graded. Each call: 10 uncached × $1 +
    // 2 cached × $0.50 + 7 × $2 per million = $0.000025, so $0.000125 for five.
    assert_eq!(echo["model"], "standin-1");
    assert_eq!(
        (
            echo["completed"].as_u64(),
            echo["passed"].as_u64(),
            echo["graded"].as_u64()
        ),
        (Some(5), Some(2), Some(4))
    );
    assert_eq!(echo["pass_rate"], 50.0);
    assert_eq!(
        (
            echo["input_tokens"].as_u64(),
            echo["output_tokens"].as_u64()
        ),
        (Some(60), Some(35))
    );
    assert_eq!(echo["cost_usd"], "0.000125");
    assert_eq!(echo["failures"], 0);
    let p50 = echo["latency_p50_ms"].as_f64().unwrap();
    let p95 = echo["latency_p95_ms"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p95 && p95 < 60_000.0, "{p50} {p95}");
    // standin-2 answers 500 every time: every graded check fails, nothing is billed.
    assert_eq!(
        (
            failing["failures"].as_u64(),
            failing["passed"].as_u64(),
            failing["graded"].as_u64()
        ),
        (Some(5), Some(0), Some(4))
    );
    assert_eq!(failing["pass_rate"], 0.0);
    assert_eq!(failing["cost_usd"], "0.00");

    // Each call's output and verdict.
    let calls = run["calls"].as_array().unwrap();
    let call = |case: &str, model: &str| {
        calls
            .iter()
            .find(|c| c["test_case"] == case && c["model"] == model)
            .unwrap()
    };
    let exact = call("exact", "standin-1");
    assert_eq!(exact["output"], "echo: Say hello to Ada");
    assert_eq!(
        (exact["passed"].as_bool(), exact["status"].as_str()),
        (Some(true), Some("success"))
    );
    assert_eq!(exact["input"], "Say hello to Ada");
    assert_eq!(exact["cost_usd"], "0.000025");
    let regex = call("regex", "standin-1");
    assert_eq!(regex["passed"], false);
    assert!(
        regex["verdict"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{regex}"
    );
    assert_eq!(call("recorded", "standin-1")["passed"], Value::Null);
    let broken_call = call("contains", "standin-2");
    assert_eq!(
        (
            broken_call["status"].as_str(),
            broken_call["passed"].as_bool()
        ),
        (Some("error"), Some(false))
    );
    assert!(
        broken_call["verdict"]
            .as_str()
            .unwrap()
            .contains("model overloaded"),
        "{broken_call}"
    );

    // Every call is a development usage event of the prompt's feature, naming the run (seen
    // a minute later: the calls happened at the frozen clock's now, a window's open end).
    app.wait_projected().await;
    app.clock.set(now() + chrono::Duration::minutes(1));
    let failed = app
        .get(&m(
            "/events?feature=chat&environment=development&status=failed&limit=100",
        ))
        .await
        .1;
    let failed = failed["data"].as_array().unwrap();
    assert_eq!(failed.len(), 5);
    assert!(failed
        .iter()
        .all(|e| e["attributes"]["test_run_id"] == run_id.as_str()
            && e["attributes"]["source"] == "test-run"
            && e["prompt_id"] == pid.as_str()));
    let usage = app
        .data(&m(
            "/analytics/usage?time_range=24h&environment=development&feature=chat",
        ))
        .await;
    let totals = &usage["totals"];
    assert_eq!(
        (
            totals["requests"].as_u64(),
            totals["errors"].as_u64(),
            totals["input_tokens"].as_u64()
        ),
        (Some(10), Some(5), Some(60)),
        "{usage}"
    );

    // The run is listed (newest first, without its calls); a prompt's cases run by prompt_id.
    let (status, again) = post(
        "/test-cases/execute",
        json!({"prompt_id": pid, "models": [good], "prompt_version": 1}),
    )
    .await;
    assert_eq!(status, 422, "the misfit case is the prompt's too: {again}");
    let listed = app.get(&m(&format!("/test-runs?prompt_id={pid}"))).await.1;
    assert_eq!(listed["data"][0]["id"], run_id.as_str());
    assert!(listed["data"][0].get("calls").is_none());
    let (status, _) = app.get(&m("/test-runs/not-a-uuid")).await;
    assert_eq!(status, 400);
    let (status, _) = app
        .get(&m(&format!("/test-runs/{}", uuid::Uuid::new_v4())))
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}
