//! `tally demo`: seeds the product documents' features, providers, models and prices, then
//! drives realistic synthetic traffic through the real HTTP ingest path.
//!
//! Traffic shape: a daily rhythm (busiest mid-afternoon UTC), log-normal latencies with a
//! heavy Pareto tail, ~2% errors and ~0.5% timeouts, a few hundred users with a skewed activity
//! distribution, per-model token distributions, and the chatbot's production model switched from
//! `gpt-4o` to `claude-3-5-sonnet` three days ago. Fourteen days of history are backfilled first
//! so the 7-day and 30-day views have data at once.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Pareto};
use serde_json::{json, Value};
use tally_domain::audit::Change;
use tally_domain::config::{
    DeploySpec, FeatureSpec, FeatureStatus, ModelSpec, ModelStatus, ModelType, PriceSpec,
    ProviderSpec, ProviderStatus, ProviderType,
};
use tally_schemas::Environment;
use tracing::{info, warn};

use crate::progress::Progress;
use crate::stores::Stores;

/// (provider, model, type, input $/1M, output $/1M, cached input $/1M) in micro-dollars.
type ModelRow = (&'static str, &'static str, ModelType, i64, i64, Option<i64>);

const MODELS: &[ModelRow] = &[
    (
        "openai",
        "gpt-4o",
        ModelType::Llm,
        2_500_000,
        10_000_000,
        Some(1_250_000),
    ),
    (
        "openai",
        "gpt-4o-mini",
        ModelType::Llm,
        150_000,
        600_000,
        Some(75_000),
    ),
    (
        "openai",
        "text-embedding-3-small",
        ModelType::Embedding,
        20_000,
        0,
        None,
    ),
    (
        "anthropic",
        "claude-3-5-sonnet",
        ModelType::Llm,
        3_000_000,
        15_000_000,
        Some(300_000),
    ),
    (
        "anthropic",
        "claude-3-5-haiku",
        ModelType::Llm,
        800_000,
        4_000_000,
        Some(80_000),
    ),
    (
        "google",
        "gemini-1.5-flash",
        ModelType::Vision,
        75_000,
        300_000,
        Some(18_750),
    ),
    (
        "google",
        "gemini-1.5-pro",
        ModelType::Llm,
        1_250_000,
        5_000_000,
        Some(312_500),
    ),
];

const FEATURES: &[(&str, &str, &str)] = &[
    (
        "photo-tagging",
        "Photo Tagging",
        "Tags uploaded photos with objects, scenes and people.",
    ),
    ("chatbot", "Chatbot", "The in-app assistant."),
    (
        "ai-search",
        "AI Search",
        "Semantic search over the user's content.",
    ),
];

/// Seeds configuration (idempotent) and returns when prices are loaded.
pub async fn seed(stores: &Stores, now: DateTime<Utc>) -> anyhow::Result<()> {
    let config = stores.config.as_ref();
    let change = Change::local("demo", now);
    for (name, kind) in [
        ("openai", ProviderType::Openai),
        ("anthropic", ProviderType::Anthropic),
        ("google", ProviderType::Google),
    ] {
        config
            .upsert_provider(
                ProviderSpec {
                    name: name.into(),
                    provider_type: kind,
                    status: ProviderStatus::Active,
                    base_url: None,
                    api_key_env: Some(format!("{}_API_KEY", name.to_uppercase())),
                },
                &change,
            )
            .await?;
    }
    let since = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .context("date")?;
    for &(provider, model, kind, input, output, cached) in MODELS {
        config
            .upsert_model(
                ModelSpec {
                    name: model.into(),
                    provider: provider.into(),
                    model_type: kind,
                    version: None,
                    capabilities: vec![kind.as_str().to_string()],
                    status: ModelStatus::Available,
                },
                &change,
            )
            .await?;
        let price = PriceSpec {
            provider: provider.into(),
            model: model.into(),
            effective_from: since,
            input_per_mtok_micros: input,
            output_per_mtok_micros: output,
            cached_input_per_mtok_micros: cached,
        };
        if let Err(err) = config.add_price(price, &change).await {
            // Already seeded by an earlier run.
            tracing::debug!(error = %err, "price exists");
        }
    }
    for &(name, display, description) in FEATURES {
        config
            .upsert_feature(
                FeatureSpec {
                    name: name.into(),
                    display_name: display.into(),
                    description: Some(description.into()),
                    status: FeatureStatus::Active,
                    config: json!({}),
                },
                &change,
            )
            .await?;
    }
    if config.active_assignments().await?.is_empty() {
        let switch = now - chrono::Duration::days(3);
        let start = now - chrono::Duration::days(30);
        let plan = [
            ("photo-tagging", "google", "gemini-1.5-flash", start),
            ("chatbot", "openai", "gpt-4o", start),
            ("chatbot", "anthropic", "claude-3-5-sonnet", switch),
            ("ai-search", "openai", "text-embedding-3-small", start),
        ];
        for (feature, provider, model, at) in plan {
            for environment in Environment::ALL {
                config
                    .deploy(
                        DeploySpec {
                            feature: feature.into(),
                            environment,
                            provider: provider.into(),
                            model: model.into(),
                        },
                        // The demo's history: each assignment audited when it was made.
                        &Change::local("demo", at),
                    )
                    .await?;
            }
        }
    }
    seed_watchers(stores, &change).await?;
    stores.prices.refresh(config).await?;
    Ok(())
}

