//! A local stand-in for an OpenAI-compatible provider (tests never reach the internet).

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The environment variable the stand-in provider's key is read from.
pub const KEY_VAR: &str = "TALLY_TEST_STANDIN_PROVIDER_KEY";
pub const KEY: &str = "standin-secret-123";

/// What the stand-in received: the Authorization header and the body, per call.
pub type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// Starts the stand-in: `POST /v1/chat/completions` answers `echo: <the user message>` with
/// fixed token counts (12 prompt, 2 of them cached, and 7 completion) for model `standin-1`,
/// and a 500 for any other model. Returns its base URL and what it received.
pub async fn stand_in() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let record = record.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                record.lock().unwrap().push((auth.clone(), body.clone()));
                if auth.as_deref() != Some(&format!("Bearer {KEY}")) {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "bad key"}})));
                }
                if body["model"] != "standin-1" {
                    return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": {"message": "model overloaded"}})));
                }
                let text = body["messages"][0]["content"].as_str().unwrap_or("");
                (
                    StatusCode::OK,
                    Json(json!({
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("echo: {text}")}}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 2}},
                    })),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

/// Registers the stand-in at `base_url` as provider `standin` (its key in [`KEY_VAR`], set
/// here) with the models `names`, each priced at `price` when given (the body of
/// `POST /models/{id}/prices`); answers the models' ids.
pub async fn register(
    app: &super::TestApp,
    base_url: &str,
    names: &[&str],
    price: Option<Value>,
) -> Vec<String> {
    use super::API;
    std::env::set_var(KEY_VAR, KEY);
    let post = |path: String, body: Value| async move {
        let (status, answer) = app.send("POST", &format!("{API}{path}"), Some(body)).await;
        assert!(status < 300, "{path}: {answer}");
        answer["data"].clone()
    };
    post(
        "/providers".into(),
        json!({"name": "standin", "type": "custom", "base_url": base_url, "api_key_env": KEY_VAR}),
    )
    .await;
    let mut ids = Vec::new();
    for name in names {
        let model = post(
            "/models".into(),
            json!({"name": name, "provider": "standin"}),
        )
        .await;
        let id = model["id"].as_str().unwrap().to_string();
        if let Some(price) = &price {
            post(format!("/models/{id}/prices"), price.clone()).await;
        }
        ids.push(id);
    }
    ids
}

/// Runs two test cases of a new prompt (feature `runs`) on the stand-in at `base_url` — on
/// `standin-1`, which answers, and `standin-2`, which fails — and answers the run and the
/// usage its calls recorded, without what differs from one run to the next (ids, times,
/// latencies). Moves the app's clock a minute on, so the calls are inside the last hour.
pub async fn test_run_answers(app: &super::TestApp, base_url: &str) -> Value {
    use super::API;
    std::env::set_var(KEY_VAR, KEY);
    let post = |path: String, body: Value| async move {
        let (status, answer) = app.send("POST", &format!("{API}{path}"), Some(body)).await;
        assert!(status < 300, "{path}: {answer}");
        answer["data"].clone()
    };
    post("/features".into(), json!({"name": "runs"})).await;
    let price = json!({"effective_from": "2026-01-01T00:00:00Z", "input_usd_per_mtok": 3, "output_usd_per_mtok": 15});
    let models = register(app, base_url, &["standin-1", "standin-2"], Some(price)).await;
    let prompt = post(
        "/prompts".into(),
        json!({"name": "runs-greeter", "feature": "runs", "content": "Greet {{name}}"}),
    )
    .await;
    let pid = prompt["prompt"]["id"].as_str().unwrap().to_string();
    for (name, who, check, expected) in [
        ("greets Ada", "Ada", "exact", "echo: Greet Ada"),
        ("names Bo", "Bo", "contains", "Ada"),
    ] {
        post(
            "/test-cases".into(),
            json!({"name": name, "prompt_id": pid, "variables": {"name": who}, "check": check, "expected": expected}),
        )
        .await;
    }
    let started = post(
        "/test-cases/execute".into(),
        json!({"prompt_id": pid, "models": models}),
    )
    .await;
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut run = loop {
        let run = app.data(&format!("{API}/test-runs/{id}")).await;
        if run["status"] == "finished" {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for key in ["id", "prompt_id", "created_at", "updated_at", "finished_at"] {
        run[key] = Value::Null;
    }
    for m in run["models"].as_array_mut().unwrap() {
        for key in ["model_id", "latency_p50_ms", "latency_p95_ms"] {
            m[key] = Value::Null;
        }
    }
    for c in run["calls"].as_array_mut().unwrap() {
        for key in [
            "test_case_id",
            "model_id",
            "prompt_id",
            "latency_ms",
            "event_id",
        ] {
            c[key] = Value::Null;
        }
    }
    // The calls' usage events, once projected (4 calls).
    app.clock.set(super::now() + chrono::Duration::minutes(1));
    let usage_path =
        format!("{API}/analytics/usage?time_range=1h&feature=runs&group_by=model,environment");
    let usage = loop {
        let usage = app.data(&usage_path).await;
        if usage["totals"]["requests"] == 4 {
            break usage;
        }
        assert!(std::time::Instant::now() < deadline, "{usage}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    json!({"run": run, "usage": usage})
}
