//! Experiments: each experiment's definition (feature, type, variants and their weights) and
//! status, with when it ran (`GET /experiments`); and one experiment's results — each
//! variant's numbers with their 95 % intervals, each variant against the control with the
//! test, p-value and verdict, and the sample-ratio check (`GET /experiments/{id}/results`,
//! over the run's window unless a time range is chosen).

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value;
use tally_domain::access::Access;

use super::{badge, badge_of, items, when};
use crate::api::encode;
use crate::document::{failed, Page};
use crate::format;
use crate::shell::Ctx;
use crate::BASE;

/// `GET /experiments`.
pub async fn page(ctx: Ctx) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadConfig) {
        return refused.into_response();
    }
    let answer = ctx
        .console
        .api
        .page(&ctx.signed.caller, "/experiments?limit=1000")
        .await;
    let now = ctx.console.clock.now();
    let body = html! {
        section class="card" {
            h2 { "Experiments" }
            @match &answer {
                Err(f) => (failed("The experiments", f, &ctx.view.with(&[]))),
                Ok(a) if items(&a["data"]).is_empty() => p class="empty" { "No experiments yet — define one with POST /experiments (a feature and at least two variants)." },
                Ok(a) => div class="table-scroll" { table {
                    thead { tr { th scope="col" { "Experiment" } th scope="col" { "Feature" } th scope="col" { "Type" } th scope="col" { "Status" }
                        th scope="col" { "Variants" } th scope="col" { "Started" } th scope="col" { "Ended" } } }
                    tbody { @for e in items(&a["data"]) { tr {
                        td {
                            a href=(ctx.view.link(&format!("{BASE}/experiments/{}", e["id"].as_str().unwrap_or_default()))) { strong { (e["name"].as_str().unwrap_or_default()) } }
                            @if let Some(d) = e["description"].as_str() { div class="note" { (d) } }
                        }
                        td { (e["feature"].as_str().unwrap_or_default()) }
                        td { (e["experiment_type"].as_str().unwrap_or_default()) }
                        td { (badge_of(&e["status"])) }
                        td { ul class="plain" { @for v in items(&e["variants"]) {
                            li { (v["name"].as_str().unwrap_or_default()) " · " (v["traffic_percent"]) "% of traffic" }
                        } } }
                        td { (when(&e["started_at"], now)) }
                        td { (when(&e["ended_at"], now)) }
                    } } }
                } },
            }
        }
    };
    Page::fixed(&ctx, "/experiments", "Experiments", body, None).into_response()
}

/// `[low, high]` of an interval, each written by `write`.
fn interval(value: &Value, write: impl Fn(&Value) -> String) -> Markup {
    match value.as_array().map(Vec::as_slice) {
        Some([low, high]) => {
            html! { span class="note" { "95% CI " (write(low)) " – " (write(high)) } }
        }
        _ => html! {},
    }
}

/// US dollars from a JSON number (an interval's bound), as money.
fn dollars(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "—".to_string(), |d| format::money(&format!("{d:.12}")))
}

/// A signed percentage (a relative difference): `+12.3%`, `−4.0%`.
fn signed_percent(value: &Value) -> String {
    match value.as_f64() {
        Some(p) if p < 0.0 => format!("−{:.1}%", -p),
        Some(p) => format!("+{p:.1}%"),
        None => "—".to_string(),
    }
}

/// A metric's value in its unit.
fn metric_value(metric: &str, value: &Value) -> String {
    match metric {
        "error_rate" => format::percent(value),
        "latency" => format!("{} (geometric mean)", format::latency(value)),
        "score" => score(value),
        _ => dollars(value),
    }
}

/// A score's mean (or a bound of its interval), to three decimals.
fn score(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "—".to_string(), |v| format!("{v:.3}"))
}

/// A comparison row's name: the metric, or the score it compares.
fn metric_name(m: &Value) -> String {
    match m["score"].as_str() {
        Some(name) => format!("score: {name}"),
        None => m["metric"].as_str().unwrap_or_default().replace('_', " "),
    }
}

/// Each variant's scores: a numeric score's count and mean with its interval, a label
/// score's shares.
fn scores_table(variants: &Value) -> Markup {
    let rows: Vec<(&str, &Value)> = items(variants)
        .iter()
        .flat_map(|v| {
            let name = v["variant"].as_str().unwrap_or_default();
            items(&v["scores"]).iter().map(move |s| (name, s))
        })
        .collect();
    if rows.is_empty() {
        return html! {
            p class="note" { "No scores yet. Send them to " code { "POST /v1/scores" } " with the event_id of the call they grade." }
        };
    }
    html! {
        div class="table-scroll" { table id="scores" {
            thead { tr {
                th scope="col" { "Variant" } th scope="col" { "Score" } th scope="col" class="num" { "Scored" }
                th scope="col" class="num" { "Mean" } th scope="col" { "Labels" }
            } }
            tbody { @for (variant, s) in &rows { tr {
                th scope="row" { (variant) }
                td { (s["name"].as_str().unwrap_or_default()) }
                td class="num" { (format::count(&s["count"])) }
                td class="num" {
                    @if s["kind"] == "number" { (score(&s["mean"])) br; (interval(&s["mean_interval"], score)) } @else { "—" }
                }
                td {
                    @for (i, l) in items(&s["labels"]).iter().enumerate() {
                        @if i > 0 { ", " }
                        (l["label"].as_str().unwrap_or_default()) " " (format::percent(&l["share"]))
                        " (" (format::count(&l["count"])) ")"
                    }
                }
            } } }
        } }
    }
}

