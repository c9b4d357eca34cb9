//! Experiment results end to end: events naming an experiment's variants go through ingest,
//! the log and the projector, and `GET /experiments/{id}/results` answers per-variant numbers,
//! tests and verdicts that the test computes by hand from the events it sent.
#![allow(clippy::unwrap_used)]

use crate::common;

use chrono::Duration;
use common::*;
use serde_json::{json, Value};

/// `n` events of one variant, starting a minute after `now()`: the first `failures` failed,
/// latencies alternate between `ms[0]` and `ms[1]`, reported costs between `usd[0]` and
/// `usd[1]`, users cycle over 40. `experiment` is how the events name it (id or name).
fn events(
    variant: &str,
    experiment: &str,
    n: usize,
    failures: usize,
    ms: [u64; 2],
    usd: [&str; 2],
) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "event_id": format!("{variant}-{i}"),
                "occurred_at": (now() + Duration::minutes(1) + Duration::seconds(i as i64 * 7)).to_rfc3339(),
                "feature": "chatbot", "model": "gpt-4o", "provider": "openai",
                "environment": "production", "operation": "chat",
                "status": if i < failures { "error" } else { "success" },
                "latency_ms": ms[i % 2], "input_tokens": 100, "output_tokens": 10,
                "cost_usd": usd[i % 2],
                "user_id": format!("{variant}-user-{}", i % 40),
                "experiment_id": experiment, "variant": variant,
            })
        })
        .collect()
}

