//! Models and providers: provider health cards (score and its reasons), then the models —
//! searched, filtered by provider, status and type, sorted by name, performance, cost or
//! usage — each card with its price in force, its price history (effective dates) and, for
//! admins, a form to add a price and one to deploy it to a feature.
//!
//! Reads `GET /providers`, `GET /providers/{name}/health`, `GET /models` (the filters and
//! search are the API's), `GET /models/{id}` (prices), `GET /features` and
//! `GET /analytics/performance` for the window.
//!
//! A model's own page is its performance view (`GET /models/{id}/performance`): its numbers
//! for the window, per feature and environment, and over time, each error-rate bar leading to
//! the failing calls of that step.

use std::cmp::Ordering;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value;
use tally_domain::access::Access;
use tally_domain::config::{ModelStatus, ModelType};

use super::{badge_of, cost, history, items, kpi};
use crate::api::encode;
use crate::document::{failed, Page};
use crate::format;
use crate::shell::{Ctx, ENVIRONMENTS};
use crate::BASE;

const SORTS: [(&str, &str); 4] = [
    ("name", "Name"),
    ("performance", "Performance (p95)"),
    ("cost", "Cost"),
    ("usage", "Usage"),
];

/// `GET /models`.
pub async fn page(ctx: Ctx) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadConfig) {
        return refused.into_response();
    }
    let api = &ctx.console.api;
    let caller = &ctx.signed.caller;
    let mut query = vec!["limit=1000".to_string()];
    for (param, api_param) in [
        ("q", "q"),
        ("provider", "provider"),
        ("status", "status"),
        ("type", "type"),
    ] {
        if let Some(v) = ctx.view.param(param) {
            query.push(format!("{api_param}={}", encode(v)));
        }
    }
    let perf_path = format!("/analytics/performance?{}", ctx.view.api_query());
    let models_path = format!("/models?{}", query.join("&"));
    let (providers, models, perf, features) = tokio::join!(
        api.page(caller, "/providers?limit=1000"),
        api.page(caller, &models_path),
        api.get(caller, &perf_path),
        api.get(caller, "/features"),
    );
    let provider_list: Vec<Value> = providers
        .as_ref()
        .map(|p| items(&p["data"]).to_vec())
        .unwrap_or_default();
    let health = futures::future::join_all(provider_list.iter().map(|p| {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        async move {
            api.get(caller, &format!("/providers/{}/health", encode(&name)))
                .await
        }
    }))
    .await;
    let mut model_list: Vec<Value> = models
        .as_ref()
        .map(|m| items(&m["data"]).to_vec())
        .unwrap_or_default();
    let details = futures::future::join_all(model_list.iter().map(|m| {
        let id = m["id"].as_str().unwrap_or_default().to_string();
        async move { api.get(caller, &format!("/models/{}", encode(&id))).await }
    }))
    .await;
    let seen = |m: &Value| -> Option<Value> {
        perf.as_ref().ok().and_then(|p| {
            items(&p["models"])
                .iter()
                .find(|x| x["name"] == m["name"] && x["provider_name"] == m["provider"])
                .cloned()
        })
    };
    let sort = ctx.view.param("sort").unwrap_or("name");
    let number = |v: Option<Value>, key: &str| v.and_then(|v| v[key].as_f64());
    let mut order: Vec<usize> = (0..model_list.len()).collect();
    let key = |i: usize| -> (Option<f64>, String) {
        let m = &model_list[i];
        let name = format!(
            "{}/{}",
            m["provider"].as_str().unwrap_or_default(),
            m["name"].as_str().unwrap_or_default()
        );
        let n = match sort {
            "performance" => number(seen(m), "latency_p95_ms"),
            "cost" => number(seen(m), "total_cost"),
            "usage" => number(seen(m), "usage_count"),
            _ => None,
        };
        (n, name)
    };
    let keys: Vec<_> = order.iter().map(|&i| key(i)).collect();
    order.sort_by(|&a, &b| {
        let (ka, kb) = (&keys[a], &keys[b]);
        let by_number = match (ka.0, kb.0) {
            // Fastest first; costliest and busiest first; models without traffic last.
            (Some(x), Some(y)) if sort == "performance" => x.partial_cmp(&y),
            (Some(x), Some(y)) => y.partial_cmp(&x),
            (Some(_), None) => Some(Ordering::Less),
            (None, Some(_)) => Some(Ordering::Greater),
            (None, None) => Some(Ordering::Equal),
        };
        by_number
            .unwrap_or(Ordering::Equal)
            .then_with(|| ka.1.cmp(&kb.1))
    });
    let sorted: Vec<(Value, Option<Value>, Option<Value>)> = order
        .into_iter()
        .map(|i| {
            let detail = details[i].as_ref().ok().cloned();
            let s = seen(&model_list[i]);
            (model_list[i].take(), detail, s)
        })
        .collect();
    let feature_names: Vec<String> = features
        .as_ref()
        .map(|f| {
            items(&f["features"])
                .iter()
                .filter(|f| f["registered"] == true)
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let back = ctx.view.with(&[]);
    let body = html! {
        section class="card" {
            h2 { "Providers" }
            @match &providers {
                Err(f) => (failed("The providers", f, &back)),
                Ok(_) if provider_list.is_empty() => p class="empty" { "No providers yet — register one with POST /providers." },
                Ok(_) => div class="grid" {
                    @for (p, h) in provider_list.iter().zip(&health) {
                        div class="card" {
                            h3 { (p["name"].as_str().unwrap_or_default()) " " span class="note" { (p["type"].as_str().unwrap_or_default()) } }
                            @match h {
                                Ok(h) => {
                                    p { (badge_of(&h["status"])) " health score " strong { (super::overview::score(&h["score"])) } " / 100" }
                                    @let reasons = items(&h["reasons"]);
                                    @if reasons.is_empty() { p class="note" { "No deductions in the last 15 minutes." } }
                                    @else { ul class="note" { @for r in reasons { li { (r.as_str().unwrap_or_default()) } } } }
                                }
                                Err(f) => p class="note" { "Health unavailable: " (f.message) },
                            }
                            p class="note" { "configured: " (p["status"].as_str().unwrap_or_default()) }
                        }
                    }
                },
            }
        }
        section class="card" {
            h2 { "Models" }
            form method="get" class="filters" role="search" {
                input type="hidden" name="time_range" value=(ctx.view.time_range);
                @if let Some(e) = &ctx.view.environment { input type="hidden" name="environment" value=(e); }
                div { label for="q" { "Search" } input id="q" name="q" type="search" value=(ctx.view.param("q").unwrap_or_default()); }
                div { label for="provider" { "Provider" } select id="provider" name="provider" {
                    option value="" { "any" }
                    @for p in &provider_list { @let n = p["name"].as_str().unwrap_or_default();
                        option value=(n) selected[ctx.view.param("provider") == Some(n)] { (n) } }
                } }
                div { label for="status" { "Status" } select id="status" name="status" {
                    option value="" { "any" }
                    @for s in ModelStatus::NAMES { option value=(s) selected[ctx.view.param("status") == Some(*s)] { (s) } }
                } }
                div { label for="type" { "Type" } select id="type" name="type" {
                    option value="" { "any" }
                    @for t in ModelType::NAMES { option value=(t) selected[ctx.view.param("type") == Some(*t)] { (t) } }
                } }
                div { label for="sort" { "Sort by" } select id="sort" name="sort" {
                    @for (s, label) in SORTS { option value=(s) selected[sort == s] { (label) } }
                } }
                div { button type="submit" { "Apply" } }
            }
            @match &models {
                Err(f) => (failed("The models", f, &back)),
                Ok(_) if sorted.is_empty() => p class="empty" { "No model matches — clear the search or filters." },
                Ok(_) => div class="grid wide" {
                    @for (m, detail, s) in &sorted { (card(&ctx, m, detail.as_ref(), s.as_ref(), &feature_names, &back)) }
                },
            }
            @if let Err(f) = &perf { (failed("Recent performance", f, &back)) }
        }
        @if let Ok(p) = &perf {
            @let unknown: Vec<&Value> = items(&p["models"]).iter().filter(|m| m["registered"] == false).collect();
            @if !unknown.is_empty() {
                section class="card" id="unregistered" {
                    h2 { "Seen in events, not registered" }
                    p class="note" { "These models served requests in the last " (ctx.view.time_range)
                        " but are not in the catalog, so they have no price and their requests stay unpriced. "
                        "Register the provider (POST /providers) and the model (POST /models), then add its price here." }
                    div class="table-scroll" { table {
                        thead { tr { th scope="col" { "Model" } th scope="col" class="num" { "Requests" } th scope="col" class="num" { "Unpriced" } th scope="col" class="num" { "p95" } } }
                        tbody { @for m in unknown { tr {
                            td { (m["provider_name"].as_str().unwrap_or_default()) "/" (m["name"].as_str().unwrap_or_default()) }
                            td class="num" { (format::count(&m["usage_count"])) }
                            td class="num" { (format::count(&m["unpriced_requests"])) }
                            td class="num" { (format::latency(&m["latency_p95_ms"])) }
                        } } }
                    } }
                }
            }
        }
    };
    Page::new(&ctx, "/models", "Models & providers", body).into_response()
}

fn card(
    ctx: &Ctx,
    m: &Value,
    detail: Option<&Value>,
    seen: Option<&Value>,
    features: &[String],
    back: &str,
) -> Markup {
    let id = m["id"].as_str().unwrap_or_default();
    let label = format!(
        "{}/{}",
        m["provider"].as_str().unwrap_or_default(),
        m["name"].as_str().unwrap_or_default()
    );
    let slug = id.replace('-', "");
    let admin = ctx.can(Access::Admin);
    let here = ctx.view.param("model") == Some(id);
    let price_error = |f: &str| ctx.field_error(f).filter(|_| here);
    let typed = |f: &str| ctx.typed(f).filter(|_| here);
    html! {
        article class="card" id={"model-" (slug)} {
            h3 { a href=(ctx.view.link(&format!("{BASE}/models/{id}"))) { (label) } " " (badge_of(&m["status"])) " " span class="note" { (m["model_type"].as_str().unwrap_or_default()) } }
            p { "Price now: "
                @match m["current_price"].as_object() {
                    Some(_) => { (format::money_of(&m["current_price"]["input_usd_per_mtok"])) " in · "
                        (format::money_of(&m["current_price"]["output_usd_per_mtok"])) " out per million tokens" }
                    None => span class="note" { "none — its requests are unpriced" },
                }
            }
            p class="note" { "Last " (ctx.view.time_range) ": "
                @match seen {
                    Some(s) => { (format::count(&s["usage_count"])) " requests · p95 " (format::latency(&s["latency_p95_ms"]))
                        " · " (format::percent(&s["error_rate"])) " errors · " (cost(&s["total_cost_usd"], &s["unpriced_requests"])) }
                    None => "no requests",
                }
            }
            @if let Some(d) = detail {
                @let deployed = items(&d["deployments"]);
                @if !deployed.is_empty() {
                    p class="note" { "Serves: " @for (i, a) in deployed.iter().enumerate() { @if i > 0 { ", " } (a["feature"].as_str().unwrap_or_default()) " (" (a["environment"].as_str().unwrap_or_default()) ")" } }
                }
                details class="data" {
                    summary { "Prices (" (items(&d["prices"]).len()) ")" }
                    div class="table-scroll" { table {
                        thead { tr { th scope="col" { "Effective from" } th scope="col" class="num" { "Input" } th scope="col" class="num" { "Cached input" } th scope="col" class="num" { "Output" } } }
                        tbody { @for p in items(&d["prices"]) { tr {
                            td { (format::instant(&p["effective_from"]).map_or_else(String::new, format::absolute)) }
                            td class="num" { (format::money_of(&p["input_usd_per_mtok"])) }
                            td class="num" { (format::money_of(&p["cached_input_usd_per_mtok"])) }
                            td class="num" { (format::money_of(&p["output_usd_per_mtok"])) }
                        } } }
                    } }
                }
            }
            @if admin {
                @let back_here = format!("{}#model-{slug}", ctx.view.with(&[("model", Some(id))]));
                details class="dialog" open[here && ctx.flash.as_ref().is_some_and(|f| !f.ok)] {
                    summary { "Add a price…" }
                    p class="note" { "Dollars per million tokens; prices are never changed, a new one takes effect from its date." }
                    div class="panel" {
                        form method="post" action={(BASE) "/models/" (encode(id)) "/prices"} {
                            (ctx.csrf())
                            input type="hidden" name="back" value=(back_here);
                            div class="form-grid" {
                                div { label for={"from-" (slug)} { "From (UTC)" }
                                    input id={"from-" (slug)} name="effective_from" type="datetime-local" required value=[typed("effective_from")]
                                        aria-invalid=[price_error("effective_from").map(|_| "true")] aria-describedby=[price_error("effective_from").map(|_| format!("from-{slug}-error"))];
                                    @if let Some(e) = price_error("effective_from") { p class="field-error" id={"from-" (slug) "-error"} { (e) } } }
                                div { label for={"in-" (slug)} { "Input $/M" }
                                    input id={"in-" (slug)} name="input_usd_per_mtok" inputmode="decimal" required value=[typed("input_usd_per_mtok")]
                                        aria-invalid=[price_error("input_usd_per_mtok").map(|_| "true")] aria-describedby=[price_error("input_usd_per_mtok").map(|_| format!("in-{slug}-error"))];
                                    @if let Some(e) = price_error("input_usd_per_mtok") { p class="field-error" id={"in-" (slug) "-error"} { (e) } } }
                                div { label for={"cached-" (slug)} { "Cached $/M" }
                                    input id={"cached-" (slug)} name="cached_input_usd_per_mtok" inputmode="decimal" value=[typed("cached_input_usd_per_mtok")]; }
                                div { label for={"out-" (slug)} { "Output $/M" }
                                    input id={"out-" (slug)} name="output_usd_per_mtok" inputmode="decimal" required value=[typed("output_usd_per_mtok")]
                                        aria-invalid=[price_error("output_usd_per_mtok").map(|_| "true")] aria-describedby=[price_error("output_usd_per_mtok").map(|_| format!("out-{slug}-error"))];
                                    @if let Some(e) = price_error("output_usd_per_mtok") { p class="field-error" id={"out-" (slug) "-error"} { (e) } } }
                            }
                            p { button type="submit" class="primary" { "Add price" } }
                        }
                    }
                }
                details class="dialog" {
                    summary { "Deploy…" }
                    div class="panel" {
                        form method="post" action={(BASE) "/models/" (encode(id)) "/deploy"} data-confirm={"Deploy " (label) " to the chosen feature and environment?"} {
                            (ctx.csrf())
                            input type="hidden" name="back" value=(back);
                            div class="form-grid" {
                                div { label for={"feature-" (slug)} { "Feature" }
                                    select id={"feature-" (slug)} name="feature" required { @for f in features { option value=(f) { (f) } } } }
                                div { label for={"env-" (slug)} { "Environment" }
                                    select id={"env-" (slug)} name="environment" { @for e in ENVIRONMENTS { option value=(e) { (e) } } } }
                            }
                            p { button type="submit" class="primary" { "Deploy " (label) } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /models/{id}`: the model's performance view.
pub async fn performance(ctx: Ctx, Path(id): Path<String>) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadMetrics) {
        return refused.into_response();
    }
    let path = format!(
        "/models/{}/performance?{}",
        encode(&id),
        ctx.view.api_query()
    );
    let p = match ctx.console.api.get(&ctx.signed.caller, &path).await {
        Ok(p) => p,
        Err(f) => {
            let body = failed("The model's performance", &f, &ctx.view.with(&[]));
            return Page::new(&ctx, "/models", "Model", body).into_response();
        }
    };
    let title = format!(
        "{}/{}",
        p["provider"].as_str().unwrap_or_default(),
        p["name"].as_str().unwrap_or_default()
    );
    let t = &p["totals"];
    let (provider, name) = (
        p["provider"].as_str().unwrap_or_default().to_string(),
        p["name"].as_str().unwrap_or_default().to_string(),
    );
    let drill = |from: &Value, to: &Value| {
        let mut changes: Vec<(&str, Option<&str>)> = vec![
            ("provider", Some(provider.as_str())),
            ("model", Some(name.as_str())),
            ("status", Some("failed")),
            ("from", from.as_str()),
            ("to", to.as_str()),
            ("time_range", None),
        ];
        if ctx.view.environment.is_none() {
            changes.push(("environment", None));
        }
        ctx.view.at(&format!("{BASE}/events"), &changes)
    };
    let points = items(&p["history"]["data"]);
    let step = p["history"]["step_seconds"].as_i64().unwrap_or(3600);
    let body = html! {
        div class="grid" id="model-kpis" {
            (kpi("m-requests", "Requests", format::count(&t["usage_count"]), Some(html! { (format::count(&t["unique_users"])) " users" })))
            (kpi("m-success", "Success rate", format::percent(&t["success_rate"]), Some(html! { (format::percent(&t["timeout_rate"])) " timeouts" })))
            (kpi("m-latency", "Latency p95", format::latency(&t["latency_p95_ms"]),
                Some(html! { "p50 " (format::latency(&t["latency_p50_ms"])) " · p99 " (format::latency(&t["latency_p99_ms"])) " · mean " (format::latency(&t["avg_latency"])) })))
            (kpi("m-cpr", "Cost per request", format::money(&format!("{:.12}", t["avg_cost_per_request"].as_f64().unwrap_or(0.0))),
                Some(html! { "total " (cost(&t["total_cost_usd"], &t["unpriced_requests"])) })))
            (kpi("m-tokens", "Tokens in / out", format!("{} / {}", format::count(&t["input_tokens"]), format::count(&t["output_tokens"])), None))
        }
        (history::charts(points, step, "model", &p["window"], &drill))
        section class="card" id="model-breakdown" {
            h2 { "Per feature and environment" }
            @let rows = items(&p["breakdown"]);
            @if rows.is_empty() { p class="empty" { "No requests in this window." } } @else {
                div class="table-scroll" { table {
                    thead { tr {
                        th scope="col" { "Feature" } th scope="col" { "Environment" } th scope="col" class="num" { "Requests" }
                        th scope="col" class="num" { "Success rate" } th scope="col" class="num" { "p50 / p95 / p99" }
                        th scope="col" class="num" { "Cost" }
                    } }
                    tbody { @for b in rows { tr {
                        td { a href=(ctx.view.link(&format!("{BASE}/features/{}", encode(b["feature"].as_str().unwrap_or_default())))) { (b["feature"].as_str().unwrap_or_default()) } }
                        td { (b["environment"].as_str().unwrap_or_default()) }
                        td class="num" { (format::count(&b["usage_count"])) }
                        td class="num" { (format::percent(&b["success_rate"])) }
                        td class="num" { (format::latency(&b["latency_p50_ms"])) " / " (format::latency(&b["latency_p95_ms"])) " / " (format::latency(&b["latency_p99_ms"])) }
                        td class="num" { (cost(&b["total_cost_usd"], &b["unpriced_requests"])) }
                    } } }
                } }
            }
        }
    };
    Page::new(&ctx, "/models", &title, body).into_response()
}
