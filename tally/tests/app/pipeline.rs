//! End to end on the embedded default: events in over HTTP, every dashboard number checked
//! against values computed here from the events sent.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Timelike, Utc};
use common::*;
use serde_json::Value;

fn window_24h() -> (DateTime<Utc>, DateTime<Utc>) {
    let to = now().with_second(0).unwrap() + Duration::minutes(1);
    (to - Duration::hours(24), to)
}

fn within(events: &[Sent], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Sent> {
    events
        .iter()
        .filter(|e| e.at >= from && e.at < to)
        .cloned()
        .collect()
}

fn cost(events: &[Sent]) -> i128 {
    events.iter().filter_map(Sent::expected_pico).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_metrics_match_the_events_sent() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let events = corpus(6000, 1);
    send_with_duplicates(&app, &events, 700).await;
    app.wait_projected().await;

    let (from, to) = window_24h();
    let m = app
        .data(&format!("{API}/features/chatbot/metrics?time_range=24h"))
        .await;
    let chatbot: Vec<Sent> = events
        .iter()
        .filter(|e| e.feature == "chatbot")
        .cloned()
        .collect();
    let current = within(&chatbot, from, to);
    let failures = current.iter().filter(|e| e.failed()).count();
    let n = current.len();
    assert!(n > 1000, "corpus too small for the window: {n}");

    // realtime
    let rt = &m["realtime"];
    assert_eq!(rt["total_requests"], n);
    assert_close(
        rt["error_rate"].as_f64().unwrap(),
        failures as f64 * 100.0 / n as f64,
        1e-12,
        "error_rate",
    );
    assert_close(
        rt["success_rate"].as_f64().unwrap(),
        (n - failures) as f64 * 100.0 / n as f64,
        1e-12,
        "success_rate",
    );
    let mean_ms = current.iter().map(|e| e.latency_us).sum::<u64>() as f64 / n as f64 / 1000.0;
    assert_close(
        rt["response_time"].as_f64().unwrap(),
        mean_ms,
        1e-12,
        "response_time",
    );
    assert_close(
        rt["requests_per_minute"].as_f64().unwrap(),
        n as f64 / 1440.0,
        1e-12,
        "requests_per_minute",
    );
    let mut lat: Vec<u64> = current.iter().map(|e| e.latency_us).collect();
    for (q, key) in [
        (0.5, "latency_p50_ms"),
        (0.95, "latency_p95_ms"),
        (0.99, "latency_p99_ms"),
    ] {
        let truth = nearest_rank_ms(&mut lat, q);
        assert_close(rt[key].as_f64().unwrap(), truth, 0.01, key);
        assert_eq!(rt[key], m[key], "{key} is also given at the top level");
    }

    // usage
    let u = &m["usage"];
    assert_eq!(u["total_requests"], n);
    assert_eq!(
        u["input_tokens"],
        current.iter().map(|e| e.input).sum::<u64>()
    );
    assert_eq!(
        u["output_tokens"],
        current.iter().map(|e| e.output).sum::<u64>()
    );
    assert_eq!(
        u["cached_input_tokens"],
        current.iter().map(|e| e.cached).sum::<u64>()
    );
    let users: HashSet<&str> = current.iter().filter_map(|e| e.user.as_deref()).collect();
    assert_close(
        u["unique_users"].as_f64().unwrap(),
        users.len() as f64,
        0.02,
        "unique_users",
    );
    let mut by_hour = [0usize; 24];
    for e in &current {
        by_hour[e.at.hour() as usize] += 1;
    }
    let peak = (0..24)
        .max_by_key(|&h| (by_hour[h], std::cmp::Reverse(h)))
        .unwrap();
    assert_eq!(u["peak_usage_hour"], peak);

    // costs: exact to the pico-dollar in the string, to the micro-dollar in the number
    let c = &m["costs"];
    let total = cost(&current);
    assert_eq!(c["total_cost_usd"], usd_text(total));
    let micros = (total + 500_000) / 1_000_000;
    assert_eq!(c["total_cost"].as_f64().unwrap(), micros as f64 / 1e6);
    assert_eq!(
        c["unpriced_requests"],
        current
            .iter()
            .filter(|e| e.expected_pico().is_none())
            .count()
    );
    let previous = within(&chatbot, from - Duration::hours(24), from);
    assert_eq!(c["previous_period_cost_usd"], usd_text(cost(&previous)));
    let trend = (total - cost(&previous)) as f64 * 100.0 / cost(&previous) as f64;
    assert_close(c["cost_trend"].as_f64().unwrap(), trend, 1e-9, "cost_trend");
    let breakdown = c["cost_breakdown"].as_array().unwrap();
    for item in breakdown {
        let of_model: Vec<Sent> = current
            .iter()
            .filter(|e| e.model == item["model"].as_str().unwrap())
            .cloned()
            .collect();
        assert_eq!(item["amount_usd"], usd_text(cost(&of_model)), "{item}");
        assert_eq!(item["requests"], of_model.len());
    }
    assert_eq!(breakdown.len(), 3, "one entry per model actually used");

    // historical: hourly steps, aligned to UTC hours, covering the window
    let hist = m["historical"]["data"].as_array().unwrap();
    assert_eq!(m["historical"]["step_seconds"], 3600);
    assert_eq!(hist.len(), 25);
    for point in hist {
        let t = DateTime::parse_from_rfc3339(point["timestamp"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        let in_step: Vec<Sent> = current
            .iter()
            .filter(|e| e.at >= t && e.at < t + Duration::hours(1))
            .cloned()
            .collect();
        assert_eq!(point["throughput"], in_step.len(), "{point}");
        assert_eq!(
            point["cost"].as_f64().unwrap(),
            ((cost(&in_step) + 500_000) / 1_000_000) as f64 / 1e6
        );
    }
    assert_eq!(
        m["window"]["from"],
        from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_breakdowns_match_the_events_sent() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let events = corpus(4000, 2);
    send_with_duplicates(&app, &events, 1000).await;
    app.wait_projected().await;

    // spending by feature, model and day over an explicit range that is widened outward
    let from = "2026-03-09T00:00:30Z";
    let to = "2026-03-10T12:00:10Z";
    let s = app
        .data(&format!(
            "{API}/analytics/spending?from={from}&to={to}&group_by=feature,model,day"
        ))
        .await;
    assert_eq!(s["window"]["widened_to_whole_minutes"], true);
    let (f, t) = (
        DateTime::parse_from_rfc3339("2026-03-09T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
        DateTime::parse_from_rfc3339("2026-03-10T12:01:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    let inside = within(&events, f, t);
    let mut expected: BTreeMap<(String, String, String), Vec<Sent>> = BTreeMap::new();
    for e in &inside {
        expected
            .entry((
                e.feature.clone(),
                e.model.clone(),
                e.at.format("%Y-%m-%d").to_string(),
            ))
            .or_default()
            .push(e.clone());
    }
    let rows = s["breakdown"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for row in rows {
        let key = (
            row["feature"].as_str().unwrap().to_string(),
            row["model"].as_str().unwrap().to_string(),
            row["day"].as_str().unwrap().to_string(),
        );
        let group = &expected[&key];
        assert_eq!(row["request_count"], group.len(), "{row}");
        assert_eq!(row["total_cost_usd"], usd_text(cost(group)), "{row}");
        assert_eq!(
            row["unpriced_requests"],
            group.iter().filter(|e| e.expected_pico().is_none()).count()
        );
    }
    assert_eq!(s["total_cost_usd"], usd_text(cost(&inside)));
    assert_eq!(s["total_requests"], inside.len());

    // usage per hour for one feature in one environment
    let u = app.data(&format!("{API}/analytics/usage?time_range=24h&group_by=hour&feature=chatbot&environment=production")).await;
    let (wf, wt) = window_24h();
    let chosen: Vec<Sent> = within(&events, wf, wt)
        .into_iter()
        .filter(|e| e.feature == "chatbot" && e.environment == "production")
        .collect();
    let series = u["series"].as_array().unwrap();
    let mut seen = 0;
    for row in series {
        let hour = DateTime::parse_from_rfc3339(row["hour"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        let g: Vec<&Sent> = chosen
            .iter()
            .filter(|e| e.at >= hour && e.at < hour + Duration::hours(1))
            .collect();
        assert_eq!(row["requests"], g.len());
        assert_eq!(row["input_tokens"], g.iter().map(|e| e.input).sum::<u64>());
        assert_eq!(
            row["cached_input_tokens"],
            g.iter().map(|e| e.cached).sum::<u64>()
        );
        let users: HashSet<&str> = g.iter().filter_map(|e| e.user.as_deref()).collect();
        assert_close(
            row["unique_users"].as_f64().unwrap(),
            users.len() as f64,
            0.02,
            "hourly unique users",
        );
        seen += g.len();
    }
    assert_eq!(seen, chosen.len());

    // model comparison over 7 days
    let p = app
        .data(&format!("{API}/analytics/performance?time_range=7d"))
        .await;
    let models = p["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    for m in models {
        let of: Vec<Sent> = events
            .iter()
            .filter(|e| e.model == m["name"].as_str().unwrap())
            .cloned()
            .collect();
        assert_eq!(m["usage_count"], of.len());
        assert_eq!(m["total_cost_usd"], usd_text(cost(&of)));
        let mut lat: Vec<u64> = of.iter().map(|e| e.latency_us).collect();
        assert_close(
            m["latency_p95_ms"].as_f64().unwrap(),
            nearest_rank_ms(&mut lat, 0.95),
            0.01,
            "p95",
        );
        assert_eq!(m["registered"], m["name"] != "mystery-model");
    }

    // the feature list includes registered features and unregistered ones seen in events
    let list = app.data(&format!("{API}/features?time_range=24h")).await;
    let features = list["features"].as_array().unwrap();
    let names: Vec<&str> = features
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["chatbot", "photo-tagging", "search-x"]);
    let unregistered = &features[2];
    assert_eq!(unregistered["registered"], false);
    let search_count = within(&events, wf, wt)
        .iter()
        .filter(|e| e.feature == "search-x")
        .count();
    assert_eq!(unregistered["metrics"]["total_requests"], search_count);

    // ... narrowed, ordered and paged like every listing
    let mut busiest: Vec<(usize, &str)> = ["chatbot", "photo-tagging", "search-x"]
        .into_iter()
        .map(|f| {
            let n = within(&events, wf, wt)
                .iter()
                .filter(|e| e.feature == f)
                .count();
            (n, f)
        })
        .collect();
    busiest.sort_unstable_by(|a, b| b.cmp(a));
    assert!(
        busiest[0].0 > busiest[1].0 && busiest[1].0 > busiest[2].0,
        "distinct counts, so the order is the counts' alone: {busiest:?}"
    );
    let names_of = |page: &Value| -> Vec<String> {
        page["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, page) = app
        .get(&format!(
            "{API}/features?time_range=24h&sort=-metrics.total_requests&limit=2&offset=1"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["pagination"],
        serde_json::json!({"total": 3, "limit": 2, "offset": 1})
    );
    assert_eq!(
        names_of(&page["data"]),
        vec![busiest[1].1, busiest[2].1],
        "{busiest:?}"
    );
    let unregistered = app
        .data(&format!("{API}/features?time_range=24h&registered=false"))
        .await;
    assert_eq!(names_of(&unregistered), vec!["search-x"]);
    let searched = app.data(&format!("{API}/features?q=PHOTO")).await;
    assert_eq!(names_of(&searched), vec!["photo-tagging"]);

    let o = app.data(&format!("{API}/overview")).await;
    assert_eq!(o["kpis"]["requests_24h"], within(&events, wf, wt).len());
    assert_eq!(
        o["pipeline"]["duplicates_dropped"],
        events.len().div_ceil(7)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_query_parameters_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    for (path, field) in [
        ("/features/chatbot/metrics?time_range=2w", "time_range"),
        ("/features/chatbot/metrics?timerange=24h", "timerange"),
        ("/features/chatbot/metrics?from=yesterday", "from"),
        (
            "/features/chatbot/metrics?from=2026-03-10T00:00:00Z&to=2026-03-09T00:00:00Z",
            "from",
        ),
        (
            "/features/chatbot/metrics?time_range=24h&from=2026-03-09T00:00:00Z",
            "time_range",
        ),
        ("/features/Chat%20Bot/metrics", "name"),
        ("/analytics/spending?group_by=feature,colour", "group_by"),
        ("/analytics/usage?environment=prod", "environment"),
        ("/analytics/usage?group_by=hour,day", "group_by"),
        ("/features?sort=colour", "sort"),
        ("/features?registered=maybe", "registered"),
        ("/features?limit=0", "limit"),
        ("/features?colour=red", "colour"),
        ("/features?time_range=2w&sort=name", "time_range"),
    ] {
        let (status, body) = app.get(&format!("{API}{path}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = app
        .get(&format!("{API}/features/never-heard-of-it/metrics"))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_equals_live_projection() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let events = corpus(3000, 3);
    // Scores too, half of them before their events: the rebuild joins them the same way.
    let scores = corpus_scores(&events);
    let (before, after) = scores.split_at(scores.len() / 2);
    send_scores(&app, before, 500).await;
    send_with_duplicates(&app, &events, 250).await;
    send_scores(&app, after, 500).await;
    app.wait_projected().await;
    wait_scores(&app, joined_quality_scores(&events)).await;
    let experiment = app
        .id_where(&format!("{API}/experiments"), "name", EXPERIMENT)
        .await;
    let paths = [
        format!("{API}/experiments/{experiment}/results?time_range=7d"),
        format!("{API}/features/chatbot/metrics?time_range=24h"),
        format!("{API}/features/photo-tagging/metrics?time_range=7d"),
        format!("{API}/features/search-x/metrics?time_range=1h"),
        format!("{API}/analytics/spending?time_range=30d&group_by=feature,provider,model,environment,day"),
        format!("{API}/analytics/usage?time_range=7d&group_by=hour,model"),
        format!("{API}/analytics/performance?time_range=7d"),
        format!("{API}/features?time_range=30d"),
    ];
    let mut live = Vec::new();
    for p in &paths {
        live.push(app.data(p).await);
    }
    app.stop().await;

    let report = rebuild_offline(&settings(dir.path())).await;
    assert_eq!(report.events_applied, events.len() as u64);
    assert_eq!(report.duplicates_dropped, events.len().div_ceil(7) as u64);

    let app = TestApp::start(dir.path()).await;
    app.wait_projected().await;
    assert!(
        live[0]["variants"][0]["scores"][0]["count"]
            .as_u64()
            .unwrap()
            > 0,
        "the results held scores: {}",
        live[0]
    );
    for (p, expected) in paths.iter().zip(&live) {
        let rebuilt: Value = app.data(p).await;
        assert_eq!(&rebuilt, expected, "{p} differs after rebuild");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_data_and_the_pipeline_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let old = corpus(600, 21);
    send_with_duplicates(&app, &old, 100).await;
    app.wait_projected().await;
    let consumed = app
        .stores
        .analytics
        .load_state(0, &tally_domain::store::Partitions::All)
        .await
        .unwrap()
        .position();
    // As if 100 days had passed with a 90-day retention: every record and row is old.
    let later = Utc::now() + Duration::days(100);
    let pruned = tally::retention::prune_once(&app.stores, later, Duration::days(90), &consumed)
        .await
        .unwrap();
    let records = old.len().div_ceil(7) + old.len(); // events incl. duplicates …
    let batches = records.div_ceil(100) as u64; // … sent 100 per record
    assert_eq!(pruned.log_records, batches - 1, "all but the newest record");
    assert!(pruned.rollup_rows > 0);
    let m = app
        .data(&format!("{API}/features/chatbot/metrics?time_range=30d"))
        .await;
    assert_eq!(m["usage"]["total_requests"], 0, "pruned rollups are gone");
    app.stop().await;

    // After a restart the log continues where it was: new events are projected and counted.
    let app = TestApp::start(dir.path()).await;
    let fresh = corpus(300, 22);
    send_with_duplicates(&app, &fresh, 100).await;
    app.wait_projected().await;
    let m = app
        .data(&format!("{API}/features/chatbot/metrics?time_range=30d"))
        .await;
    let expected = fresh.iter().filter(|e| e.feature == "chatbot").count();
    assert_eq!(m["usage"]["total_requests"], expected);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_prompt_version_metrics_match_the_events_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let (status, p) = app
        .send(
            "POST",
            &format!("{API}/prompts"),
            Some(serde_json::json!({"name": "greeter", "feature": "chatbot", "content": "Hello {{name}}"})),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let pid = p["data"]["prompt"]["id"].as_str().unwrap().to_string();
    let (status, v2) = app
        .send(
            "PUT",
            &format!("{API}/prompts/{pid}"),
            Some(serde_json::json!({"content": "Hi {{name}}!"})),
        )
        .await;
    assert_eq!(status, 201, "{v2}");
    // Versions 1 and 2 exist; events also name a version 3 the prompt does not have. Every
    // tenth event names the prompt by its id instead of its name: both count.
    let mut events = corpus(3000, 5);
    for e in events.iter_mut().step_by(10) {
        if let Some((id, _)) = &mut e.prompt {
            *id = pid.clone();
        }
    }
    // Another prompt's events must not count.
    events[1].prompt = Some(("farewell".into(), "1".into()));
    send_with_duplicates(&app, &events, 1000).await;
    app.wait_projected().await;

    let named = |e: &&Sent, version: &str| {
        e.prompt
            .as_ref()
            .is_some_and(|(id, v)| (id == "greeter" || *id == pid) && v == version)
    };
    for environment in [None, Some("production")] {
        let query = environment
            .map(|e| format!("&environment={e}"))
            .unwrap_or_default();
        let m = app
            .data(&format!("{API}/prompts/{pid}/metrics?time_range=7d{query}"))
            .await;
        let versions = m["versions"].as_array().unwrap();
        let listed: Vec<(&str, bool)> = versions
            .iter()
            .map(|v| {
                (
                    v["version"].as_str().unwrap(),
                    v["known"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(listed, [("1", true), ("2", true), ("3", false)], "{m}");
        for v in versions {
            let version = v["version"].as_str().unwrap();
            let group: Vec<Sent> = events
                .iter()
                .filter(|e| named(e, version))
                .filter(|e| environment.is_none_or(|env| e.environment == env))
                .cloned()
                .collect();
            assert!(group.len() > 100, "{version}: {}", group.len());
            assert_eq!(v["requests"], group.len(), "{version}");
            let count = |s: &str| group.iter().filter(|e| e.status == s).count();
            assert_eq!(v["errors"], count("error"), "{version}");
            assert_eq!(v["timeouts"], count("timeout"), "{version}");
            assert_eq!(
                v["input_tokens"],
                group.iter().map(|e| e.input).sum::<u64>(),
                "{version}"
            );
            assert_eq!(
                v["output_tokens"],
                group.iter().map(|e| e.output).sum::<u64>(),
                "{version}"
            );
            assert_eq!(v["total_cost_usd"], usd_text(cost(&group)), "{version}");
            assert_eq!(
                v["unpriced_requests"],
                group.iter().filter(|e| e.expected_pico().is_none()).count(),
                "{version}"
            );
            let mut latencies: Vec<u64> = group.iter().map(|e| e.latency_us).collect();
            assert_close(
                v["latency_p95_ms"].as_f64().unwrap(),
                nearest_rank_ms(&mut latencies, 0.95),
                0.02,
                "p95",
            );
        }
        assert_eq!(versions[1]["status"], "draft");
    }

    // The same rows through the generic breakdown, filtered by prompt and grouped by version.
    let u = app
        .data(&format!(
            "{API}/analytics/usage?time_range=7d&prompt_id=greeter&group_by=prompt_version"
        ))
        .await;
    let mut by_version: BTreeMap<String, u64> = BTreeMap::new();
    for row in u["series"].as_array().unwrap() {
        by_version.insert(
            row["prompt_version"].as_str().unwrap().to_string(),
            row["requests"].as_u64().unwrap(),
        );
    }
    let expected: BTreeMap<String, u64> = ["1", "2", "3"]
        .into_iter()
        .map(|v| {
            let n = events
                .iter()
                .filter(|e| e.prompt == Some(("greeter".to_string(), v.to_string())))
                .count();
            (v.to_string(), n as u64)
        })
        .collect();
    assert_eq!(by_version, expected);

    let (status, body) = app
        .get(&format!("{API}/prompts/{pid}/metrics?group_by=feature"))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("group_by"))
    );
    app.stop().await;
}

/// Spending by model and day, as `(model, day) → exact dollars`.
async fn spending_by_model_day(app: &TestApp) -> BTreeMap<(String, String), String> {
    let s = app
        .data(&format!(
            "{API}/analytics/spending?time_range=7d&group_by=model,day"
        ))
        .await;
    s["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["model"].as_str().unwrap().to_string(),
                    r["day"].as_str().unwrap().to_string(),
                ),
                r["total_cost_usd"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expected_spending(
    events: &[Sent],
    pico: impl Fn(&Sent) -> Option<i128>,
) -> BTreeMap<(String, String), String> {
    let mut sums: BTreeMap<(String, String), i128> = BTreeMap::new();
    for e in events {
        *sums
            .entry((e.model.clone(), e.at.format("%Y-%m-%d").to_string()))
            .or_default() += pico(e).unwrap_or(0);
    }
    sums.into_iter().map(|(k, v)| (k, usd_text(v))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reprice_recomputes_past_costs_by_replay_and_a_rebuild_agrees() {
    use chrono::TimeZone;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let events = corpus(3000, 9);
    send_with_duplicates(&app, &events, 1000).await;
    app.wait_projected().await;
    let before = spending_by_model_day(&app).await;
    assert_eq!(before, expected_spending(&events, Sent::expected_pico));

    let (_, models) = app.get(&format!("{API}/models?limit=100")).await;
    let gpt = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "gpt-4o")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A corrected price, effective from before the period repriced.
    let corrected_from = Utc.with_ymd_and_hms(2026, 3, 9, 6, 0, 0).unwrap();
    let (status, body) = app
        .send(
            "POST",
            &format!("{API}/models/{gpt}/prices"),
            Some(serde_json::json!({"effective_from": corrected_from, "input_usd_per_mtok": "1.5", "output_usd_per_mtok": "6"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // A new price alone rewrites nothing already accepted.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(spending_by_model_day(&app).await, before);

    let reprice = |query: &str| format!("{API}/models/{gpt}/reprice{query}");
    for (query, status_expected, field) in [
        ("", 400, "from"),
        ("?from=yesterday", 400, "from"),
        ("?from=2027-01-01T00:00:00Z", 422, "from"),
        ("?from=2026-03-09T12:00:00Z&to=x", 400, "to"),
    ] {
        let (status, body) = app.send("POST", &reprice(query), None).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (status_expected, Some(field)),
            "{query}: {body}"
        );
    }
    let (status, _) = app
        .send(
            "POST",
            &format!(
                "{API}/models/{}/reprice?from=2026-03-09T12:00:00Z",
                uuid::Uuid::new_v4()
            ),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        spending_by_model_day(&app).await,
        before,
        "refused requests change nothing"
    );

    let from = Utc.with_ymd_and_hms(2026, 3, 9, 12, 0, 0).unwrap();
    let (status, body) = app
        .send("POST", &reprice("?from=2026-03-09T12:00:00Z"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["replay"], "started");
    assert_eq!(
        body["data"]["reprice"]["prices"].as_array().unwrap().len(),
        3
    );
    app.wait_projected().await;

    // Independently: gpt-4o events from `from` on, not reported by the client, cost what the
    // table with the corrected price says; everything else what it cost before.
    let mut corrected = price_table();
    corrected.push((
        "openai",
        "gpt-4o",
        corrected_from,
        1_500_000,
        6_000_000,
        None,
    ));
    let repriced = |e: &Sent| {
        if e.model == "gpt-4o" && e.at >= from {
            e.expected_pico_with(&corrected)
        } else {
            e.expected_pico()
        }
    };
    let expected = expected_spending(&events, repriced);
    assert_ne!(expected, before, "the corpus must have events to reprice");
    let after = spending_by_model_day(&app).await;
    assert_eq!(after, expected);
    let (_, listed) = app.get(&format!("{API}/models/{gpt}/reprices")).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["from"], "2026-03-09T12:00:00Z");
    let audit = app.data(&format!("{API}/audit?limit=1")).await;
    assert_eq!(audit[0]["action"], "model.reprice", "{audit}");
    app.stop().await;

    // A rebuild from the log applies the same request: the same numbers.
    rebuild_offline(&settings(dir.path())).await;
    let app = TestApp::start(dir.path()).await;
    app.wait_projected().await;
    assert_eq!(spending_by_model_day(&app).await, expected);
    app.stop().await;
}

/// A chart's window ending now reads today from today's row (or the current hour from the
/// hour's) when that row holds only the window's events; events stamped ahead of the clock
/// (ingest takes them up to 5 minutes early) sit in that row too, and must not count before
/// their minute comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stamped_ahead_of_the_clock_count_once_their_minute_comes() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    // now() is 12:00:30: spread events over the last two hours, the current hour's first
    // half-minute among them, then three stamped 12:03:10 and one 12:00:50 (this minute).
    let mut events = corpus(400, 11);
    for (i, e) in events.iter_mut().enumerate() {
        e.feature = "chatbot".into();
        e.at = now() - Duration::seconds((i as i64 * 37) % 7_200);
    }
    for (i, e) in events.iter_mut().take(4).enumerate() {
        e.at = if i < 3 {
            now() + Duration::seconds(160)
        } else {
            now() + Duration::seconds(20)
        };
    }
    send_with_duplicates(&app, &events, 100).await;
    app.wait_projected().await;

    let check = |to: DateTime<Utc>, m: &Value, what: &str, hours: i64| {
        let current = within(&events, to - Duration::hours(hours), to);
        let users: HashSet<&str> = current.iter().filter_map(|e| e.user.as_deref()).collect();
        assert_eq!(
            m["realtime"]["total_requests"],
            current.len(),
            "{what} to {to}"
        );
        assert_eq!(m["usage"]["unique_users"], users.len(), "{what} to {to}");
        assert_eq!(
            m["costs"]["total_cost_usd"],
            usd_text(cost(&current)),
            "{what}"
        );
        let mut lat: Vec<u64> = current.iter().map(|e| e.latency_us).collect();
        let p99 = nearest_rank_ms(&mut lat, 0.99);
        assert_close(m["latency_p99_ms"].as_f64().unwrap(), p99, 0.01, what);
        // The chart's last step: the part of today (30 days, day steps) or of this hour
        // (a day, hour steps) inside the window.
        let step = m["historical"]["step_seconds"].as_i64().unwrap();
        let last = m["historical"]["data"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        let step_start =
            DateTime::from_timestamp((to.timestamp() - 1).div_euclid(step) * step, 0).unwrap();
        assert_eq!(
            last["timestamp"],
            step_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        assert_eq!(
            last["throughput"],
            within(&current, step_start, to).len(),
            "{what} to {to}: last step"
        );
    };
    for (clock, to, expected_ahead) in [
        (now(), "2026-03-10T12:01:00Z", 1),
        (
            "2026-03-10T12:03:30Z".parse().unwrap(),
            "2026-03-10T12:04:00Z",
            4,
        ),
    ] {
        app.clock.set(clock);
        let to: DateTime<Utc> = to.parse().unwrap();
        assert_eq!(
            events.iter().filter(|e| e.at > now() && e.at < to).count(),
            expected_ahead
        );
        for (range, hours) in [("1h", 1), ("24h", 24), ("30d", 24 * 30)] {
            let m = app
                .data(&format!(
                    "{API}/features/chatbot/metrics?time_range={range}"
                ))
                .await;
            check(to, &m, range, hours);
        }
    }
}
