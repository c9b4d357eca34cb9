//! What runs beside a load: dashboard queries at a steady pace (on a thread of their own,
//! [`on_own_thread`]), and a watch on the server (its RSS and CPU time from /proc every second,
//! its retention passes from `/metrics` every 5 seconds). Each sample is stamped with the time
//! since the run started, for [`super::slices`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The dashboard reads a soak keeps running: the load's feature page over 24 h, the overview,
/// and finance's spend breakdown by feature, model and day over 30 days.
pub fn dashboard_urls(target: &str, feature: &str) -> Vec<String> {
    let api = format!("{target}/api/platform/ai-management");
    vec![
        format!("{api}/features/{feature}/metrics?time_range=24h"),
        format!("{api}/overview"),
        format!("{api}/analytics/spending?time_range=30d&group_by=feature,model,day"),
    ]
}

/// Runs the future `watch` makes of a client of its own (bearer `key`) on a thread named
/// `name` with a single-threaded runtime of its own; its output arrives on the receiver. For
/// what times the server's answers beside a load: the load's own work (building batches) and
/// connections then never delay it.
pub fn on_own_thread<T, F>(
    name: &str,
    key: &str,
    watch: impl FnOnce(reqwest::Client) -> F + Send + 'static,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<T>>>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let key = key.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a watcher's runtime");
            // The client is built here, so its connections belong to this runtime.
            let done = runtime.and_then(|runtime| {
                let client = super::client_with_key(&key)?;
                Ok(runtime.block_on(watch(client)))
            });
            let _ = tx.send(done);
        })?;
    Ok(rx)
}

/// Failed queries whose cause [`query_load`] prints (to stderr), the first of a run.
const REPORTED_FAILURES: usize = 10;

/// GETs `urls` in turn, one every `every`, until `stop`; (answered at, ms, 2xx) per request.
pub async fn query_load(
    client: reqwest::Client,
    urls: Vec<String>,
    every: Duration,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<(Duration, f64, bool)> {
    let mut samples = Vec::new();
    let mut failures = 0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for url in urls.iter().cycle() {
        tick.tick().await;
        if stop.load(Ordering::Acquire) {
            break;
        }
        let sent = Instant::now();
        let failure = match client.get(url).send().await {
            // The whole body is part of the answer's time.
            Ok(r) if r.status().is_success() => r.bytes().await.err().map(|e| e.to_string()),
            Ok(r) => Some(format!("status {}", r.status())),
            Err(e) => Some(e.to_string()),
        };
        let at = started.elapsed();
        samples.push((at, sent.elapsed().as_secs_f64() * 1000.0, failure.is_none()));
        if let Some(why) = failure {
            failures += 1;
            if failures <= REPORTED_FAILURES {
                eprintln!(
                    "loadgen: query failed at {:.1} s: {url}: {why}",
                    at.as_secs_f64()
                );
            }
        }
    }
    samples
}

/// What [`watch_server`] saw.
#[derive(Debug, Default)]
pub struct ServerSamples {
    pub rss: Vec<(Duration, f64)>,
    pub cpu: Vec<(Duration, f64)>,
    pub retention_passes: Vec<(Duration, f64)>,
}

/// Samples the server's RSS and CPU time every second (when `pid` is known) and its retention
/// passes every 5 seconds, until `stop`. A pass is seen when `tally_retention_passes_total`
/// grows; its duration is `tally_retention_last_pass_seconds` (two passes within 5 s would show
/// as one).
pub async fn watch_server(
    client: reqwest::Client,
    target: String,
    pid: Option<u32>,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> ServerSamples {
    let mut out = ServerSamples::default();
    let metrics_url = format!("{target}/metrics");
    let mut passes = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for n in 0u64.. {
        tick.tick().await;
        if stop.load(Ordering::Acquire) {
            break;
        }
        if let Some(mib) = pid.and_then(|p| status_mib(p, "VmRSS:")) {
            out.rss.push((started.elapsed(), mib));
        }
        if let Some(seconds) = pid.and_then(cpu_seconds) {
            out.cpu.push((started.elapsed(), seconds));
        }
        if n % 5 != 0 {
            continue;
        }
        let scraped = async {
            let r = client.get(&metrics_url).send().await?.error_for_status()?;
            r.text().await
        };
        let Ok(text) = scraped.await else {
            continue;
        };
        // The counter appears with the first pass.
        let now = metric_sum(&text, crate::retention::PASSES).unwrap_or(0.0);
        if passes.is_some_and(|before| now > before) {
            let seconds = metric_sum(&text, crate::retention::LAST_PASS_SECONDS);
            out.retention_passes
                .push((started.elapsed(), seconds.unwrap_or(f64::NAN)));
        }
        passes = Some(now);
    }
    out
}

/// A `/proc/{pid}/status` line's value (`VmRSS:`, `VmHWM:`), in MiB.
pub fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The CPU time process `pid` has used so far (user and system), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf reads a constant of the system; it touches no memory of ours.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    stat_cpu_seconds(&stat, ticks as f64)
}

/// User plus system time from a `/proc/{pid}/stat` line, at `ticks` per second: fields 14 and
/// 15, counted after the command name (which may hold spaces and parentheses).
fn stat_cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    (ticks > 0.0).then(|| (user + system) / ticks)
}

/// The sum of a metric's samples over all its label sets in Prometheus text, or `None` when
/// the exposition has none.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            found = Some(found.unwrap_or(0.0) + value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::{metric_sum, stat_cpu_seconds};

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime …: 250 + 50 ticks at 100 a second.
        let stat = "4242 (tally (x) y) S 1 4242 4242 0 -1 4194560 900 0 3 0 250 50 7 8 20 0";
        assert_eq!(stat_cpu_seconds(stat, 100.0), Some(3.0));
        assert_eq!(stat_cpu_seconds("4242 (tally) S 1", 100.0), None);
        assert_eq!(stat_cpu_seconds(stat, 0.0), None);
    }

    #[test]
    fn a_metric_is_summed_over_its_label_sets_and_only_its_own_name() {
        let text = "# HELP tally_retention_passes_total Retention passes.\n\
                    # TYPE tally_retention_passes_total counter\n\
                    tally_retention_passes_total{outcome=\"ok\"} 3\n\
                    tally_retention_passes_total{outcome=\"failed\"} 1\n\
                    tally_retention_passes_total_other 40\n\
                    tally_retention_last_pass_seconds 0.25\n";
        assert_eq!(metric_sum(text, "tally_retention_passes_total"), Some(4.0));
        assert_eq!(
            metric_sum(text, "tally_retention_last_pass_seconds"),
            Some(0.25)
        );
        assert_eq!(metric_sum(text, "tally_missing"), None);
    }
}
