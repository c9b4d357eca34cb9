//! Shared harness: start the real application on port 0 in a temp dir, talk HTTP to it, and a
//! seeded event corpus whose expected numbers the tests compute themselves.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tally::{Application, Settings, Stores};
use tally_domain::audit::Change;
use tally_domain::clock::{Clock, ManualClock};
use tally_domain::config::{
    ExperimentSpec, ExperimentType, FeatureSpec, FeatureStatus, ModelSpec, ModelStatus, ModelType,
    PriceSpec, ProviderSpec, ProviderStatus, ProviderType, Variant,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod standin;
pub mod topics;

pub const API: &str = "/api/platform/ai-management";

/// The fixed "now" of the tests: 2026-03-10T12:00:30Z.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 30)
        .single()
        .unwrap()
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Sends [`ADMIN_KEY`].
    pub client: reqwest::Client,
    /// Every route the app serves, with the access it needs.
    pub routes: Vec<tally_http::route::RouteInfo>,
    pub stores: Stores,
    /// The app's clock, starting at [`now`]; tests move it.
    pub clock: Arc<ManualClock>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The `tally` binary as a command whose environment holds only the test process's `PATH`: the
/// settings refuse `TALLY_*` variables they do not know, and tests sharing this process set some
/// (a provider's key, a hook's secret) for the application they run in it.
pub fn tally_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tally"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

/// The `platform_admin` key every test app is bootstrapped with (its client sends it).
pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef0123456789";

pub fn settings(dir: &Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        bootstrap_admin_key: Some(tally::settings::Secret::new(ADMIN_KEY)),
        ..Settings::default()
    }
}

/// [`settings`] with the event log on a Kafka topic (a consumer group of its own).
pub fn kafka_settings(dir: &Path, brokers: &str, topic: &str) -> Settings {
    let mut s = settings(dir);
    s.kafka_brokers = Some(brokers.to_string());
    s.kafka_topic = topic.to_string();
    s.kafka_group = format!("tally-test-{}", uuid::Uuid::new_v4().simple());
    s.kafka_produce_timeout_ms = 3_000;
    s
}

/// An HTTP client that sends `key` as a bearer token on every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

impl TestApp {
    pub async fn start(dir: &Path) -> TestApp {
        Self::start_with(settings(dir)).await
    }

