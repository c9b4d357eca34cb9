//! `GET /events` end to end: events sent through ingest (with duplicates) come back from the
//! drill-down exactly once each, newest first, filtered as asked and paged without gaps or
//! repeats; error messages are kept to 1 KiB; bad input is a 400 naming the parameter.
#![allow(clippy::unwrap_used)]

use crate::common;

use chrono::Duration;
use common::*;
use serde_json::{json, Value};

/// Every page of `path` (which has no cursor), following `next_cursor`.
async fn pages(app: &TestApp, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_string(),
        };
        let (status, body) = app.get(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        out.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["pagination"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return out,
        }
    }
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts `got` is `want`, naming the first place they differ (not dumping both lists).
fn same(got: &[String], want: &[String], what: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}: {} events, {} wanted; first difference at {i}: {:?} instead of {:?}",
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        );
    }
}

#[tokio::test]
async fn the_drill_down_returns_exactly_the_events_sent() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let events = corpus(1500, 21);
    send_with_duplicates(&app, &events, 300).await;
    // One more with a message longer than 1 KiB.
    let long = "x".repeat(2000);
    let (status, body) = app
        .post(&[json!({
            "event_id": "long-message", "occurred_at": now().to_rfc3339(),
            "feature": "chatbot", "model": "gpt-4o", "provider": "openai",
            "environment": "production", "operation": "chat", "status": "error",
            "error_type": "server_error", "error_message": long, "latency_ms": 10,
            "input_tokens": 1, "output_tokens": 1,
        })])
        .await;
    assert_eq!(status, 200, "{body}");
    app.wait_projected().await;

    // Newest first by occurred_at, ties by the greater id; computed here from what was sent.
    let newest_first = |mut sent: Vec<&Sent>| {
        sent.sort_by_key(|e| std::cmp::Reverse((e.at.timestamp_micros(), e.id.clone())));
        sent.into_iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    };
    let window = "from=2026-03-08T00:00:00Z&to=2026-03-10T13:00:00Z";
    let all = pages(&app, &format!("{API}/events?{window}&limit=97")).await;
    let mut want = newest_first(events.iter().collect());
    want.insert(0, "long-message".into());
    same(
        &ids(&all),
        &want,
        "every event once, newest first, across pages of 97",
    );

    // The failed chatbot calls in production, in pages of 10.
    let failed = pages(
        &app,
        &format!(
            "{API}/events?{window}&feature=chatbot&environment=production&status=failed&limit=10"
        ),
    )
    .await;
    let mut want = newest_first(
        events
            .iter()
            .filter(|e| e.feature == "chatbot" && e.environment == "production" && e.failed())
            .collect(),
    );
    want.insert(0, "long-message".into());
    assert!(want.len() > 20);
    same(&ids(&failed), &want, "failed chatbot calls in production");
    let long_kept = &failed[0];
    assert_eq!(long_kept["error_message"].as_str().unwrap().len(), 1024);
    assert_eq!(long_kept["error_message_truncated"], true);
    let sent = events.iter().find(|e| e.id == ids(&failed)[1]).unwrap();
    assert_eq!(
        failed[1]["error_message"],
        format!("the provider refused {}\ntry again later", sent.id)
    );
    assert_eq!(failed[1]["error_message_truncated"], false);

    // One event in full: cost exact, as computed by hand from the price table.
    let priced = events
        .iter()
        .find(|e| e.reported_pico.is_none() && e.expected_pico().is_some() && e.user.is_some())
        .unwrap();
    let one = pages(
        &app,
        &format!(
            "{API}/events?{window}&user_id={}&model={}&provider={}",
            priced.user.as_ref().unwrap(),
            priced.model,
            priced.provider
        ),
    )
    .await;
    let got = one
        .iter()
        .find(|e| e["event_id"] == priced.id.as_str())
        .unwrap();
    assert_eq!(got["cost_usd"], usd_text(priced.expected_pico().unwrap()));
    assert_eq!(got["cost_source"], "computed");
    assert_eq!(got["input_tokens"], priced.input);
    assert_eq!(got["latency_ms"], priced.latency_us as f64 / 1000.0);
    assert_eq!(
        got["occurred_at"],
        priced
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    assert!(one
        .iter()
        .all(|e| e["user_id"] == priced.user.as_deref().unwrap()));

    // Variant and a narrow window.
    let variant = pages(
        &app,
        &format!("{API}/events?{window}&experiment_id={EXPERIMENT}&variant=b&limit=50"),
    )
    .await;
    let want = newest_first(
        events
            .iter()
            .filter(|e| e.experiment.as_ref().is_some_and(|(_, v)| v == "b"))
            .collect(),
    );
    same(&ids(&variant), &want, "variant b");
    let hour = pages(
        &app,
        &format!("{API}/events?from=2026-03-10T10:00:00Z&to=2026-03-10T11:00:00Z&limit=1000"),
    )
    .await;
    let (from, to) = (
        now() - Duration::minutes(120) - Duration::seconds(30),
        now() - Duration::minutes(60) - Duration::seconds(30),
    );
    let want = newest_first(
        events
            .iter()
            .filter(|e| e.at >= from && e.at < to)
            .collect(),
    );
    same(&ids(&hour), &want, "one hour");

    // Bad input names the parameter.
    for (query, param) in [
        ("cursor=zz", "cursor"),
        ("cursor=3a", "cursor"),
        ("status=broken", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("from=2026-03-10T00:00:00Z&to=2026-03-09T00:00:00Z", "from"),
        ("time_range=24h&from=2026-03-09T00:00:00Z", "time_range"),
        ("to=2026-03-09T00:00:00Z", "from"),
        ("environment=moon", "environment"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = app.get(&format!("{API}/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.to_string().contains(param), "{query}: {body}");
    }
    app.stop().await;
}
