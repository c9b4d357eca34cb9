//! `GET /events/stream`: a live dashboard connects once and is told of feature-metric changes
//! and of alerts firing and resolving, as events arrive.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Reads server-sent events from a response.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// The next event as (kind, data), waiting at most 20 s.
    async fn next(&mut self) -> (String, Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut kind = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(k) = line.strip_prefix("event:") {
                        kind = k.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim());
                    }
                }
                if kind.is_empty() {
                    continue; // a keep-alive comment
                }
                return (kind, serde_json::from_str(&data).unwrap());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event within 20 s");
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .expect("no event within 20 s")
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Skips to the next event of `kind` for which `pick` holds.
    async fn until(&mut self, kind: &str, pick: impl Fn(&Value) -> bool) -> Value {
        loop {
            let (k, data) = self.next().await;
            if k == kind && pick(&data) {
                return data;
            }
        }
    }
}

fn event(i: usize, status: &str) -> Value {
    json!({
        "event_id": format!("{status}-{i}"), "occurred_at": "2026-03-10T11:59:00Z", "feature": "chat",
        "model": "m", "provider": "p", "environment": "production",
        "operation": "chat", "status": status, "latency_ms": 120,
        "input_tokens": 10, "output_tokens": 5,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_pushes_metric_updates_and_alert_changes() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let ok: Vec<Value> = (0..100).map(|i| event(i, "success")).collect();
    assert_eq!(app.post(&ok).await.0, 200);
    app.wait_projected().await;

    let response = app
        .client
        .get(app.url(&format!("{API}/events/stream?interval=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut events = Events {
        response,
        buffer: String::new(),
    };
    let (kind, first) = events.next().await;
    assert_eq!(
        kind, "feature_metrics",
        "the first tick is a snapshot: {first}"
    );
    assert_eq!(
        (
            first["feature"].as_str(),
            first["requests"].as_u64(),
            first["status"].as_str()
        ),
        (Some("chat"), Some(100), Some("healthy"))
    );

    // 50 failures more: 50 of 150 (33 %) failed, the feature turns unhealthy and an alert fires.
    let bad: Vec<Value> = (0..50).map(|i| event(i, "error")).collect();
    assert_eq!(app.post(&bad).await.0, 200);
    app.wait_projected().await;
    let update = events
        .until("feature_metrics", |d| d["requests"] == 150)
        .await;
    assert_eq!(
        (update["errors"].as_u64(), update["status"].as_str()),
        (Some(50), Some("unhealthy"))
    );
    let (kind, alert) = events.next().await;
    assert_eq!(kind, "alert", "{alert}");
    assert_eq!(
        (
            alert["feature"].as_str(),
            alert["state"].as_str(),
            alert["status"].as_str(),
            alert["previous_status"].as_str()
        ),
        (
            Some("chat"),
            Some("firing"),
            Some("unhealthy"),
            Some("healthy")
        )
    );
    assert!(
        alert["reasons"][0].as_str().unwrap().contains("33.3%"),
        "{alert}"
    );

    // 850 successes more: 50 of 1000 (5 %) is still degraded, so the alert stays firing...
    let more: Vec<Value> = (100..950).map(|i| event(i, "success")).collect();
    assert_eq!(app.post(&more).await.0, 200);
    app.wait_projected().await;
    let update = events
        .until("feature_metrics", |d| d["requests"] == 1000)
        .await;
    assert_eq!(update["status"], "degraded");
    // ...and 10 more make it 4.95 %: healthy, the alert resolves.
    let last: Vec<Value> = (950..960).map(|i| event(i, "success")).collect();
    assert_eq!(app.post(&last).await.0, 200);
    app.wait_projected().await;
    let resolved = events.until("alert", |_| true).await;
    assert_eq!(
        (
            resolved["state"].as_str(),
            resolved["status"].as_str(),
            resolved["previous_status"].as_str()
        ),
        (Some("resolved"), Some("healthy"), Some("degraded")),
        "a change between alerting states is no new alert; leaving them resolves it"
    );

    let bad_interval = app.get(&format!("{API}/events/stream?interval=0")).await;
    assert_eq!(bad_interval.0, 400);
    assert_eq!(bad_interval.1["error"]["field"], "interval");
    // Shutting down ends open streams instead of waiting on them.
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("a graceful shutdown does not wait on open streams");
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = events.response.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the stream ended with the server");
}