fn p_value(value: &Value) -> String {
    match value.as_f64() {
        Some(p) if p < 0.001 => "< 0.001".to_string(),
        Some(p) => format!("{p:.3}"),
        None => "—".to_string(),
    }
}

/// `GET /experiments/{id}`: the results.
pub async fn results(ctx: Ctx, Path(id): Path<String>) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadMetrics) {
        return refused.into_response();
    }
    let window = match ctx.view.param("time_range") {
        Some(range) => format!("?time_range={range}"),
        None => String::new(),
    };
    let environment = ctx
        .view
        .environment
        .as_deref()
        .map(|e| {
            format!(
                "{}environment={e}",
                if window.is_empty() { "?" } else { "&" }
            )
        })
        .unwrap_or_default();
    let answer = ctx
        .console
        .api
        .get(
            &ctx.signed.caller,
            &format!("/experiments/{}/results{window}{environment}", encode(&id)),
        )
        .await;
    let r = match answer {
        Ok(r) => r,
        Err(f) => {
            let body = failed("The experiment's results", &f, &ctx.view.with(&[]));
            return Page::fixed(&ctx, "/experiments", "Experiment", body, None).into_response();
        }
    };
    let title = r["name"].as_str().unwrap_or("Experiment").to_string();
    let now = ctx.console.clock.now();
    let srm = &r["sample_ratio"];
    let body = html! {
        section class="card" {
            p {
                "Feature " strong { (r["feature"].as_str().unwrap_or_default()) } " · " (badge_of(&r["status"]))
                " · window " (when(&r["window"]["from"], now)) " to " (when(&r["window"]["to"], now))
                @if r["time_range"].is_null() { " (the run)" }
            }
            @if srm["mismatch"] == true {
                p class="callout error" role="alert" { strong { "Sample ratio mismatch. " } (srm["verdict"].as_str().unwrap_or_default()) }
            } @else {
                p class="note" { "Traffic split: " (srm["verdict"].as_str().unwrap_or_default()) }
            }
        }
        section class="card" {
            h2 { "Variants" }
            div class="table-scroll" { table id="variants" {
                thead { tr {
                    th scope="col" { "Variant" } th scope="col" class="num" { "Requests" } th scope="col" class="num" { "Share (configured)" }
                    th scope="col" class="num" { "Error rate" } th scope="col" class="num" { "p50 / p95" }
                    th scope="col" class="num" { "Typical latency" } th scope="col" class="num" { "Cost / request" }
                    th scope="col" class="num" { "Users" }
                } }
                tbody { @for v in items(&r["variants"]) { tr {
                    th scope="row" { (v["variant"].as_str().unwrap_or_default()) @if v["known"] == false { " " (badge("unknown")) } }
                    td class="num" { (format::count(&v["requests"])) }
                    td class="num" { (format::percent(&v["share_of_requests"])) " (" @if let Some(t) = v["traffic_percent"].as_u64() { (t) "%" } @else { "—" } ")" }
                    td class="num" { (format::percent(&v["error_rate"])) br; (interval(&v["error_rate_interval"], format::percent)) }
                    td class="num" { (format::latency(&v["latency_p50_ms"])) " / " (format::latency(&v["latency_p95_ms"])) }
                    td class="num" { (format::latency(&v["log_latency"]["geometric_mean_ms"])) br; (interval(&v["log_latency"]["geometric_mean_ms_interval"], format::latency)) }
                    td class="num" { (format::money_of(&v["cost_per_request_usd"])) br; (interval(&v["cost_per_request_interval"], dollars)) }
                    td class="num" { (format::count(&v["unique_users"])) }
                } } }
            } }
        }
        section class="card" {
            h2 { "Scores" }
            (scores_table(&r["variants"]))
        }
        @for c in items(&r["comparisons"]) {
            section class="card" {
                h2 { (c["variant"].as_str().unwrap_or_default()) " against " (c["control"].as_str().unwrap_or_default()) }
                div class="table-scroll" { table class="comparison" {
                    thead { tr {
                        th scope="col" { "Metric" } th scope="col" class="num" { "Control" } th scope="col" class="num" { "Variant" }
                        th scope="col" class="num" { "Difference" } th scope="col" class="num" { "p" } th scope="col" { "Verdict" }
                    } }
                    tbody { @for m in items(&c["metrics"]) {
                        @let metric = m["metric"].as_str().unwrap_or_default();
                        tr {
                            th scope="row" { (metric_name(m)) }
                            td class="num" { (metric_value(metric, &m["control"])) }
                            td class="num" { (metric_value(metric, &m["value"])) }
                            td class="num" { (signed_percent(&m["relative_difference"])) br; (interval(&m["relative_difference_interval"], signed_percent)) }
                            td class="num" { (p_value(&m["p_value"])) }
                            td { @if m["significant"] == true { (badge("significant")) " " } (m["verdict"].as_str().unwrap_or_default()) }
                        }
                    } }
                } }
            }
        }
        p class="note" {
            "Intervals are 95%. Error rates: Wilson intervals and the two-proportion z-test. Latency: the mean of log-latency (a typical, geometric-mean latency) and Welch's t-test on it. "
            "Cost per request and numeric scores: Welch's t-test; label shares: Wilson intervals. A difference is called at p < 0.05 with at least 30 requests per variant; the split is checked with a chi-square test against the configured traffic."
        }
    };
    // The run's own window (a time range only when the URL names one): no view selectors.
    Page::fixed(&ctx, "/experiments", &title, body, None).into_response()
}
