//! Features: the list with health and key metrics, and each feature's dashboard with tabs —
//! *Overview* (KPIs, response time p50/p95/p99, throughput, error rate and cost over time,
//! cost by model), *Models* (current model per environment, the change-model dialog with each
//! candidate's price and recent performance, rollback, assignment history, environment
//! comparison), *Prompts* (versions, status, per-version metrics, activation) and *Settings*.
//!
//! Reads `GET /features`, `GET /features/{name}`, `GET /features/{name}/metrics`,
//! `GET /features/{name}/deployments`, `GET /models`, `GET /analytics/performance`,
//! `GET /prompts`, `GET /prompts/{id}/versions` and `GET /prompts/{id}/metrics`.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value;
use tally_domain::access::Access;
use tally_domain::config::{rollback_target, Assignment};

use super::{badge, badge_of, cost, history, items, kpi, trend, when};
use crate::api::{encode, Failure};
use crate::document::{failed, Page};
use crate::format;
use crate::shell::{Ctx, ENVIRONMENTS};
use crate::BASE;

const TABS: [(&str, &str); 4] = [
    ("overview", "Overview"),
    ("models", "Models"),
    ("prompts", "Prompts"),
    ("settings", "Settings"),
];

fn feature_url(name: &str) -> String {
    format!("{BASE}/features/{}", encode(name))
}

