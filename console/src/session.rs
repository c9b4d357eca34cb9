//! Signing in and out, and who is signed in: the API key is exchanged for a server-side
//! session ([`tally_domain::sessions`]) whose random token lives in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` when served over TLS).
//!
//! Invariants: every page and form looks its session up in the configuration store (no cache),
//! so signing out, expiry and revoking the key end it at once on every replica; every
//! state-changing form must carry the session's CSRF token ([`Signed::check_csrf`]); the
//! sign-in form carries its own token, bound to a short-lived cookie, so nobody can sign a
//! browser in with their key from another site.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use tally_domain::access::{hash, Access, Caller, Role};
use tally_domain::sessions::{self, open, random_token, Session};

use crate::api::encode;
use crate::cookies::{cookie, set_cookie};
use crate::document::{self as shell, Page, Refusal};
use crate::{Console, BASE};

/// The session cookie.
pub const SESSION_COOKIE: &str = "tally_session";
/// The sign-in form's token cookie.
const SIGN_IN_COOKIE: &str = "tally_sign_in";
/// The name of the CSRF field in every form.
pub const CSRF_FIELD: &str = "csrf";

/// Whether the browser reached us over TLS (directly configured, or said by the proxy).
fn over_tls(console: &Console, headers: &HeaderMap) -> bool {
    console.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The signed-in key: who acts, with which role, and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Signed {
    pub caller: Caller,
    pub session: Session,
    /// What the store keeps the session under (to check it again, e.g. during a stream).
    pub token_hash: String,
}

impl Signed {
    pub fn role(&self) -> Role {
        self.caller.role
    }

    /// `Ok` when the role may use what `access` guards; the refusal page otherwise.
    pub fn may(&self, access: Access) -> Result<(), Refusal> {
        if access.allows(self.role()) {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "Not for this role",
                &format!(
                    "A {} key may not use this page or action; it needs one of: {}.",
                    self.role().as_str(),
                    access.roles().join(", ")
                ),
            ))
        }
    }

    /// `Ok` when `form` carries this session's CSRF token; the refusal page otherwise.
    pub fn check_csrf(&self, form: &HashMap<String, String>) -> Result<(), Refusal> {
        match form.get(CSRF_FIELD) {
            Some(token) if self.session.csrf_matches(token) => Ok(()),
            _ => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form did not carry this session's security token (it is from an older \
                 session or another site). Go back, reload the page and send it again.",
            )),
        }
    }
}

impl FromRequestParts<Console> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Signed, Response> {
        let next = parts
            .uri
            .path_and_query()
            .map_or(BASE, |p| p.as_str())
            .to_string();
        let ask = |why: Option<Reason>| -> Response {
            let mut to = format!("{BASE}/sign-in?next={}", encode(&next));
            if let Some(why) = why {
                to.push_str(&format!("&why={}", why.code()));
            }
            if parts.method == Method::GET {
                Redirect::to(&to).into_response()
            } else {
                shell::refused(
                    StatusCode::UNAUTHORIZED,
                    "Sign in first",
                    why.map_or("This action needs a signed-in session.", Reason::message),
                )
            }
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ask(None));
        };
        let hashed = hash(token);
        let found = console
            .config
            .session_by_hash(&hashed)
            .await
            .map_err(|e| store_failed(&e))?;
        let Some((session, key)) = found else {
            return Err(ask(Some(Reason::Ended)));
        };
        if let Err(refusal) = session.check(&key, console.clock.now()) {
            let _ = console.config.delete_session(&hashed).await;
            return Err(ask(Some(match refusal {
                sessions::Refusal::Expired => Reason::Expired,
                sessions::Refusal::KeyRevoked => Reason::Revoked,
            })));
        }
        Ok(Signed {
            caller: Caller {
                key_id: key.id,
                key_name: key.name,
                role: key.role,
            },
            session,
            token_hash: hashed,
        })
    }
}

/// Why the sign-in page is shown: a fixed set of codes, so a link cannot put its own words
/// on the sign-in page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Ended,
    Expired,
    Revoked,
    SignedOut,
}

impl Reason {
    const ALL: [Reason; 4] = [
        Reason::Ended,
        Reason::Expired,
        Reason::Revoked,
        Reason::SignedOut,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::Ended => "ended",
            Reason::Expired => "expired",
            Reason::Revoked => "revoked",
            Reason::SignedOut => "signed-out",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Reason::Ended => "Your session ended: sign in again.",
            Reason::Expired => sessions::Refusal::Expired.message(),
            Reason::Revoked => sessions::Refusal::KeyRevoked.message(),
            Reason::SignedOut => "You signed out.",
        }
    }

    fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// The store failed: logged in full, answered without its details.
fn store_failed(error: &tally_domain::store::StoreError) -> Response {
    tracing::error!(%error, "console session store failed");
    shell::unavailable("The session store did not answer")
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    why: Option<String>,
}

