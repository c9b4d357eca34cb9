//! The HTML document every console answer is: the page (its head, stylesheet and script), the
//! error pages and their [`Refusal`], the "could not load" state of a part of a page, and the
//! security headers every answer carries.
//!
//! Invariants: every answer has a Content-Security-Policy that allows no inline script or
//! style and nothing from another origin; pages are `no-store`; every value is escaped by the
//! template engine (maud).

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::assets;
use crate::flash::Flash;
use crate::BASE;

/// What a console answer may load: only itself; no inline script or style, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the console's security headers to every answer (and `no-store` to pages).
pub async fn secure(request: Request, next: Next) -> Response {
    let asset = request.uri().path().starts_with(assets::PREFIX);
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !asset && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A page: its title, its navigation item and its content, in the shell.
pub struct Page {
    pub(crate) title: String,
    pub(crate) html: Markup,
    pub(crate) clears_flash: bool,
}

impl Page {
    /// A page without the shell (sign-in, errors).
    pub fn bare(title: &str, body: Markup) -> Page {
        let html = html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body class="bare" { (body) script src=(assets::url("app.js")) {} }
            }
        };
        Page {
            title: title.to_string(),
            html,
            clears_flash: false,
        }
    }

    pub fn title(&self) -> &str {
        &self.title
    }
}

pub(crate) fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Tally" }
            link rel="stylesheet" href=(assets::url("app.css"));
            link rel="icon" href=(assets::url("icon.svg")) type="image/svg+xml";
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.html.into_string(),
        )
            .into_response();
        if self.clears_flash {
            response
                .headers_mut()
                .append(header::SET_COOKIE, Flash::clear());
        }
        response
    }
}

/// A refusal to answer: the error page, boxed (a response is large to pass around).
#[derive(Debug)]
pub struct Refusal(Box<Response>);

impl Refusal {
    pub fn new(status: StatusCode, title: &str, why: &str) -> Refusal {
        Refusal(Box::new(refused(status, title, why)))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// An error page: what was refused and why.
pub fn refused(status: StatusCode, title: &str, why: &str) -> Response {
    let body = html! {
        main class="problem" {
            h1 { (title) }
            p { (why) }
            p { a href={(BASE) "/"} { "Back to the console" } " · " a href={(BASE) "/sign-in"} { "Sign in with another key" } }
        }
    };
    (status, Page::bare(title, body)).into_response()
}

/// The store could not answer.
pub fn unavailable(why: &str) -> Response {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "Tally could not answer",
        &format!("{why}. Try again in a moment."),
    )
}

/// A part of a page that could not be loaded: what failed, and a retry.
pub fn failed(what: &str, failure: &crate::api::Failure, retry: &str) -> Markup {
    html! {
        div class="error-state" role="alert" {
            p { strong { (what) " could not be loaded." } " " (failure.explain()) }
            a class="button" href=(retry) { "Retry" }
        }
    }
}
