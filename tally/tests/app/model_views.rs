//! The product documents' model and provider views: `GET /models/{id}/performance`,
//! `include_metrics=true` on `/models` and `/providers`, and the feature-centred assignment
//! routes `GET|POST /features/{name}/models` — numbers checked against the events sent.
#![allow(clippy::unwrap_used)]

use crate::common;

use chrono::Duration;
use common::*;
use serde_json::{json, Value};

/// `n` events of `provider/model` in `feature`/`environment` a few minutes before `now()`: the
/// first `failures` failed, each took `ms` and cost `usd` (reported).
fn events(
    tag: &str,
    (provider, model): (&str, &str),
    (feature, environment): (&str, &str),
    n: usize,
    failures: usize,
    ms: u64,
    usd: &str,
) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "event_id": format!("{tag}-{i}"),
                "occurred_at": (now() - Duration::minutes(5) + Duration::seconds(i as i64)).to_rfc3339(),
                "feature": feature, "model": model, "provider": provider,
                "environment": environment, "operation": "chat",
                "status": if i < failures { "error" } else { "success" },
                "latency_ms": ms, "input_tokens": 10, "output_tokens": 2, "cost_usd": usd,
                "user_id": format!("user-{i}"),
            })
        })
        .collect()
}

#[tokio::test]
async fn model_and_provider_views_match_the_events_sent() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let gpt = ("openai", "gpt-4o");
    let mut sent = events("a", gpt, ("chatbot", "production"), 10, 2, 100, "0.01");
    sent.extend(events(
        "b",
        gpt,
        ("photo-tagging", "staging"),
        5,
        0,
        300,
        "0.02",
    ));
    sent.extend(events(
        "c",
        ("anthropic", "claude-3-5-sonnet"),
        ("chatbot", "production"),
        4,
        0,
        50,
        "0.005",
    ));
    let (status, body) = app.post(&sent).await;
    assert_eq!(status, 200, "{body}");
    app.wait_projected().await;
    let gpt_id = app
        .id_where(&format!("{API}/models"), "name", "gpt-4o")
        .await;

    // gpt-4o: 15 requests, 2 failed; (10·100 + 5·300)/15 ms; 10·$0.01 + 5·$0.02 = $0.20.
    let perf = app
        .data(&format!("{API}/models/{gpt_id}/performance"))
        .await;
    let totals = &perf["totals"];
    assert_eq!(totals["usage_count"], 15);
    assert_close(
        totals["success_rate"].as_f64().unwrap(),
        1300.0 / 15.0,
        1e-12,
        "success rate",
    );
    assert_close(
        totals["avg_latency"].as_f64().unwrap(),
        2500.0 / 15.0,
        1e-12,
        "mean latency",
    );
    assert_eq!(totals["total_cost_usd"], "0.20");
    assert_close(
        totals["avg_cost_per_request"].as_f64().unwrap(),
        0.2 / 15.0,
        1e-12,
        "cost per request",
    );
    assert_close(
        totals["latency_p99_ms"].as_f64().unwrap(),
        300.0,
        0.01,
        "p99",
    );
    let breakdown: Vec<(String, String, u64)> = perf["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["feature"].as_str().unwrap().into(),
                b["environment"].as_str().unwrap().into(),
                b["usage_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        breakdown,
        [
            ("chatbot".into(), "production".into(), 10),
            ("photo-tagging".into(), "staging".into(), 5)
        ]
    );
    let series_total: u64 = perf["history"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["throughput"].as_u64().unwrap())
        .sum();
    assert_eq!(series_total, 15, "the time series adds up to the total");
    let staging = app
        .data(&format!(
            "{API}/models/{gpt_id}/performance?environment=staging"
        ))
        .await;
    assert_eq!(staging["totals"]["usage_count"], 5);

    // The model cards carry the same numbers for the same window.
    let (status, listing) = app.get(&format!("{API}/models?include_metrics=true")).await;
    assert_eq!(status, 200, "{listing}");
    let card = listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "gpt-4o")
        .unwrap()["performance_metrics"]
        .clone();
    for field in [
        "usage_count",
        "success_rate",
        "avg_latency",
        "total_cost_usd",
        "latency_p95_ms",
    ] {
        assert_eq!(card[field], totals[field], "{field}");
    }
    assert_eq!(card["total_requests"], 15);
    assert_eq!(card["average_response_time"], totals["avg_latency"]);
    let (_, plain) = app.get(&format!("{API}/models")).await;
    assert!(
        plain["data"][0].get("performance_metrics").is_none(),
        "only when asked"
    );

    // Provider cards: registered models, this month's spend, the health route's score.
    let (status, providers) = app
        .get(&format!("{API}/providers?include_metrics=true"))
        .await;
    assert_eq!(status, 200, "{providers}");
    let openai = providers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "openai")
        .unwrap()
        .clone();
    assert_eq!(openai["model_count"], 1);
    assert_eq!(openai["monthly_spend_usd"], "0.20");
    assert_close(
        openai["uptime"].as_f64().unwrap(),
        1300.0 / 15.0,
        1e-12,
        "uptime",
    );
    let health = app.data(&format!("{API}/providers/openai/health")).await;
    // 100 less twice the 13.33 % error rate.
    assert_eq!(health["score"], 73);
    assert_eq!(openai["health_score"], health["score"]);
    let anthropic = providers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "anthropic")
        .unwrap()
        .clone();
    assert_eq!(
        (
            anthropic["monthly_spend_usd"].as_str(),
            anthropic["health_score"].as_u64()
        ),
        (Some("0.02"), Some(100))
    );

    // The feature-centred assignment routes share the deploy path.
    let (status, body) = app
        .send(
            "POST",
            &format!("{API}/features/chatbot/models"),
            Some(json!({"model": "openai/gpt-4o", "environment": "production"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (
            body["data"]["model"].as_str(),
            body["data"]["is_active"].as_bool()
        ),
        (Some("gpt-4o"), Some(true))
    );
    let (status, body) = app
        .send(
            "POST",
            &format!("{API}/features/chatbot/models"),
            Some(json!({"model_id": gpt_id, "environment": "staging", "is_active": true})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let assigned = app.data(&format!("{API}/features/chatbot/models")).await;
    let envs: Vec<&str> = assigned
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["environment"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["production", "staging"]);
    // gpt-4o in chatbot/production: 10 requests, 2 failed, $0.10.
    let production = &assigned[0]["model"]["performance_metrics"];
    assert_eq!(
        (
            production["total_requests"].as_u64(),
            production["total_cost_usd"].as_str()
        ),
        (Some(10), Some("0.10"))
    );
    assert_close(
        production["success_rate"].as_f64().unwrap(),
        80.0,
        1e-12,
        "success rate in chatbot/production",
    );
    assert_eq!(
        assigned[1]["model"]["performance_metrics"]["total_requests"],
        0
    );
    let deployments = app
        .data(&format!("{API}/deployments?feature=chatbot"))
        .await;
    assert_eq!(
        deployments.as_array().unwrap().len(),
        2,
        "both went through the deploy path"
    );

    // Bad bodies are a 422 naming the field.
    for (body, field) in [
        (json!({"environment": "production"}), "model"),
        (
            json!({"model": "openai/none", "environment": "production"}),
            "model",
        ),
        (
            json!({"model": "openai/gpt-4o", "model_id": gpt_id, "environment": "production"}),
            "model",
        ),
        (
            json!({"model": "openai/gpt-4o", "environment": "moon"}),
            "environment",
        ),
        (
            json!({"model": "openai/gpt-4o", "environment": "production", "is_active": false}),
            "is_active",
        ),
    ] {
        let (status, answer) = app
            .send(
                "POST",
                &format!("{API}/features/chatbot/models"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(answer.to_string().contains(field), "{body}: {answer}");
    }
    let (status, _) = app
        .send(
            "POST",
            &format!("{API}/features/nowhere/models"),
            Some(json!({"model": "openai/gpt-4o", "environment": "production"})),
        )
        .await;
    assert_eq!(status, 404);
    for path in [
        format!("{API}/models/{gpt_id}/performance?time_range=2h"),
        format!("{API}/models?include_metrics=maybe"),
        format!("{API}/providers?include_metrics=true&from=later"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    let (status, _) = app
        .get(&format!(
            "{API}/features?include_metrics=true&time_range=24h"
        ))
        .await;
    assert_eq!(status, 200, "the documents' features call is accepted");
    app.stop().await;
}