/// `GET /features`.
pub async fn list(ctx: Ctx) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadMetrics) {
        return refused.into_response();
    }
    let answer = ctx
        .console
        .api
        .get(
            &ctx.signed.caller,
            &format!("/features?{}", ctx.view.api_query()),
        )
        .await;
    let body = match answer {
        Err(f) => failed("The features", &f, &ctx.view.with(&[])),
        Ok(data) => {
            let list = items(&data["features"]);
            html! {
                section class="card" id="feature-list" data-live {
                    h2 { "Features · last " (ctx.view.time_range) @if let Some(e) = &ctx.view.environment { " · " (e) } }
                    @if list.is_empty() {
                        p class="empty" { "No features yet — send a usage event naming one (README: Sending events) or register one with POST /features." }
                    } @else {
                        div class="table-scroll" {
                            table {
                                thead { tr {
                                    th scope="col" { "Feature" } th scope="col" { "Status" } th scope="col" { "Health" }
                                    th scope="col" class="num" { "Requests" } th scope="col" class="num" { "Error rate" }
                                    th scope="col" class="num" { "Response time" } th scope="col" class="num" { "Cost / request" }
                                    th scope="col" { "Current model" }
                                } }
                                tbody {
                                    @for f in list {
                                        @let name = f["name"].as_str().unwrap_or_default();
                                        @let m = &f["metrics"];
                                        tr {
                                            td { a href=(ctx.view.link(&feature_url(name))) { (f["display_name"].as_str().unwrap_or(name)) } div class="note" { code { (name) } } }
                                            td { (badge_of(&f["status"])) }
                                            td { (badge_of(&f["health"])) }
                                            td class="num" { (format::count(&m["total_requests"])) }
                                            td class="num" { (format::percent(&m["error_rate"])) }
                                            td class="num" { (format::latency(&m["response_time"])) }
                                            td class="num" { (per_request(&m["cost_per_request"])) }
                                            td { @match f["current_model"].as_object() {
                                                Some(c) => { (c.get("provider_name").and_then(Value::as_str).unwrap_or_default()) "/" (c.get("name").and_then(Value::as_str).unwrap_or_default()) }
                                                None => span class="note" { "none assigned" },
                                            } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Page::live(
        &ctx,
        "/features",
        "Features",
        body,
        super::overview::stream_url(None),
    )
    .into_response()
}

/// A cost per request (the API answers it as a number of dollars).
fn per_request(value: &Value) -> String {
    match value.as_f64() {
        Some(v) => format::money(&format!("{v:.12}")),
        None => "—".to_string(),
    }
}

/// `GET /features/{name}?tab=…`.
pub async fn dashboard(ctx: Ctx, Path(name): Path<String>) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadMetrics) {
        return refused.into_response();
    }
    let tab = ctx.view.param("tab").unwrap_or("overview").to_string();
    if !TABS.iter().any(|(t, _)| *t == tab) {
        return crate::document::refused(
            axum::http::StatusCode::BAD_REQUEST,
            "Unknown tab",
            "tab: must be one of overview, models, prompts, settings",
        );
    }
    let detail = ctx
        .console
        .api
        .get(&ctx.signed.caller, &format!("/features/{}", encode(&name)))
        .await;
    // A feature seen in events but never registered has no detail; its dashboard still shows.
    let detail = match detail {
        Ok(d) => Some(d),
        Err(f) if f.status == 404 => None,
        Err(f) => {
            let body = failed("The feature", &f, &ctx.view.with(&[]));
            return Page::new(&ctx, "/features", &name, body).into_response();
        }
    };
    let title = detail
        .as_ref()
        .and_then(|d| d["display_name"].as_str())
        .unwrap_or(&name)
        .to_string();
    let content = match tab.as_str() {
        "models" => models_tab(&ctx, &name, detail.as_ref()).await,
        "prompts" => prompts_tab(&ctx, &name).await,
        "settings" => settings_tab(&ctx, &name, detail.as_ref()),
        _ => overview_tab(&ctx, &name).await,
    };
    let body = html! {
        nav class="tabs" aria-label="Feature sections" {
            @for (t, label) in TABS {
                a href=(ctx.view.with(&[("tab", Some(t))])) aria-current=[(t == tab).then_some("page")] { (label) }
            }
        }
        (content)
    };
    Page::live(
        &ctx,
        "/features",
        &title,
        body,
        super::overview::stream_url(Some(&name)),
    )
    .into_response()
}

async fn overview_tab(ctx: &Ctx, name: &str) -> Markup {
    let path = format!(
        "/features/{}/metrics?{}",
        encode(name),
        ctx.view.api_query()
    );
    let m = match ctx.console.api.get(&ctx.signed.caller, &path).await {
        Ok(m) => m,
        Err(f) if f.status == 404 => {
            return html! { p class="empty" { "No events for " code { (name) } " in this window — send one naming this feature, or pick a longer time range." } }
        }
        Err(f) => return failed("The feature's metrics", &f, &ctx.view.with(&[])),
    };
    let r = &m["realtime"];
    let c = &m["costs"];
    let points = items(&m["historical"]["data"]);
    let step = m["historical"]["step_seconds"].as_i64().unwrap_or(3600);
    // Each error-rate bar leads to the failing calls of its step (the drill-down).
    let drill = |from: &Value, to: &Value| {
        let mut changes: Vec<(&str, Option<&str>)> = vec![
            ("feature", Some(name)),
            ("status", Some("failed")),
            ("from", from.as_str()),
            ("to", to.as_str()),
            ("tab", None),
            ("time_range", None),
        ];
        if ctx.view.environment.is_none() {
            changes.push(("environment", None));
        }
        ctx.view.at(&format!("{BASE}/events"), &changes)
    };
    let had_previous = c["previous_period_cost_usd"]
        .as_str()
        .and_then(format::pico_dollars)
        .is_some_and(|p| p != 0);
    html! {
        div class="grid" id="feature-kpis" data-live {
            (kpi("f-uptime", "Uptime", format::percent(&r["uptime"]), Some(html! { (format::count(&r["total_requests"])) " requests" })))
            (kpi("f-latency", "Response time (mean)", format::latency(&r["response_time"]),
                Some(html! { "p50 " (format::latency(&r["latency_p50_ms"])) " · p95 " (format::latency(&r["latency_p95_ms"])) " · p99 " (format::latency(&r["latency_p99_ms"])) })))
            (kpi("f-success", "Success rate", format::percent(&r["success_rate"]), Some(html! { (format::percent(&r["error_rate"])) " errors" })))
            (kpi("f-cpr", "Cost per request", per_request(&r["cost_per_request"]), Some(html! { "total " (cost(&c["total_cost_usd"], &c["unpriced_requests"])) })))
            (kpi("f-users", "Unique users", format::count(&m["usage"]["unique_users"]), None))
            (kpi("f-cost", "Cost", format::money_of(&c["total_cost_usd"]), Some(trend(&c["cost_trend"], had_previous))))
        }
        (history::charts(points, step, "feature", &m["window"], &drill))
        section class="card" id="cost-by-model" data-live {
            h2 { "Cost by model" }
            @let split = items(&c["cost_breakdown"]);
            @if split.is_empty() { p class="empty" { "No cost in this window." } } @else {
                div class="table-scroll" { table {
                    thead { tr { th scope="col" { "Model" } th scope="col" class="num" { "Requests" } th scope="col" class="num" { "Cost" } th scope="col" class="num" { "Share" } } }
                    tbody { @for b in split { tr {
                        td { (b["category"].as_str().unwrap_or_default()) }
                        td class="num" { (format::count(&b["requests"])) }
                        td class="num" { (cost(&b["amount_usd"], &b["unpriced_requests"])) }
                        td class="num" { (format::percent(&b["percentage"])) }
                    } } }
                } }
            }
        }
    }
}

/// The environment the Models tab shows: the view's, or production.
fn models_environment(ctx: &Ctx) -> String {
    ctx.view
        .environment
        .clone()
        .unwrap_or_else(|| "production".to_string())
}

async fn models_tab(ctx: &Ctx, name: &str, detail: Option<&Value>) -> Markup {
    let Some(detail) = detail else {
        return html! { p class="empty" { code { (name) } " is not registered, so it has no model assignments. Register it with POST /features." } };
    };
    let api = &ctx.console.api;
    let caller = &ctx.signed.caller;
    let env = models_environment(ctx);
    let perf = |e: &str| {
        format!(
            "/analytics/performance?time_range={}&feature={}&environment={e}",
            ctx.view.time_range,
            encode(name)
        )
    };
    let history_path = format!("/features/{}/deployments", encode(name));
    let (p1, p2, p3) = (perf("production"), perf("staging"), perf("development"));
    let (history, models, prod, staging, dev) = tokio::join!(
        api.get(caller, &history_path),
        api.page(caller, "/models?limit=1000"),
        api.get(caller, &p1),
        api.get(caller, &p2),
        api.get(caller, &p3),
    );
    let by_env: [(&str, &Result<Value, Failure>); 3] = [
        ("production", &prod),
        ("staging", &staging),
        ("development", &dev),
    ];
    let current = &detail["current_models"][env.as_str()];
    let back = ctx.view.with(&[]);
    let history_list: Vec<Assignment> = history
        .as_ref()
        .ok()
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .unwrap_or_default();
    let env_history: Vec<Assignment> = history_list
        .iter()
        .filter(|a| a.environment.as_str() == env)
        .cloned()
        .collect();
    let target = tally_schemas::Environment::parse(&env)
        .and_then(|e| rollback_target(name, e, &env_history).ok());
    let perf_here = by_env
        .iter()
        .find(|(e, _)| *e == env)
        .and_then(|(_, r)| r.as_ref().ok());
    html! {
        p { "Environment: "
            @for e in ENVIRONMENTS {
                a class="button" href=(ctx.view.with(&[("environment", Some(e))])) aria-current=[(e == env).then_some("true")] { (e) } " "
            }
        }
        div class="grid wide" {
            section class="card" id="current-model" data-live {
                h2 { "Current model in " (env) }
                @match current.as_object() {
                    Some(_) => {
                        p class="kpi" { span class="value" { (current["provider"].as_str().unwrap_or_default()) "/" (current["model"].as_str().unwrap_or_default()) } }
                        p class="note" { "assigned " (when(&current["assigned_at"], ctx.console.clock.now())) " by " (current["assigned_by"].as_str().unwrap_or("—")) }
                    }
                    None => p class="empty" { "No model is assigned in " (env) " yet." },
                }
                @if ctx.can(Access::Admin) {
                    @if let Some(t) = &target {
                        @let question = format!("Roll back {name} in {env} to {}/{}?", t.provider, t.model);
                        form method="post" action={(feature_url(name)) "/rollback"} data-confirm=(question) class="inline" {
                            (ctx.csrf())
                            input type="hidden" name="environment" value=(env);
                            input type="hidden" name="back" value=(back);
                            button type="submit" class="danger" { "Roll back to " (t.provider) "/" (t.model) }
                        }
                    }
                }
            }
            section class="card" id="model-split" data-live {
                h2 { "Requests by model in " (env) " · last " (ctx.view.time_range) }
                @match perf_here {
                    Some(p) => (model_split(p)),
                    None => p class="empty" { "Performance is unavailable." },
                }
            }
        }
        @if ctx.can(Access::Admin) {
            section class="card" id="change-model" {
                (change_dialog(ctx, name, &env, current, &models, perf_here, &back))
            }
        }
        section class="card" id="environments" data-live {
            h2 { "Environment comparison · last " (ctx.view.time_range) }
            div class="table-scroll" { table {
                thead { tr { th scope="col" { "Environment" } th scope="col" { "Current model" } th scope="col" class="num" { "Requests" }
                    th scope="col" class="num" { "Error rate" } th scope="col" class="num" { "p95" } th scope="col" class="num" { "Cost" } } }
                tbody { @for (e, result) in by_env {
                    @let cur = &detail["current_models"][e];
                    @let top = result.as_ref().ok().and_then(|p| items(&p["models"]).iter().find(|m| m["name"] == cur["model"] && m["provider_name"] == cur["provider"]));
                    tr {
                        th scope="row" { (e) }
                        td { @if cur.is_object() { (cur["provider"].as_str().unwrap_or_default()) "/" (cur["model"].as_str().unwrap_or_default()) } @else { "—" } }
                        @match top {
                            Some(m) => {
                                td class="num" { (format::count(&m["usage_count"])) }
                                td class="num" { (format::percent(&m["error_rate"])) }
                                td class="num" { (format::latency(&m["latency_p95_ms"])) }
                                td class="num" { (cost(&m["total_cost_usd"], &m["unpriced_requests"])) }
                            }
                            None => { td class="num" { "0" } td class="num" { "—" } td class="num" { "—" } td class="num" { "—" } }
                        }
                    }
                } }
            } }
            p class="note" { "Numbers of the model currently assigned in each environment." }
        }
        section class="card" id="history" data-live {
            h2 { "Assignment history" }
            @match &history {
                Err(f) => (failed("The history", f, &back)),
                Ok(_) if history_list.is_empty() => p class="empty" { "No assignments yet." },
                Ok(_) => div class="table-scroll" { table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Environment" } th scope="col" { "Model" } th scope="col" { "By" } th scope="col" { "State" } } }
                    tbody { @for a in &history_list { tr {
                        td { (when(&Value::from(a.assigned_at.to_rfc3339()), ctx.console.clock.now())) }
                        td { (a.environment.as_str()) }
                        td { (a.provider) "/" (a.model) }
                        td { (a.assigned_by.as_deref().unwrap_or("—")) }
                        td { @if a.is_active { (badge("active")) } @else { (badge("inactive")) } }
                    } } }
                } },
            }
        }
    }
}

fn model_split(perf: &Value) -> Markup {
    let models = items(&perf["models"]);
    if models.is_empty() {
        return html! { p class="empty" { "No requests in this window." } };
    }
    html! {
        div class="table-scroll" { table {
            thead { tr { th scope="col" { "Model" } th scope="col" class="num" { "Requests" } th scope="col" class="num" { "Error rate" }
                th scope="col" class="num" { "p95" } th scope="col" class="num" { "Cost" } } }
            tbody { @for m in models { tr {
                td { (m["provider_name"].as_str().unwrap_or_default()) "/" (m["name"].as_str().unwrap_or_default()) }
                td class="num" { (format::count(&m["usage_count"])) }
                td class="num" { (format::percent(&m["error_rate"])) }
                td class="num" { (format::latency(&m["latency_p95_ms"])) }
                td class="num" { (cost(&m["total_cost_usd"], &m["unpriced_requests"])) }
            } } }
        } }
    }
}

fn change_dialog(
    ctx: &Ctx,
    name: &str,
    env: &str,
    current: &Value,
    models: &Result<Value, Failure>,
    perf: Option<&Value>,
    back: &str,
) -> Markup {
    let all = models
        .as_ref()
        .map(|m| items(&m["data"]).to_vec())
        .unwrap_or_default();
    // Candidates do the same kind of work as the current model (an embedding model cannot
    // answer a chatbot); with nothing assigned yet, every model is a candidate.
    let kind = all
        .iter()
        .find(|m| m["name"] == current["model"] && m["provider"] == current["provider"])
        .map(|m| m["model_type"].clone());
    let list: Vec<Value> = all
        .iter()
        .filter(|m| kind.as_ref().is_none_or(|k| m["model_type"] == *k))
        .cloned()
        .collect();
    let error = ctx.field_error("model_id");
    html! {
        details class="dialog" open[error.is_some()] {
            summary { "Change model…" }
            div class="panel" role="group" aria-labelledby="change-title" {
                h3 id="change-title" { "Change the model of " (name) " in " (env) }
                @if let Err(f) = models { (failed("The models", f, back)) }
                form method="post" action={(feature_url(name)) "/deploy"} {
                    (ctx.csrf())
                    input type="hidden" name="environment" value=(env);
                    input type="hidden" name="back" value=(back);
                    fieldset {
                        legend { "Candidate models"
                            @if let Some(k) = kind.as_ref().and_then(Value::as_str) { " of type " (k) }
                            " (price per million tokens; performance in " (env) ", last " (ctx.view.time_range) ")" }
                        div class="table-scroll" { table {
                            thead { tr { th scope="col" { "Model" } th scope="col" class="num" { "Input" } th scope="col" class="num" { "Output" }
                                th scope="col" class="num" { "Requests" } th scope="col" class="num" { "p95" } th scope="col" class="num" { "Error rate" } } }
                            tbody { @for m in &list {
                                @let id = m["id"].as_str().unwrap_or_default();
                                @let is_current = current["model"] == m["name"] && current["provider"] == m["provider"];
                                @let seen = perf.and_then(|p| items(&p["models"]).iter().find(|x| x["name"] == m["name"] && x["provider_name"] == m["provider"]));
                                tr {
                                    td { label class="radio" {
                                        input type="radio" name="model_id" value=(id) checked[is_current] required;
                                        " " (m["provider"].as_str().unwrap_or_default()) "/" (m["name"].as_str().unwrap_or_default())
                                        @if is_current { " " span class="note" { "(current)" } }
                                        " " (badge_of(&m["status"]))
                                    } }
                                    td class="num" { (format::money_of(&m["current_price"]["input_usd_per_mtok"])) }
                                    td class="num" { (format::money_of(&m["current_price"]["output_usd_per_mtok"])) }
                                    td class="num" { (seen.map_or_else(|| "0".to_string(), |s| format::count(&s["usage_count"]))) }
                                    td class="num" { (seen.map_or_else(|| "—".to_string(), |s| format::latency(&s["latency_p95_ms"]))) }
                                    td class="num" { (seen.map_or_else(|| "—".to_string(), |s| format::percent(&s["error_rate"]))) }
                                }
                            } }
                        } }
                    }
                    @if let Some(e) = error { p class="field-error" role="alert" { (e) } }
                    button type="submit" class="primary" { "Deploy to " (env) }
                }
            }
        }
    }
}

/// One row of the Prompts tab: a stored version with its metrics, or a version only events
/// name (shown after the stored ones, as the API lists them).
struct VersionRow {
    label: String,
    stored: Option<Value>,
    metrics: Option<Value>,
}

/// The versions to show: stored versions oldest first, each with its metrics, then versions
/// only events name (so traffic under an unknown version is never hidden).
fn version_rows(versions: &Value, metrics: Option<&Value>) -> Vec<VersionRow> {
    let measured = metrics.map_or(&[][..], |m| items(&m["versions"]));
    let mut rows: Vec<VersionRow> = items(versions)
        .iter()
        .map(|v| {
            let label = v["version"].to_string();
            VersionRow {
                metrics: measured
                    .iter()
                    .find(|m| m["version"].as_str() == Some(label.as_str()))
                    .cloned(),
                stored: Some(v.clone()),
                label,
            }
        })
        .collect();
    for m in measured.iter().filter(|m| m["known"] == false) {
        rows.push(VersionRow {
            label: m["version"].as_str().unwrap_or_default().to_string(),
            stored: None,
            metrics: Some(m.clone()),
        });
    }
    rows
}

/// The review step a version's status allows from the console (`draft` → `review` →
/// `approved`), as (next status, button label).
fn next_step(status: &str) -> Option<(&'static str, &'static str)> {
    match status {
        "draft" => Some(("review", "Send to review")),
        "review" => Some(("approved", "Approve")),
        _ => None,
    }
}

async fn prompts_tab(ctx: &Ctx, name: &str) -> Markup {
    let api = &ctx.console.api;
    let caller = &ctx.signed.caller;
    let prompts = match api
        .page(
            caller,
            &format!("/prompts?feature={}&limit=100", encode(name)),
        )
        .await
    {
        Ok(p) => items(&p["data"]).to_vec(),
        Err(f) => return failed("The prompts", &f, &ctx.view.with(&[])),
    };
    if prompts.is_empty() {
        return html! { p class="empty" { "No prompts for " code { (name) } " — create one with POST /prompts." } };
    }
    let details = futures::future::join_all(prompts.iter().map(|p| async move {
        let id = p["id"].as_str().unwrap_or_default();
        let versions = api
            .get(caller, &format!("/prompts/{}/versions", encode(id)))
            .await;
        let metrics = api
            .get(
                caller,
                &format!("/prompts/{}/metrics?{}", encode(id), ctx.view.api_query()),
            )
            .await;
        (versions, metrics)
    }))
    .await;
    let sections: std::collections::HashMap<&str, Markup> =
        futures::future::join_all(prompts.iter().map(|p| async move {
            let id = p["id"].as_str().unwrap_or_default();
            (id, super::test_runs::prompt_section(ctx, name, id).await)
        }))
        .await
        .into_iter()
        .collect();
    let back = ctx.view.with(&[]);
    let admin = ctx.can(Access::Admin);
    html! {
        @for (p, (versions, metrics)) in prompts.iter().zip(&details) {
            @let id = p["id"].as_str().unwrap_or_default();
            section class="card" {
                h2 { (p["name"].as_str().unwrap_or_default()) }
                @if let Err(f) = metrics { (failed("The versions' metrics", f, &back)) }
                @match versions {
                    Err(f) => (failed("The versions", f, &back)),
                    Ok(v) => div class="table-scroll" { table {
                        thead { tr { th scope="col" { "Version" } th scope="col" { "Status" } th scope="col" { "Active" }
                            th scope="col" class="num" { "Requests" } th scope="col" class="num" { "Error rate" }
                            th scope="col" class="num" { "p95" } th scope="col" class="num" { "Cost" }
                            @if admin { th scope="col" { "Change" } } } }
                        tbody { @for row in version_rows(v, metrics.as_ref().ok()) {
                            tr {
                                td { @if row.label.is_empty() { "(none named)" } @else { "v" (row.label) } }
                                td { @match &row.stored {
                                    Some(stored) => (badge_of(&stored["status"])),
                                    None => span class="note" { "not a stored version (named by events only)" },
                                } }
                                td { @if row.stored.as_ref().is_some_and(|s| s["is_active"] == true) { (badge("active")) } }
                                @match &row.metrics {
                                    Some(m) => {
                                        td class="num" { (format::count(&m["requests"])) }
                                        td class="num" { (format::percent(&m["error_rate"])) }
                                        td class="num" { (format::latency(&m["latency_p95_ms"])) }
                                        td class="num" { (cost(&m["total_cost_usd"], &m["unpriced_requests"])) }
                                    }
                                    None => { td class="num" { "0" } td class="num" { "—" } td class="num" { "—" } td class="num" { "—" } }
                                }
                                @if admin { td {
                                    @if let Some(stored) = &row.stored {
                                        @if let Some((next, label)) = next_step(stored["status"].as_str().unwrap_or_default()) {
                                            form method="post" action={(feature_url(name)) "/prompts/" (encode(id)) "/status"} class="inline" {
                                                (ctx.csrf())
                                                input type="hidden" name="version" value=(row.label);
                                                input type="hidden" name="status" value=(next);
                                                input type="hidden" name="back" value=(back);
                                                button type="submit" { (label) }
                                            }
                                        }
                                        @if stored["status"] == "approved" && stored["is_active"] != true {
                                            form method="post" action={(feature_url(name)) "/prompts/" (encode(id)) "/activate"} class="inline"
                                                data-confirm={"Make version " (row.label) " the active prompt of " (name) "?"} {
                                                (ctx.csrf())
                                                input type="hidden" name="version" value=(row.label);
                                                input type="hidden" name="back" value=(back);
                                                button type="submit" { "Activate" }
                                            }
                                        }
                                    }
                                } }
                            }
                        } }
                    } },
                }
                (sections.get(id).cloned().unwrap_or_default())
            }
        }
    }
}

fn settings_tab(ctx: &Ctx, name: &str, detail: Option<&Value>) -> Markup {
    let Some(d) = detail else {
        return html! { p class="empty" { code { (name) } " is not registered; register it with POST /features to give it settings." } };
    };
    if !ctx.can(Access::Admin) {
        return html! {
            section class="card" {
                h2 { "Settings" }
                dl class="facts" {
                    dt { "Display name" } dd { (d["display_name"].as_str().unwrap_or_default()) }
                    dt { "Status" } dd { (badge_of(&d["status"])) }
                    dt { "Description" } dd { (d["description"].as_str().unwrap_or("—")) }
                }
                p class="note" { "Only a platform_admin key can change these." }
            }
        };
    }
    html! {
        section class="card" {
            h2 { "Settings" }
            form method="post" action={(feature_url(name)) "/settings"} {
                (ctx.csrf())
                input type="hidden" name="back" value=(ctx.view.with(&[]));
                div class="form-grid" {
                    div {
                        label for="display_name" { "Display name" }
                        input id="display_name" name="display_name" value=(ctx.typed("display_name").unwrap_or(d["display_name"].as_str().unwrap_or_default())) required maxlength="200"
                            aria-invalid=[ctx.field_error("display_name").map(|_| "true")] aria-describedby=[ctx.field_error("display_name").map(|_| "display_name-error")];
                        @if let Some(e) = ctx.field_error("display_name") { p class="field-error" id="display_name-error" { (e) } }
                    }
                    div {
                        label for="status" { "Status" }
                        select id="status" name="status" aria-invalid=[ctx.field_error("status").map(|_| "true")] aria-describedby=[ctx.field_error("status").map(|_| "status-error")] {
                            @for s in ["active", "inactive", "maintenance"] {
                                option value=(s) selected[ctx.typed("status").map_or(d["status"] == s, |t| t == s)] { (s) }
                            }
                        }
                        @if let Some(e) = ctx.field_error("status") { p class="field-error" id="status-error" { (e) } }
                    }
                }
                label for="description" { "Description" }
                textarea id="description" name="description" rows="3"
                    aria-invalid=[ctx.field_error("description").map(|_| "true")] aria-describedby=[ctx.field_error("description").map(|_| "description-error")] {
                    (ctx.typed("description").unwrap_or(d["description"].as_str().unwrap_or_default()))
                }
                @if let Some(e) = ctx.field_error("description") { p class="field-error" id="description-error" { (e) } }
                p { button type="submit" class="primary" { "Save settings" } }
            }
        }
    }
}
