//! The charts of a time series the API answers as `historical.data` / `history.data` (a
//! feature's dashboard, a model's performance): response time p50/p95/p99, requests, error
//! rate and cost per step, with gaps where a step had no requests, and each error-rate bar
//! leading to the drill-down of that step's failing calls.

use maud::{html, Markup};
use serde_json::Value;

use crate::chart::{self, Chart, Series, Tick};
use crate::format;

/// The four charts of `points` (steps of `step` seconds); chart ids start with `prefix`;
/// `drill(from, to)` is the console URL of the failing calls between two instants, and
/// `window` the whole window's `{from, to}`.
pub fn charts(
    points: &[Value],
    step: i64,
    prefix: &str,
    window: &Value,
    drill: &dyn Fn(&Value, &Value) -> String,
) -> Markup {
    let ticks: Vec<Tick> = points
        .iter()
        .map(|p| {
            let at = format::instant(&p["timestamp"]);
            Tick {
                short: at.map_or_else(String::new, |t| {
                    if step >= 86_400 {
                        t.format("%b %d").to_string()
                    } else {
                        t.format("%H:%M").to_string()
                    }
                }),
                full: at.map_or_else(String::new, format::absolute),
            }
        })
        .collect();
    // A step without requests is a gap, not a zero.
    let served = |p: &Value| p["throughput"].as_u64().unwrap_or(0) > 0;
    let series = |name: &str, key: &str| Series {
        name: name.to_string(),
        values: points
            .iter()
            .map(|p| served(p).then(|| p[key].as_f64()).flatten())
            .collect(),
    };
    let latency = [
        series("p50", "latency_p50_ms"),
        series("p95", "latency_p95_ms"),
        series("p99", "latency_p99_ms"),
    ];
    let throughput = [Series {
        name: "requests".into(),
        values: points.iter().map(|p| p["throughput"].as_f64()).collect(),
    }];
    let errors = [series("error rate", "error_rate")];

    let costs = [Series {
        name: "cost".into(),
        values: points.iter().map(|p| p["cost"].as_f64()).collect(),
    }];
    let step_words = match step {
        s if s >= 86_400 => format!("{} day", s / 86_400),
        s if s >= 3600 => format!("{} h", s / 3600),
        s => format!("{} min", s / 60),
    };
    let ms = |v: f64| format::latency(&Value::from(v));
    let pct = |v: f64| format!("{v:.1}%");
    let count = |v: f64| format::grouped(v.round().max(0.0) as u128);
    let usd = |v: f64| format::money(&format!("{v:.6}"));
    // Each step's link covers what its bar counted: the step, within the window.
    let (start, end) = (
        format::instant(&window["from"]),
        format::instant(&window["to"]),
    );
    let failing: Vec<String> = points
        .iter()
        .map(|p| {
            let at = format::instant(&p["timestamp"]);
            let from = at.map(|t| start.map_or(t, |s| t.max(s)));
            let to = at.map(|t| {
                let t = t + chrono::Duration::seconds(step);
                end.map_or(t, |e| t.min(e))
            });
            drill(
                &Value::from(from.map(|t| t.to_rfc3339()).unwrap_or_default()),
                &Value::from(to.map(|t| t.to_rfc3339()).unwrap_or_default()),
            )
        })
        .collect();
    let (latency_id, throughput_id, errors_id, cost_id) = (
        format!("{prefix}-latency"),
        format!("{prefix}-throughput"),
        format!("{prefix}-errors"),
        format!("{prefix}-cost"),
    );
    html! {
        div class="grid wide" id={(prefix) "-charts"} data-live {
            section class="card" { h2 { "Response time" }
                (chart::lines(&Chart { id: &latency_id, title: "Response time p50, p95 and p99",
                    description: &format!("Latency percentiles per {step_words}, in ms"), x: &ticks, series: &latency, format: &ms, links: None })) }
            section class="card" { h2 { "Throughput" }
                (chart::bars(&Chart { id: &throughput_id, title: "Requests",
                    description: &format!("Requests per {step_words}"), x: &ticks, series: &throughput, format: &count, links: None })) }
            section class="card" { h2 { "Error rate" }
                (chart::bars(&Chart { id: &errors_id, title: "Error rate",
                    description: &format!("Errors and timeouts as a share of requests, per {step_words}"), x: &ticks, series: &errors, format: &pct, links: Some(&failing) }))
                p { a href=(drill(&window["from"], &window["to"])) { "The failing calls of this window →" } " " span class="note" { "(each bar leads to its own)" } } }
            section class="card" { h2 { "Cost" }
                (chart::bars(&Chart { id: &cost_id, title: "Cost",
                    description: &format!("Cost in US dollars per {step_words}"), x: &ticks, series: &costs, format: &usd, links: None })) }
        }
    }
}