/// Budgets, alert rules, a prompt with four versions and an experiment, so every screen of the
/// console has something to show (each created once, by name).
async fn seed_watchers(stores: &Stores, change: &Change) -> anyhow::Result<()> {
    use tally_domain::config::{
        AlertMetric, AlertRuleSpec, BudgetPeriod, BudgetScope, BudgetSpec, Comparator,
        ExperimentSpec, ExperimentStatus, ExperimentType, PromptContent, PromptSpec, PromptStatus,
        RuleScope, RuleWindow, Severity, Variant,
    };
    let config = stores.config.as_ref();
    let budgets = config.list_budgets().await?;
    for (name, scope, value, period, dollars) in [
        (
            "Platform, monthly",
            BudgetScope::Global,
            None,
            BudgetPeriod::Monthly,
            3_000,
        ),
        (
            "Chatbot, daily",
            BudgetScope::Feature,
            Some("chatbot"),
            BudgetPeriod::Daily,
            150,
        ),
        (
            "Anthropic, weekly",
            BudgetScope::Provider,
            Some("anthropic"),
            BudgetPeriod::Weekly,
            900,
        ),
    ] {
        if budgets.iter().any(|b| b.spec.name == name) {
            continue;
        }
        config
            .create_budget(
                BudgetSpec {
                    name: name.into(),
                    scope,
                    scope_value: value.map(str::to_string),
                    period,
                    time_zone: "UTC".into(),
                    amount_micros: dollars * 1_000_000,
                    thresholds_percent: vec![50, 80, 100],
                    is_active: true,
                    channels: Vec::new(),
                },
                change,
            )
            .await?;
    }
    let rules = config.list_alert_rules().await?;
    let chatbot = RuleScope {
        feature: Some("chatbot".into()),
        model: None,
        provider: None,
        environment: None,
    };
    for (name, metric, threshold, window, severity) in [
        (
            "Chatbot errors",
            AlertMetric::ErrorRate,
            5.0,
            RuleWindow::FiveMinutes,
            Severity::Critical,
        ),
        (
            "Chatbot slow",
            AlertMetric::LatencyP95Ms,
            2_500.0,
            RuleWindow::FifteenMinutes,
            Severity::Warning,
        ),
    ] {
        if rules.iter().any(|r| r.spec.name == name) {
            continue;
        }
        config
            .create_alert_rule(
                AlertRuleSpec {
                    name: name.into(),
                    metric,
                    scope: chatbot.clone(),
                    comparator: Comparator::Gt,
                    threshold,
                    window,
                    min_requests: 20,
                    for_seconds: 60,
                    severity,
                    channels: Vec::new(),
                },
                change,
            )
            .await?;
    }
    if !config
        .list_prompts()
        .await?
        .iter()
        .any(|p| p.name == "chatbot-system")
    {
        let content = |text: &str, variables: &[&str]| PromptContent {
            content: text.into(),
            variables: variables.iter().map(|v| v.to_string()).collect(),
            created_by: Some("demo".into()),
            at: change.at,
        };
        let (prompt, first) = config
            .create_prompt(
                PromptSpec {
                    name: "chatbot-system".into(),
                    description: Some("The chatbot's system prompt.".into()),
                    feature: Some("chatbot".into()),
                    tags: vec!["system".into()],
                    content: content(
                        "You are the assistant of {{product}}. Be brief.",
                        &["product"],
                    ),
                },
                change,
            )
            .await?;
        // The demo's traffic names versions 2 and then 3 (since the chatbot's model switch):
        // those two were approved in turn, 3 is active; 4 is a draft under way.
        let mut versions = vec![first.version];
        for (text, variables) in [
            (
                "You are the assistant of {{product}}. Be brief and friendly.",
                &["product"][..],
            ),
            (
                "You are the assistant of {{product}}. Be brief; answer in {{language}}.",
                &["product", "language"][..],
            ),
            (
                "You are the assistant of {{product}}. Be brief; answer in {{language}}; cite the help centre.",
                &["product", "language"][..],
            ),
        ] {
            let (version, _) = config
                .add_prompt_version(prompt.id, content(text, variables), change)
                .await?;
            versions.push(version.version);
        }
        for &version in &versions[..3] {
            for status in [PromptStatus::Review, PromptStatus::Approved] {
                config
                    .set_prompt_status(prompt.id, version, status, change)
                    .await?;
            }
        }
        config
            .activate_prompt_version(prompt.id, versions[2], change)
            .await?;
    }
    if !config
        .list_experiments()
        .await?
        .iter()
        .any(|e| e.spec.name == DEMO_EXPERIMENT)
    {
        let created = config
            .create_experiment(
                ExperimentSpec {
                    name: DEMO_EXPERIMENT.into(),
                    description: Some(
                        "Which model answers the chatbot better for the cost?".into(),
                    ),
                    feature: "chatbot".into(),
                    experiment_type: ExperimentType::ModelComparison,
                    variants: vec![
                        Variant {
                            name: "control".into(),
                            traffic_percent: 50,
                            config: json!({"provider": "openai", "model": "gpt-4o"}),
                        },
                        Variant {
                            name: "treatment".into(),
                            traffic_percent: 50,
                            config: json!({"provider": "anthropic", "model": "claude-3-5-sonnet"}),
                        },
                    ],
                },
                change,
            )
            .await?;
        config
            .transition_experiment(created.id, ExperimentStatus::Running, change)
            .await?;
    }
    Ok(())
}

