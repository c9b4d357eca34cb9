//! Spending: the window's spend broken down by feature, provider, model, environment or day,
//! a chart of the spend per day stacked by that dimension, and the CSV export (the API's own
//! `GET /analytics/spending?format=csv`, so the file and the page are the same numbers).

use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::Value;
use tally_domain::access::Access;

use super::{items, unpriced};
use crate::api::{encode, API};
use crate::chart::{self, Chart, Series, Tick};
use crate::document::{failed, Page, Refusal};
use crate::format;
use crate::shell::Ctx;
use crate::BASE;

/// What a breakdown can be grouped by.
const GROUPS: [&str; 5] = ["feature", "provider", "model", "environment", "day"];

fn group(ctx: &Ctx) -> Result<&str, Refusal> {
    let g = ctx.view.param("group_by").unwrap_or("feature");
    if GROUPS.contains(&g) {
        Ok(g)
    } else {
        Err(Refusal::new(
            axum::http::StatusCode::BAD_REQUEST,
            "Unknown grouping",
            &format!("group_by: must be one of {}", GROUPS.join(", ")),
        ))
    }
}

/// `GET /spending?group_by=…`.
pub async fn page(ctx: Ctx) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadSpending) {
        return refused.into_response();
    }
    let g = match group(&ctx) {
        Ok(g) => g,
        Err(r) => return r.into_response(),
    };
    let api = &ctx.console.api;
    let caller = &ctx.signed.caller;
    let q = ctx.view.api_query();
    let by_day = if g == "day" {
        "day".to_string()
    } else {
        format!("day,{g}")
    };
    let (one, two) = (
        format!("/analytics/spending?group_by={g}&{q}"),
        format!("/analytics/spending?group_by={by_day}&{q}"),
    );
    let (breakdown, daily) = tokio::join!(api.get(caller, &one), api.get(caller, &two));
    let back = ctx.view.with(&[]);
    let csv = ctx
        .view
        .at(&format!("{BASE}/spending.csv"), &[("group_by", Some(g))]);
    let body = html! {
        nav class="tabs" aria-label="Group spending by" {
            @for option in GROUPS {
                a href=(ctx.view.with(&[("group_by", Some(option))])) aria-current=[(option == g).then_some("page")] { "By " (option) }
            }
        }
        @match &breakdown {
            Err(f) => (failed("Spending", f, &back)),
            Ok(s) => {
                div class="grid" id="spend-kpis" {
                    (super::kpi("spend-total", &format!("Spend · last {}", ctx.view.time_range), format::money_of(&s["total_cost_usd"]),
                        Some(unpriced(&s["unpriced_requests"]))))
                    (super::kpi("spend-requests", "Requests", format::count(&s["total_requests"]), None))
                }
                section class="card" {
                    h2 { "Spend per day by " (g) }
                    @match &daily { Ok(d) => (stacked(d, g)), Err(f) => (failed("The daily spend", f, &back)) }
                }
                section class="card" {
                    h2 { "Breakdown by " (g) }
                    p { a class="button" href=(csv) download { "Export CSV" } }
                    @let rows = items(&s["breakdown"]);
                    @if rows.is_empty() { p class="empty" { "No spending in this window — events with prices will show here." } } @else {
                        div class="table-scroll" { table id="spend-table" {
                            thead { tr { th scope="col" { (g) } th scope="col" class="num" { "Cost" } th scope="col" class="num" { "Requests" }
                                th scope="col" class="num" { "Unpriced" } th scope="col" class="num" { "Share" } } }
                            tbody { @for r in rows { tr {
                                th scope="row" { (r[g].as_str().unwrap_or_default()) }
                                td class="num" data-usd=(r["total_cost_usd"].as_str().unwrap_or_default()) { (format::money_of(&r["total_cost_usd"])) }
                                td class="num" { (format::count(&r["request_count"])) }
                                td class="num" { (format::count(&r["unpriced_requests"])) }
                                td class="num" { (format::percent(&r["percentage"])) }
                            } } }
                        } }
                    }
                }
            }
        }
    };
    Page::new(&ctx, "/spending", "Spending", body).into_response()
}

/// The daily spend, one layer per group value (the API's amounts, stacked as given).
fn stacked(daily: &Value, g: &str) -> maud::Markup {
    let rows = items(&daily["breakdown"]);
    // Every UTC day the window touches, so days without spending are gaps, not missing.
    let mut days: Vec<String> = Vec::new();
    if let (Some(from), Some(to)) = (
        format::instant(&daily["window"]["from"]),
        format::instant(&daily["window"]["to"]),
    ) {
        let mut day = from.date_naive();
        while day <= (to - chrono::Duration::seconds(1)).date_naive() {
            days.push(day.to_string());
            day = day.succ_opt().unwrap_or(day);
            if days.len() > 400 {
                break;
            }
        }
    }
    for r in rows {
        if let Some(d) = r["day"].as_str() {
            if !days.iter().any(|x| x == d) {
                days.push(d.to_string());
            }
        }
    }
    days.sort();
    let mut names: Vec<String> = Vec::new();
    let key = if g == "day" { "day" } else { g };
    for r in rows {
        let n = if g == "day" {
            "spend".to_string()
        } else {
            r[key].as_str().unwrap_or_default().to_string()
        };
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let series: Vec<Series> = names
        .iter()
        .map(|n| Series {
            name: n.clone(),
            values: days
                .iter()
                .map(|d| {
                    rows.iter()
                        .find(|r| {
                            r["day"].as_str() == Some(d.as_str())
                                && (g == "day" || r[key].as_str() == Some(n.as_str()))
                        })
                        .and_then(|r| r["total_cost"].as_f64())
                })
                .collect(),
        })
        .collect();
    let ticks: Vec<Tick> = days
        .iter()
        .map(|d| Tick {
            short: d.get(5..).unwrap_or(d).to_string(),
            full: d.clone(),
        })
        .collect();
    let usd = |v: f64| format::money(&format!("{v:.6}"));
    chart::stacked(&Chart {
        id: "chart-spend",
        title: "Spend per day",
        description: &format!("US dollars per UTC day, stacked by {g}"),
        x: &ticks,
        series: &series,
        format: &usd,
        links: None,
    })
}

/// `GET /spending.csv?group_by=…`: the API's CSV, as a download.
pub async fn csv(ctx: Ctx) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadSpending) {
        return refused.into_response();
    }
    let g = match group(&ctx) {
        Ok(g) => g,
        Err(r) => return r.into_response(),
    };
    let path = format!(
        "{API}/analytics/spending?format=csv&group_by={}&{}",
        encode(g),
        ctx.view.api_query()
    );
    let mut response = ctx
        .console
        .api
        .call(&ctx.signed.caller, Method::GET, &path, None)
        .await;
    if response.status().is_success() {
        let name = format!(
            "attachment; filename=\"tally-spending-{g}-{}.csv\"",
            ctx.view.time_range
        );
        if let Ok(v) = HeaderValue::from_str(&name) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}
