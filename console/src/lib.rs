//! The admin console: the product documents' screens, rendered on the server.
//!
//! - [`session`]: signing in with an API key (exchanged for a server-side session), signing
//!   out, the signed-in caller, CSRF tokens, flash messages.
//! - [`api`]: the only way a page gets numbers or configuration — the JSON API's own routes,
//!   called in-process on behalf of the signed-in key, with the same role checks.
//! - [`shell`]: the layout every page shares and the view (time range, environment) kept in
//!   the URL; [`document`]: the HTML document, error pages and the security headers (CSP
//!   without inline script); [`flash`] and [`cookies`]: one-shot messages and cookies.
//! - [`pages`]: one module per screen; [`forms`]: what the console's forms change, each a call
//!   of the API route that a client would make.
//! - [`format`] writes numbers; [`chart`] draws SVG charts; [`assets`] serves the stylesheet
//!   and script (fingerprinted, no CDN).
//!
//! Invariants: a page shows only what the API answered for the same window (no second
//! implementation of a number); every console route is declared once in [`router`] with the
//! access it needs, the same roles as the API routes it calls, and is listed for the access
//! test; every state-changing form is a `POST` with the session's CSRF token.

pub mod api;
pub mod assets;
pub mod chart;
pub mod cookies;
pub mod document;
pub mod flash;
pub mod format;
pub mod forms;
pub mod pages;
pub mod session;
pub mod shell;

use std::sync::Arc;

use axum::http::Method;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use tally_domain::access::Access;
use tally_domain::clock::Clock;
use tally_domain::store::ConfigStore;

use crate::api::Api;

/// Where the console lives (the product documents' area).
pub const BASE: &str = "/platform/ai-management";

/// What every console handler shares; cheap to clone.
#[derive(Clone)]
pub struct Console {
    pub api: Api,
    pub config: Arc<dyn ConfigStore>,
    pub clock: Arc<dyn Clock>,
    /// How long a session lasts after signing in.
    pub session_ttl: chrono::Duration,
    /// Mark cookies `Secure` (the console is served over TLS; also when a proxy says
    /// `X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
}

/// A console route as the access test sees it: method, path, and who may use it (`None`:
/// anyone, e.g. the sign-in form and the assets).
#[derive(Debug, Clone)]
pub struct ConsoleRoute {
    pub method: Method,
    pub path: String,
    pub access: Option<Access>,
}

type Handler = axum::routing::MethodRouter<Console>;

/// Every console route: method, path (under [`BASE`], except the site root), the access it
/// needs, its handler. The router and the catalog are both made from this one table.
fn table() -> Vec<(Method, String, Option<Access>, Handler)> {
    use pages::*;
    use Access::*;
    let at = |path: &str| format!("{BASE}{path}");
    vec![
        (
            Method::GET,
            "/".into(),
            None,
            get(|| async { Redirect::to(&format!("{BASE}/")) }),
        ),
        (
            Method::GET,
            at("/sign-in"),
            None,
            get(session::sign_in_form),
        ),
        (Method::POST, at("/sign-in"), None, post(session::sign_in)),
        (
            Method::POST,
            at("/sign-out"),
            Some(AnyKey),
            post(session::sign_out),
        ),
        (Method::GET, at("/assets/{file}"), None, get(assets::serve)),
        (Method::GET, at("/"), Some(ReadMetrics), get(overview::page)),
        (
            Method::GET,
            at("/live"),
            Some(ReadMetrics),
            get(overview::live),
        ),
        (
            Method::GET,
            at("/features"),
            Some(ReadMetrics),
            get(features::list),
        ),
        (
            Method::GET,
            at("/features/{name}"),
            Some(ReadMetrics),
            get(features::dashboard),
        ),
        (
            Method::POST,
            at("/features/{name}/deploy"),
            Some(Admin),
            post(forms::deploy_to_feature),
        ),
        (
            Method::POST,
            at("/features/{name}/rollback"),
            Some(Admin),
            post(forms::rollback),
        ),
        (
            Method::POST,
            at("/features/{name}/settings"),
            Some(Admin),
            post(forms::feature_settings),
        ),
        (
            Method::POST,
            at("/features/{name}/prompts/{id}/activate"),
            Some(Admin),
            post(forms::activate_prompt),
        ),
        (
            Method::POST,
            at("/features/{name}/prompts/{id}/status"),
            Some(Admin),
            post(forms::prompt_status),
        ),
        (
            Method::POST,
            at("/features/{name}/prompts/{id}/test-runs"),
            Some(Admin),
            post(forms::run_test_cases),
        ),
        (
            Method::GET,
            at("/test-runs/{id}"),
            Some(Admin),
            get(test_runs::page),
        ),
        (
            Method::GET,
            at("/events"),
            Some(ReadMetrics),
            get(events::page),
        ),
        (
            Method::GET,
            at("/models"),
            Some(ReadConfig),
            get(models::page),
        ),
        (
            Method::GET,
            at("/models/{id}"),
            Some(ReadMetrics),
            get(models::performance),
        ),
        (
            Method::POST,
            at("/models/{id}/prices"),
            Some(Admin),
            post(forms::add_price),
        ),
        (
            Method::POST,
            at("/models/{id}/deploy"),
            Some(Admin),
            post(forms::deploy_model),
        ),
        (
            Method::GET,
            at("/spending"),
            Some(ReadSpending),
            get(spending::page),
        ),
        (
            Method::GET,
            at("/spending.csv"),
            Some(ReadSpending),
            get(spending::csv),
        ),
        (
            Method::GET,
            at("/budgets"),
            Some(ReadBudgets),
            get(budgets::page),
        ),
        (
            Method::POST,
            at("/alerts/{id}/acknowledge"),
            Some(Admin),
            post(forms::acknowledge),
        ),
        (
            Method::GET,
            at("/experiments"),
            Some(ReadConfig),
            get(experiments::page),
        ),
        (
            Method::GET,
            at("/experiments/{id}"),
            Some(ReadMetrics),
            get(experiments::results),
        ),
        (Method::GET, at("/api-keys"), Some(Admin), get(keys::page)),
        (
            Method::POST,
            at("/api-keys"),
            Some(Admin),
            post(keys::create),
        ),
        (
            Method::POST,
            at("/api-keys/{id}/revoke"),
            Some(Admin),
            post(forms::revoke_key),
        ),
        (Method::GET, at("/audit"), Some(Admin), get(audit::page)),
    ]
}

/// Every console route with the access it needs (the access test walks these). The overview
/// sends finance keys on to Spending rather than refusing them.
pub fn catalog() -> Vec<ConsoleRoute> {
    table()
        .into_iter()
        .map(|(method, path, access, _)| ConsoleRoute {
            method,
            path,
            access,
        })
        .collect()
}

/// The console's router (`/` redirects to it), with the security headers on every answer.
pub fn router(console: Console) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |router, (_, path, _, handler)| {
            router.route(&path, handler)
        })
        .layer(axum::middleware::from_fn(document::secure))
        .with_state(console)
}
