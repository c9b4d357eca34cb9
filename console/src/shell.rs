//! The one shell of every page (`../shared/CONSOLE.md`, "Layout"): a left navigation with the
//! items the signed-in role may open, a top bar with the page title, the time range and
//! environment (kept in the URL), the key's name and role and sign-out; the flash message.
//! [`Ctx`] is what a page handler gets: the signed-in key, the view, the flash.
//!
//! Invariant: navigation shows only what the server would let the role open.

use std::collections::BTreeMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use tally_domain::access::Access;

use crate::api::encode;
use crate::assets;
use crate::document::{head, Page, Refusal};
use crate::flash::Flash;
use crate::session::{Signed, CSRF_FIELD};
use crate::{Console, BASE};

/// The time ranges a page can show.
pub const RANGES: [&str; 4] = ["1h", "24h", "7d", "30d"];
/// The environments a page can be narrowed to.
pub const ENVIRONMENTS: [&str; 3] = ["production", "staging", "development"];

/// The view a page shows, from its URL: time range, environment and the page's own
/// parameters (kept in every link).
#[derive(Debug, Clone)]
pub struct View {
    pub path: String,
    pub time_range: String,
    pub environment: Option<String>,
    /// Every query parameter as given.
    pub query: BTreeMap<String, String>,
}

impl View {
    pub fn parse(path: &str, raw_query: Option<&str>) -> Result<View, Refusal> {
        let query: BTreeMap<String, String> = raw_query
            .map(|q| {
                q.split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (plus_decode(k), plus_decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let time_range = query
            .get("time_range")
            .cloned()
            .unwrap_or_else(|| "24h".to_string());
        if !RANGES.contains(&time_range.as_str()) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Unknown time range",
                &format!("time_range: must be one of {}", RANGES.join(", ")),
            ));
        }
        let environment = query.get("environment").filter(|e| !e.is_empty()).cloned();
        if let Some(e) = &environment {
            if !ENVIRONMENTS.contains(&e.as_str()) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "Unknown environment",
                    &format!("environment: must be one of {}", ENVIRONMENTS.join(", ")),
                ));
            }
        }
        Ok(View {
            path: path.to_string(),
            time_range,
            environment,
            query,
        })
    }

    /// A query parameter of the page.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The API's window and environment parameters for this view.
    pub fn api_query(&self) -> String {
        let mut q = format!("time_range={}", self.time_range);
        if let Some(e) = &self.environment {
            q.push_str(&format!("&environment={e}"));
        }
        q
    }

    /// This page's URL with `changes` applied (`None` removes a parameter).
    pub fn with(&self, changes: &[(&str, Option<&str>)]) -> String {
        self.at(&self.path, changes)
    }

    /// `path` with this view's query and `changes` applied.
    pub fn at(&self, path: &str, changes: &[(&str, Option<&str>)]) -> String {
        let mut query = self.query.clone();
        for (k, v) in changes {
            match v {
                Some(v) => query.insert((*k).to_string(), (*v).to_string()),
                None => query.remove(*k),
            };
        }
        let text: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if text.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", text.join("&"))
        }
    }

    /// A link elsewhere in the console that keeps the time range and environment.
    pub fn link(&self, path: &str) -> String {
        let mut q = vec![format!("time_range={}", self.time_range)];
        if let Some(e) = &self.environment {
            q.push(format!("environment={e}"));
        }
        format!("{path}?{}", q.join("&"))
    }
}

fn plus_decode(text: &str) -> String {
    let text = text.replace('+', " ");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything a page handler needs: who is signed in, the view, the flash to show.
pub struct Ctx {
    pub console: Console,
    pub signed: Signed,
    pub view: View,
    pub flash: Option<Flash>,
}

impl FromRequestParts<Console> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Ctx, Response> {
        let signed = Signed::from_request_parts(parts, console).await?;
        let view = View::parse(parts.uri.path(), parts.uri.query())
            .map_err(IntoResponse::into_response)?;
        Ok(Ctx {
            console: console.clone(),
            signed,
            view,
            flash: Flash::read(&parts.headers),
        })
    }
}

impl Ctx {
    /// A hidden CSRF field for a form.
    pub fn csrf(&self) -> Markup {
        html! { input type="hidden" name=(CSRF_FIELD) value=(self.signed.session.csrf); }
    }

    /// Whether the signed-in role may do what `access` guards (to show or hide controls).
    pub fn can(&self, access: Access) -> bool {
        access.allows(self.signed.role())
    }

    /// What was typed into `field` of a form that was refused (to fill it in again).
    pub fn typed(&self, field: &str) -> Option<&str> {
        self.flash
            .as_ref()
            .filter(|f| !f.ok)
            .and_then(|f| f.values.get(field))
            .map(String::as_str)
    }

    /// The error to show next to the control named `field`, if the last form failed there.
    pub fn field_error(&self, field: &str) -> Option<&str> {
        self.flash
            .as_ref()
            .filter(|f| !f.ok && f.field.as_deref() == Some(field))
            .map(|f| f.message.as_str())
    }
}

/// The navigation: (label, path under [`BASE`], what it needs, settings section).
pub const NAV: [(&str, &str, Access, bool); 8] = [
    ("Overview", "/", Access::ReadMetrics, false),
    ("Features", "/features", Access::ReadMetrics, false),
    ("Models & providers", "/models", Access::ReadConfig, false),
    ("Spending", "/spending", Access::ReadSpending, false),
    ("Budgets & alerts", "/budgets", Access::ReadBudgets, false),
    ("Experiments", "/experiments", Access::ReadConfig, false),
    ("API keys", "/api-keys", Access::Admin, true),
    ("Audit log", "/audit", Access::Admin, true),
];