/// Creates an experiment of the chatbot with variants `control` and `b` (50 % each), starts
/// it, and answers its id.
async fn running_experiment(app: &TestApp, name: &str, kind: &str) -> String {
    let (status, created) = app
        .send(
            "POST",
            &format!("{API}/experiments"),
            Some(json!({
                "name": name, "feature": "chatbot", "experiment_type": kind,
                "variants": [
                    {"name": "control", "traffic_percent": 50},
                    {"name": "b", "traffic_percent": 50},
                ],
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_string();
    let (status, body) = app
        .send(
            "POST",
            &format!("{API}/experiments/{id}/status"),
            Some(json!({"status": "running"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    id
}

#[tokio::test]
async fn results_compare_the_variants_from_the_events_sent() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let id = running_experiment(&app, "answer-length", "model_comparison").await;
    app.clock.set(now() + Duration::hours(1));

    // Control: 400 requests, 40 failed, 180/220 ms, $0.001/$0.0012, named by the experiment's
    // name. Variant b: 400 requests, 12 failed, 90/110 ms, $0.0008/$0.001, half named by id.
    // Ten more name a variant the experiment does not have.
    let mut sent = events(
        "control",
        "answer-length",
        400,
        40,
        [180, 220],
        ["0.001", "0.0012"],
    );
    let b = events(
        "b",
        "answer-length",
        400,
        12,
        [90, 110],
        ["0.0008", "0.001"],
    );
    sent.extend(b.into_iter().enumerate().map(|(i, mut e)| {
        if i % 2 == 0 {
            e["experiment_id"] = json!(id);
        }
        e
    }));
    sent.extend(events(
        "c",
        "answer-length",
        10,
        0,
        [100, 100],
        ["0.001", "0.001"],
    ));
    for chunk in sent.chunks(150) {
        let (status, body) = app.post(chunk).await;
        assert_eq!(status, 200, "{body}");
    }
    // Duplicates count once.
    let (status, _) = app.post(&sent[..50]).await;
    assert_eq!(status, 200);
    app.wait_projected().await;

    let results = app.data(&format!("{API}/experiments/{id}/results")).await;
    assert_eq!(results["name"], "answer-length");
    assert_eq!(
        results["window"]["from"], "2026-03-10T12:00:00Z",
        "the run's start, widened"
    );
    assert_eq!(results["window"]["to"], "2026-03-10T13:01:00Z");
    let variants = results["variants"].as_array().unwrap();
    let names: Vec<&str> = variants
        .iter()
        .map(|v| v["variant"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["control", "b", "c"],
        "configured first, then the unknown one"
    );
    let (control, b, c) = (&variants[0], &variants[1], &variants[2]);
    assert_eq!(
        (control["requests"].as_u64(), control["failures"].as_u64()),
        (Some(400), Some(40))
    );
    assert_eq!(
        (b["requests"].as_u64(), b["failures"].as_u64()),
        (Some(400), Some(12))
    );
    assert_eq!(
        (c["known"].as_bool(), c["requests"].as_u64()),
        (Some(false), Some(10))
    );
    assert_eq!(control["error_rate"], 10.0);
    assert_eq!(b["error_rate"], 3.0);
    // 200 × $0.001 + 200 × $0.0012 = $0.44, so $0.0011 a request; b: $0.36, $0.0009.
    assert_eq!(control["total_cost_usd"], "0.44");
    assert_eq!(control["cost_per_request_usd"], "0.0011");
    assert_eq!(b["total_cost_usd"], "0.36");
    assert_eq!(b["cost_per_request_usd"], "0.0009");
    assert_eq!(control["unique_users"], 40);
    assert_eq!(
        (
            control["input_tokens"].as_u64(),
            control["output_tokens"].as_u64()
        ),
        (Some(40_000), Some(4_000))
    );
    // p50 of 180/220 ms is 180 ms, within the sketch's 1 %.
    assert_close(
        control["latency_p50_ms"].as_f64().unwrap(),
        180.0,
        0.01,
        "control p50",
    );
    assert_close(b["latency_p95_ms"].as_f64().unwrap(), 110.0, 0.01, "b p95");

    let comparison = &results["comparisons"][0];
    assert_eq!(
        (
            comparison["variant"].as_str(),
            comparison["control"].as_str()
        ),
        (Some("b"), Some("control"))
    );
    let metric = |name: &str| -> &Value {
        comparison["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap()
    };
    // Error rate: pooled 52/800 = 0.065, se = √(0.065·0.935·2/400) = 0.0174320,
    // z = (0.03 − 0.10)/se = −4.01560.
    let error = metric("error_rate");
    assert_close(error["statistic"].as_f64().unwrap(), -4.01560, 1e-5, "z");
    assert_eq!(error["significant"], true);
    assert_eq!(
        error["verdict"],
        "variant b fails less often: 3.00% of requests against 10.00%, p < 0.001"
    );
    // Cost: $0.0009 against $0.0011 is −18.18 %.
    let cost = metric("cost_per_request");
    assert_close(
        cost["relative_difference"].as_f64().unwrap(),
        -200.0 / 11.0,
        1e-9,
        "cost difference",
    );
    assert_eq!(
        cost["verdict"],
        "variant b costs 18% less per request, p < 0.001"
    );
    // Latency: geometric means √(90·110) and √(180·220), a ratio of exactly 1/2, each
    // latency kept within 1 % by the sketch.
    let latency = metric("latency");
    let ratio = latency["relative_difference"].as_f64().unwrap();
    assert!((ratio + 50.0).abs() <= 1.5, "{ratio}");
    let verdict = latency["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("variant b is ") && verdict.ends_with("% faster, p < 0.001"),
        "{verdict}"
    );
    // 400/400 against 50/50: no mismatch; the 10 of variant c are left out and said.
    assert_eq!(results["sample_ratio"]["chi_square"], 0.0);
    assert_eq!(results["sample_ratio"]["mismatch"], false);
    assert_eq!(results["sample_ratio"]["unknown_variant_requests"], 10);

    // A window before the events: nothing yet.
    let early = app
        .data(&format!(
            "{API}/experiments/{id}/results?from=2026-03-10T11:00:00Z&to=2026-03-10T12:00:00Z"
        ))
        .await;
    assert_eq!(early["variants"][0]["requests"], 0);
    assert_eq!(
        early["sample_ratio"]["verdict"],
        "not enough data yet: no requests in the experiment's variants"
    );
    // Another environment: nothing either.
    let staging = app
        .data(&format!(
            "{API}/experiments/{id}/results?environment=staging"
        ))
        .await;
    assert_eq!(staging["variants"][1]["requests"], 0);

    // Bad input names the field.
    for (path, field, code) in [
        (format!("{API}/experiments/not-a-uuid/results"), "id", 400),
        (
            format!("{API}/experiments/{id}/results?from=yesterday"),
            "from",
            400,
        ),
        (
            format!("{API}/experiments/{id}/results?environment=moon"),
            "environment",
            400,
        ),
        (
            format!("{API}/experiments/{id}/results?colour=red"),
            "colour",
            400,
        ),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, code, "{path}: {body}");
        assert!(body.to_string().contains(field), "{path}: {body}");
    }
    let (status, body) = app
        .get(&format!(
            "{API}/experiments/{}/results",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

/// Scores end to end: sent before or after their events, sent twice, or for events of no
/// experiment; the results show each variant's scores and compare their means, with numbers
/// computed here from the scores sent.
#[tokio::test]
async fn scores_join_their_events_and_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let id = running_experiment(&app, "tone", "prompt_testing").await;
    app.clock.set(now() + Duration::hours(1));

    // 40 events per variant; each gets a helpfulness score: control 3 or 4 (alternating),
    // b 4 or 5. The first 20 of each variant also get a thumbs label: "up" for even events.
    let score = |variant: &str, i: usize| {
        let base = if variant == "control" { 3 } else { 4 };
        json!({"score_id": format!("h-{variant}-{i}"), "event_id": format!("{variant}-{i}"),
               "name": "helpfulness", "value": base + (i % 2)})
    };
    let thumbs = |variant: &str, i: usize| {
        json!({"score_id": format!("t-{variant}-{i}"), "event_id": format!("{variant}-{i}"),
               "name": "thumbs", "label": if i.is_multiple_of(2) { "up" } else { "down" }})
    };
    let post_scores = |scores: Vec<Value>| {
        let app = &app;
        async move { app.send("POST", "/v1/scores", Some(json!(scores))).await }
    };
    // Half the scores arrive before their events.
    let early: Vec<Value> = ["control", "b"]
        .iter()
        .flat_map(|v| (0..20).map(move |i| score(v, i)))
        .collect();
    let (status, body) = post_scores(early.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["accepted"], 40);
    let mut sent = events("control", &id, 40, 0, [100, 100], ["0.001", "0.001"]);
    sent.extend(events("b", &id, 40, 0, [100, 100], ["0.001", "0.001"]));
    let (status, body) = app.post(&sent).await;
    assert_eq!(status, 200, "{body}");
    // The rest after them, with the labels; a score sent again with another value counts
    // once (the first copy); a score of an unknown event and one of another feature's event
    // count nowhere. A bad score in the batch is refused alone, naming its field.
    let mut late: Vec<Value> = ["control", "b"]
        .iter()
        .flat_map(|v| (20..40).map(move |i| score(v, i)))
        .collect();
    late.extend(
        ["control", "b"]
            .iter()
            .flat_map(|v| (0..20).map(move |i| thumbs(v, i))),
    );
    late.push(json!({"score_id": "h-control-0", "event_id": "control-0", "name": "helpfulness", "value": 100}));
    late.push(
        json!({"score_id": "ghost", "event_id": "nobody", "name": "helpfulness", "value": 100}),
    );
    late.push(json!({"score_id": "bad", "event_id": "control-1", "name": "helpfulness"}));
    let (status, body) = post_scores(late).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["data"]["accepted"].as_u64(),
            body["data"]["rejected"].as_u64()
        ),
        (Some(82), Some(1))
    );
    assert_eq!(body["data"]["errors"][0]["index"], 82);
    assert_eq!(body["data"]["errors"][0]["field"], "value");
    // A trailing event makes the projector's catch-up cover every score record before it
    // (the embedded log is one ordered partition).
    let (status, _) = app
        .post(&events(
            "other",
            "none",
            1,
            0,
            [100, 100],
            ["0.001", "0.001"],
        ))
        .await;
    assert_eq!(status, 200);
    app.wait_projected().await;

    let results = app.data(&format!("{API}/experiments/{id}/results")).await;
    let variant_scores = |v: usize| results["variants"][v]["scores"].as_array().unwrap().clone();
    let (control, b) = (variant_scores(0), variant_scores(1));
    // helpfulness: control 20 × 3 and 20 × 4: mean 3.5; s² = 40 · 0.25 / 39 = 0.256410,
    // se = 0.080064, t(0.975, 39) = 2.022691, interval 3.5 ∓ 0.161945.
    assert_eq!(
        (control[0]["name"].as_str(), control[0]["count"].as_u64()),
        (Some("helpfulness"), Some(40))
    );
    assert_close(
        control[0]["mean"].as_f64().unwrap(),
        3.5,
        1e-12,
        "control mean",
    );
    let interval = control[0]["mean_interval"].as_array().unwrap();
    assert_close(interval[0].as_f64().unwrap(), 3.5 - 0.161945, 1e-5, "low");
    assert_close(interval[1].as_f64().unwrap(), 3.5 + 0.161945, 1e-5, "high");
    assert_close(b[0]["mean"].as_f64().unwrap(), 4.5, 1e-12, "b mean");
    // thumbs: 10 up and 10 down in each variant.
    assert_eq!(
        (
            control[1]["name"].as_str(),
            control[1]["kind"].as_str(),
            control[1]["count"].as_u64()
        ),
        (Some("thumbs"), Some("label"), Some(20))
    );
    let labels: Vec<(String, u64)> = control[1]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["label"].as_str().unwrap().to_string(),
                l["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(labels, [("down".to_string(), 10), ("up".to_string(), 10)]);
    // b against control: t = 1/√(2 · 0.256410/40) = 8.83176, 78 degrees of freedom.
    let compared = results["comparisons"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "score")
        .unwrap()
        .clone();
    assert_eq!(compared["score"], "helpfulness");
    assert_close(compared["statistic"].as_f64().unwrap(), 8.83176, 1e-5, "t");
    assert_eq!(
        compared["verdict"],
        "variant b scores 29% higher on helpfulness, p < 0.001"
    );

    // Bad bodies are refused whole, naming the field.
    let (status, body) = post_scores(vec![
        json!({"score_id": "x", "event_id": "e", "name": "Bad Name", "value": 1}),
    ])
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "all_scores_rejected");
    assert_eq!(body["error"]["field"], "name");
    let (status, body) = app
        .send("POST", "/v1/scores", Some(json!({"not": "an array"})))
        .await;
    assert_eq!(status, 400, "{body}");
    app.stop().await;
}
