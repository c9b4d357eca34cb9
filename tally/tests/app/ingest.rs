//! Ingest: bad input gets a clear 4xx naming the field, and never disturbs what was accepted.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use serde_json::{json, Value};

fn good(id: &str) -> Value {
    json!({"event_id": id, "occurred_at": "2026-03-10T11:59:00Z", "feature": "chatbot", "model": "gpt-4o",
           "provider": "openai", "environment": "production", "operation": "chat", "status": "success",
           "latency_ms": 100, "input_tokens": 10, "output_tokens": 5})
}

async fn chatbot_requests(app: &TestApp) -> u64 {
    app.wait_projected().await;
    app.data(&format!("{API}/features/chatbot/metrics?time_range=1h"))
        .await["usage"]["total_requests"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.max_body_bytes = 4096;
    s.max_batch_events = 5;
    let app = TestApp::start_with(s).await;
    seed_config(&app.stores).await;
    let (status, _) = app.post(&[good("a"), good("b")]).await;
    assert_eq!(status, 200);
    assert_eq!(chatbot_requests(&app).await, 2);

    // a mixed batch keeps the good events and names each bad one
    let mut bad_status = good("c");
    bad_status["status"] = json!("exploded");
    let mut future = good("d");
    future["occurred_at"] = json!("2026-03-10T12:10:00Z");
    let mut missing = good("e");
    missing.as_object_mut().unwrap().remove("model");
    let (status, body) = app.post(&[good("f"), bad_status, future, missing]).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(
        (d["accepted"].as_u64(), d["rejected"].as_u64()),
        (Some(1), Some(3))
    );
    let errors: Vec<(u64, &str)> = d["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        vec![(1, "status"), (2, "occurred_at"), (3, "model")]
    );
    assert!(d["errors"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("future"));

    // all rejected: 422 with the per-event reasons
    let mut old = good("g");
    old["occurred_at"] = json!("2025-01-01T00:00:00Z");
    let (status, body) = app.post(&[old]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "all_events_rejected");
    assert_eq!(body["error"]["field"], "occurred_at");
    assert!(body["data"]["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("retention"));

    // whole-body problems
    for (body, content_type, expected, code) in [
        (
            b"[{\"event_id\": ".to_vec(),
            "application/json",
            400,
            "invalid_body",
        ),
        (
            b"{\"event_id\": \"x\"}".to_vec(),
            "application/json",
            400,
            "invalid_body",
        ),
        (b"[]".to_vec(), "application/json", 400, "invalid_body"),
        (
            b"event_id=x".to_vec(),
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        (vec![b' '; 5000], "application/json", 413, "body_too_large"),
        (
            serde_json::to_vec(&vec![good("h"); 6]).unwrap(),
            "application/json",
            413,
            "too_many_events",
        ),
    ] {
        let (status, reply) = app.post_raw(body, content_type).await;
        assert_eq!(status, expected, "{reply}");
        assert_eq!(reply["error"]["code"], code, "{reply}");
        assert!(reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    // NDJSON works, one event per line
    let ndjson = format!("{}\n{}\n", good("i"), good("j"));
    let (status, reply) = app
        .post_raw(ndjson.into_bytes(), "application/x-ndjson")
        .await;
    assert_eq!((status, reply["data"]["accepted"].as_u64()), (200, Some(2)));

    // exactly the accepted events are counted: a, b, f, i, j
    assert_eq!(chatbot_requests(&app).await, 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_schema_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let (status, schema) = app.get("/v1/schema/usage-event").await;
    assert_eq!(status, 200);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in [
        "event_id",
        "occurred_at",
        "feature",
        "model",
        "provider",
        "environment",
        "operation",
        "status",
        "latency_ms",
        "input_tokens",
        "output_tokens",
    ] {
        assert!(
            required.contains(&field),
            "{field} should be required: {required:?}"
        );
    }
    assert!(schema["properties"]["cost_usd"].is_object());
    // The projector publishes its lag gauge after its first read (within ~250 ms of start). The
    // recorder is process-wide, so another module's application may have published it first:
    // what this shows is that `/metrics` serves Tally's metrics, not this projector's read.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(metrics.status(), 200);
        if metrics
            .text()
            .await
            .unwrap()
            .contains("tally_projector_lag_events")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus exposition never listed Tally's metrics"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_serves_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let second = tally::Stores::open(&settings(dir.path())).await;
    let message = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("in use by another tally process"),
        "{message}"
    );
    app.stop().await;
    assert!(
        tally::Stores::open(&settings(dir.path())).await.is_ok(),
        "free again once stopped"
    );
}
