//! `/metrics`: the business counters equal what the tests sent (worked out by hand) and the
//! dashboards' numbers for the same data; they survive a restart and retention dropping the
//! days they came from; label sets are capped. The service tier also checks the live endpoint,
//! the shipped alert rules and their unit tests with `promtool`.
//! Its own test executable (not one of `app/`'s modules): the Prometheus recorder is
//! process-wide, and other tests' applications would move its counters.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{json, Value};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn event(
    id: &str,
    occurred: &str,
    feature: &str,
    status: &str,
    latency_ms: f64,
    cost: Option<&str>,
) -> Value {
    let mut e = json!({
        "event_id": id, "occurred_at": occurred, "feature": feature,
        "model": "gpt-4o", "provider": "openai", "environment": "production",
        "operation": "chat", "status": status, "latency_ms": latency_ms,
        "input_tokens": 100, "output_tokens": 40, "cached_input_tokens": 10,
    });
    if let Some(c) = cost {
        e["cost_usd"] = json!(c);
    } else {
        e["model"] = json!("unpriced-model");
    }
    e
}

async fn scrape(app: &TestApp) -> String {
    app.metrics_text().await
}

/// `name{labels} value` lines of `text` whose name is `name`, as labels → value.
fn samples(text: &str, name: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            (n == name).then(|| (labels.trim_end_matches('}').to_string(), value.to_string()))
        })
        .collect()
}

fn one(text: &str, name: &str, labels: &str) -> String {
    samples(text, name)
        .get(labels)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in:\n{text}"))
}

#[tokio::test]
async fn business_counters_equal_the_events_and_the_dashboards() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    app.clock.set(at("2026-03-16T12:00:00Z"));
    let sent = [
        event(
            "a",
            "2026-03-14T10:00:00Z",
            "chatbot",
            "success",
            5.0,
            Some("0.25"),
        ),
        event(
            "b",
            "2026-03-15T10:00:00Z",
            "chatbot",
            "success",
            15.0,
            Some("0.50"),
        ),
        event(
            "c",
            "2026-03-15T11:00:00Z",
            "chatbot",
            "error",
            90.0,
            Some("0.125"),
        ),
        event(
            "d",
            "2026-03-16T11:00:00Z",
            "chatbot",
            "timeout",
            30_000.0,
            Some("0"),
        ),
        event(
            "e",
            "2026-03-16T11:30:00Z",
            "chatbot",
            "success",
            700.0,
            None,
        ),
        event(
            "f",
            "2026-03-16T11:40:00Z",
            "search",
            "success",
            1_500.0,
            Some("1"),
        ),
    ];
    let (status, body) = app.post(&sent).await;
    assert_eq!(status, 200, "{body}");
    app.wait_projected().await;
    let text = scrape(&app).await;
    let chat = |extra: &str| {
        format!("feature=\"chatbot\",model=\"gpt-4o\",provider=\"openai\",environment=\"production\"{extra}")
    };
    // gpt-4o/chatbot: a, b success; c error; d timeout.
    assert_eq!(
        one(&text, "tally_requests_total", &chat(",status=\"success\"")),
        "2"
    );
    assert_eq!(
        one(&text, "tally_requests_total", &chat(",status=\"error\"")),
        "1"
    );
    assert_eq!(
        one(&text, "tally_requests_total", &chat(",status=\"timeout\"")),
        "1"
    );
    assert_eq!(
        one(&text, "tally_tokens_total", &chat(",type=\"input\"")),
        "400"
    );
    assert_eq!(
        one(&text, "tally_tokens_total", &chat(",type=\"output\"")),
        "160"
    );
    assert_eq!(
        one(&text, "tally_tokens_total", &chat(",type=\"cached_input\"")),
        "40"
    );
    // 0.25 + 0.50 + 0.125 + 0 = 0.875
    assert_eq!(one(&text, "tally_cost_usd_total", &chat("")), "0.875");
    assert_eq!(one(&text, "tally_unpriced_requests_total", &chat("")), "0");
    // Latencies 5, 15, 90 ms and 30 s: cumulative at 10 ms: 1; 20 ms: 2; 80 ms: 2; 160 ms: 3;
    // 20.48 s: 3; 40.96 s: 4.
    let bucket = |le: &str| {
        one(
            &text,
            "tally_request_duration_seconds_bucket",
            &chat(&format!(",le=\"{le}\"")),
        )
    };
    assert_eq!(
        ["0.01", "0.02", "0.08", "0.16", "20.48", "40.96", "81.92", "+Inf"].map(bucket),
        ["1", "2", "2", "3", "3", "4", "4", "4"].map(String::from)
    );
    assert_eq!(
        one(&text, "tally_request_duration_seconds_count", &chat("")),
        "4"
    );
    // 0.005 + 0.015 + 0.090 + 30 = 30.11 s
    let sum: f64 = one(&text, "tally_request_duration_seconds_sum", &chat(""))
        .parse()
        .unwrap();
    assert!((sum - 30.11).abs() < 1e-9, "{sum}");
    let unpriced = "feature=\"chatbot\",model=\"unpriced-model\",provider=\"openai\",environment=\"production\"";
    assert_eq!(one(&text, "tally_unpriced_requests_total", unpriced), "1");

    // The same numbers as the spending dashboard over every day of the data.
    let spending = app
        .data(&format!("{API}/analytics/spending?from=2026-03-14T00:00:00Z&to=2026-03-16T12:00:00Z&group_by=feature"))
        .await;
    let total: f64 = samples(&text, "tally_cost_usd_total")
        .values()
        .map(|v| v.parse::<f64>().unwrap())
        .sum();
    assert_eq!(spending["total_cost_usd"], "1.875");
    assert!((total - 1.875).abs() < 1e-12);
    let requests: u64 = samples(&text, "tally_requests_total")
        .values()
        .map(|v| v.parse::<u64>().unwrap())
        .sum();
    assert_eq!(json!(requests), spending["total_requests"]);

    // Retention drops the days the events came from; the counters stay.
    app.stores
        .analytics
        .prune(at("2026-03-17T00:00:00Z").timestamp())
        .await
        .unwrap();
    let pruned = app
        .data(&format!(
            "{API}/analytics/spending?from=2026-03-14T00:00:00Z&to=2026-03-16T12:00:00Z"
        ))
        .await;
    assert_eq!(pruned["total_requests"], 0, "the days are gone");
    let after = scrape(&app).await;
    for name in [
        "tally_requests_total",
        "tally_cost_usd_total",
        "tally_tokens_total",
        "tally_request_duration_seconds_bucket",
    ] {
        assert_eq!(samples(&after, name), samples(&text, name), "{name}");
    }
    // And a restart serves them as they were.
    app.stop().await;
    let app = TestApp::start(dir.path()).await;
    let restarted = scrape(&app).await;
    assert_eq!(
        samples(&restarted, "tally_requests_total"),
        samples(&text, "tally_requests_total")
    );
    app.stop().await;
}

