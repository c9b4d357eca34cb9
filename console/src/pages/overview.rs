//! The global overview (`/`): spending today, month to date and over 30 days with its trend,
//! budget status, the feature health grid, providers with their health score and active
//! models, the last 24 hours' KPIs, recent deployments and alerts. Live: refreshed from the
//! event stream. Finance keys, which may not read the dashboards, land on Spending instead.
//!
//! Reads `GET /overview`, `GET /analytics/budgets`, `GET /analytics/alerts` and each
//! provider's `GET /providers/{name}/health`.

use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde_json::Value;
use tally_domain::access::{Access, Role};

use super::{badge, badge_of, items, kpi, trend, unpriced, when};
use crate::api::{encode, API};
use crate::document::{failed, Page};
use crate::format;
use crate::shell::Ctx;
use crate::BASE;

/// `GET /`.
pub async fn page(ctx: Ctx) -> Response {
    if ctx.signed.role() == Role::Finance {
        return Redirect::to(&ctx.view.link(&format!("{BASE}/spending"))).into_response();
    }
    if let Err(refused) = ctx.signed.may(Access::ReadMetrics) {
        return refused.into_response();
    }
    let api = &ctx.console.api;
    let caller = &ctx.signed.caller;
    let (overview, budgets, alerts) = tokio::join!(
        api.get(caller, "/overview"),
        api.get(caller, "/analytics/budgets"),
        api.get(caller, "/analytics/alerts?limit=5"),
    );
    let overview = match overview {
        Ok(o) => o,
        Err(f) => {
            let body = failed("The overview", &f, &ctx.view.with(&[]));
            return Page::fixed(&ctx, "/", "Overview", body, None).into_response();
        }
    };
    let names: Vec<String> = items(&overview["providers"])
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let health = futures::future::join_all(names.iter().map(|n| async move {
        api.get(caller, &format!("/providers/{}/health", encode(n)))
            .await
    }))
    .await;
    let now = ctx.console.clock.now();
    let body = html! {
        (spending(&overview["spending"]))
        (kpis(&overview["kpis"]))
        div class="grid wide" {
            section class="card" id="feature-health" data-live {
                h2 { "Feature health" }
                (feature_grid(&ctx, &overview["features"]))
            }
            section class="card" id="providers" data-live {
                h2 { "Providers" }
                (providers(&overview["providers"], &health))
            }
            section class="card" id="budgets" data-live {
                h2 { "Budgets" }
                @match &budgets {
                    Ok(b) => (super::budgets::bars(b, false)),
                    Err(f) => (failed("Budgets", f, &ctx.view.with(&[]))),
                }
            }
            section class="card" id="recent" data-live {
                h2 { "Recent deployments" }
                @let activities = items(&overview["activities"]);
                @if activities.is_empty() {
                    p class="empty" { "No deployments yet — assign a model to a feature under Features → Models." }
                } @else {
                    ul {
                        @for a in activities.iter().take(6) {
                            li { strong { (a["feature"].as_str().unwrap_or_default()) } " in " (a["environment"].as_str().unwrap_or_default())
                                 " → " (a["provider"].as_str().unwrap_or_default()) "/" (a["model"].as_str().unwrap_or_default())
                                 " · " (when(&a["at"], now)) }
                        }
                    }
                }
                h2 { "Recent alerts" }
                @match &alerts {
                    Ok(a) => (super::budgets::alert_list(&ctx, a, now, false)),
                    Err(f) => (failed("Alerts", f, &ctx.view.with(&[]))),
                }
            }
        }
        (pipeline(&overview["pipeline"]))
    };
    Page::fixed(&ctx, "/", "Overview", body, Some(stream_url(None))).into_response()
}

/// The console's event stream URL (for `feature`, or all features).
pub fn stream_url(feature: Option<&str>) -> String {
    match feature {
        Some(f) => format!("{BASE}/live?feature={}", encode(f)),
        None => format!("{BASE}/live"),
    }
}

fn spending(s: &Value) -> Markup {
    html! {
        div class="grid" id="spending" data-live {
            (kpi("spend-today", "Spend today (UTC)", format::money_of(&s["today"]["total_cost_usd"]),
                Some(cost_note(&s["today"]))))
            (kpi("spend-month", "Month to date", format::money_of(&s["month_to_date"]["total_cost_usd"]),
                Some(cost_note(&s["month_to_date"]))))
            (kpi("spend-30d", "Last 30 days", format::money_of(&s["last_30_days"]["total_cost_usd"]),
                Some(html! { (cost_note(&s["last_30_days"])) br; (trend(&s["trend"], s["previous_30_days"]["total_cost_usd"].as_str().and_then(format::pico_dollars).is_some_and(|p| p != 0))) })))
        }
    }
}

fn cost_note(m: &Value) -> Markup {
    html! {
        (format::count(&m["requests"])) " requests"
        @if m["unpriced_requests"].as_u64().unwrap_or(0) > 0 {
            " + " (format::count(&m["unpriced_requests"])) " unpriced"
        }
    }
}

