//! Experiments: each experiment's definition (feature, type, variants and their weights) and
//! status, with when it ran. Reads `GET /experiments`.

use axum::response::{IntoResponse, Response};
use maud::html;
use tally_domain::access::Access;

use super::{badge_of, items, when};
use crate::document::{failed, Page};
use crate::shell::Ctx;

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
                        td { strong { (e["name"].as_str().unwrap_or_default()) } @if let Some(d) = e["description"].as_str() { div class="note" { (d) } } }
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