#[tokio::test]
async fn budget_gauges_equal_the_budget_status() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    app.clock.set(at("2026-03-16T12:00:00Z"));
    let (status, created) = app
        .send(
            "POST",
            &format!("{API}/budgets"),
            Some(json!({"name": "chat \"month\"",
            "scope": "feature", "scope_value": "chatbot", "period": "monthly", "amount_usd": "4"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap();
    app.post(&[event(
        "g",
        "2026-03-02T00:00:00Z",
        "chatbot",
        "success",
        10.0,
        Some("3"),
    )])
    .await;
    app.wait_projected().await;
    let text = scrape(&app).await;
    let labels = format!("budget=\"chat \\\"month\\\"\",budget_id=\"{id}\",period=\"monthly\"");
    assert_eq!(one(&text, "tally_budget_spend_usd", &labels), "3.00");
    assert_eq!(one(&text, "tally_budget_limit_usd", &labels), "4.00");
    assert_eq!(
        one(&text, "tally_budget_utilization_ratio", &labels),
        "0.75"
    );
    let status = app.data(&format!("{API}/budgets/{id}/status")).await;
    assert_eq!(status["spend_usd"], "3.00");
    assert_eq!(status["utilization"], 0.75);
    // Every severity × kind is present, zero when nothing fires.
    let firing = samples(&text, "tally_alerts_firing");
    assert_eq!(firing.len(), 6);
    app.stop().await;
}

#[tokio::test]
async fn label_sets_beyond_the_cap_are_summed_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    app.clock.set(at("2026-03-16T12:00:00Z"));
    let cap = tally_query_api::exposition::MAX_LABEL_SETS;
    // cap + 5 features, one request each (feature names sort as their numbers).
    let events: Vec<Value> = (0..cap + 5)
        .map(|i| {
            event(
                &format!("e{i}"),
                "2026-03-16T11:00:00Z",
                &format!("f{i:05}"),
                "success",
                10.0,
                Some("1"),
            )
        })
        .collect();
    for chunk in events.chunks(500) {
        let (status, _) = app.post(chunk).await;
        assert_eq!(status, 200);
    }
    app.wait_projected().await;
    let text = scrape(&app).await;
    let requests = samples(&text, "tally_requests_total");
    // Each label set has three status series.
    assert_eq!(requests.len(), 3 * cap);
    let overflow = "feature=\"_other\",model=\"_other\",provider=\"_other\",environment=\"_other\",status=\"success\"";
    // The first cap − 1 sets are kept; the last 6 are summed.
    assert_eq!(requests[overflow], "6");
    assert!(requests.contains_key(&format!(
        "feature=\"f{:05}\",model=\"gpt-4o\",provider=\"openai\",environment=\"production\",status=\"success\"",
        cap - 2
    )));
    app.stop().await;
}

/// Service tier: promtool accepts the live endpoint, the rules and their unit tests.
#[tokio::test]
#[ignore = "service tier: needs promtool (Debian package prometheus)"]
async fn promtool_accepts_the_metrics_and_the_rules() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    app.clock.set(at("2026-03-16T12:00:00Z"));
    app.post(&[
        event(
            "p1",
            "2026-03-16T11:00:00Z",
            "chatbot",
            "success",
            120.0,
            Some("0.5"),
        ),
        event("p2", "2026-03-16T11:00:01Z", "chatbot", "error", 80.0, None),
    ])
    .await;
    app.wait_projected().await;
    app.send(
        "POST",
        &format!("{API}/budgets"),
        Some(json!({"name": "b", "scope": "global", "period": "daily", "amount_usd": "1"})),
    )
    .await;
    let text = scrape(&app).await;
    // The store's gauges are there too: two events forget no dedup generation.
    for gauge in [
        "tally_storage_dedup_forgotten_generations",
        "tally_storage_dedup_forgotten_ids",
    ] {
        assert_eq!(one(&text, gauge, ""), "0", "{gauge}");
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&deploy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    app.stop().await;
}
