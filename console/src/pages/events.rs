//! Events: the drill-down to the calls behind a number — the counted usage events of a
//! window, newest first, as `GET /events` answers them (filters in the page's URL, a link to
//! the next page with the API's cursor). The error-rate chart of a feature leads here with
//! `status=failed` and its step's window; the error message of each failed call is shown.

use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::Value;
use tally_domain::access::Access;

use super::{badge_of, items, when};
use crate::api::encode;
use crate::document::{failed, Page};
use crate::format;
use crate::shell::Ctx;

/// The API parameters this page passes on, as given in its URL.
const PASSED: [&str; 13] = [
    "feature",
    "model",
    "provider",
    "environment",
    "status",
    "prompt_id",
    "experiment_id",
    "variant",
    "user_id",
    "from",
    "to",
    "cursor",
    "limit",
];

/// `GET /events`.
pub async fn page(ctx: Ctx) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadMetrics) {
        return refused.into_response();
    }
    let mut query: Vec<String> = PASSED
        .iter()
        .filter_map(|p| ctx.view.param(p).map(|v| format!("{p}={}", encode(v))))
        .collect();
    if ctx.view.param("from").is_none() && ctx.view.param("to").is_none() {
        query.push(format!("time_range={}", ctx.view.time_range));
    }
    if ctx.view.param("limit").is_none() {
        query.push("limit=50".into());
    }
    let answer = ctx
        .console
        .api
        .page(&ctx.signed.caller, &format!("/events?{}", query.join("&")))
        .await;
    let now = ctx.console.clock.now();
    let filters: Vec<(&str, &str)> = PASSED[..9]
        .iter()
        .filter_map(|p| ctx.view.param(p).map(|v| (*p, v)))
        .collect();
    let body = html! {
        section class="card" {
            p {
                @if filters.is_empty() { "Every counted event" } @else {
                    @for (i, (k, v)) in filters.iter().enumerate() {
                        @if i > 0 { " · " } (k.replace('_', " ")) " " strong { (v) }
                    }
                }
                @match (ctx.view.param("from"), ctx.view.param("to")) {
                    (Some(from), Some(to)) => { " · from " (when(&Value::from(from), now)) " to " (when(&Value::from(to), now)) },
                    (Some(from), None) => { " · since " (when(&Value::from(from), now)) },
                    _ => { " · the last " (ctx.view.time_range) },
                }
                " · " a href=(ctx.view.with(&[("status", None), ("cursor", None)])) { "all outcomes" }
                " · " a href=(ctx.view.with(&[("status", Some("failed")), ("cursor", None)])) { "failed only" }
            }
        }
        section class="card" {
            h2 { "Events, newest first" }
            @match &answer {
                Err(f) => (failed("The events", f, &ctx.view.with(&[]))),
                Ok(a) if items(&a["data"]).is_empty() => p class="empty" {
                    @if ctx.view.param("cursor").is_some() { "No more events." } @else { "No events match in this window." }
                },
                Ok(a) => {
                    div class="table-scroll" { table id="events" {
                        thead { tr {
                            th scope="col" { "When" } th scope="col" { "Feature" } th scope="col" { "Model" } th scope="col" { "Environment" }
                            th scope="col" { "Status" } th scope="col" { "What went wrong" } th scope="col" class="num" { "Latency" }
                            th scope="col" class="num" { "Tokens in / out" } th scope="col" class="num" { "Cost" } th scope="col" { "User" }
                            th scope="col" { "Prompt · variant" } th scope="col" { "Event" }
                        } }
                        tbody { @for e in items(&a["data"]) { tr {
                            td { (when(&e["occurred_at"], now)) }
                            td { (e["feature"].as_str().unwrap_or_default()) }
                            td { (e["provider"].as_str().unwrap_or_default()) "/" (e["model"].as_str().unwrap_or_default()) }
                            td { (e["environment"].as_str().unwrap_or_default()) }
                            td { (badge_of(&e["status"])) }
                            td class="message" {
                                @if let Some(t) = e["error_type"].as_str() { code { (t) } " " }
                                @if let Some(m) = e["error_message"].as_str() {
                                    span class="error-message" { (m) }
                                    @if e["error_message_truncated"] == true { " " span class="note" { "(cut to 1 KiB)" } }
                                }
                            }
                            td class="num" { (format::latency(&e["latency_ms"])) }
                            td class="num" { (format::count(&e["input_tokens"])) " / " (format::count(&e["output_tokens"])) }
                            td class="num" { @if e["cost_usd"].is_null() { span class="note" { "unpriced" } } @else { (format::money_of(&e["cost_usd"])) } }
                            td { (e["user_id"].as_str().unwrap_or("—")) }
                            td {
                                (e["prompt_id"].as_str().unwrap_or("—"))
                                @if let Some(v) = e["prompt_version"].as_str() { " v" (v) }
                                @if let Some(v) = e["variant"].as_str() { " · " (v) }
                            }
                            td { code { (e["event_id"].as_str().unwrap_or_default()) } }
                        } } }
                    } }
                    @if let Some(next) = a["pagination"]["next_cursor"].as_str() {
                        p { a href=(ctx.view.with(&[("cursor", Some(next))])) rel="next" { "Older events →" } }
                    }
                }
            }
        }
    };
    Page::new(&ctx, "/features", "Events", body).into_response()
}
