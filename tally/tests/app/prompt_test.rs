//! `POST /prompts/{id}/test` against a local stand-in for an OpenAI-compatible provider (never
//! the internet): variables are checked, the rendered text reaches the provider with the key
//! from the named environment variable, and the call comes back with output, tokens, latency
//! and exact cost — and is counted as a `development` usage event.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::standin::{stand_in, KEY, KEY_VAR};
use common::*;
use serde_json::{json, Value};

fn m(p: &str) -> String {
    format!("{API}{p}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_is_rendered_tried_on_a_model_and_counted() {
    // The only test of this binary, and set before anything reads the environment.
    std::env::set_var(KEY_VAR, KEY);
    let (base_url, seen) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let send = |method: &'static str, path: String, body: Option<Value>| {
        let app = &app;
        async move { app.send(method, &path, body).await }
    };
    assert_eq!(
        send("POST", m("/features"), Some(json!({"name": "chat"})))
            .await
            .0,
        201
    );
    let provider =
        json!({"name": "standin", "type": "custom", "base_url": base_url, "api_key_env": KEY_VAR});
    assert_eq!(send("POST", m("/providers"), Some(provider)).await.0, 201);
    let (_, good) = send(
        "POST",
        m("/models"),
        Some(json!({"name": "standin-1", "provider": "standin"})),
    )
    .await;
    let (_, bad) = send(
        "POST",
        m("/models"),
        Some(json!({"name": "standin-2", "provider": "standin"})),
    )
    .await;
    let good = good["data"]["id"].as_str().unwrap().to_string();
    let bad = bad["data"]["id"].as_str().unwrap().to_string();
    // $1 / $2 / $0.50 per million input / output / cached input tokens.
    let price = json!({"effective_from": "2026-01-01T00:00:00Z", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2, "cached_input_usd_per_mtok": "0.5"});
    assert_eq!(
        send("POST", m(&format!("/models/{good}/prices")), Some(price))
            .await
            .0,
        201
    );
    let (_, p) = send(
        "POST",
        m("/prompts"),
        Some(json!({"name": "greeter", "feature": "chat", "content": "Say hi to {{name}} in {{ lang }}."})),
    )
    .await;
    let pid = p["data"]["prompt"]["id"].as_str().unwrap().to_string();
    let test = m(&format!("/prompts/{pid}/test"));

    let (status, body) = send(
        "POST",
        test.clone(),
        Some(json!({"variables": {"name": "Ada"}, "model": good})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("variables")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("lang"),
        "{body}"
    );
    let (status, body) = send(
        "POST",
        test.clone(),
        Some(
            json!({"variables": {"name": "Ada", "lang": "French", "tone": "warm"}, "model": good}),
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("variables")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("tone"),
        "{body}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused test calls nobody"
    );

    // Without a model and with no development deployment: rendered only.
    let (status, body) = send(
        "POST",
        test.clone(),
        Some(json!({"variables": {"name": "Ada", "lang": "French"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["rendered"], "Say hi to Ada in French.");
    assert_eq!(body["data"]["sent"], false);

    // Deployed in development, the model is found without naming it.
    let deploy = json!({"feature": "chat", "environment": "development"});
    assert_eq!(
        send("POST", m(&format!("/models/{good}/deploy")), Some(deploy))
            .await
            .0,
        201
    );
    let (status, body) = send(
        "POST",
        test.clone(),
        Some(json!({"variables": {"name": "Ada", "lang": "French"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = &body["data"];
    assert_eq!(r["sent"], true, "{r}");
    assert_eq!(r["output"], "echo: Say hi to Ada in French.");
    assert_eq!(
        (
            r["status"].as_str(),
            r["input_tokens"].as_u64(),
            r["output_tokens"].as_u64(),
            r["cached_input_tokens"].as_u64()
        ),
        (Some("success"), Some(12), Some(7), Some(2))
    );
    assert!(r["latency_ms"].as_f64().unwrap() > 0.0);
    // 10 uncached × $1 + 2 cached × $0.50 + 7 output × $2, per million tokens = $0.000025.
    assert_eq!(r["cost_usd"], "0.000025");
    {
        let seen = seen.lock().unwrap();
        let (auth, sent) = seen.last().unwrap();
        assert_eq!(
            auth.as_deref(),
            Some(format!("Bearer {KEY}").as_str()),
            "the key comes from {KEY_VAR}"
        );
        assert_eq!(sent["model"], "standin-1");
        assert_eq!(sent["messages"][0]["content"], "Say hi to Ada in French.");
    }
    assert!(!body.to_string().contains(KEY), "the key is never answered");

    // A failing provider is reported and counted as an error.
    let (status, body) = send(
        "POST",
        test.clone(),
        Some(json!({"variables": {"name": "Bo", "lang": "Dutch"}, "model": bad})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["data"]["status"].as_str(),
            body["data"]["cost_usd"].as_str()
        ),
        (Some("error"), None)
    );
    assert!(
        body["data"]["error"].as_str().unwrap().contains("500"),
        "{body}"
    );
    let (status, body) = send("POST", test.clone(), Some(json!({"variables": {"name": "Bo", "lang": "Dutch"}, "model": "0193a6f0-0000-7000-8000-000000000000"}))).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("model")),
        "{body}"
    );

    // Both calls are usage events of `development`; production saw nothing.
    app.wait_projected().await;
    let dev = app
        .data(&m("/features/chat/metrics?environment=development"))
        .await;
    assert_eq!(dev["usage"]["total_requests"], 2, "{dev}");
    assert_eq!(dev["realtime"]["error_rate"], 50.0);
    assert_eq!(dev["costs"]["total_cost_usd"], "0.000025");
    assert_eq!(dev["usage"]["input_tokens"], 12);
    let prod = app
        .data(&m("/features/chat/metrics?environment=production"))
        .await;
    assert_eq!(prod["usage"]["total_requests"], 0);
    app.stop().await;
}
