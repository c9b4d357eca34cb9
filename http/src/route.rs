//! The route catalog: every route is declared once, as a [`Route`] — its method, path, the
//! access it needs, its handler and its contract (summary, typed parameters, bodies) together —
//! and added to a [`Routes`] registry.
//!
//! The registry wraps each handler in the API-key check ([`crate::auth`]) and keeps the catalog
//! of what it serves, from which the route-by-role test walks the routes and
//! [`crate::openapi`] writes the contract. Invariants: a route's method is given once (the
//! constructor both routes and documents it); every path placeholder is a declared parameter;
//! parameters carry the types the handler accepts ([`Param`]), so a client generated from the
//! contract sends only what the server takes.

use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{self, MethodRouter};
use axum::Router;
use serde_json::{json, Value};

use crate::auth::{check, Access, Gate};

/// Produces a (sub)schema with a generator, so referenced types land in its definitions.
pub type SchemaFn = fn(&mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema;

/// The [`SchemaFn`] of `T`.
pub fn schema_of<T: schemars::JsonSchema>(
    generator: &mut schemars::gen::SchemaGenerator,
) -> schemars::schema::Schema {
    generator.subschema_for::<T>()
}

pub use tally_schemas::wire::SLUG_PATTERN;

/// A path or query parameter and the values it takes, as a JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub schema: Value,
    pub description: Option<String>,
    /// A comma-separated list (`style: form, explode: false`).
    pub list: bool,
    /// A query parameter the route cannot do without (path parameters always are).
    pub required: bool,
}

impl Param {
    fn with(name: &str, schema: Value) -> Param {
        Param {
            name: name.to_string(),
            schema,
            description: None,
            list: false,
            required: false,
        }
    }

    /// Any text.
    pub fn text(name: &str) -> Param {
        Param::with(name, json!({"type": "string"}))
    }

    /// One of `values`.
    pub fn one_of(name: &str, values: &[&str]) -> Param {
        Param::with(name, json!({"type": "string", "enum": values}))
    }

    /// An RFC 3339 instant.
    pub fn instant(name: &str) -> Param {
        Param::with(name, json!({"type": "string", "format": "date-time"}))
    }

    /// A UUID.
    pub fn uuid(name: &str) -> Param {
        Param::with(name, json!({"type": "string", "format": "uuid"}))
    }

    /// An integer from `min` to `max` (unbounded above when `None`).
    pub fn integer(name: &str, min: u64, max: Option<u64>) -> Param {
        let mut schema = json!({"type": "integer", "minimum": min});
        if let Some(max) = max {
            schema["maximum"] = json!(max);
        }
        Param::with(name, schema)
    }

    /// A slug ([`SLUG_PATTERN`]).
    pub fn slug(name: &str) -> Param {
        Param::with(name, json!({"type": "string", "pattern": SLUG_PATTERN}))
    }

    /// A comma-separated list of distinct `values`.
    pub fn list_of(name: &str, values: &[&str]) -> Param {
        Param {
            list: true,
            ..Param::with(
                name,
                json!({"type": "array", "uniqueItems": true, "minItems": 1,
                       "items": {"type": "string", "enum": values}}),
            )
        }
    }

    /// The route refuses a request without it.
    pub fn required(self) -> Param {
        Param {
            required: true,
            ..self
        }
    }

    /// Says what the parameter means (or what else constrains it).
    pub fn describe(self, description: impl Into<String>) -> Param {
        Param {
            description: Some(description.into()),
            ..self
        }
    }
}

/// What the API contract ([`crate::openapi`]) says of a route.
#[derive(Clone)]
pub struct Doc {
    pub summary: &'static str,
    /// The `{placeholders}` of its path, in order.
    pub path: Vec<Param>,
    /// Query parameters it accepts.
    pub query: Vec<Param>,
    /// The JSON body it reads, when it reads one.
    pub request: Option<SchemaFn>,
    /// Fields of that body this route cannot do without although the type makes them optional
    /// (a create sharing its body type with an update).
    pub request_requires: &'static [&'static str],
    /// Fields of that body this route is documented without (an update, where they name what
    /// cannot change: the server takes them only when equal to the current values).
    pub request_omits: &'static [&'static str],
    /// Further JSON Schema rules the body meets (relations between its fields).
    pub request_rules: Vec<Value>,
    /// The status of a successful answer.
    pub status: u16,
    /// Other statuses of successful answers, with the same body.
    pub also: Vec<u16>,
    /// The JSON body of a successful answer; `None` for answers that are not JSON.
    pub response: Option<SchemaFn>,
    /// The media type of a successful answer.
    pub content_type: &'static str,
    /// Another media type it answers in when asked (e.g. `text/csv` for `format=csv`).
    pub also_media: Option<&'static str>,
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doc")
            .field("summary", &self.summary)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// One served route, as the catalog lists it.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    /// The path as routed, with `{param}` placeholders.
    pub path: String,
    pub access: Access,
    pub doc: Doc,
}

/// A route being declared: method, path, access, handler and contract in one place.
pub struct Route<S> {
    info: RouteInfo,
    handler: MethodRouter<S>,
}