/// The experiment the demo runs (its events name it by name).
pub const DEMO_EXPERIMENT: &str = "chatbot: gpt-4o vs claude";

/// Generates synthetic events.
pub struct TrafficGenerator {
    rng: SmallRng,
    users: Vec<String>,
    switch_at: DateTime<Utc>,
    seq: u64,
    run: String,
}

impl TrafficGenerator {
    pub fn new(now: DateTime<Utc>) -> Self {
        TrafficGenerator {
            rng: SmallRng::from_entropy(),
            users: (0..300).map(|i| format!("user-{i:03}")).collect(),
            switch_at: now - chrono::Duration::days(3),
            seq: 0,
            run: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        }
    }

    /// Relative traffic at `t` (1.0 at the daily peak, ~0.25 at night).
    pub fn rhythm(t: DateTime<Utc>) -> f64 {
        let hour =
            f64::from(chrono::Timelike::hour(&t)) + f64::from(chrono::Timelike::minute(&t)) / 60.0;
        0.625 + 0.375 * ((hour - 9.0) / 24.0 * std::f64::consts::TAU).sin()
    }

    fn pick_model(
        &mut self,
        feature: &str,
        env: Environment,
        at: DateTime<Utc>,
    ) -> (&'static str, &'static str) {
        match feature {
            "photo-tagging" if env == Environment::Staging && self.rng.gen_bool(0.1) => {
                ("custom-vllm", "llava-next")
            }
            "photo-tagging" => ("google", "gemini-1.5-flash"),
            "chatbot" if at >= self.switch_at => ("anthropic", "claude-3-5-sonnet"),
            "chatbot" => ("openai", "gpt-4o"),
            _ if self.rng.gen_bool(0.2) => ("openai", "gpt-4o-mini"),
            _ => ("openai", "text-embedding-3-small"),
        }
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        LogNormal::new(median.ln(), sigma)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(median)
    }

