//! The conformance suites every storage implementation must pass, in a crate of their own that
//! only tests depend on (none of it ships in the services). The runners are in `tests/`:
//! embedded SQLite in the default run, Postgres and ClickHouse (Debian's 18.16, and a current
//! engine when `TALLY_TEST_CLICKHOUSE_CURRENT_URL` is set) in the service tier.
//!
//! - [`log`]: the event log (SQLite; Kafka on librdkafka's mock cluster, and on a real broker
//!   in the service tier);
//! - [`config`]: the configuration store (SQLite, Postgres), with [`alerting`] its channels,
//!   alert rules and alerts;
//! - [`analytics`]: the analytics store (SQLite, ClickHouse).

pub mod alerting;
pub mod analytics;
pub mod config;
pub mod log;

pub use analytics::{
    analytics_store, inline_sketches_survive, log_bindings, older_rollup_keeps_its_numbers,
    sealed_dedup, SketchedRow,
};
pub use config::{changes_fail_without_their_audit_entry, config_store};
pub use log::event_log;

use chrono::{DateTime, TimeZone, Utc};

/// Midnight UTC of `day` January 2026: the suites' clock.
pub(crate) fn t(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0)
        .single()
        .unwrap_or_default()
}
