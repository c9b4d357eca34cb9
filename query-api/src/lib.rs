//! The query API: dashboards, spending, usage and model comparison, read from rollups only.
//!
//! Every answer is `{"data": …}`; every error is `{"error": {"code", "message", "field"?}}`.
//! Counts are exact, costs exact to the micro-dollar (and exact to the pico-dollar in the `*_usd`
//! strings). Windows are whole UTC minutes (`tally_domain::window`). Handlers never scan raw events.

pub mod aggregate;
pub mod assessment;
pub mod cards;
pub mod csv;
pub mod dollars;
pub mod exposition;
pub mod fields;
pub mod listing;
pub mod lookup;
pub mod params;
pub mod prompt_calls;
pub mod rollups;
mod routes;
pub mod row_cache;
pub mod state;

pub use routes::{health_router, router};
pub use state::{PipelineProbe, PipelineStatus, QueryState, Replayer};
