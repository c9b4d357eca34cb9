//! Who may call what on the HTTP API: `Authorization: Bearer <API key>`, checked per route.
//!
//! Every route is registered through [`Routes`] together with the [`Access`] it needs. The
//! registry wraps the handler in the check and keeps a catalog of (method, path, access), so
//! the route-by-role test walks exactly what the router serves. Keys are looked up in the
//! configuration store on every request (no cache): a revoked key stops working at once.
//!
//! Answers: no or malformed header, unknown or revoked key → `401` with
//! `WWW-Authenticate: Bearer`; a valid key whose role may not use the route → `403`. Both use
//! the error shape of [`crate::http`]. The authenticated [`Caller`] is put in the request's
//! extensions for handlers that record who did something.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;

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

async fn check(
    State((gate, access)): State<(Gate, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    if access == Access::Public {
        return next.run(request).await;
    }
    let caller = match gate.authenticate(request.headers()).await {
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

/// Produces a (sub)schema with a generator, so referenced types land in its definitions.
pub type SchemaFn = fn(&mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema;

/// The [`SchemaFn`] of `T`.
pub fn schema_of<T: schemars::JsonSchema>(
    generator: &mut schemars::gen::SchemaGenerator,
) -> schemars::schema::Schema {
    generator.subschema_for::<T>()
}

/// What the API contract ([`crate::openapi`]) says of a route.
#[derive(Clone)]
pub struct Doc {
    pub summary: &'static str,
    /// Query parameters it accepts.
    pub query: Vec<&'static str>,
    /// The JSON body it reads, when it reads one.
    pub request: Option<SchemaFn>,
    /// The status of a successful answer.
    pub status: u16,
    /// The JSON body of a successful answer; `None` for answers that are not JSON.
    pub response: Option<SchemaFn>,
    /// The media type of a successful answer.
    pub content_type: &'static str,
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doc")
            .field("summary", &self.summary)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// One served route.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    /// The path as routed, with `{param}` placeholders.
    pub path: String,
    pub access: Access,
    /// What the API contract says of it ([`Routes::doc`]); absent when undocumented, which
    /// the contract test refuses.
    pub doc: Option<Doc>,
}

/// A router whose every route carries its access check, and the catalog of those routes.
pub struct Routes<S> {
    router: Router<S>,
    catalog: Vec<RouteInfo>,
    gate: Gate,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new(gate: Gate) -> Routes<S> {
        Routes {
            router: Router::new(),
            catalog: Vec::new(),
            gate,
        }
    }

    /// Serves `handler` (built for `method`) at `path` to callers `access` lets in.
    pub fn route(
        mut self,
        method: Method,
        path: &str,
        access: Access,
        handler: MethodRouter<S>,
    ) -> Routes<S> {
        let layer = from_fn_with_state((self.gate.clone(), access), check);
        self.router = self.router.route(path, handler.route_layer(layer));
        self.catalog.push(RouteInfo {
            method,
            path: path.to_string(),
            access,
            doc: None,
        });
        self
    }

    /// Documents the route registered last: its summary; it answers `200` with JSON.
    pub fn doc(mut self, summary: &'static str) -> Routes<S> {
        if let Some(last) = self.catalog.last_mut() {
            last.doc = Some(Doc {
                summary,
                query: Vec::new(),
                request: None,
                status: 200,
                response: None,
                content_type: "application/json",
            });
        }
        self
    }

    fn edit(mut self, f: impl FnOnce(&mut Doc)) -> Routes<S> {
        if let Some(doc) = self.catalog.last_mut().and_then(|r| r.doc.as_mut()) {
            f(doc);
        }
        self
    }

    /// The route registered last answers `status` with a `T`.
    pub fn returns<T: schemars::JsonSchema>(self, status: u16) -> Routes<S> {
        self.edit(|d| {
            d.status = status;
            d.response = Some(schema_of::<T>);
        })
    }

    /// The route registered last reads a `T` body.
    pub fn accepts<T: schemars::JsonSchema>(self) -> Routes<S> {
        self.edit(|d| d.request = Some(schema_of::<T>))
    }

    /// The route registered last takes these query parameters.
    pub fn query(self, names: impl IntoIterator<Item = &'static str>) -> Routes<S> {
        let names: Vec<&'static str> = names.into_iter().collect();
        self.edit(|d| d.query = names)
    }

    /// The route registered last answers with this media type (not JSON).
    pub fn media(self, content_type: &'static str) -> Routes<S> {
        self.edit(|d| d.content_type = content_type)
    }

    /// The router, with `state`, and its catalog.
    pub fn finish<T>(self, state: S) -> (Router<T>, Vec<RouteInfo>) {
        (self.router.with_state(state), self.catalog)
    }
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
