//! The application end to end, one test executable: the modules start the real `tally` (on port
//! 0, in a temporary directory) or run its binary, and check what a user would see. The browser
//! test is `#[ignore]`d here and runs in `.ci/run`'s service tier.
//!
//! One executable instead of one per file: each links the whole stack (about 120 MB in a debug
//! build), and 33 of them filled a CI machine's disk. The tests here share one process, so an
//! outcome must not depend on process-wide state another module changes: a child `tally` gets
//! [`common::tally_command`]'s clean environment, and the tests that assert the process-wide
//! Prometheus recorder's values are executables of their own (`kafka.rs`, `kept_rows.rs`,
//! `prometheus.rs`, `topic_switch.rs`); `ingest.rs` only looks for Tally's metrics on
//! `/metrics`. A stalled Kafka test's watchdog (`common::topics::Watchdog`) ends the whole
//! executable.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod alerts;
mod bench_query;
mod browser;
mod budgets;
mod console;
mod contract;
mod crash;
mod dedup_generations;
mod dependency_rules;
mod drilldown;
mod experiments;
mod ingest;
mod keys;
mod loadgen;
mod management;
mod model_views;
mod output;
mod pipeline;
mod prompt_test;
mod stream;
mod test_cases;
mod test_runs;
mod topic_change;