/// Only a console path may be returned to after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with(BASE)
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with(&format!("{BASE}/sign-")) =>
        {
            n.to_string()
        }
        _ => format!("{BASE}/"),
    }
}

fn sign_in_page(
    next: &str,
    token: &str,
    problem: Option<&str>,
    note: Option<&str>,
) -> maud::Markup {
    html! {
        main class="sign-in" {
            h1 { "Sign in to Tally" }
            p { "Use an API key with the " code { "platform_admin" } ", " code { "viewer" } " or " code { "finance" } " role. "
                "The key is exchanged for a session; the browser never keeps it." }
            @if let Some(note) = note { p class="flash ok" role="status" { (note) } }
            form method="post" action={(BASE) "/sign-in"} {
                input type="hidden" name=(CSRF_FIELD) value=(token);
                input type="hidden" name="next" value=(next);
                label for="key" { "API key" }
                input id="key" name="key" type="password" autocomplete="off" required
                    aria-invalid=[problem.map(|_| "true")] aria-describedby=[problem.map(|_| "key-error")];
                @if let Some(problem) = problem { p id="key-error" class="field-error" { (problem) } }
                button type="submit" class="primary" { "Sign in" }
            }
            p class="hint" { "No key yet? " code { "tally keys create --name me --role platform_admin" } " prints one." }
        }
    }
}

/// `GET /sign-in`: the form, with a fresh token bound to a short-lived cookie.
pub async fn sign_in_form(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    let token = random_token();
    let next = safe_next(q.next.as_deref());
    let page = Page::bare(
        "Sign in",
        sign_in_page(
            &next,
            &token,
            None,
            q.why
                .as_deref()
                .and_then(Reason::parse)
                .map(Reason::message),
        ),
    );
    let mut response = page.into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &token, 1800, over_tls(&console, &headers)),
    );
    response
}

/// `POST /sign-in`: checks the form's token and the key, opens a session, returns to `next`.
pub async fn sign_in(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let secure = over_tls(&console, &headers);
    let next = safe_next(form.get("next").map(String::as_str));
    let token = random_token();
    let again = |status: StatusCode, problem: &str| -> Response {
        let page = Page::bare("Sign in", sign_in_page(&next, &token, Some(problem), None));
        let mut response = (status, page).into_response();
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(SIGN_IN_COOKIE, &token, 1800, secure),
        );
        response
    };
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    let sent = form.get(CSRF_FIELD).map(String::as_str).unwrap_or_default();
    if expected.is_empty() || expected.len() != sent.len() || expected != sent {
        return again(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or came from another site; send it again.",
        );
    }
    let secret = form.get("key").map(|k| k.trim()).unwrap_or_default();
    if secret.is_empty() {
        return again(StatusCode::UNPROCESSABLE_ENTITY, "Enter an API key.");
    }
    let key = match console.config.api_key_by_hash(&hash(secret)).await {
        Ok(Some(key)) if key.revoked_at.is_none() => key,
        Ok(Some(_)) => return again(StatusCode::UNAUTHORIZED, "This API key was revoked."),
        Ok(None) => return again(StatusCode::UNAUTHORIZED, "No API key matches."),
        Err(e) => return store_failed(&e),
    };
    if key.role == Role::Ingest {
        return again(
            StatusCode::FORBIDDEN,
            "An ingest key only sends events; the console needs a platform_admin, viewer or finance key.",
        );
    }
    let now = console.clock.now();
    let _ = console.config.delete_expired_sessions(now).await;
    let opened = open(&key, now, console.session_ttl);
    if let Err(e) = console
        .config
        .create_session(&opened.hash, &opened.session)
        .await
    {
        return store_failed(&e);
    }
    tracing::info!(key = %key.id, role = key.role.as_str(), "console sign-in");
    let mut response = Redirect::to(&next).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &opened.token,
            console.session_ttl.num_seconds(),
            secure,
        ),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, "", 0, secure),
    );
    response
}

/// `POST /sign-out`: ends the session (CSRF-checked) and forgets the cookie.
pub async fn sign_out(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&form) {
        return refused.into_response();
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = console.config.delete_session(&hash(token)).await {
            return store_failed(&e);
        }
    }
    let mut response =
        Redirect::to(&format!("{BASE}/sign-in?why={}", Reason::SignedOut.code())).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, over_tls(&console, &headers)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tally_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "tally"), None);
    }

    #[test]
    fn only_console_paths_are_returned_to() {
        let home = format!("{BASE}/");
        assert_eq!(safe_next(None), home);
        assert_eq!(safe_next(Some("https://evil.example/")), home);
        assert_eq!(safe_next(Some(&format!("{BASE}//evil.example"))), home);
        assert_eq!(safe_next(Some(&format!("{BASE}/sign-out"))), home);
        let page = format!("{BASE}/features/chatbot?time_range=7d");
        assert_eq!(safe_next(Some(&page)), page);
    }
}
