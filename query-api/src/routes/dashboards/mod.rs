//! Reading: the dashboards, analytics, status and live stream — every number computed from
//! rollup rows ([`crate::rollups`]) by the shared arithmetic of [`crate::aggregate`], so a number
//! is the same wherever it is shown. One file per URL family:
//!
//! - `overview`: `GET /overview`.
//! - `features`: `GET /features` (with health and metrics), `GET /features/{name}/metrics`.
//! - `status`: `GET /features/{name}/status`, `GET /providers/{name}/health`.
//! - `prompts`: `GET /prompts/{id}/metrics`.
//! - `experiments`: `GET /experiments/{id}/results`.
//! - `models`: `GET /models/{id}/performance`.
//! - `analytics`: `GET /analytics/spending|usage|performance`.
//! - `alerts`: `GET /analytics/alerts`, `POST /alerts/{id}/acknowledge`.
//! - `budgets`: `GET /analytics/budgets`, `GET /budgets/{id}/status`.
//! - `events`: `GET /events` (drill-down to the counted events).
//! - `stream`: `GET /events/stream` (Server-Sent Events).

mod alerts;
mod analytics;
mod budgets;
mod events;
mod experiments;
mod features;
mod models;
mod overview;
mod prompts;
mod status;
mod stream;

use tally_http::route::Routes;

use crate::state::QueryState;

/// Every reading route.
pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let r = overview::routes(r);
    let r = features::routes(r);
    let r = status::routes(r);
    let r = prompts::routes(r);
    let r = experiments::routes(r);
    let r = models::routes(r);
    let r = analytics::routes(r);
    let r = budgets::routes(r);
    let r = alerts::routes(r);
    let r = events::routes(r);
    stream::routes(r)
}