/// What a page's top bar offers besides its title.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    /// The time range and environment selectors (pages whose numbers depend on them).
    pub view: bool,
    /// The console URL of the event stream that refreshes the page's `[data-live]` parts.
    pub stream: Option<String>,
}

impl Page {
    /// A page in the shell whose numbers follow the view (time range, environment), for the
    /// signed-in `ctx`; `nav` is the path of its navigation item.
    pub fn new(ctx: &Ctx, nav: &str, title: &str, body: Markup) -> Page {
        let chrome = Chrome {
            view: true,
            stream: None,
        };
        Page::render(ctx, nav, title, body, chrome)
    }

    /// A page whose numbers follow the view and whose `[data-live]` parts are refreshed when
    /// `stream` (a console URL of the event stream) reports a change.
    pub fn live(ctx: &Ctx, nav: &str, title: &str, body: Markup, stream: String) -> Page {
        let chrome = Chrome {
            view: true,
            stream: Some(stream),
        };
        Page::render(ctx, nav, title, body, chrome)
    }

    /// A page in the shell that does not depend on the time range or environment (they stay
    /// in its links), with `chrome`'s stream if any.
    pub fn fixed(ctx: &Ctx, nav: &str, title: &str, body: Markup, stream: Option<String>) -> Page {
        let chrome = Chrome {
            view: false,
            stream,
        };
        Page::render(ctx, nav, title, body, chrome)
    }

    fn render(ctx: &Ctx, nav: &str, title: &str, body: Markup, chrome: Chrome) -> Page {
        let stream = chrome.stream.clone();
        let view = &ctx.view;
        let signed = &ctx.signed;
        let item = |path: &str| format!("{BASE}{path}");
        let nav_list = |settings: bool| {
            html! {
                ul {
                    @for (label, path, access, section) in NAV {
                        @if section == settings && access.allows(signed.role()) {
                            li { a href=(view.link(&item(path))) aria-current=[(path == nav).then_some("page")] { (label) } }
                        }
                    }
                }
            }
        };
        let has_settings = NAV.iter().any(|(_, _, a, s)| *s && a.allows(signed.role()));
        let html = html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body data-stream=[stream] {
                    a class="skip" href="#main" { "Skip to content" }
                    div class="shell" {
                        nav id="nav" class="side" aria-label="Main" {
                            a class="brand" href=(view.link(&item("/"))) { "Tally" }
                            (nav_list(false))
                            @if has_settings {
                                p class="nav-section" { "Settings" }
                                (nav_list(true))
                            }
                        }
                        div class="main-col" {
                            header class="top" {
                                button type="button" class="nav-toggle" aria-controls="nav" aria-expanded="false" { "Menu" }
                                h1 { (title) }
                                @if chrome.view { div class="view" {
                                    nav aria-label="Time range" class="segmented" {
                                        @for r in RANGES {
                                            a href=(view.with(&[("time_range", Some(r))])) aria-current=[(view.time_range == r).then_some("true")] { (r) }
                                        }
                                    }
                                    nav aria-label="Environment" class="segmented" {
                                        a href=(view.with(&[("environment", None)])) aria-current=[view.environment.is_none().then_some("true")] { "all" }
                                        @for e in ENVIRONMENTS {
                                            a href=(view.with(&[("environment", Some(e))])) aria-current=[(view.environment.as_deref() == Some(e)).then_some("true")] { (e) }
                                        }
                                    }
                                } }
                                @if chrome.stream.is_some() {
                                    span id="live" class="live" data-state="off" role="status" aria-live="polite" { "live: connecting" }
                                }
                                div class="who" {
                                    span { (signed.caller.key_name) " · " span class="role" { (signed.role().as_str()) } }
                                    form method="post" action={(BASE) "/sign-out"} {
                                        (ctx.csrf())
                                        button type="submit" class="link" { "Sign out" }
                                    }
                                }
                            }
                            @if let Some(flash) = &ctx.flash {
                                @if flash.ok {
                                    p class="flash ok" role="status" { (flash.message) }
                                } @else {
                                    p class="flash error" role="alert" {
                                        @if let Some(field) = &flash.field { strong { (field) ": " } }
                                        (flash.message)
                                    }
                                }
                            }
                            main id="main" tabindex="-1" { (body) }
                        }
                    }
                    script src=(assets::url("app.js")) {}
                }
            }
        };
        Page {
            title: title.to_string(),
            html,
            clears_flash: ctx.flash.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_keep_their_parameters_in_links() {
        let view = View::parse(
            "/platform/ai-management/features/chatbot",
            Some("time_range=7d&environment=staging&tab=models"),
        )
        .expect("view");
        assert_eq!(view.api_query(), "time_range=7d&environment=staging");
        assert_eq!(
            view.with(&[("tab", Some("prompts"))]),
            "/platform/ai-management/features/chatbot?environment=staging&tab=prompts&time_range=7d"
        );
        assert_eq!(
            view.link("/platform/ai-management/spending"),
            "/platform/ai-management/spending?time_range=7d&environment=staging"
        );
        assert!(View::parse("/x", Some("time_range=2y")).is_err());
        assert!(View::parse("/x", Some("environment=prod")).is_err());
        let plain = View::parse("/x", Some("q=gpt+4o%2Fmini")).expect("view");
        assert_eq!(plain.param("q"), Some("gpt 4o/mini"));
        assert_eq!(plain.time_range, "24h");
    }
}
