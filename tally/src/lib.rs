//! The `tally` application: composes the stores, projector, ingest and query API into one
//! process ([`startup`]), with layered [`settings`], [`telemetry`], the operator commands on the [`projection`], synthetic [`demo`] traffic
//! and the [`loadgen`] benchmarks. `main.rs` only parses the command line and waits for a
//! signal.

pub mod demo;
pub mod keys;
pub mod loadgen;
pub mod projection;
pub mod retention;
pub mod settings;
pub mod startup;
pub mod telemetry;

pub use settings::Settings;
pub use startup::{Application, Stores};
