//! Budgets and alert rules that tell people: alerts move pending → firing → resolved as
//! Prometheus's do, every transition is stored, and deliveries reach a webhook at least once —
//! retried with backoff, across a restart, signed, with one dedup key per transition. The
//! expected values are worked out from the events the tests send.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// What the receiver was sent: (body, dedup header, signature header).
type Received = Arc<Mutex<Vec<(Value, String, Option<String>)>>>;

/// A webhook receiver that answers 503 to the first `failures` requests, then 200.
async fn receiver(failures: usize) -> (String, Received) {
    let got: Received = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let header =
                    |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
                let mut all = seen.lock().unwrap();
                all.push((
                    serde_json::from_slice(&body).unwrap(),
                    header("tally-dedup-key").unwrap_or_default(),
                    header("tally-signature"),
                ));
                // The signature is checked here, as a receiver would, over the exact bytes.
                if let Some(sig) = header("tally-signature") {
                    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret-for-tests").unwrap();
                    mac.update(&body);
                    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                    assert_eq!(sig, expected, "HMAC of the body");
                }
                if all.len() <= failures {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn alert_settings(dir: &std::path::Path) -> tally::Settings {
    let mut s = settings(dir);
    s.alert_interval_ms = 50;
    s.notification_backoff_ms = 10_000;
    s.notification_backoff_max_ms = 60_000;
    s.notification_max_attempts = 5;
    s
}

fn event(id: &str, occurred: &str, status: &str, cost: &str) -> Value {
    json!({
        "event_id": id, "occurred_at": occurred, "feature": "chatbot",
        "model": "gpt-4o", "provider": "openai", "environment": "production",
        "operation": "chat", "status": status, "latency_ms": 100.0,
        "input_tokens": 1, "output_tokens": 1, "cost_usd": cost,
    })
}

/// Polls `GET /analytics/alerts?{query}` until `done` holds for the list.
async fn alerts_until(app: &TestApp, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = app
            .data(&format!("{API}/analytics/alerts?{query}"))
            .await
            .as_array()
            .unwrap()
            .clone();
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "alerts never got there: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, created) = app.send("POST", &format!("{API}{path}"), Some(body)).await;
    assert_eq!(status, 201, "{path}: {created}");
    created["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_alert_reaches_a_failing_webhook_across_a_restart() {
    // SAFETY of the test: only this test reads this variable.
    std::env::set_var("TALLY_TEST_HOOK_SECRET_A", "s3cret-for-tests");
    let dir = tempfile::tempdir().unwrap();
    let (url, received) = receiver(2).await;
    let app = TestApp::start_with(alert_settings(dir.path())).await;
    app.clock.set(at("2026-03-16T12:00:00Z"));
    let channel = create(
        &app,
        "/notification-channels",
        json!({"name": "ops", "type": "webhook", "url": url, "secret_env": "TALLY_TEST_HOOK_SECRET_A"}),
    )
    .await;
    let budget = create(
        &app,
        "/budgets",
        json!({"name": "chat month", "scope": "feature", "scope_value": "chatbot",
               "period": "monthly", "amount_usd": "10", "thresholds_percent": [50, 100],
               "channels": [channel["id"]]}),
    )
    .await;
    // $6 of $10 on 1 March: 50 % crossed, 100 % not. March has 31 days and 15.5 have passed:
    // the forecast is 12, over the amount — a second alert.
    let (status, _) = app
        .post(&[event("b1", "2026-03-01T10:00:00Z", "success", "6")])
        .await;
    assert_eq!(status, 200);
    app.wait_projected().await;
    let fired = alerts_until(&app, "kind=budget&state=firing", |l| l.len() == 2).await;
    let threshold = fired
        .iter()
        .find(|a| a["labels"]["threshold_percent"] == "50")
        .unwrap();
    assert_eq!(threshold["budget_id"], budget["id"]);
    assert_eq!(threshold["severity"], "warning");
    assert_eq!(threshold["value"], 60.0);
    assert_eq!(threshold["threshold"], 50.0);
    let forecast = fired
        .iter()
        .find(|a| a["labels"]["threshold_percent"] == "forecast")
        .unwrap();
    assert_eq!(forecast["value"], 12.0);
    assert_eq!(forecast["threshold"], 10.0);

    // The first attempts were made at once and refused (503); the next are 10 s off at most.
    let first = alerts_until(&app, "kind=budget", |l| {
        l.iter().all(|a| {
            a["deliveries"][0]["attempts"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
        })
    })
    .await;
    for a in &first {
        let d = &a["deliveries"][0];
        assert_eq!(d["status"], "pending");
        assert_eq!(d["attempts"][0]["status_code"], 503);
    }
    // Restart in the middle of retrying: the outbox is stored.
    app.stop().await;
    let app = TestApp::start_with(alert_settings(dir.path())).await;
    app.clock.set(at("2026-03-16T12:00:11Z"));
    let delivered = alerts_until(&app, "kind=budget", |l| {
        l.iter()
            .all(|a| a["deliveries"][0]["status"] == "delivered")
    })
    .await;
    let total_attempts: usize = delivered
        .iter()
        .map(|a| a["deliveries"][0]["attempts"].as_array().unwrap().len())
        .sum();
    // Two refusals in all, then each transition once.
    assert_eq!(total_attempts, 4);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 4);
    for (body, dedup, signature) in &got {
        assert!(signature.is_some(), "signed");
        assert_eq!(&body["dedup_key"], &json!(dedup));
        assert_eq!(body["transition"], "firing");
        let id = body["alert"]["id"].as_str().unwrap();
        assert_eq!(dedup, &format!("{id}:firing"));
    }
    let mut keys: Vec<&String> = got.iter().map(|(_, d, _)| d).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2, "one dedup key per transition");

    // Raising the amount resolves both (and tells the channel).
    let (status, _) = app
        .send(
            "PUT",
            &format!("{API}/budgets/{}", budget["id"].as_str().unwrap()),
            Some(json!({"amount_usd": "100"})),
        )
        .await;
    assert_eq!(status, 200);
    alerts_until(&app, "kind=budget&state=resolved", |l| l.len() == 2).await;
    alerts_until(&app, "kind=budget&state=resolved", |l| {
        l.iter().all(|a| {
            a["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["transition"] == "resolved" && d["status"] == "delivered")
        })
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_is_pending_for_its_hold_time_fires_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(alert_settings(dir.path())).await;
    app.clock.set(at("2026-03-16T12:00:00Z"));
    let rule = create(
        &app,
        "/alert-rules",
        json!({"name": "chat errors", "metric": "error_rate", "scope": {"feature": "chatbot"},
               "comparator": "gt", "threshold": 10, "window": "5m", "min_requests": 4,
               "for_seconds": 60, "severity": "critical"}),
    )
    .await;
    assert_eq!(rule["min_requests"], 4);
    // 3 requests, 2 failed: 66.7 % but fewer than 4 requests — no data, nothing opens.
    let (status, _) = app
        .post(&[
            event("r1", "2026-03-16T11:58:00Z", "error", "0.01"),
            event("r2", "2026-03-16T11:58:10Z", "timeout", "0.01"),
            event("r3", "2026-03-16T11:58:20Z", "success", "0.01"),
        ])
        .await;
    assert_eq!(status, 200);
    app.wait_projected().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app
        .data(&format!("{API}/analytics/alerts?kind=rule"))
        .await
        .as_array()
        .unwrap()
        .is_empty());
    // A fourth request: 2 of 4 failed, 50 % > 10 %: pending.
    app.post(&[event("r4", "2026-03-16T11:59:00Z", "success", "0.01")])
        .await;
    app.wait_projected().await;
    let pending = alerts_until(&app, "kind=rule", |l| l.len() == 1).await;
    assert_eq!(pending[0]["state"], "pending");
    assert_eq!(pending[0]["value"], 50.0);
    assert_eq!(pending[0]["rule_id"], rule["id"]);
    assert_eq!(pending[0]["labels"]["feature"], "chatbot");
    // 59 s later: still pending. 60 s: firing.
    app.clock.set(at("2026-03-16T12:00:59Z"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.data(&format!("{API}/analytics/alerts?kind=rule")).await[0]["state"],
        "pending"
    );
    app.clock.set(at("2026-03-16T12:01:00Z"));
    let firing = alerts_until(&app, "kind=rule&state=firing", |l| l.len() == 1).await;
    assert_eq!(firing[0]["started_at"], "2026-03-16T12:00:00Z");
    assert_eq!(firing[0]["firing_at"], "2026-03-16T12:01:00Z");
    // The window moves past the failures: 11:58–11:59 are older than 5 minutes at 12:04.
    app.clock.set(at("2026-03-16T12:04:30Z"));
    let resolved = alerts_until(&app, "kind=rule&state=resolved", |l| l.len() == 1).await;
    assert_eq!(resolved[0]["resolved_at"], "2026-03-16T12:04:30Z");
    assert_eq!(resolved[0]["id"], firing[0]["id"]);

    // Acknowledged by the admin key, once.
    let id = resolved[0]["id"].as_str().unwrap();
    let (status, acked) = app
        .send("POST", &format!("{API}/alerts/{id}/acknowledge"), None)
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["data"]["acknowledged_at"], "2026-03-16T12:04:30Z");
    assert!(acked["data"]["acknowledged_by"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn bad_rules_and_channels_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(alert_settings(dir.path())).await;
    let good = json!({"name": "x", "metric": "error_rate", "comparator": "gt",
                      "threshold": 5, "window": "5m"});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    for (body, field) in [
        (with("metric", json!("errors")), "metric"),
        (with("window", json!("2h")), "window"),
        (with("comparator", json!("gte")), "comparator"),
        (with("threshold", json!("NaN")), "threshold"),
        (with("threshold", json!(150)), "threshold"),
        (with("severity", json!("fatal")), "severity"),
        (
            with("channels", json!(["00000000-0000-0000-0000-000000000001"])),
            "channels",
        ),
        (with("scope", json!({"team": "x"})), "scope"),
    ] {
        let (status, answer) = app
            .send("POST", &format!("{API}/alert-rules"), Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body}: {answer}");
        let named = answer["error"]["field"].as_str().unwrap_or_default();
        assert!(named.starts_with(field), "{body}: {answer}");
    }
    for (body, field) in [
        (
            json!({"name": "a", "type": "webhook", "url": "ftp://x"}),
            "url",
        ),
        (
            json!({"name": "a", "type": "pager", "url": "https://x"}),
            "type",
        ),
        (
            json!({"name": "a", "type": "slack", "url": "https://x", "secret_env": "S"}),
            "secret_env",
        ),
        (
            json!({"name": "a", "type": "webhook", "url": "https://x", "secret_env": "my secret"}),
            "secret_env",
        ),
    ] {
        let (status, answer) = app
            .send(
                "POST",
                &format!("{API}/notification-channels"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}");
    }
    // Nothing was stored.
    assert!(app
        .data(&format!("{API}/alert-rules"))
        .await
        .as_array()
        .unwrap()
        .is_empty());
    let (status, answer) = app.get(&format!("{API}/analytics/alerts?state=on")).await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (400, json!("state"))
    );
    app.stop().await;
}

/// The next server-sent event of `kind` whose data satisfies `pick`, within 20 s.
async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
    kind: &str,
    pick: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut k = "";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    k = v.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            if k == kind {
                let value: Value = serde_json::from_str(&data).unwrap();
                if pick(&value) {
                    return value;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, response.chunk())
            .await
            .expect("no such event within 20 s")
            .unwrap()
            .expect("the stream ended");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_transitions_are_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(alert_settings(dir.path())).await;
    app.clock.set(at("2026-03-16T12:00:00Z"));
    let mut stream = app
        .client
        .get(app.url(&format!("{API}/events/stream?interval=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let mut buffer = String::new();
    let rule = create(
        &app,
        "/alert-rules",
        json!({"name": "spend", "metric": "spend_usd", "comparator": "gt", "threshold": 1,
               "window": "1h", "for_seconds": 30}),
    )
    .await;
    app.post(&[event("s1", "2026-03-16T11:30:00Z", "success", "1.5")])
        .await;
    app.wait_projected().await;
    let is_rule = |state: &'static str| {
        let id = rule["id"].clone();
        move |v: &Value| v["kind"] == "rule" && v["rule_id"] == id && v["state"] == state
    };
    let pending = next_event(&mut stream, &mut buffer, "alert", is_rule("pending")).await;
    assert_eq!(pending["value"], 1.5);
    assert_eq!(pending["threshold"], 1.0);
    app.clock.set(at("2026-03-16T12:00:30Z"));
    let firing = next_event(&mut stream, &mut buffer, "alert", is_rule("firing")).await;
    assert_eq!(firing["id"], pending["id"]);
    assert_eq!(firing["firing_at"], "2026-03-16T12:00:30Z");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_alert_resolves_when_its_period_rolls_over() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(alert_settings(dir.path())).await;
    // 23:00 in Berlin on 16 March (UTC+1): the daily period is 16 March 00:00–24:00 local.
    app.clock.set(at("2026-03-16T22:00:00Z"));
    create(
        &app,
        "/budgets",
        json!({"name": "berlin day", "scope": "global", "period": "daily",
               "time_zone": "Europe/Berlin", "amount_usd": "1", "thresholds_percent": [50]}),
    )
    .await;
    // $0.80 at 21:00 local: 80 % crossed; 22 of 24 hours gone, so the forecast is
    // 0.8 × 24 / 22 = 0.8727…, under the amount: one alert.
    app.post(&[event("d1", "2026-03-16T20:00:00Z", "success", "0.8")])
        .await;
    app.wait_projected().await;
    let fired = alerts_until(&app, "kind=budget&state=firing", |l| l.len() == 1).await;
    assert_eq!(fired[0]["labels"]["threshold_percent"], "50");
    assert_eq!(
        fired[0]["labels"]["period_start"],
        "2026-03-16T00:00:00+01:00"
    );
    // Midnight in Berlin is 23:00 UTC: the next period starts with nothing spent.
    app.clock.set(at("2026-03-16T23:00:05Z"));
    let resolved = alerts_until(&app, "kind=budget&state=resolved", |l| l.len() == 1).await;
    assert_eq!(resolved[0]["id"], fired[0]["id"]);
    assert_eq!(resolved[0]["resolved_at"], "2026-03-16T23:00:05Z");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = app
        .data(&format!("{API}/analytics/alerts?kind=budget"))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 1, "nothing new: {all}");
    app.stop().await;
}