    pub async fn start_with(settings: Settings) -> TestApp {
        let clock = Arc::new(ManualClock::new(now()));
        let app = Application::build_with_clock(settings, clock.clone() as Arc<dyn Clock>)
            .await
            .unwrap();
        let addr = app.local_addr();
        let stores = app.stores();
        let routes = app.routes().to_vec();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        TestApp {
            addr,
            routes,
            client: client_with_key(ADMIN_KEY),
            stores,
            clock,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post_raw(&self, body: Vec<u8>, content_type: &str) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/v1/events"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, events: &[Value]) -> (u16, Value) {
        self.post_raw(serde_json::to_vec(events).unwrap(), "application/json")
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Any request with an optional JSON body, as the admin.
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GET that must succeed; returns `data`.
    pub async fn data(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body["data"].clone()
    }

    /// The `id` of the first item of the listing at `path` whose `key` is `value`.
    pub async fn id_where(&self, path: &str, key: &str, value: &str) -> String {
        let list = self.data(path).await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|item| item[key] == value)
            .unwrap_or_else(|| panic!("no item of {path} with {key} = {value}: {list}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// GET that must succeed; returns the body as text (CSV, pages).
    pub async fn text(&self, path: &str) -> String {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.text().await.unwrap()
    }

    /// Waits until the projector has consumed everything in the log.
    pub async fn wait_projected(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = self.get("/readyz").await;
            let p = &body["pipeline"];
            if body["status"] == "ready" && p["lag_events"] == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "projection did not catch up: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text of `/metrics`, as the admin (which must be served).
    pub async fn metrics_text(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET /metrics");
        r.text().await.unwrap()
    }

    /// The line of metric `name` (without labels) on `/metrics`, if any.
    pub async fn metric(&self, name: &str) -> Option<String> {
        let text = self.metrics_text().await;
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(String::from)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// A price in micro-dollars per million tokens: (provider, model, from, input, output, cached).
pub type PriceRow = (
    &'static str,
    &'static str,
    DateTime<Utc>,
    i64,
    i64,
    Option<i64>,
);

pub fn price_table() -> Vec<PriceRow> {
    let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap();
    let change = Utc.with_ymd_and_hms(2026, 3, 9, 18, 0, 0).single().unwrap();
    vec![
        (
            "openai",
            "gpt-4o",
            t0,
            2_500_000,
            10_000_000,
            Some(1_250_000),
        ),
        ("openai", "gpt-4o", change, 2_000_000, 8_000_000, None),
        (
            "anthropic",
            "claude-3-5-sonnet",
            t0,
            3_000_000,
            15_000_000,
            Some(300_000),
        ),
    ]
}

pub async fn seed_config(stores: &Stores) {
    let c = stores.config.as_ref();
    // Seeded before any test's clock starts (the price table's first prices).
    let seeded_at = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap();
    let change = Change::local("test", seeded_at);
    for p in ["openai", "anthropic"] {
        c.upsert_provider(
            ProviderSpec {
                name: p.into(),
                provider_type: ProviderType::parse(p).unwrap(),
                status: ProviderStatus::Active,
                base_url: None,
                api_key_env: None,
            },
            &change,
        )
        .await
        .unwrap();
    }
    for (p, m) in [("openai", "gpt-4o"), ("anthropic", "claude-3-5-sonnet")] {
        c.upsert_model(
            ModelSpec {
                name: m.into(),
                provider: p.into(),
                model_type: ModelType::Llm,
                version: None,
                capabilities: vec![],
                status: ModelStatus::Available,
            },
            &change,
        )
        .await
        .unwrap();
    }
    for (p, m, from, i, o, cached) in price_table() {
        c.add_price(
            PriceSpec {
                provider: p.into(),
                model: m.into(),
                effective_from: from,
                input_per_mtok_micros: i,
                output_per_mtok_micros: o,
                cached_input_per_mtok_micros: cached,
            },
            &change,
        )
        .await
        .unwrap();
    }
    for f in ["chatbot", "photo-tagging"] {
        c.upsert_feature(
            FeatureSpec {
                name: f.into(),
                display_name: f.to_uppercase(),
                description: None,
                status: FeatureStatus::Active,
                config: json!({}),
            },
            &change,
        )
        .await
        .unwrap();
    }
    c.create_experiment(
        ExperimentSpec {
            name: EXPERIMENT.into(),
            description: None,
            feature: "chatbot".into(),
            experiment_type: ExperimentType::ModelComparison,
            variants: ["control", "b"]
                .into_iter()
                .map(|name| Variant {
                    name: name.into(),
                    traffic_percent: 50,
                    config: json!({}),
                })
                .collect(),
        },
        &change,
    )
    .await
    .unwrap();
    stores.prices.refresh(c).await.unwrap();
}

/// The experiment [`seed_config`] creates, which a third of the [`corpus`] names.
pub const EXPERIMENT: &str = "reply-model";

/// One sent event as the test knows it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub at: DateTime<Utc>,
    pub feature: String,
    pub provider: String,
    pub model: String,
    pub environment: String,
    pub status: String,
    pub latency_us: u64,
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub user: Option<String>,
    /// Reported cost in pico-dollars, when the event carried `cost_usd`.
    pub reported_pico: Option<i128>,
    /// `prompt_id` and `prompt_version`, when the event named them.
    pub prompt: Option<(String, String)>,
    /// `experiment_id` and `variant`, when the event named them.
    pub experiment: Option<(String, String)>,
}

impl Sent {
    pub fn json(&self) -> Value {
        let mut v = json!({
            "event_id": self.id, "occurred_at": self.at.to_rfc3339(), "feature": self.feature,
            "model": self.model, "provider": self.provider, "environment": self.environment,
            "operation": "chat", "status": self.status,
            "latency_ms": self.latency_us as f64 / 1000.0,
            "input_tokens": self.input, "output_tokens": self.output, "cached_input_tokens": self.cached,
        });
        if let Some(u) = &self.user {
            v["user_id"] = json!(u);
        }
        if let Some((id, version)) = &self.prompt {
            v["prompt_id"] = json!(id);
            v["prompt_version"] = json!(version);
        }
        if self.failed() {
            // From the event's id, so the rest of the corpus is unchanged.
            v["error_message"] =
                json!(format!("the provider refused {}\ntry again later", self.id));
        }
        if let Some((id, variant)) = &self.experiment {
            v["experiment_id"] = json!(id);
            v["variant"] = json!(variant);
        }
        if let Some(p) = self.reported_pico {
            v["cost_usd"] = json!(format!(
                "{}.{:012}",
                p / 1_000_000_000_000,
                p % 1_000_000_000_000
            ));
        }
        v
    }

    /// Expected cost in pico-dollars, computed from the price table by hand; `None` = unpriced.
    pub fn expected_pico(&self) -> Option<i128> {
        self.expected_pico_with(&price_table())
    }

    /// [`Sent::expected_pico`] with another price table.
    pub fn expected_pico_with(&self, table: &[PriceRow]) -> Option<i128> {
        if let Some(p) = self.reported_pico {
            return Some(p);
        }
        let price = table
            .iter()
            .copied()
            .filter(|(p, m, from, ..)| *p == self.provider && *m == self.model && *from <= self.at)
            .max_by_key(|(_, _, from, ..)| *from)?;
        let (_, _, _, input, output, cached) = price;
        let cached_price = cached.unwrap_or(input);
        Some(
            (self.input - self.cached) as i128 * input as i128
                + self.cached as i128 * cached_price as i128
                + self.output as i128 * output as i128,
        )
    }

    pub fn failed(&self) -> bool {
        self.status != "success"
    }
}

/// A seeded corpus over the 36 hours before [`now`].
pub fn corpus(n: usize, seed: u64) -> Vec<Sent> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let models = [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet"),
        ("custom", "mystery-model"),
    ];
    let features = ["chatbot", "chatbot", "photo-tagging", "search-x"];
    let envs = ["production", "production", "staging", "development"];
    (0..n)
        .map(|i| {
            let back_ms = rng.gen_range(0..36 * 3_600_000i64);
            let (provider, model) = models[rng.gen_range(0..models.len())];
            let roll = rng.gen_range(0..100);
            let status = if roll < 3 {
                "error"
            } else if roll < 5 {
                "timeout"
            } else {
                "success"
            };
            let input = rng.gen_range(0..5000u64);
            let heavy = rng.gen_bool(0.05);
            Sent {
                id: format!("ev-{seed}-{i}"),
                at: now() - chrono::Duration::milliseconds(back_ms),
                feature: features[rng.gen_range(0..features.len())].into(),
                provider: provider.into(),
                model: model.into(),
                environment: envs[rng.gen_range(0..envs.len())].into(),
                status: status.into(),
                latency_us: if heavy {
                    rng.gen_range(5_000_000..60_000_000)
                } else {
                    rng.gen_range(100..4_000_000) / 100 * 100
                },
                input,
                output: rng.gen_range(0..1500),
                cached: if rng.gen_bool(0.3) { input / 3 } else { 0 },
                user: rng
                    .gen_bool(0.9)
                    .then(|| format!("user-{}", rng.gen_range(0..400))),
                reported_pico: rng
                    .gen_bool(0.1)
                    .then(|| rng.gen_range(1..50_000_000_000i128)),
                // From the index, not the generator, so the rest of the corpus is unchanged:
                // a quarter name no prompt, the rest one of three versions of `greeter`.
                prompt: (!i.is_multiple_of(4))
                    .then(|| ("greeter".to_string(), (i % 3 + 1).to_string())),
                // Every third is in the experiment [`seed_config`] creates, in one of its two
                // variants or (one in 40) a variant it does not have.
                experiment: i.is_multiple_of(3).then(|| {
                    let variant = match i % 120 {
                        0 => "stray",
                        r if r % 2 == 0 => "control",
                        _ => "b",
                    };
                    (EXPERIMENT.to_string(), variant.to_string())
                }),
            }
        })
        .collect()
}

/// Sends the corpus in batches of `batch`, re-sending every 7th event a second time (a
/// duplicate) and asserting every batch is acknowledged.
pub async fn send_with_duplicates(app: &TestApp, events: &[Sent], batch: usize) {
    let mut payload: Vec<Value> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        payload.push(e.json());
        if i % 7 == 0 {
            payload.push(e.json());
        }
    }
    for chunk in payload.chunks(batch) {
        let (status, body) = app.post(chunk).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["accepted"], chunk.len(), "{body}");
    }
}

/// Nearest-rank quantile in milliseconds.
pub fn nearest_rank_ms(latencies_us: &mut [u64], q: f64) -> f64 {
    latencies_us.sort_unstable();
    let rank = ((q * latencies_us.len() as f64).ceil() as usize).max(1);
    latencies_us[rank - 1] as f64 / 1000.0
}

/// Exact decimal text of pico-dollars, as the API prints it (trailing zeros trimmed, ≥2 places).
pub fn usd_text(pico: i128) -> String {
    let mut frac = format!("{:012}", pico % 1_000_000_000_000);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{}.{}", pico / 1_000_000_000_000, frac)
}

pub fn assert_close(actual: f64, expected: f64, rel: f64, what: &str) {
    let tolerance = expected.abs() * rel + 1e-9;
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} (±{rel})"
    );
}

/// The answers of the main endpoints, with store-assigned ids and times blanked (they differ
/// between stores; everything else must not).
pub async fn answers(app: &TestApp) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for path in [
        format!("{API}/features/chatbot/metrics?time_range=24h"),
        format!("{API}/analytics/spending?time_range=7d&group_by=feature,provider,model,environment,day"),
        format!("{API}/analytics/usage?time_range=7d&group_by=feature,prompt_id,prompt_version"),
    ] {
        out.push(app.data(&path).await);
    }
    let mut performance = app
        .data(&format!("{API}/analytics/performance?time_range=7d"))
        .await;
    for m in performance["models"].as_array_mut().unwrap() {
        m["id"] = serde_json::Value::Null;
    }
    out.push(performance);
    // Feature ids are random per store; everything else must match.
    let mut features = app.data(&format!("{API}/features?time_range=24h")).await;
    for f in features["features"].as_array_mut().unwrap() {
        f["id"] = serde_json::Value::Null;
        for env in f["current_models"]
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            env["assigned_at"] = serde_json::Value::Null;
        }
    }
    out.push(features);
    // The experiment's results (its id is random per store; everything else must match).
    let experiment = app
        .id_where(&format!("{API}/experiments"), "name", EXPERIMENT)
        .await;
    let mut results = app
        .data(&format!(
            "{API}/experiments/{experiment}/results?time_range=7d"
        ))
        .await;
    assert!(
        results["variants"][0]["requests"].as_u64().unwrap() > 0,
        "the experiment had traffic: {results}"
    );
    results["experiment_id"] = serde_json::Value::Null;
    out.push(results);
    // The drill-down: the newest failed chatbot calls, two pages.
    let first = app
        .get(&format!(
            "{API}/events?feature=chatbot&status=failed&time_range=7d&limit=40"
        ))
        .await
        .1;
    let cursor = first["pagination"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let second = app
        .get(&format!(
            "{API}/events?feature=chatbot&status=failed&time_range=7d&limit=40&cursor={cursor}"
        ))
        .await
        .1;
    assert_eq!(second["data"].as_array().unwrap().len(), 40, "{second}");
    out.push(json!([first["data"], second["data"]]));
    // The business counters Prometheus scrapes (the pipeline's own metrics differ by process).
    let text = app.metrics_text().await;
    let mut business: Vec<&str> = text
        .lines()
        .filter(|l| {
            [
                "tally_requests_total{",
                "tally_request_duration_seconds_",
                "tally_tokens_total{",
                "tally_cost_usd_total{",
                "tally_unpriced_requests_total{",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    assert!(!business.is_empty(), "no business metrics in:\n{text}");
    business.sort_unstable();
    out.push(serde_json::json!(business));
    out
}

/// A variable the service tier's set-up script exports (`.ci/secure-services.sh`).
pub fn service_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (.ci/secure-services.sh)"))
}

/// Settings loaded from `env` the way the binary loads them (defaults, then the variables),
/// for a test app in `dir`: its address, data directory and admin key are [`settings`]'.
pub fn loaded_settings(dir: &Path, env: &[(&str, String)]) -> Settings {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.clone()));
    let mut s = Settings::load(None, env).expect("settings load");
    let base = settings(dir);
    s.listen = base.listen;
    s.data_dir = base.data_dir;
    s.bootstrap_admin_key = base.bootstrap_admin_key;
    s
}

