//! Budget status: the current period in the budget's zone, spend, forecasts, thresholds and
//! state, read through the real app. Every expected figure is worked out by hand from the events
//! the test sends.
#![allow(clippy::unwrap_used)]

use crate::common;

use chrono::{DateTime, Utc};
use common::TestApp;
use serde_json::{json, Value};

use crate::common::API;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// An event of `feature` at `occurred` costing `cost` dollars (reported), or unpriced when
/// `cost` is `None` (a model without a price).
fn event(id: &str, occurred: &str, feature: &str, cost: Option<&str>) -> Value {
    let mut e = json!({
        "event_id": id, "occurred_at": occurred, "feature": feature,
        "model": "no-price-model", "provider": "openai", "environment": "production",
        "operation": "chat", "status": "success", "latency_ms": 120.0,
        "input_tokens": 10, "output_tokens": 20,
    });
    if let Some(c) = cost {
        e["cost_usd"] = json!(c);
    }
    e
}

async fn budget(app: &TestApp, body: Value) -> String {
    let (status, created) = app
        .send("POST", &format!("{API}/budgets"), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    created["data"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_monthly_budget_measures_spend_forecasts_and_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    // 16 March 12:00 UTC: 15.5 of March's 31 days have passed, 15.5 are left.
    app.clock.set(at("2026-03-16T12:00:00Z"));
    let id = budget(
        &app,
        json!({"name": "chat month", "scope": "feature", "scope_value": "chatbot",
               "period": "monthly", "amount_usd": "100", "thresholds_percent": [30, 50, 80, 100]}),
    )
    .await;
    let (status, body) = app
        .post(&[
            // February: another period.
            event("feb", "2026-02-28T23:59:59Z", "chatbot", Some("500")),
            event("m1", "2026-03-01T00:00:00Z", "chatbot", Some("20")),
            event("m2", "2026-03-10T08:00:00Z", "chatbot", Some("10.5")),
            // Within the last 24 hours.
            event("m3", "2026-03-15T13:00:00Z", "chatbot", Some("4.5")),
            event("m4", "2026-03-16T11:59:59Z", "chatbot", None),
            // Another feature: outside the scope.
            event("other", "2026-03-12T00:00:00Z", "photo-tagging", Some("70")),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    app.wait_projected().await;

    let s = app.data(&format!("{API}/budgets/{id}/status")).await;
    assert_eq!(s["period_start"], "2026-03-01T00:00:00Z");
    assert_eq!(s["period_end"], "2026-04-01T00:00:00Z");
    // 20 + 10.5 + 4.5 = 35 of 100.
    assert_eq!(s["spend_usd"], "35.00");
    assert_eq!(s["spend"], 35.0);
    assert_eq!(s["amount_usd"], "100.00");
    assert_eq!(s["utilization"], 0.35);
    // 35 in 15.5 days of 31: 70 at the month's end.
    assert_eq!(s["forecast_usd"], "70.00");
    // The last 24 hours cost 4.5: 35 + 4.5 × 15.5 = 104.75.
    assert_eq!(s["forecast_trailing_24h_usd"], "104.75");
    assert_eq!(s["thresholds_crossed"], json!([30]));
    assert_eq!(s["requests"], 4);
    assert_eq!(s["unpriced_requests"], 1);
    assert_eq!(s["state"], "warning");

    // A late event in the period moves the figures as it moves the dashboards: 35 + 20 = 55,
    // forecast 110 is over the amount.
    let (status, _) = app
        .post(&[event("late", "2026-03-02T10:00:00Z", "chatbot", Some("20"))])
        .await;
    assert_eq!(status, 200);
    app.wait_projected().await;
    let s = app.data(&format!("{API}/budgets/{id}/status")).await;
    assert_eq!(s["spend_usd"], "55.00");
    assert_eq!(s["forecast_usd"], "110.00");
    assert_eq!(s["thresholds_crossed"], json!([30, 50]));
    assert_eq!(s["state"], "forecast_exceeded");
    let spending = app
        .data(&format!(
            "{API}/analytics/spending?feature=chatbot&from=2026-03-01T00:00:00Z&to=2026-03-16T12:01:00Z"
        ))
        .await;
    assert_eq!(spending["total_cost_usd"], s["spend_usd"]);

    // The list carries active budgets only; the state filter narrows it.
    let global = budget(
        &app,
        json!({"name": "all day", "scope": "global", "period": "daily", "amount_usd": "50"}),
    )
    .await;
    let (status, _) = app
        .send(
            "POST",
            &format!("{API}/budgets"),
            Some(json!({"name": "off", "scope": "global", "period": "daily",
                        "amount_usd": "1", "is_active": false})),
        )
        .await;
    assert_eq!(status, 201);
    let all = app.data(&format!("{API}/analytics/budgets")).await;
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    // Today (16 March) cost 0 so far in every feature except the unpriced call: 0 of 50.
    assert_eq!(names, vec!["chat month", "all day"]);
    let day = &all[1];
    assert_eq!(day["budget_id"], global.as_str());
    assert_eq!(day["spend_usd"], "0.00");
    assert_eq!(day["unpriced_requests"], 1);
    assert_eq!(day["state"], "ok");
    let warned = app
        .data(&format!("{API}/analytics/budgets?state=forecast_exceeded"))
        .await;
    assert_eq!(warned.as_array().unwrap().len(), 1);

    let (status, body) = app
        .get(&format!("{API}/analytics/budgets?state=burning"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "state");
    let (status, _) = app
        .get(&format!(
            "{API}/budgets/00000000-0000-0000-0000-000000000000/status"
        ))
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_berlin_week_runs_monday_to_monday_across_the_clock_change() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    // Thursday 26 March 2026, 12:00 UTC. Summer time begins on Sunday 29 March, so the week
    // runs from Monday 23 March 00:00 CET to Monday 30 March 00:00 CEST: 167 hours, of which
    // 3 days 13 hours (85 h) have passed at 13:00 CET.
    app.clock.set(at("2026-03-26T12:00:00Z"));
    let id = budget(
        &app,
        json!({"name": "berlin week", "scope": "environment", "scope_value": "production",
               "period": "weekly", "time_zone": "Europe/Berlin", "amount_usd": "1000"}),
    )
    .await;
    let (status, body) = app
        .post(&[
            // Sunday 22 March 23:30 CET: the week before.
            event("before", "2026-03-22T22:30:00Z", "chatbot", Some("8")),
            // Monday 23 March 00:30 CET: this week.
            event("monday", "2026-03-22T23:30:00Z", "chatbot", Some("17")),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    app.wait_projected().await;
    let s = app.data(&format!("{API}/budgets/{id}/status")).await;
    assert_eq!(s["period_start"], "2026-03-23T00:00:00+01:00");
    assert_eq!(s["period_end"], "2026-03-30T00:00:00+02:00");
    assert_eq!(s["spend_usd"], "17.00");
    // 17 × 167 / 85 = 33.4
    assert_eq!(s["forecast_usd"], "33.40");
    // Nothing in the last 24 hours: the trailing forecast is what was spent.
    assert_eq!(s["forecast_trailing_24h_usd"], "17.00");
    assert_eq!(s["thresholds_crossed"], json!([]));
    assert_eq!(s["state"], "ok");
    app.stop().await;
}
