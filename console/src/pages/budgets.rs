//! Budgets and alerts: each budget's bar (spend against the amount, the thresholds crossed,
//! the forecast to the period's end), then the alert history — rule and budget alerts with
//! their state, severity, times and deliveries — with acknowledgement for admins.
//!
//! Reads `GET /analytics/budgets` and `GET /analytics/alerts` (finance keys get budget alerts
//! only: the API decides).

use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde_json::Value;
use tally_domain::access::{Access, Role};

use super::{badge_of, items, when};
use crate::api::encode;
use crate::document::{failed, Page};
use crate::format;
use crate::shell::Ctx;
use crate::BASE;

/// `GET /budgets`.
pub async fn page(ctx: Ctx) -> Response {
    if let Err(refused) = ctx.signed.may(Access::ReadBudgets) {
        return refused.into_response();
    }
    let api = &ctx.console.api;
    let caller = &ctx.signed.caller;
    // Finance may read budget alerts only; asking for rule alerts would be refused.
    let alerts_path = if ctx.signed.role() == Role::Finance {
        "/analytics/alerts?kind=budget&limit=200"
    } else {
        "/analytics/alerts?limit=200"
    };
    let (budgets, alerts) = tokio::join!(
        api.get(caller, "/analytics/budgets"),
        api.get(caller, alerts_path)
    );
    let now = ctx.console.clock.now();
    let back = ctx.view.with(&[]);
    let body = html! {
        section class="card" id="budget-bars" data-live {
            h2 { "Budgets" }
            @match &budgets {
                Ok(b) => (bars(b, true)),
                Err(f) => (failed("The budgets", f, &back)),
            }
        }
        section class="card" id="alert-history" data-live {
            h2 { "Alerts" }
            @match &alerts {
                Ok(a) => (alert_list(&ctx, a, now, true)),
                Err(f) => (failed("The alerts", f, &back)),
            }
        }
    };
    Page::fixed(&ctx, "/budgets", "Budgets & alerts", body, None).into_response()
}

/// Budget bars; `full` adds the forecast and the thresholds.
pub fn bars(statuses: &Value, full: bool) -> Markup {
    let list = items(statuses);
    if list.is_empty() {
        return html! { p class="empty" { "No budgets yet — create one with POST /budgets (amount, period, thresholds)." } };
    }
    html! {
        ul class="plain budgets" {
            @for b in list {
                @let used = b["utilization"].as_f64().unwrap_or(0.0);
                li {
                    p { strong { (b["name"].as_str().unwrap_or_default()) } " " (badge_of(&b["state"]))
                        " " span class="note" { (b["period"].as_str().unwrap_or_default())
                        @if let Some(v) = b["scope_value"].as_str() { " · " (b["scope"].as_str().unwrap_or_default()) " " (v) } } }
                    meter class="meter" min="0" max="1" low="0.7" high="0.9" optimum="0" value=(format!("{:.4}", used.min(1.0)))
                        aria-label={"Spend against the budget of " (b["name"].as_str().unwrap_or_default())} {
                        (format!("{:.1}%", used * 100.0))
                    }
                    p class="note" {
                        (format::money_of(&b["spend_usd"])) " of " (format::money_of(&b["amount_usd"])) " (" (format!("{:.1}%", used * 100.0)) ")"
                        @if b["unpriced_requests"].as_u64().unwrap_or(0) > 0 { " + " (format::count(&b["unpriced_requests"])) " unpriced requests" }
                        @if full {
                            " · forecast " (format::money_of(&b["forecast_usd"])) " (last 24 h pace " (format::money_of(&b["forecast_trailing_24h_usd"])) ")"
                            @let crossed = items(&b["thresholds_crossed"]);
                            @if !crossed.is_empty() { " · crossed " @for (i, t) in crossed.iter().enumerate() { @if i > 0 { ", " } (t) "%" } }
                        }
                    }
                }
            }
        }
    }
}

/// The alerts answered; `full` adds deliveries and acknowledgement.
pub fn alert_list(ctx: &Ctx, alerts: &Value, now: DateTime<Utc>, full: bool) -> Markup {
    let list = items(alerts);
    if list.is_empty() {
        return html! { p class="empty" { "No alerts — none of the alert rules or budgets has fired." } };
    }
    let back = ctx.view.with(&[]);
    html! {
        div class="table-scroll" { table {
            thead { tr { th scope="col" { "Alert" } th scope="col" { "State" } th scope="col" { "Severity" } th scope="col" { "Since" }
                @if full { th scope="col" { "Deliveries" } th scope="col" { "Acknowledged" } } } }
            tbody { @for a in list { tr {
                td { strong { (a["name"].as_str().unwrap_or_default()) } " " span class="note" { (a["kind"].as_str().unwrap_or_default()) }
                     div class="note" { (a["summary"].as_str().unwrap_or_default()) } }
                td { (badge_of(&a["state"])) }
                td { (badge_of(&a["severity"])) }
                td { (when(&a["started_at"], now)) }
                @if full {
                    td {
                        @if items(&a["deliveries"]).is_empty() { span class="note" { "none (no channel)" } }
                        @for d in items(&a["deliveries"]) {
                            div { (badge_of(&d["status"])) " " span class="note" { (d["transition"].as_str().unwrap_or_default()) ", " (items(&d["attempts"]).len()) " attempts" } }
                        }
                    }
                    td {
                        @if let Some(by) = a["acknowledged_by"].as_str() { (by) " " (when(&a["acknowledged_at"], now)) }
                        @else if ctx.can(Access::Admin) && a["state"] != "resolved" {
                            form method="post" action={(BASE) "/alerts/" (encode(a["id"].as_str().unwrap_or_default())) "/acknowledge"} class="inline" {
                                (ctx.csrf())
                                input type="hidden" name="back" value=(back);
                                button type="submit" { "Acknowledge" }
                            }
                        } @else { "—" }
                    }
                }
            } } }
        } }
    }
}
