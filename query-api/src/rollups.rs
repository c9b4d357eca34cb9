//! Reading rollup rows: the one way a route asks the analytics store for the rows of a window
//! (never raw events), so every number on every route comes from the same rows.

use tally_domain::rollup::RollupRow;
use tally_domain::store::{Filter, ScanRequest, Span};
use tally_http::http::ApiError;

use crate::state::QueryState;

/// The rows matching `filter` in `spans`, with their sketches when `with_sketches`.
pub async fn scan(
    state: &QueryState,
    filter: &Filter,
    spans: Vec<Span>,
    with_sketches: bool,
) -> Result<Vec<RollupRow>, ApiError> {
    Ok(state
        .analytics
        .scan(ScanRequest {
            filter: filter.clone(),
            spans,
            with_sketches,
        })
        .await?)
}
