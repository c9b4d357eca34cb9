//! `tally loadgen` and `tally bench-query`: load and latency measurements against a running
//! server over HTTP (loopback only in this project's benchmarks).
//!
//! loadgen sends batches of unique events for one throw-away feature at a target rate with a
//! fixed number of connections, and reports sustained throughput, acknowledgement latency
//! (p50/p99), freshness (time from acknowledgement until `/features/{name}/metrics` counts the
//! batch and every batch acknowledged before it; polled every 20 ms, so a conservative upper
//! bound; a `--feature` that already has events is timed from the count it had before the
//! load) and the server's peak RSS (`--server-pid`, from /proc). A soak adds dashboard
//! queries at a steady pace (`--query-every-ms`, [`watch`]) and reports the run in slices
//! (`--slice-secs`, [`slices`]): throughput, acknowledgement latency and stalls, freshness,
//! query latency, RSS and retention passes per slice. bench-query issues one GET repeatedly and
//! reports its latency percentiles.

pub mod slices;
pub mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::progress::Progress;

#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// API key sent as a bearer token: `platform_admin`, or a key that may both send events
    /// and read metrics.
    #[arg(long, env = "TALLY_API_KEY", hide_env_values = true)]
    pub key: String,
    /// Target events per second.
    #[arg(long, default_value_t = 200_000)]
    pub rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Events per request.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Spread `occurred_at` uniformly over this many past days (0: now).
    #[arg(long, default_value_t = 0)]
    pub spread_days: u32,
    /// Feature name to send under (default: a fresh `loadgen-…` name per run).
    #[arg(long)]
    pub feature: Option<String>,
    /// Stop after this many events (default: rate × duration).
    #[arg(long)]
    pub total: Option<u64>,
    /// PID of the server, to report its peak RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Skip the freshness probe.
    #[arg(long)]
    pub no_freshness: bool,
    /// GET a dashboard (the load's feature page, the overview, the spend breakdown, in turn)
    /// every this many milliseconds while the load runs and until the freshness probe has seen
    /// its last events (0: none).
    #[arg(long, default_value_t = 0)]
    pub query_every_ms: u64,
    /// Also report the run in slices of this many seconds, e.g. 300 for a soak (0: none). With
    /// `--server-pid`, each slice has the server's RSS (sampled every second).
    #[arg(long, default_value_t = 0)]
    pub slice_secs: u64,
    /// How events are named: `sequential` (`<run>-<number>`), or random UUIDs as clients mostly
    /// send them — `uuid4` (122 random bits) or `uuid7` (time-ordered, 74 random bits).
    #[arg(long, value_enum, default_value_t = IdStyle::Sequential)]
    pub ids: IdStyle,
}

/// How the load generator names its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdStyle {
    Sequential,
    Uuid4,
    Uuid7,
}

