//! Tally decides and tells: alert rules and budgets become alerts, and alerts reach people.
//!
//! - [`observe`]: what is watched — a rule's metric over its window, a budget's thresholds and
//!   forecast — read from the rollups the dashboards read.
//! - [`evaluator`]: the rounds that move alerts through pending → firing → resolved and record
//!   every transition, run by exactly one process at a time (the evaluator's lease).
//! - [`notify`]: the bodies webhooks and Slack receive, HMAC signing, sending.
//! - [`delivery`]: at-least-once delivery from the stored outbox, with backoff and jitter.
//!
//! Invariant: this crate decides nothing about numbers itself — values come from
//! [`tally_domain::measures`] and [`tally_domain::alerting::BudgetStatus`], lifecycles from
//! [`tally_domain::alerting::alerts`] — and it links no database, broker or web-server crate
//! (the binary wires it to the stores).

pub mod delivery;
pub mod evaluator;
pub mod notify;
pub mod observe;

pub use delivery::{Deliverer, RetryPolicy};
pub use evaluator::Evaluator;
pub use notify::Sender;
