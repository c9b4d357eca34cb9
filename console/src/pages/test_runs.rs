//! Test runs: one run's numbers per model (pass rate, latency p50/p95, tokens, exact cost) and
//! each call's output and verdict (`GET /test-runs/{id}`); and, on a feature's prompts tab,
//! each prompt's test cases with the form that runs them on chosen models and the prompt's
//! recent runs (`GET /test-cases`, `GET /models`, `GET /test-runs`).

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value;
use tally_domain::access::Access;

use super::{badge, badge_of, cost, items, when};
use crate::api::encode;
use crate::document::{failed, Page};
use crate::format;
use crate::shell::Ctx;
use crate::BASE;

/// A pass rate (or `—` before anything was graded).
fn pass_rate(value: &Value) -> String {
    if value.is_null() {
        "—".into()
    } else {
        format::percent(value)
    }
}

/// A call's verdict as a badge: passed, failed, or recorded (the `none` check), or pending.
fn verdict(call: &Value) -> Markup {
    match (call["status"].as_str(), call["passed"].as_bool()) {
        (Some("pending"), _) => badge("pending"),
        (_, Some(true)) => badge("passed"),
        (_, Some(false)) => badge("failed"),
        _ => badge("recorded"),
    }
}

/// `GET /test-runs/{id}`.
pub async fn page(ctx: Ctx, Path(id): Path<String>) -> Response {
    if let Err(refused) = ctx.signed.may(Access::Admin) {
        return refused.into_response();
    }
    let answer = ctx
        .console
        .api
        .get(&ctx.signed.caller, &format!("/test-runs/{}", encode(&id)))
        .await;
    let run = match answer {
        Ok(r) => r,
        Err(f) => {
            let body = failed("The test run", &f, &ctx.view.with(&[]));
            return Page::fixed(&ctx, "/features", "Test run", body, None).into_response();
        }
    };
    let now = ctx.console.clock.now();
    let running = run["status"] == "running";
    let body = html! {
        section class="card" {
            p {
                (badge_of(&run["status"])) " · started " (when(&run["created_at"], now)) " by " (run["created_by"].as_str().unwrap_or_default())
                " · " (format::count(&run["calls_completed"])) " of " (format::count(&run["calls_total"])) " calls made"
            }
            @if running {
                p class="note" { "The run goes on in the background. " a href={(BASE) "/test-runs/" (encode(&id))} { "Refresh" } " to see the calls made since." }
            }
        }
        section class="card" {
            h2 { "Per model" }
            div class="table-scroll" { table id="run-models" {
                thead { tr {
                    th scope="col" { "Model" } th scope="col" class="num" { "Pass rate" } th scope="col" class="num" { "Passed / graded" }
                    th scope="col" class="num" { "Failed calls" } th scope="col" class="num" { "p50 / p95" }
                    th scope="col" class="num" { "Tokens in / out" } th scope="col" class="num" { "Cost" }
                } }
                tbody { @for m in items(&run["models"]) { tr {
                    th scope="row" { (m["provider"].as_str().unwrap_or_default()) "/" (m["model"].as_str().unwrap_or_default()) }
                    td class="num" { (pass_rate(&m["pass_rate"])) }
                    td class="num" { (format::count(&m["passed"])) " / " (format::count(&m["graded"])) }
                    td class="num" { (format::count(&m["failures"])) }
                    td class="num" { (format::latency(&m["latency_p50_ms"])) " / " (format::latency(&m["latency_p95_ms"])) }
                    td class="num" { (format::count(&m["input_tokens"])) " / " (format::count(&m["output_tokens"])) }
                    td class="num" { (cost(&m["cost_usd"], &m["unpriced_calls"])) }
                } } }
            } }
        }
        section class="card" {
            h2 { "Calls" }
            div class="table-scroll" { table id="run-calls" {
                thead { tr {
                    th scope="col" { "Case" } th scope="col" { "Model" } th scope="col" { "Verdict" }
                    th scope="col" { "Output" } th scope="col" class="num" { "Latency" } th scope="col" class="num" { "Cost" }
                } }
                tbody { @for c in items(&run["calls"]) { tr {
                    th scope="row" { (c["test_case"].as_str().unwrap_or_default()) }
                    td { (c["model"].as_str().unwrap_or_default()) }
                    td { (verdict(c)) br; span class="note" { (c["verdict"].as_str().unwrap_or_default()) } }
                    td {
                        @if let Some(out) = c["output"].as_str() { pre class="output" { (out) } }
                        @if let Some(err) = c["error"].as_str() { p class="note" { (err) } }
                    }
                    td class="num" { (format::latency(&c["latency_ms"])) }
                    td class="num" { @if c["cost_usd"].is_null() { "—" } @else { (format::money_of(&c["cost_usd"])) } }
                } } }
            } }
        }
    };
    Page::fixed(&ctx, "/features", "Test run", body, None).into_response()
}

