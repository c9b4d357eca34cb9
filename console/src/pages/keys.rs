//! API keys (admins): every key with its role, prefix and state; a form to create one (its
//! secret is shown once, on the answer to the form, never in a URL or cookie); revoking with
//! confirmation. Revoking the last active admin key is refused by the API (`409`).
//!
//! Reads `GET /api-keys`; creates with `POST /api-keys`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde_json::{json, Value};
use tally_domain::access::{Access, Role};

use super::{badge, items, when};
use crate::api::encode;
use crate::document::{failed, Page};
use crate::forms::{allowed, field};
use crate::session::Signed;
use crate::shell::Ctx;
use crate::{Console, BASE};

/// `GET /api-keys`.
pub async fn page(ctx: Ctx) -> Response {
    if let Err(refused) = ctx.signed.may(Access::Admin) {
        return refused.into_response();
    }
    render(&ctx, None, None).await.into_response()
}

async fn render(
    ctx: &Ctx,
    created: Option<&Value>,
    problem: Option<(String, Option<String>)>,
) -> Page {
    let keys = ctx.console.api.get(&ctx.signed.caller, "/api-keys").await;
    let now = ctx.console.clock.now();
    let error_for = |f: &str| {
        problem
            .as_ref()
            .filter(|(_, field)| field.as_deref() == Some(f))
            .map(|(m, _)| m.clone())
            .or_else(|| ctx.field_error(f).map(str::to_string))
    };
    let body = html! {
        @if let Some(k) = created {
            section class="card" role="status" {
                h2 { "Key created: " (k["name"].as_str().unwrap_or_default()) }
                p { "Copy the secret now — it is shown this once and Tally keeps only its hash." }
                p class="secret" id="new-secret" { (k["key"].as_str().unwrap_or_default()) }
            }
        }
        @if let Some((message, None)) = &problem { p class="flash error" role="alert" { (message) } }
        section class="card" {
            h2 { "Create a key" }
            form method="post" action={(BASE) "/api-keys"} {
                (ctx.csrf())
                div class="form-grid" {
                    div { label for="key-name" { "Name" }
                        input id="key-name" name="name" required maxlength="100" aria-invalid=[error_for("name").map(|_| "true")];
                        @if let Some(e) = error_for("name") { p class="field-error" { (e) } } }
                    div { label for="key-role" { "Role" }
                        select id="key-role" name="role" {
                            // The least powerful role that reads the dashboards comes first.
                            @for r in [Role::Viewer, Role::Finance, Role::Ingest, Role::PlatformAdmin] {
                                option value=(r.as_str()) selected[ctx.typed("role").map_or(r == Role::Viewer, |t| t == r.as_str())] { (r.as_str()) }
                            }
                        }
                        @if let Some(e) = error_for("role") { p class="field-error" { (e) } } }
                    div { button type="submit" class="primary" { "Create key" } }
                }
            }
        }
        section class="card" {
            h2 { "Keys" }
            @match &keys {
                Err(f) => (failed("The keys", f, &ctx.view.with(&[]))),
                Ok(list) => (table(ctx, list, now)),
            }
        }
    };
    Page::fixed(ctx, "/api-keys", "API keys", body, None)
}

fn table(ctx: &Ctx, list: &Value, now: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        div class="table-scroll" { table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Prefix" } th scope="col" { "Created" } th scope="col" { "State" } th scope="col" { "" } } }
            tbody { @for k in items(list) {
                @let id = k["id"].as_str().unwrap_or_default();
                @let name = k["name"].as_str().unwrap_or_default();
                @let mine = id == ctx.signed.caller.key_id.to_string();
                tr {
                    td { (name) @if mine { " " span class="note" { "(this session)" } } }
                    td { code { (k["role"].as_str().unwrap_or_default()) } }
                    td { code { (k["prefix"].as_str().unwrap_or_default()) "…" } }
                    td { (when(&k["created_at"], now)) }
                    td { @if k["revoked_at"].is_null() { (badge("active")) } @else { (badge("revoked")) " " (when(&k["revoked_at"], now)) } }
                    td { @if k["revoked_at"].is_null() {
                        form method="post" action={(BASE) "/api-keys/" (encode(id)) "/revoke"} class="inline"
                            data-confirm={"Revoke the key " (name) "? Everything using it stops working at once" @if mine { ", including this session" } "."} {
                            (ctx.csrf())
                            input type="hidden" name="back" value=(ctx.view.with(&[]));
                            button type="submit" class="danger" { "Revoke" }
                        }
                    } }
                }
            } }
        } }
    }
}

/// `POST /api-keys`: creates the key and answers the page with its secret (shown once).
pub async fn create(
    State(console): State<Console>,
    ctx: Ctx,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let signed: &Signed = &ctx.signed;
    if let Err(refused) = allowed(signed, &form) {
        return refused.into_response();
    }
    let body = json!({
        "name": field(&form, "name").unwrap_or_default(),
        "role": field(&form, "role").unwrap_or_default(),
    });
    match console
        .api
        .send(&signed.caller, Method::POST, "/api-keys", Some(body))
        .await
    {
        Ok(created) => render(&ctx, Some(&created), None).await.into_response(),
        Err(f) => {
            let status = axum::http::StatusCode::from_u16(f.status)
                .unwrap_or(axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            (status, render(&ctx, None, Some((f.message, f.field))).await).into_response()
        }
    }
}
