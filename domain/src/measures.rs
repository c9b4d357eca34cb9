//! The arithmetic that turns summed rollups into the figures people read: rates in percent,
//! latencies in milliseconds, money per request. The dashboards and the alert rules use these
//! same functions, so an alert's value equals the dashboard's number for the same window.

use tally_schemas::Pico;

use crate::rollup::Rollup;

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Mean latency in milliseconds (0 when there were no requests).
pub fn mean_latency_ms(r: &Rollup) -> f64 {
    if r.requests == 0 {
        0.0
    } else {
        r.latency_sum_us as f64 / r.requests as f64 / 1000.0
    }
}

/// Exact cost divided by a count, in US dollars (display only).
pub fn usd_per(p: Pico, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        p.0 as f64 / count as f64 / 1e12
    }
}

/// Requests whose cost is known.
pub fn priced_requests(r: &Rollup) -> u64 {
    r.requests - r.unpriced
}

/// Failed requests (errors and timeouts) in percent of all requests.
pub fn error_rate(r: &Rollup) -> f64 {
    pct(r.failures(), r.requests)
}
