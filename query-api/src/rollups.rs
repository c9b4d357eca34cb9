//! Reading rollup rows: the one way a route asks the analytics store for the rows of a window
//! (never raw events), so every number on every route comes from the same rows, either handed
//! over one by one ([`scan`]) or summed per bucket by the store ([`bucket_sums`]).
//!
//! A chart's window that ends now is read with today's row in place of today's hour and minute
//! rows (with day steps; with shorter steps, the current hour's row in place of its minute rows)
//! whenever they hold the same events ([`scan_stepped`], [`by_coarser_rows`]): one row per
//! combination of dimensions instead of up to 82 (or 59), with the same numbers.

use tally_domain::rollup::RollupRow;
use tally_domain::store::{BucketSums, Filter, ScanRequest, Span, SumsOf};
use tally_domain::window::{by_coarser_rows, Window};
use tally_http::http::ApiError;

use crate::state::QueryState;

/// The rows matching `filter` in `spans`, with their sketches when `with_sketches`.
pub async fn scan(
    state: &QueryState,
    filter: &Filter,
    spans: Vec<Span>,
    with_sketches: bool,
) -> Result<Vec<RollupRow>, ApiError> {
    read(state, filter, spans, with_sketches).await
}

/// The rows of `window` for a chart of `step` seconds ([`Window::stepped_spans`]): no row
/// crosses a step, and the window's end is read from the widest rows that hold exactly its events.
pub async fn scan_stepped(
    state: &QueryState,
    filter: &Filter,
    window: &Window,
    step: i64,
    with_sketches: bool,
) -> Result<Vec<RollupRow>, ApiError> {
    let spans = window.stepped_spans(step);
    let Some(plan) = by_coarser_rows(&spans, state.clock.now().timestamp(), step) else {
        return read(state, filter, spans, with_sketches).await;
    };
    let mut rows = read(state, filter, plan.spans.clone(), with_sketches).await?;
    // Events stamped ahead of the clock in the coarse rows: the finer rows take their place.
    if let Some(trailing) = plan.settle(&mut rows, |r| (r.key.resolution, r.key.bucket)) {
        rows.extend(read(state, filter, trailing.to_vec(), with_sketches).await?);
    }
    Ok(rows)
}

async fn read(
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