/// The answers ([`answers`]) of an app started with `make(dir)` in a fresh directory, after
/// the test configuration and `events` (with duplicates, 500 a request) were sent and projected.
pub async fn answers_after(
    make: impl FnOnce(&Path) -> Settings,
    events: &[Sent],
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(make(dir.path())).await;
    seed_config(&app.stores).await;
    send_with_duplicates(&app, events, 500).await;
    app.wait_projected().await;
    let out = serde_json::json!(answers(&app).await);
    app.stop().await;
    out
}

/// Asserts two apps' answers are equal, naming where they first differ.
pub fn assert_same_answers(a: &serde_json::Value, b: &serde_json::Value) {
    assert!(
        a == b,
        "answers differ: {}",
        first_difference(a, b, String::new())
    );
}

/// Whether `schema` of the Postgres database holds the configuration's tables (a run that was
/// meant to keep its configuration there did).
pub async fn holds_configuration(pool: &sqlx::PgPool, schema: &str) -> bool {
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'ai_model_prices'")
        .bind(schema)
        .fetch_one(pool)
        .await
        .unwrap();
    tables == 1
}

/// Where two JSON documents first differ (for assertion messages).
pub fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: String) -> String {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                if x.get(k) != y.get(k) {
                    return first_difference(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        format!("{path}.{k}"),
                    );
                }
            }
            path
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p != q {
                    return first_difference(p, q, format!("{path}[{i}]"));
                }
            }
            path
        }
        _ => format!("{path}: {a} vs {b}"),
    }
}

