//! The routes under `/api/platform/ai-management`, in two sections: [`dashboards`] reads
//! (dashboards, analytics, status, stream: rollups only) and [`manage`] changes and lists the
//! configuration (catalog, prompts, budgets, experiments, keys, audit). Each file mirrors the
//! URLs it serves; shared helpers are named modules of the crate (`rollups`, `aggregate`,
//! `lookup`, `params`, `listing`), never a sibling route file.

mod dashboards;
mod health;
mod manage;

use axum::Router;
use tally_domain::audit::{Actor, Change};
use tally_http::auth::{Caller, Gate};
use tally_http::route::{RouteInfo, Routes};

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
    let r = dashboards::routes(r);
    let r = manage::routes(r);
    health::routes(r).finish(state)
}

pub(crate) use crate::params::parse_id;

/// A configuration change by `caller`, now: what the config store audits it as.
pub(crate) fn change(state: &QueryState, caller: &Caller) -> Change {
    Change::new(Actor::from(caller), state.clock.now())
}
