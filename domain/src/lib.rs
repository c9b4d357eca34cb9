//! Tally's domain: what the numbers are and the rules they obey, with no I/O.
//!
//! - The rollup model ([`rollup`]) with its mergeable sketches ([`sketch`], [`hll`]): what a
//!   projection adds up, so that merging in any order and replaying the log give the same
//!   numbers.
//! - The arithmetic from summed rollups to rates, latencies and money per request
//!   ([`measures`]), shared by the dashboards and the alert rules.
//! - Money: pricing usage at the price in effect when it happened ([`pricing`]), and the one
//!   way events enter the log, priced ([`recording`]).
//! - The configuration model ([`config`]): features, providers, models and prices,
//!   assignments, prompts, budgets, experiments; the rules that depend on what is stored
//!   ([`rules`]: delete guards, prompt version status and activation, what is taken or
//!   missing); API keys and roles ([`access`], [`keys`]), console sessions ([`sessions`]); the audit trail's entries ([`audit`]).
//! - Budgets measured against their period's spending, the way alerts decide ([`alerting`]).
//! - The storage seams ([`store`]): the event log, the analytics store and the configuration
//!   store as traits, so that every service programs against them without linking an adapter
//!   (`tally-storage` implements them), and the rule that binds checkpoints to the log they
//!   came from ([`log_binding`]).
//! - The binary forms every store shares: log records and dedup chunks ([`codec`]), and the
//!   dedup memory's sealed generations ([`dedup`]).
//! - Time windows and the fewest rollup rows that cover them ([`window`]).
//! - The injected clock ([`clock`]).
//!
//! Invariant: nothing here performs I/O or depends on a database, broker or HTTP crate; a
//! test (`tally/tests/app/dependency_rules.rs`) keeps it so.

#[macro_use]
mod named_enum;

pub mod access;
pub mod alerting;
pub mod audit;
pub mod clock;
pub mod codec;
pub mod config;
pub mod dedup;
pub mod drilldown;
pub mod error;
pub mod experiment_results;
pub mod experiment_scores;
pub mod hll;
pub mod keys;
pub mod log_binding;
pub mod measures;
pub mod pricing;
pub mod recording;
pub mod rollup;
pub mod rules;
pub mod sessions;
pub mod short_text;
pub mod sketch;
pub mod statistics;
pub mod store;
mod varint;
pub mod window;

/// Stable 64-bit fingerprint of an event id, used by the projector's dedup memory.
pub fn event_fingerprint(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(event_id.as_bytes(), 0x7a11_7e57)
}
