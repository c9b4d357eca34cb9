//! The `tally` application: composes the stores, projector, ingest and query API into one
//! process ([`startup`], over the adapters [`stores`] opens), with layered [`settings`], [`telemetry`], the operator commands on the [`projection`] (with [`progress`] reports), synthetic [`demo`] traffic
//! and the benchmarks ([`loadgen`], [`bench_alerts`]). `main.rs` only tunes its process ([`host`], and its `allocator` module), parses the command line and waits for a
//! signal.

pub mod bench_alerts;
pub mod demo;
pub mod host;
pub mod keys;
pub mod loadgen;
pub mod progress;
pub mod projection;
pub mod retention;
pub mod settings;
pub mod startup;
pub mod stores;
pub mod telemetry;

pub use settings::Settings;
pub use startup::Application;
pub use stores::Stores;
