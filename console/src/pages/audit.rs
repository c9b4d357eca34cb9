//! The audit log (admins): who changed what, when, with the resource before and after;
//! newest first, a page at a time (`before` pages back), filtered by actor, action and
//! resource (the API's filters). Reads `GET /audit`.

use axum::response::{IntoResponse, Response};
use maud::html;
use tally_domain::access::Access;

use super::{items, when};
use crate::api::encode;
use crate::document::{failed, Page};
use crate::shell::Ctx;

const PAGE: usize = 100;

/// `GET /audit?before=…`.
pub async fn page(ctx: Ctx) -> Response {
    if let Err(refused) = ctx.signed.may(Access::Admin) {
        return refused.into_response();
    }
    let mut path = format!("/audit?limit={PAGE}");
    for (name, api) in [
        ("before_id", "before_id"),
        ("actor", "actor"),
        ("action", "action"),
        ("resource", "resource"),
    ] {
        if let Some(value) = ctx.view.param(name) {
            path.push_str(&format!("&{api}={}", encode(value)));
        }
    }
    let answer = ctx.console.api.get(&ctx.signed.caller, &path).await;
    let now = ctx.console.clock.now();
    let body = html! {
        form method="get" class="filters" role="search" aria-label="Filter the audit log" {
            input type="hidden" name="time_range" value=(ctx.view.time_range);
            @if let Some(e) = &ctx.view.environment { input type="hidden" name="environment" value=(e); }
            @for (name, label, hint) in [("actor", "Actor", "a key's name, cli"), ("action", "Action", "feature.update"), ("resource", "Resource", "feature or feature:chatbot")] {
                div { label for=(name) { (label) } input id=(name) name=(name) placeholder=(hint) value=(ctx.view.param(name).unwrap_or_default()); }
            }
            div { button type="submit" { "Filter" } }
            @if ["actor", "action", "resource"].iter().any(|n| ctx.view.param(n).is_some()) {
                div { a class="button" href=(ctx.view.with(&[("actor", None), ("action", None), ("resource", None), ("before_id", None)])) { "Clear" } }
            }
        }
        section class="card" {
            h2 { "Changes, newest first" }
            @match &answer {
                Err(f) => (failed("The audit log", f, &ctx.view.with(&[]))),
                Ok(list) if items(list).is_empty() => p class="empty" { "No change matches." },
                Ok(list) => {
                    div class="table-scroll" { table {
                        thead { tr { th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { "Action" } th scope="col" { "Resource" } th scope="col" { "Change" } } }
                        tbody { @for e in items(list) { tr {
                            td { (when(&e["at"], now)) }
                            td { (e["actor"].as_str().unwrap_or_default()) }
                            td { code { (e["action"].as_str().unwrap_or_default()) } }
                            td { code { (e["resource"].as_str().unwrap_or_default()) } }
                            td { details class="data" { summary { "before / after" }
                                pre { (serde_json::to_string_pretty(&e["before"]).unwrap_or_default()) }
                                pre { (serde_json::to_string_pretty(&e["after"]).unwrap_or_default()) } } }
                        } } }
                    } }
                    @if items(list).len() == PAGE {
                        @if let Some(last) = items(list).last().and_then(|e| e["id"].as_str()) {
                            p { a class="button" href=(ctx.view.with(&[("before_id", Some(last))])) { "Older entries" } }
                        }
                    }
                }
            }
        }
    };
    Page::fixed(&ctx, "/audit", "Audit log", body, None).into_response()
}