macro_rules! method {
    ($(#[$doc:meta])* $name:ident, $method:ident) => {
        $(#[$doc])*
        pub fn $name<H, T>(
            path: impl Into<String>,
            access: Access,
            summary: &'static str,
            handler: H,
        ) -> Route<S>
        where
            H: Handler<T, S>,
            T: 'static,
        {
            Route::new(Method::$method, path.into(), access, summary, routing::$name(handler))
        }
    };
}

impl<S: Clone + Send + Sync + 'static> Route<S> {
    method!(
        /// A `GET` route.
        get, GET
    );
    method!(
        /// A `POST` route.
        post, POST
    );
    method!(
        /// A `PUT` route.
        put, PUT
    );
    method!(
        /// A `DELETE` route.
        delete, DELETE
    );

    fn new(
        method: Method,
        path: String,
        access: Access,
        summary: &'static str,
        handler: MethodRouter<S>,
    ) -> Route<S> {
        let placeholders = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(placeholder)
            .collect();
        Route {
            info: RouteInfo {
                method,
                path,
                access,
                doc: Doc {
                    summary,
                    path: placeholders,
                    query: Vec::new(),
                    request: None,
                    request_requires: &[],
                    request_omits: &[],
                    request_rules: Vec::new(),
                    status: 200,
                    also: Vec::new(),
                    response: None,
                    content_type: "application/json",
                    also_media: None,
                },
            },
            handler,
        }
    }

    /// Types a `{placeholder}` of the path (as the URL convention says until typed here).
    ///
    /// # Panics
    /// When the path has no such placeholder: a declaration error, found by any test that
    /// builds the router.
    pub fn path_param(mut self, param: Param) -> Route<S> {
        let slot = self
            .info
            .doc
            .path
            .iter_mut()
            .find(|p| p.name == param.name)
            .unwrap_or_else(|| panic!("{} has no {{{}}}", self.info.path, param.name));
        *slot = param;
        self
    }

    /// The query parameters it takes (any other is refused).
    pub fn query(mut self, params: impl IntoIterator<Item = Param>) -> Route<S> {
        self.info.doc.query = params.into_iter().collect();
        self
    }

    /// It reads a `T` body.
    pub fn accepts<T: schemars::JsonSchema>(mut self) -> Route<S> {
        self.info.doc.request = Some(schema_of::<T>);
        self
    }

    /// It reads a `T` body in which `fields` are required (and not `null`).
    pub fn accepts_requiring<T: schemars::JsonSchema>(
        mut self,
        fields: &'static [&'static str],
    ) -> Route<S> {
        self.info.doc.request = Some(schema_of::<T>);
        self.info.doc.request_requires = fields;
        self
    }

    /// It reads a `T` body, documented without `fields`.
    pub fn accepts_omitting<T: schemars::JsonSchema>(
        mut self,
        fields: &'static [&'static str],
    ) -> Route<S> {
        self.info.doc.request = Some(schema_of::<T>);
        self.info.doc.request_omits = fields;
        self
    }

    /// The body also meets `rule`, a JSON Schema (a relation between fields, e.g. `if`/`then`).
    pub fn body_rule(mut self, rule: Value) -> Route<S> {
        self.info.doc.request_rules.push(rule);
        self
    }

    /// It answers `status` with a `T`.
    pub fn returns<T: schemars::JsonSchema>(mut self, status: u16) -> Route<S> {
        self.info.doc.status = status;
        self.info.doc.response = Some(schema_of::<T>);
        self
    }

    /// It may also answer `status` with the same body (e.g. `200` for a repeat of a create).
    pub fn or_status(mut self, status: u16) -> Route<S> {
        self.info.doc.also.push(status);
        self
    }

    /// It can also answer with this media type (text), when a parameter asks for it.
    pub fn or_media(mut self, content_type: &'static str) -> Route<S> {
        self.info.doc.also_media = Some(content_type);
        self
    }

    /// It answers with this media type (not JSON).
    pub fn media(mut self, content_type: &'static str) -> Route<S> {
        self.info.doc.content_type = content_type;
        self
    }
}

/// The house's URL convention: `{id}` is a UUID, `{name}` a slug, `{version}` a version
/// number; any other placeholder is text until typed with [`Route::path_param`].
fn placeholder(name: &str) -> Param {
    match name {
        "id" => Param::uuid(name),
        "name" => Param::slug(name),
        "version" => Param::integer(name, 1, Some(i32::MAX as u64)),
        _ => Param::text(name),
    }
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

    /// Serves `route` to the callers its access lets in.
    pub fn serve(mut self, route: Route<S>) -> Routes<S> {
        let layer = from_fn_with_state((self.gate.clone(), route.info.access), check);
        self.router = self
            .router
            .route(&route.info.path, route.handler.route_layer(layer));
        self.catalog.push(route.info);
        self
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
    fn placeholders_follow_the_url_convention_until_typed() {
        let route: Route<()> = Route::get(
            "/a/{id}/b/{version}/{key}/{other}",
            Access::Public,
            "x",
            || async {},
        )
        .path_param(Param::one_of("other", &["x", "y"]));
        let names: Vec<_> = route
            .info
            .doc
            .path
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["id", "version", "key", "other"]);
        assert_eq!(route.info.doc.path[0].schema["format"], "uuid");
        assert_eq!(route.info.doc.path[1].schema["minimum"], 1);
        assert_eq!(route.info.doc.path[2].schema, json!({"type": "string"}));
        assert_eq!(route.info.doc.path[3].schema["enum"], json!(["x", "y"]));
    }

    #[test]
    #[should_panic(expected = "has no {name}")]
    fn typing_a_missing_placeholder_is_a_declaration_error() {
        let _: Route<()> =
            Route::get("/a/{id}", Access::Public, "x", || async {}).path_param(Param::slug("name"));
    }
}