/// A prompt's test cases, the form that runs them on chosen models, and its recent runs
/// (admins only: running spends money at the providers).
pub async fn prompt_section(ctx: &Ctx, feature: &str, prompt_id: &str) -> Markup {
    if !ctx.can(Access::Admin) {
        return html! {};
    }
    let api = &ctx.console.api;
    let caller = &ctx.signed.caller;
    let (cases, models, runs) = futures::future::join3(
        api.page(
            caller,
            &format!("/test-cases?prompt_id={}&limit=100", encode(prompt_id)),
        ),
        api.page(caller, "/models?limit=100"),
        api.page(
            caller,
            &format!("/test-runs?prompt_id={}&limit=5", encode(prompt_id)),
        ),
    )
    .await;
    let back = ctx.view.with(&[]);
    let cases = match cases {
        Ok(c) => items(&c["data"]).to_vec(),
        Err(f) => return failed("The test cases", &f, &back),
    };
    let now = ctx.console.clock.now();
    html! {
        h3 { "Test cases" }
        @if cases.is_empty() {
            p class="note" { "No test cases yet — define them with POST /test-cases." }
        } @else {
            ul class="plain" { @for c in &cases {
                li { (c["name"].as_str().unwrap_or_default()) " " span class="note" { "(" (c["check"].as_str().unwrap_or_default()) ")" } }
            } }
            @match &models {
                Err(f) => (failed("The models", f, &back)),
                Ok(m) => form method="post" action={(BASE) "/features/" (encode(feature)) "/prompts/" (encode(prompt_id)) "/test-runs"} {
                    (ctx.csrf())
                    input type="hidden" name="back" value=(back);
                    fieldset aria-describedby=[ctx.field_error("models").map(|_| "models-error")] {
                        legend { "Run every case on" }
                        @for model in items(&m["data"]) {
                            @let id = model["id"].as_str().unwrap_or_default();
                            label class="check" {
                                input type="checkbox" name={"model_" (id)} value="on";
                                " " (model["provider"].as_str().unwrap_or_default()) "/" (model["name"].as_str().unwrap_or_default())
                            }
                        }
                    }
                    @for f in ["models", "test_case_ids", "prompt_id"] {
                        @if let Some(e) = ctx.field_error(f) { p class="field-error" id={(f) "-error"} { (e) } }
                    }
                    button type="submit" { "Run " (cases.len()) " test cases" }
                }
            }
        }
        @if let Ok(r) = &runs {
            @let listed = items(&r["data"]);
            @if !listed.is_empty() {
                h3 { "Recent runs" }
                ul class="plain" { @for run in listed {
                    li {
                        a href={(BASE) "/test-runs/" (encode(run["id"].as_str().unwrap_or_default()))} { (when(&run["created_at"], now)) }
                        " " (badge_of(&run["status"]))
                        @for m in items(&run["models"]) {
                            " · " (m["model"].as_str().unwrap_or_default()) " " (pass_rate(&m["pass_rate"]))
                        }
                    }
                } }
            }
        }
    }
}
