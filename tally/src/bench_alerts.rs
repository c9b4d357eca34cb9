//! `tally bench-alerts`: how long after its event is acknowledged a budget alert reaches its
//! webhook, against a running server.
//!
//! Each round uses a feature of its own: a daily budget of $1 on it (threshold 50 %) naming a
//! webhook this command serves on loopback, then one event costing $2. The time measured runs
//! from the ingest acknowledgement of that event to the first notification the webhook receives
//! for the budget — projection, evaluation and the first delivery attempt together. The
//! budgets and the channel are deleted at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::loadgen::{client_with_key, percentiles, Percentiles};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchAlertsArgs {
    /// Base URL of the server (ingest and query API), e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A platform_admin API key (creates budgets and a channel, sends events).
    #[arg(long, env = "TALLY_API_KEY", hide_env_values = true)]
    pub key: String,
    /// Rounds (budgets) to measure.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
}

const API: &str = "/api/platform/ai-management";

/// Serves a webhook on loopback; every body received goes to the channel returned.
async fn webhook() -> anyhow::Result<(String, mpsc::UnboundedReceiver<(Instant, Value)>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Arc::new(tx);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((Instant::now(), body.0));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}

async fn created(response: reqwest::Response, what: &str) -> anyhow::Result<String> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "creating {what}: {status} {body}");
    body["data"]["id"]
        .as_str()
        .map(String::from)
        .with_context(|| format!("creating {what}: no id in {body}"))
}

pub async fn run(args: BenchAlertsArgs) -> anyhow::Result<Percentiles> {
    let client = client_with_key(&args.key)?;
    let base = args.url.trim_end_matches('/');
    let (hook, mut received) = webhook().await?;
    let channel = created(
        client
            .post(format!("{base}{API}/notification-channels"))
            .json(&json!({"name": "bench-alerts", "type": "webhook", "url": hook}))
            .send()
            .await?,
        "the channel",
    )
    .await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut samples = Vec::new();
    let mut budgets = Vec::new();
    for round in 0..args.rounds {
        let feature = format!("bench-alerts-{}-{round}", &run[..8]);
        let budget = created(
            client
                .post(format!("{base}{API}/budgets"))
                .json(
                    &json!({"name": feature, "scope": "feature", "scope_value": feature,
                              "period": "daily", "amount_usd": "1", "thresholds_percent": [50],
                              "channels": [channel]}),
                )
                .send()
                .await?,
            "a budget",
        )
        .await?;
        budgets.push(budget.clone());
        let event = json!({
            "event_id": format!("{feature}-event"), "occurred_at": chrono::Utc::now().to_rfc3339(),
            "feature": feature, "model": "bench-model", "provider": "bench", "environment": "production",
            "operation": "chat", "status": "success", "latency_ms": 100.0,
            "input_tokens": 10, "output_tokens": 10, "cost_usd": "2",
        });
        let response = client
            .post(format!("{base}/v1/events"))
            .json(&json!([event]))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "POST /v1/events answered {}",
            response.status()
        );
        let acked = Instant::now();
        let deadline = acked + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, body) = tokio::time::timeout(left, received.recv())
                .await
                .context("no notification within 60 s")?
                .context("the webhook stopped")?;
            if body["alert"]["budget_id"] == json!(budget) {
                samples.push(at.duration_since(acked).as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    // Tidy up: the budgets, then the channel they named.
    for budget in budgets {
        let _ = client
            .delete(format!("{base}{API}/budgets/{budget}"))
            .send()
            .await;
    }
    let _ = client
        .delete(format!("{base}{API}/notification-channels/{channel}"))
        .send()
        .await;
    Ok(percentiles(samples))
}
