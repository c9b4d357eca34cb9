//! Reading rollup rows: the one way a route asks the analytics store for the rows of a window
//! (never raw events), so every number on every route comes from the same rows, either handed
//! over one by one ([`scan`]) or summed per bucket by the store ([`bucket_sums`]).

use tally_domain::rollup::RollupRow;
use tally_domain::store::{BucketSums, Filter, ScanRequest, Span, SumsOf};
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

/// The sums of the rows matching `filter` in `spans`, one per bucket (every dimension merged):
/// for totals and time series that need neither sketches nor dimensions.
pub async fn bucket_sums(
    state: &QueryState,
    filter: &Filter,
    spans: &[Span],
    sums: SumsOf,
) -> Result<Vec<BucketSums>, ApiError> {
    Ok(state.analytics.bucket_sums(filter, spans, sums).await?)
}
