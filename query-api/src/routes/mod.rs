//! One module per route group, mirroring the URLs under `/api/platform/ai-management`.

mod admin;
mod analytics;
mod budgets;
mod catalog;
mod experiments;
mod features;
mod health;
mod overview;
mod prompt_metrics;
mod prompt_test;
mod prompts;
mod reprice;
mod status;
mod stream;

use axum::Router;
use tally_domain::audit::{Actor, Change};
use tally_http::auth::{Caller, Gate, RouteInfo, Routes};

use crate::state::QueryState;

/// Where the management API lives.
pub const API_BASE: &str = "/api/platform/ai-management";

/// Only `/healthz` and `/readyz` (for processes that serve no dashboards).
pub fn health_router(state: QueryState) -> (Router, Vec<RouteInfo>) {
    let gate = Gate::new(state.config.clone());
    health::routes(Routes::new(gate)).finish(state)
}

/// The dashboards, spending and model comparison, and the health checks; each route checks
/// the caller's API key ([`tally_http::auth`]).
pub fn router(state: QueryState) -> (Router, Vec<RouteInfo>) {
    let r = Routes::new(Gate::new(state.config.clone()));
    let r = features::routes(r);
    let r = analytics::routes(r);
    let r = overview::routes(r);
    let r = admin::routes(r);
    let r = catalog::routes(r);
    let r = prompts::routes(r);
    let r = prompt_test::routes(r);
    let r = prompt_metrics::routes(r);
    let r = reprice::routes(r);
    let r = budgets::routes(r);
    let r = experiments::routes(r);
    let r = status::routes(r);
    let r = stream::routes(r);
    health::routes(r).finish(state)
}

pub(crate) use crate::params::parse_id;

/// A configuration change by `caller`, now: what the config store audits it as.
pub(crate) fn change(state: &QueryState, caller: &Caller) -> Change {
    Change::new(Actor::from(caller), state.clock.now())
}