fn kpis(k: &Value) -> Markup {
    html! {
        div class="grid" id="kpis" data-live {
            (kpi("kpi-requests", "Requests (24 h)", format::count(&k["requests_24h"]), None))
            (kpi("kpi-success", "Success rate (24 h)", format::percent(&k["success_rate"]),
                Some(html! { (format::percent(&k["error_rate"])) " errors" })))
            (kpi("kpi-latency", "Response time p95 (24 h)", format::latency(&k["latency"]["latency_p95_ms"]),
                Some(html! { "p50 " (format::latency(&k["latency"]["latency_p50_ms"])) " · p99 " (format::latency(&k["latency"]["latency_p99_ms"])) })))
            (kpi("kpi-cost", "Cost (24 h)", format::money_of(&k["cost_24h_usd"]),
                Some(unpriced(&k["unpriced_requests_24h"]))))
            (kpi("kpi-users", "Unique users (24 h)", format::count(&k["unique_users_24h"]), None))
            (kpi("kpi-tokens", "Tokens (24 h)", format::count(&k["tokens_24h"]), None))
        }
    }
}

fn feature_grid(ctx: &Ctx, features: &Value) -> Markup {
    let list = items(features);
    if list.is_empty() {
        return html! { p class="empty" { "No features yet — send an event (README: Sending events) or register one with POST /features." } };
    }
    html! {
        div class="table-scroll" {
            table {
                thead { tr { th scope="col" { "Feature" } th scope="col" { "Health" } th scope="col" class="num" { "Requests" }
                    th scope="col" class="num" { "Errors" } th scope="col" class="num" { "p95" } } }
                tbody {
                    @for f in list {
                        @let name = f["name"].as_str().unwrap_or_default();
                        tr {
                            td { a href=(ctx.view.link(&format!("{BASE}/features/{}", encode(name)))) { (f["display_name"].as_str().unwrap_or(name)) } }
                            td { (badge_of(&f["health"])) }
                            td class="num" { (format::count(&f["requests_24h"])) }
                            td class="num" { (format::percent(&f["error_rate"])) }
                            td class="num" { (format::latency(&f["latency_p95_ms"])) }
                        }
                    }
                }
            }
        }
    }
}

fn providers(list: &Value, health: &[Result<Value, crate::api::Failure>]) -> Markup {
    let list = items(list);
    if list.is_empty() {
        return html! { p class="empty" { "No providers yet." } };
    }
    html! {
        ul class="plain" {
            @for (p, h) in list.iter().zip(health) {
                li {
                    strong { (p["name"].as_str().unwrap_or_default()) } " "
                    @match h {
                        Ok(h) => { (badge_of(&h["status"])) " score " (score(&h["score"])) }
                        Err(f) => { span class="note" { "health unavailable: " (f.message) } }
                    }
                    div class="note" {
                        "Active models: "
                        @let models = items(&p["active_models"]);
                        @if models.is_empty() { "none" }
                        @for (i, m) in models.iter().enumerate() { @if i > 0 { ", " } (m.as_str().unwrap_or_default()) }
                        " · " (format::count(&p["requests_24h"])) " requests (24 h)"
                    }
                }
            }
        }
    }
}

/// A provider's health score out of 100 (`—` when it had no traffic to score).
pub fn score(value: &Value) -> String {
    value
        .as_u64()
        .map_or_else(|| "—".to_string(), |s| s.to_string())
}

fn pipeline(p: &Value) -> Markup {
    html! {
        p class="note" id="pipeline" data-live {
            "Pipeline: " (format::count(&p["events_projected"])) " of " (format::count(&p["events_in_log"])) " events projected"
            @if p["lag_events"].as_u64().unwrap_or(0) > 0 { " · " (badge("pending")) " " (format::count(&p["lag_events"])) " behind" }
            @if let Some(e) = p["last_error"].as_str() { " · " (badge("error")) " " (e) }
        }
    }
}

/// How often an open event stream checks that its session still holds.
const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /live`: the JSON API's event stream for the signed-in session (`feature` optional).
/// The stream ends within [`SESSION_RECHECK`] of the session ending (sign-out, expiry, the key
/// revoked); the browser then reconnects and is asked to sign in.
pub async fn live(ctx: Ctx) -> Response {
    use futures::StreamExt;
    if let Err(refused) = ctx.signed.may(Access::ReadMetrics) {
        return refused.into_response();
    }
    let mut path = format!("{API}/events/stream");
    let mut sep = '?';
    if let Some(feature) = ctx.view.param("feature") {
        path.push_str(&format!("{sep}feature={}", encode(feature)));
        sep = '&';
    }
    if let Some(e) = &ctx.view.environment {
        path.push_str(&format!("{sep}environment={e}"));
    }
    let response = ctx
        .console
        .api
        .call(&ctx.signed.caller, Method::GET, &path, None)
        .await;
    let (parts, body) = response.into_parts();
    let console = ctx.console.clone();
    let hash = ctx.signed.token_hash.clone();
    let ended = async move {
        loop {
            tokio::time::sleep(SESSION_RECHECK).await;
            match console.config.session_by_hash(&hash).await {
                Ok(Some((session, key))) if session.check(&key, console.clock.now()).is_ok() => {}
                Ok(_) => return,
                // A store hiccup is no verdict: the next check decides.
                Err(_) => {}
            }
        }
    };
    let stream = body.into_data_stream().take_until(ended);
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}