    /// One event at `at`.
    pub fn event(&mut self, at: DateTime<Utc>) -> Value {
        self.seq += 1;
        let feature = [
            "chatbot",
            "chatbot",
            "photo-tagging",
            "ai-search",
            "ai-search",
        ][self.rng.gen_range(0..5)];
        let env = match self.rng.gen_range(0..100) {
            0..=79 => Environment::Production,
            80..=92 => Environment::Staging,
            _ => Environment::Development,
        };
        // A third of the chatbot's production calls are in the seeded experiment: half on
        // gpt-4o (control), half on claude (treatment).
        let variant =
            (feature == "chatbot" && env == Environment::Production && self.rng.gen_bool(0.3))
                .then(|| {
                    if self.rng.gen_bool(0.5) {
                        "control"
                    } else {
                        "treatment"
                    }
                });
        let (provider, model) = match variant {
            Some("control") => ("openai", "gpt-4o"),
            Some(_) => ("anthropic", "claude-3-5-sonnet"),
            None => self.pick_model(feature, env, at),
        };
        let (median_ms, input, output, operation) = match (feature, model) {
            ("chatbot", "claude-3-5-sonnet") => (
                1400.0,
                self.lognormal(900.0, 0.8),
                self.lognormal(260.0, 0.7),
                "chat",
            ),
            ("chatbot", _) => (
                1100.0,
                self.lognormal(900.0, 0.8),
                self.lognormal(240.0, 0.7),
                "chat",
            ),
            ("photo-tagging", _) => (
                650.0,
                self.lognormal(1100.0, 0.3),
                self.lognormal(60.0, 0.5),
                "vision",
            ),
            (_, "gpt-4o-mini") => (
                450.0,
                self.lognormal(600.0, 0.6),
                self.lognormal(120.0, 0.6),
                "completion",
            ),
            _ => (90.0, self.lognormal(40.0, 0.5), 0.0, "embedding"),
        };
        let mut latency = self.lognormal(median_ms, 0.45);
        if self.rng.gen_bool(0.01) {
            latency += Pareto::new(median_ms, 1.5)
                .map(|d| d.sample(&mut self.rng))
                .unwrap_or(median_ms);
        }
        let roll: f64 = self.rng.gen();
        let (status, error_type) = if roll < 0.005 {
            latency = 30_000.0;
            ("timeout", Some("deadline_exceeded"))
        } else if roll < 0.025 {
            (
                "error",
                Some(["rate_limit", "server_error", "invalid_request"][self.rng.gen_range(0..3)]),
            )
        } else {
            ("success", None)
        };
        let input = input.round() as u64;
        let cached = if operation == "chat" && self.rng.gen_bool(0.3) {
            input / 2
        } else {
            0
        };
        // Skewed activity: low user numbers are much busier.
        let user_idx = ((self.rng.gen::<f64>().powi(3)) * self.users.len() as f64) as usize;
        let user = &self.users[user_idx.min(self.users.len() - 1)];
        let mut event = json!({
            "event_id": format!("demo-{}-{}", self.run, self.seq),
            "occurred_at": at.to_rfc3339(),
            "feature": feature, "model": model, "provider": provider,
            "environment": env.as_str(), "operation": operation, "status": status,
            "latency_ms": (latency * 10.0).round() / 10.0,
            "input_tokens": input,
            "output_tokens": if status == "success" { output.round() as u64 } else { 0 },
            "cached_input_tokens": cached,
            "user_id": user,
        });
        if let Some(kind) = error_type {
            event["error_type"] = json!(kind);
            event["error_message"] = json!(match kind {
                "rate_limit" => "429 Too Many Requests: rate limit reached for requests per minute",
                "server_error" => "500 Internal Server Error: the server had an error while processing the request",
                "invalid_request" => "400 Bad Request: this model's maximum context length was exceeded",
                _ => "no answer within 30 s",
            });
        }
        if let Some(variant) = variant {
            event["experiment_id"] = json!(DEMO_EXPERIMENT);
            event["variant"] = json!(variant);
        }
        if feature == "chatbot" {
            event["prompt_id"] = json!("chatbot-system");
            event["prompt_version"] = json!(if at >= self.switch_at { 3 } else { 2 });
        }
        event
    }
}

