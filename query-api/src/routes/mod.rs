//! One module per route group, mirroring the URLs under `/api/platform/ai-management`.

mod analytics;
mod features;
mod health;
mod overview;

use axum::Router;

use crate::state::QueryState;

/// Where the management API lives.
pub const API_BASE: &str = "/api/platform/ai-management";

/// Only `/healthz` and `/readyz` (for processes that serve no dashboards).
pub fn health_router(state: QueryState) -> Router {
    health::routes().with_state(state)
}

pub fn router(state: QueryState) -> Router {
    let api = Router::new()
        .merge(features::routes())
        .merge(analytics::routes())
        .merge(overview::routes());
    Router::new()
        .nest(API_BASE, api)
        .merge(health::routes())
        .with_state(state)
}