impl TestApp {
    /// Waits until the projector has consumed (applied or dropped as duplicate) `events`.
    pub async fn wait_consumed(&self, events: u64) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (_, body) = self.get("/readyz").await;
            let p = &body["pipeline"];
            let consumed = p["events_projected"].as_u64().unwrap_or(0)
                + p["duplicates_dropped"].as_u64().unwrap_or(0);
            if consumed >= events {
                assert_eq!(consumed, events, "consumed more than was sent: {body}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "projection did not reach {events} events: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Rebuilds the projection of a stopped app's data directory from its log, as `tally rebuild`
/// does (prices and reprice requests loaded first).
pub async fn rebuild_offline(settings: &Settings) -> tally_projector::RebuildReport {
    let stores = tally::Stores::open(settings).await.unwrap();
    stores.refresh_pricing().await.unwrap();
    let report = tally_projector::rebuild(
        stores.log.clone(),
        stores.analytics.clone(),
        tally::startup::projector_config(settings, &stores),
    )
    .await
    .unwrap();
    drop(stores);
    report
}

/// How many messages [`send_with_duplicates`] sends for `n` events.
pub fn sent_with_duplicates(n: usize) -> u64 {
    (n + n.div_ceil(7)) as u64
}

/// A fresh Postgres schema on `url` (the service tier's database): the pool, the schema name,
/// and a URL whose connections use that schema.
pub async fn scoped_postgres(url: &str, prefix: &str) -> (sqlx::PgPool, String, String) {
    let schema = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let pool = tally_storage::config::postgres::connect(url).await.unwrap();
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    (pool, schema, scoped)
}

/// Scores for a corpus: every second event gets a numeric `quality` (0 to 5 in halves), every
/// fifth a `thumbs` label; every fourth score is sent twice (it must count once).
pub fn corpus_scores(events: &[Sent]) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if i.is_multiple_of(2) {
            out.push(json!({"score_id": format!("q-{}", e.id), "event_id": e.id,
                            "name": "quality", "value": (i % 11) as f64 / 2.0}));
        }
        if i.is_multiple_of(5) {
            out.push(json!({"score_id": format!("t-{}", e.id), "event_id": e.id,
                            "name": "thumbs", "label": if i.is_multiple_of(3) { "up" } else { "down" }}));
        }
    }
    let again: Vec<Value> = out.iter().step_by(4).cloned().collect();
    out.extend(again);
    out
}

/// How many `quality` scores of [`corpus_scores`] join the experiment [`seed_config`]
/// creates (its feature's events that name it).
pub fn joined_quality_scores(events: &[Sent]) -> u64 {
    events
        .iter()
        .enumerate()
        .filter(|(i, e)| i.is_multiple_of(2) && e.experiment.is_some() && e.feature == "chatbot")
        .count() as u64
}

/// Posts `scores` in batches, asserting each is accepted whole.
pub async fn send_scores(app: &TestApp, scores: &[Value], batch: usize) {
    for chunk in scores.chunks(batch) {
        let (status, body) = app.send("POST", "/v1/scores", Some(json!(chunk))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["accepted"], chunk.len(), "{body}");
    }
}

/// Waits until the experiment's results (7 days) hold `expected` `quality` scores.
pub async fn wait_scores(app: &TestApp, expected: u64) {
    let experiment = app
        .id_where(&format!("{API}/experiments"), "name", EXPERIMENT)
        .await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let results = app
            .data(&format!(
                "{API}/experiments/{experiment}/results?time_range=7d"
            ))
            .await;
        let joined: u64 = results["variants"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| v["scores"].as_array().unwrap().clone())
            .filter(|s| s["name"] == "quality")
            .map(|s| s["count"].as_u64().unwrap())
            .sum();
        if joined >= expected {
            assert_eq!(joined, expected, "more quality scores than were sent");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{joined} of {expected} quality scores joined"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