impl IdStyle {
    fn id(self, rng: &mut SmallRng, run: &str, seq: u64, at_ms: i64) -> String {
        match self {
            IdStyle::Sequential => format!("{run}-{seq}"),
            IdStyle::Uuid4 => uuid::Builder::from_random_bytes(rng.gen())
                .into_uuid()
                .to_string(),
            IdStyle::Uuid7 => {
                uuid::Builder::from_unix_timestamp_millis(at_ms.max(0) as u64, &rng.gen())
                    .into_uuid()
                    .to_string()
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub events_acked: u64,
    pub requests: u64,
    pub failed_requests: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub ack_latency_ms: Percentiles,
    pub freshness_ms: Option<Percentiles>,
    /// The dashboard queries' latency (with `--query-every-ms`).
    pub query_ms: Option<Percentiles>,
    pub failed_queries: u64,
    pub server_peak_rss_mib: Option<f64>,
    /// Retention passes the server finished during the run, in seconds each.
    pub retention_pass_seconds: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<slices::SliceReport>,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
}

pub fn percentiles(mut v: Vec<f64>) -> Percentiles {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        v.get(((q * v.len() as f64).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    Percentiles {
        p50: at(0.5),
        p99: at(0.99),
        max: v.last().copied().unwrap_or(0.0),
        samples: v.len(),
    }
}

/// One request body of `n` unique events.
fn batch_body(
    rng: &mut SmallRng,
    run: &str,
    feature: &str,
    first_seq: u64,
    n: usize,
    spread_days: u32,
    ids: IdStyle,
) -> Vec<u8> {
    use std::io::Write;
    let now = Utc::now().timestamp_millis();
    let mut out = Vec::with_capacity(n * 330);
    out.push(b'[');
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        let back_ms = if spread_days == 0 {
            rng.gen_range(0..1000)
        } else {
            rng.gen_range(0..i64::from(spread_days) * 86_400_000)
        };
        let at = chrono::DateTime::from_timestamp_millis(now - back_ms).unwrap_or_default();
        let (model, provider) = [
            ("gpt-4o", "openai"),
            ("gpt-4o-mini", "openai"),
            ("claude-3-5-sonnet", "anthropic"),
        ][rng.gen_range(0..3)];
        let status = match rng.gen_range(0..1000) {
            0..=19 => "error",
            20..=24 => "timeout",
            _ => "success",
        };
        let seq = first_seq + i as u64;
        let id = ids.id(rng, run, seq, at.timestamp_millis());
        // Failed calls say what went wrong, as real clients' do.
        let message = match status {
            "error" => format!(
                r#","error_type":"server_error","error_message":"upstream answered 500 Internal Server Error for request {id}""#
            ),
            "timeout" => {
                r#","error_type":"timeout","error_message":"no answer within 30 s""#.to_string()
            }
            _ => String::new(),
        };
        let _ = write!(
            out,
            r#"{{"event_id":"{id}","occurred_at":"{at}","feature":"{feature}","model":"{model}","provider":"{provider}","environment":"production","operation":"chat","status":"{status}"{message},"latency_ms":{lat},"input_tokens":{inp},"output_tokens":{outp},"user_id":"u{user}"}}"#,
            at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            lat = rng.gen_range(20..4000),
            inp = rng.gen_range(10..3000),
            outp = rng.gen_range(0..800),
            user = rng.gen_range(0..500),
        );
    }
    out.push(b']');
    out
}

struct Shared {
    acked: AtomicU64,
    /// (ack instant, cumulative events acked at that moment)
    acks: Mutex<Vec<(Instant, u64)>>,
    /// (acked at, events, latency in ms)
    ack_latencies: Mutex<Vec<(Duration, u64, f64)>>,
    failed: AtomicU64,
    requests: AtomicU64,
    finished: std::sync::atomic::AtomicBool,
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<LoadReport> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .default_headers(bearer(&args.key)?)
        .build()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let feature = args
        .feature
        .clone()
        .unwrap_or_else(|| format!("loadgen-{run_id}"));
    let total = args.total.unwrap_or(args.rate * args.duration);
    let batches = total.div_ceil(args.batch_size as u64);
    let interval = Duration::from_secs_f64(args.batch_size as f64 / args.rate.max(1) as f64);
    let shared = Arc::new(Shared {
        acked: AtomicU64::new(0),
        acks: Mutex::new(Vec::new()),
        ack_latencies: Mutex::new(Vec::new()),
        failed: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        finished: std::sync::atomic::AtomicBool::new(false),
    });
    let next_batch = Arc::new(AtomicU64::new(0));
    let metrics_url = feature_metrics_url(&args.target, &feature);
    // A feature that already has events (a second run under the same `--feature`): the probe
    // waits for the count to pass what it was before the load, not for the load's total.
    let counted_before = if args.no_freshness {
        0
    } else {
        counted_before_load(&client, &metrics_url).await?
    };
    let started = Instant::now();
    // What times the server's answers runs on a thread and runtime of its own, with its own
    // connections: on the load's runtime it would wait behind the batches being built there,
    // and report the load generator's own delays as the server's.
    let freshness = if args.no_freshness {
        None
    } else {
        let (url, shared) = (metrics_url.clone(), shared.clone());
        Some(watch::on_own_thread(
            "loadgen-fresh",
            &args.key,
            move |client| probe_freshness(client, url, shared, counted_before, started),
        )?)
    };
    let progress = tokio::spawn(report_progress(shared.clone(), total));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let queries = if args.query_every_ms > 0 {
        let (urls, every, stop) = (
            watch::dashboard_urls(&args.target, &feature),
            Duration::from_millis(args.query_every_ms),
            stop.clone(),
        );
        Some(watch::on_own_thread(
            "loadgen-query",
            &args.key,
            move |client| watch::query_load(client, urls, every, started, stop),
        )?)
    } else {
        None
    };
    let server = tokio::spawn(watch::watch_server(
        client.clone(),
        args.target.clone(),
        args.server_pid.filter(|_| args.slice_secs > 0),
        started,
        stop.clone(),
    ));
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (client, shared, next_batch, args, feature, run_id) = (
            client.clone(),
            shared.clone(),
            next_batch.clone(),
            args.clone(),
            feature.clone(),
            run_id.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(w as u64);
            let url = format!("{}/v1/events", args.target);
            loop {
                let b = next_batch.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return;
                }
                let due = started + interval.mul_f64(b as f64);
                tokio::time::sleep_until(due.into()).await;
                let n = (total - b * args.batch_size as u64).min(args.batch_size as u64) as usize;
                let body = batch_body(
                    &mut rng,
                    &run_id,
                    &feature,
                    b * args.batch_size as u64,
                    n,
                    args.spread_days,
                    args.ids,
                );
                let sent = Instant::now();
                shared.requests.fetch_add(1, Ordering::Relaxed);
                let ok = send_with_retry(&client, &url, body).await;
                if ok {
                    let ms = sent.elapsed().as_secs_f64() * 1000.0;
                    let acked = shared.acked.fetch_add(n as u64, Ordering::AcqRel) + n as u64;
                    if let Ok(mut a) = shared.acks.lock() {
                        a.push((Instant::now(), acked));
                    }
                    if let Ok(mut l) = shared.ack_latencies.lock() {
                        l.push((started.elapsed(), n as u64, ms));
                    }
                } else {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await.context("worker")?;
    }
    shared.finished.store(true, Ordering::Release);
    let seconds = started.elapsed().as_secs_f64();
    progress.await.context("progress")?;
    let freshness = match freshness {
        Some(task) => Some(task.await.context("freshness probe")??),
        None => None,
    };
    stop.store(true, Ordering::Release);
    let queries = match queries {
        Some(task) => Some(task.await.context("queries")??),
        None => None,
    };
    let server = server.await.context("server watch")?;
    let acked = shared.acked.load(Ordering::Acquire);
    let recorded = slices::Recorded {
        acks: shared
            .ack_latencies
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default(),
        freshness: freshness.clone().unwrap_or_default(),
        queries: queries.clone().unwrap_or_default(),
        rss: server.rss,
        cpu: server.cpu,
        retention_passes: server.retention_passes,
    };
    let plain = |samples: &[(Duration, f64)]| percentiles(samples.iter().map(|s| s.1).collect());
    Ok(LoadReport {
        events_acked: acked,
        requests: shared.requests.load(Ordering::Relaxed),
        failed_requests: shared.failed.load(Ordering::Relaxed),
        seconds,
        events_per_second: acked as f64 / seconds,
        ack_latency_ms: percentiles(recorded.acks.iter().map(|a| a.2).collect()),
        freshness_ms: freshness.as_deref().map(plain),
        query_ms: queries
            .as_ref()
            .map(|q| percentiles(q.iter().filter(|s| s.2).map(|s| s.1).collect())),
        failed_queries: queries.iter().flatten().filter(|s| !s.2).count() as u64,
        server_peak_rss_mib: args
            .server_pid
            .and_then(|pid| watch::status_mib(pid, "VmHWM:")),
        retention_pass_seconds: recorded.retention_passes.iter().map(|p| p.1).collect(),
        // The slices cover the load; what the watchers saw while the freshness probe waited for
        // the last events counts in the last slice.
        slices: slices::slices(
            &recorded,
            Duration::from_secs(args.slice_secs),
            Duration::from_secs_f64(seconds),
        ),
    })
}

/// How long one batch keeps being offered while the server pushes back (429/503): backpressure
/// is the server pacing the load, not a failure, so a `--total` load arrives whole.
const BACKPRESSURE_PATIENCE: Duration = Duration::from_secs(300);

/// Sends one batch; retries on 429/503 for up to [`BACKPRESSURE_PATIENCE`], each time after a
/// fifth of the advised `Retry-After` (the server's advice is in whole seconds; a load generator
/// probes sooner), and on transport errors at most 20 times. The batch's acknowledgement latency
/// is measured from its first attempt, so it includes the time spent pushed back.
async fn send_with_retry(client: &reqwest::Client, url: &str, body: Vec<u8>) -> bool {
    let first = Instant::now();
    let mut transport_errors = 0;
    while transport_errors < 20 && first.elapsed() < BACKPRESSURE_PATIENCE {
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status() == 429 || r.status() == 503 => {
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1u64);
                tokio::time::sleep(Duration::from_millis(wait * 200)).await;
            }
            Ok(r) => {
                eprintln!(
                    "request failed: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                );
                return false;
            }
            Err(err) => {
                eprintln!("request failed: {err}");
                transport_errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    false
}

/// Shows the events acknowledged so far until the senders are done.
async fn report_progress(shared: Arc<Shared>, total: u64) {
    let mut progress = Progress::new("loadgen", "events acked", total);
    let note = |shared: &Shared| {
        let failed = shared.failed.load(Ordering::Relaxed);
        if failed > 0 {
            format!("{failed} requests failed")
        } else {
            String::new()
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !shared.finished.load(Ordering::Acquire) {
        tick.tick().await;
        progress.set(shared.acked.load(Ordering::Acquire), &note(&shared));
    }
    progress.finish(shared.acked.load(Ordering::Acquire), &note(&shared));
}

/// How long the freshness probe waits, once the load is over, for a server that does not
/// answer (stopped, crashed) before it reports what it saw.
const UNANSWERED_PATIENCE: Duration = Duration::from_secs(10);

/// How long the freshness probe waits, once the load is over, for a count that has stopped
/// growing short of the events acknowledged ([`probe_freshness`]) before it reports what it
/// saw.
const STALLED_PATIENCE: Duration = Duration::from_secs(30);

/// The feature's metrics over 30 days: what the freshness probe polls.
fn feature_metrics_url(target: &str, feature: &str) -> String {
    format!("{target}/api/platform/ai-management/features/{feature}/metrics?time_range=30d")
}

/// The events the feature's metrics count before the load: 0 for a feature the server does
/// not know yet (`404`).
async fn counted_before_load(client: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("reading {url} before the load"))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(0);
    }
    let status = response.status();
    if !status.is_success() {
        let hint = match status {
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                " (the key must also read metrics; or pass --no-freshness)"
            }
            _ => "",
        };
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        anyhow::bail!("reading {url} before the load: status {status}{hint}: {body}");
    }
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("reading {url} before the load"))?;
    counted(&body).with_context(|| format!("{url} answered without data.usage.total_requests"))
}

/// The events a feature's metrics answer counts.
fn counted(metrics: &serde_json::Value) -> Option<u64> {
    metrics["data"]["usage"]["total_requests"].as_u64()
}

/// Polls the feature's total until everything is visible; freshness of each ack is the first
/// poll at which the visible total covered it. Each sample is stamped with its ack (time since
/// `started`).
///
/// The load's events are those counted on top of `counted_before`, the count before the load.
/// Two cases it cannot tell from the load's own events: earlier events that leave the 30-day
/// window (or are removed by retention) during the load make the count fall short, so the
/// probe gives up once the count has stopped growing for [`STALLED_PATIENCE`] after the load;
/// and earlier events acknowledged but not yet counted when the load began are taken for the
/// load's (they make its freshness look better). A fresh feature name has neither.
async fn probe_freshness(
    client: reqwest::Client,
    url: String,
    shared: Arc<Shared>,
    counted_before: u64,
    started: Instant,
) -> Vec<(Duration, f64)> {
    let mut samples = Vec::new();
    let mut next_ack = 0usize;
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut answered = Instant::now();
    // The highest count seen, and when it was first seen.
    let mut highest = (0, Instant::now());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let visible = match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                answered = Instant::now();
                r.json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| counted(&v))
                    .map_or(0, |n| n.saturating_sub(counted_before))
            }
            _ => 0,
        };
        let now = Instant::now();
        if shared.finished.load(Ordering::Acquire) && now - answered > UNANSWERED_PATIENCE {
            eprintln!(
                "loadgen: the server has not answered the freshness probe for {} s after the load; giving up on the events not yet seen",
                UNANSWERED_PATIENCE.as_secs()
            );
            break;
        }
        // Acks are recorded in order of their cumulative count, but concurrent senders may
        // record them slightly out of order: an ack counts as visible once every ack recorded
        // up to it is covered. Only the acks not yet sampled are looked at (a long run records
        // hundreds of thousands).
        let recorded = {
            let Ok(acks) = shared.acks.lock() else { break };
            let covered = acks[next_ack..]
                .iter()
                .rposition(|(_, cumulative)| *cumulative <= visible)
                .map_or(next_ack, |i| next_ack + i + 1);
            for (at, _) in &acks[next_ack..covered] {
                samples.push((*at - started, (now - *at).as_secs_f64() * 1000.0));
            }
            next_ack = covered;
            acks.len()
        };
        let acked = shared.acked.load(Ordering::Acquire);
        let done = shared.finished.load(Ordering::Acquire);
        // Every ack recorded and covered: a count that reaches the total before the last ack
        // is recorded (the projector can count a batch before its sender sees the answer)
        // does not end the probe without that ack's sample.
        if done && visible >= acked && next_ack >= recorded {
            break;
        }
        if visible > highest.0 {
            highest = (visible, now);
        }
        if done && now - highest.1 > STALLED_PATIENCE {
            eprintln!(
                "loadgen: the feature's count has not grown for {} s after the load, {visible} of {acked} acknowledged events counted (earlier events of the feature may have left the 30-day window); giving up on the rest",
                STALLED_PATIENCE.as_secs(),
            );
            break;
        }
    }
    samples
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchQueryArgs {
    /// Full URL to GET.
    #[arg(long)]
    pub url: String,
    /// API key sent as a bearer token.
    #[arg(long, env = "TALLY_API_KEY", hide_env_values = true)]
    pub key: String,
    /// Requests to send.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// The URL is a console page: sign in with the key through the console's form first and
    /// send the session cookie (the key itself is never sent to the page).
    #[arg(long)]
    pub console: bool,
    /// Also write every request as a line `start_ms latency_ms` (start from the first request
    /// timed) to this file, to see when the slow ones happen.
    #[arg(long)]
    pub samples_out: Option<std::path::PathBuf>,
}

pub async fn bench_query(args: BenchQueryArgs) -> anyhow::Result<Percentiles> {
    let client = if args.console {
        console_client(&args.url, &args.key).await?
    } else {
        client_with_key(&args.key)?
    };
    let first = client.get(&args.url).send().await?;
    anyhow::ensure!(
        first.status().is_success(),
        "GET {} answered {}",
        args.url,
        first.status()
    );
    let remaining = Arc::new(AtomicU64::new(args.requests as u64));
    let samples = Arc::new(Mutex::new(Vec::with_capacity(args.requests)));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, url, remaining, samples) = (
            client.clone(),
            args.url.clone(),
            remaining.clone(),
            samples.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while remaining
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
                .is_ok()
            {
                let t = Instant::now();
                // Timed until the whole body is in, as a client sees the answer.
                let ok = match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    if let Ok(mut s) = samples.lock() {
                        s.push((
                            t.duration_since(began).as_secs_f64() * 1000.0,
                            t.elapsed().as_secs_f64() * 1000.0,
                        ));
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let collected = samples.lock().map(|s| s.clone()).unwrap_or_default();
    if let Some(path) = &args.samples_out {
        let lines: String = collected
            .iter()
            .map(|(start, ms)| format!("{start:.3} {ms:.3}\n"))
            .collect();
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(percentiles(
        collected.into_iter().map(|(_, ms)| ms).collect(),
    ))
}

/// A client signed in to the console at `url`'s origin with `key` (it sends the session
/// cookie on every request).
pub async fn console_client(url: &str, key: &str) -> anyhow::Result<reqwest::Client> {
    let origin = url
        .find("/platform/")
        .map(|i| &url[..i])
        .context("a console URL contains /platform/ai-management/")?;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let sign_in = format!("{origin}/platform/ai-management/sign-in");
    let form = plain.get(&sign_in).send().await?;
    let first_cookie = |r: &reqwest::Response, name: &str| -> Option<String> {
        r.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|kv| kv.starts_with(&format!("{name}=")))
            .map(str::to_string)
    };
    let pre = first_cookie(&form, "tally_sign_in").context("the sign-in form set no cookie")?;
    let body = form.text().await?;
    let token = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("the sign-in form carries no token")?
        .to_string();
    let signed = plain
        .post(&sign_in)
        .header(reqwest::header::COOKIE, pre)
        .form(&[("csrf", token.as_str()), ("key", key)])
        .send()
        .await?;
    let session = first_cookie(&signed, "tally_session")
        .with_context(|| format!("signing in to the console answered {}", signed.status()))?;
    let mut value = reqwest::header::HeaderValue::from_str(&session)?;
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, value);
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Headers carrying `key` as a bearer token.
fn bearer(key: &str) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
        .context("the API key is not a valid header value")?;
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(headers)
}

/// An HTTP client that sends `key` as a bearer token on every request.
pub fn client_with_key(key: &str) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .default_headers(bearer(key)?)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_schemas::validate::{parse_batch, BodyFormat, Limits};

    #[test]
    fn every_id_style_makes_a_valid_batch_of_distinct_ids() {
        for style in [IdStyle::Sequential, IdStyle::Uuid4, IdStyle::Uuid7] {
            let mut rng = SmallRng::seed_from_u64(1);
            let body = batch_body(&mut rng, "run", "f", 500, 1000, 0, style);
            let batch = parse_batch(&body, BodyFormat::JsonArray, &Limits::default(), Utc::now())
                .unwrap_or_else(|e| panic!("{style:?}: {e:?}"));
            assert_eq!(batch.events.len(), 1000, "{style:?}");
            let ids: std::collections::HashSet<_> = batch
                .events
                .iter()
                .map(|(_, e)| e.event_id.clone())
                .collect();
            assert_eq!(ids.len(), 1000, "{style:?}");
            for (_, e) in &batch.events {
                match style {
                    IdStyle::Sequential => {
                        assert!(e.event_id.starts_with("run-"), "{}", e.event_id)
                    }
                    IdStyle::Uuid4 | IdStyle::Uuid7 => {
                        let u = uuid::Uuid::parse_str(&e.event_id).expect("a uuid");
                        assert_eq!(u.to_string(), e.event_id, "canonical form");
                        let want = if style == IdStyle::Uuid4 { 4 } else { 7 };
                        assert_eq!(u.get_version_num(), want);
                        if let Some(ts) = u.get_timestamp() {
                            let (s, ns) = ts.to_unix();
                            let ms = s as i64 * 1000 + i64::from(ns / 1_000_000);
                            assert_eq!(ms, e.occurred_at_us / 1000, "v7 carries occurred_at");
                        }
                    }
                }
            }
        }
    }
}
