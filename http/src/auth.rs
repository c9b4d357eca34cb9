//! Who may call what on the HTTP API: `Authorization: Bearer <API key>`, checked per route.
//!
//! Every route is declared with the [`Access`] it needs ([`crate::route`]); the registry wraps
//! its handler in the check here. Keys are looked up in the configuration store on every request
//! (no cache): a revoked key stops working at once.
//!
//! Answers: no or malformed header, unknown or revoked key → `401` with
//! `WWW-Authenticate: Bearer`; a valid key whose role may not use the route → `403`. Both use
//! the error shape of [`crate::http`]. The authenticated [`Caller`] is put in the request's
//! extensions for handlers that record who did something. The console calls the same routes
//! in-process for a signed-in session ([`Delegated`]), so it meets the same checks.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::ApiError;
use tally_domain::access::hash;
pub use tally_domain::access::{Access, Caller};
use tally_domain::store::ConfigStore;

/// Looks keys up; cheap to clone.
#[derive(Clone)]
pub struct Gate {
    config: Arc<dyn ConfigStore>,
}

impl Gate {
    pub fn new(config: Arc<dyn ConfigStore>) -> Gate {
        Gate { config }
    }

    /// The caller presenting `headers`, or why not.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let secret = bearer(headers)?;
        match self.config.api_key_by_hash(&hash(secret)).await? {
            Some(key) if key.revoked_at.is_none() => Ok(Caller {
                key_id: key.id,
                key_name: key.name,
                role: key.role,
            }),
            Some(_) => Err(unauthorized("this API key was revoked")),
            None => Err(unauthorized("unknown API key")),
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).with_field("authorization")
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("send an API key: Authorization: Bearer <key>"))?;
    let text = value
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not text"))?;
    match text.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() => {
            Ok(key.trim())
        }
        _ => Err(unauthorized(
            "the Authorization header must be `Bearer <key>`",
        )),
    }
}

/// A caller already authenticated by other means — the console's session — on whose behalf
/// the server calls its own routes. The gate admits it as it would its API key, with the same
/// role checks. Only server code can put it in a request's extensions; a client cannot.
#[derive(Debug, Clone)]
pub struct Delegated(pub Caller);

pub(crate) async fn check(
    State((gate, access)): State<(Gate, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    if access == Access::Public {
        return next.run(request).await;
    }
    let delegated = request.extensions().get::<Delegated>().map(|d| d.0.clone());
    let caller = match delegated {
        Some(caller) => Ok(caller),
        None => gate.authenticate(request.headers()).await,
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(err) => {
            let challenge = err.status == StatusCode::UNAUTHORIZED;
            let mut response = err.into_response();
            if challenge {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return response;
        }
    };
    if !access.allows(caller.role) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a {} key may not use this route; it needs one of: {}",
                caller.role.as_str(),
                access.roles().join(", ")
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        let mut h = HeaderMap::new();
        assert!(bearer(&h).is_err());
        for (value, ok) in [
            ("Bearer tally_abc", Some("tally_abc")),
            ("bearer  tally_abc ", Some("tally_abc")),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearer ", None),
            ("tally_abc", None),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&h).ok(), ok, "{value}");
        }
    }
}