impl TrafficGenerator {
    /// Scores for some of `events` that are in the experiment, as users and an evaluator
    /// would send them: a `helpfulness` grade from 1 to 5 for about a third (the treatment, on
    /// claude, a little
    /// higher on average) and a `thumbs` label for about a fifth (about 80 % up).
    pub fn scores(&mut self, events: &[Value]) -> Vec<Value> {
        let mut out = Vec::new();
        for event in events {
            let Some(variant) = event["variant"].as_str() else {
                continue;
            };
            let id = event["event_id"].as_str().unwrap_or_default();
            if self.rng.gen_bool(0.35) {
                let centre = if variant == "treatment" { 4.0 } else { 3.7 };
                let grade = (centre + self.rng.gen_range(-1.5..1.5f64))
                    .round()
                    .clamp(1.0, 5.0);
                out.push(
                    json!({"score_id": format!("{id}-helpfulness"), "event_id": id,
                                "name": "helpfulness", "value": grade}),
                );
            }
            if self.rng.gen_bool(0.2) {
                let up = self
                    .rng
                    .gen_bool(if variant == "treatment" { 0.84 } else { 0.8 });
                out.push(json!({"score_id": format!("{id}-thumbs"), "event_id": id,
                                "name": "thumbs", "label": if up { "up" } else { "down" }}));
            }
        }
        out
    }
}

async fn post(client: &reqwest::Client, url: &str, events: &[Value]) -> anyhow::Result<()> {
    let response = client.post(url).json(events).send().await?;
    if !response.status().is_success() {
        anyhow::bail!(
            "ingest answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Posts `scores` unless there are none.
async fn post_scores(
    client: &reqwest::Client,
    url: &str,
    scores: Vec<Value>,
) -> anyhow::Result<()> {
    if scores.is_empty() {
        return Ok(());
    }
    post(client, url, &scores).await
}

/// Backfills `days` of history (~`history_per_minute` events a minute at the daily peak), then
/// sends live traffic (~`per_second` at the daily peak) until the process stops.
pub async fn drive(
    base_url: String,
    ingest_key: String,
    days: i64,
    history_per_minute: f64,
    per_second: f64,
) -> anyhow::Result<()> {
    let client = crate::loadgen::client_with_key(&ingest_key)?;
    let url = format!("{base_url}/v1/events");
    let scores_url = format!("{base_url}/v1/scores");
    let now = Utc::now();
    let mut generator = TrafficGenerator::new(now);
    let mut batch = Vec::with_capacity(1000);
    // Newest first, so the short windows fill up before the long ones.
    let newest = now - chrono::Duration::minutes(2);
    let oldest = now - chrono::Duration::days(days);
    let per_minute = |t| (history_per_minute * TrafficGenerator::rhythm(t)).round() as u32;
    let minutes = std::iter::successors(Some(newest), |t| Some(*t - chrono::Duration::minutes(1)))
        .take_while(|t| *t > oldest);
    let total = minutes.clone().map(|t| u64::from(per_minute(t))).sum();
    let mut progress = Progress::new("demo backfill", "events", total);
    let mut sent = 0u64;
    for t in minutes {
        for _ in 0..per_minute(t) {
            let at = t + chrono::Duration::milliseconds(generator.rng.gen_range(0..60_000));
            batch.push(generator.event(at));
            if batch.len() == 1000 {
                post(&client, &url, &batch).await?;
                post_scores(&client, &scores_url, generator.scores(&batch)).await?;
                sent += batch.len() as u64;
                batch.clear();
                progress.set(sent, "");
            }
        }
    }
    if !batch.is_empty() {
        sent += batch.len() as u64;
        post(&client, &url, &batch).await?;
        post_scores(&client, &scores_url, generator.scores(&batch)).await?;
        batch.clear();
    }
    progress.finish(sent, "");
    info!(events = sent, days, "demo history backfilled");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now = Utc::now();
        let n = (per_second * 0.5 * TrafficGenerator::rhythm(now)).round() as u32;
        let events: Vec<Value> = (0..n.max(1)).map(|_| generator.event(now)).collect();
        if let Err(err) = post(&client, &url, &events).await {
            warn!(error = %err, "demo traffic batch failed; retrying next tick");
            continue;
        }
        if let Err(err) = post_scores(&client, &scores_url, generator.scores(&events)).await {
            warn!(error = %err, "demo scores failed");
        }
    }
}
