//! What every Tally HTTP service shares, so that each answers the same way.
//!
//! - [`http`]: the one error shape ([`http::ApiError`], its one `IntoResponse`, and the single
//!   mapping from [`tally_domain::store::StoreError`]), the JSON extractors whose rejections
//!   name the field, and the `{"data": …}` envelope.
//! - [`auth`]: the API-key gate.
//! - [`route`]: the route catalog: each route declared once with its method, path, access,
//!   handler, typed parameters and bodies.
//! - [`openapi`]: the OpenAPI document, built from that registry, so it lists exactly the
//!   routes a process serves.
//!
//! Invariant: no storage adapter is linked here; keys are looked up through the
//! [`tally_domain::store::ConfigStore`] seam.

pub mod auth;
pub mod http;
pub mod openapi;
pub mod route;
