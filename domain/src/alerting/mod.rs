//! Deciding when to tell people: budgets measured against their period's spending, alerts and
//! their lifecycle.
//!
//! - [`period`]: the calendar period (day, week from Monday, month, quarter) holding an instant
//!   in a budget's time zone, across DST changes.
//! - [`budget`]: a budget's spend, forecasts, thresholds crossed and state, read from the same
//!   rollups as the dashboards.
//! - [`alerts`]: alerts, their Prometheus-style lifecycle (pending → firing → resolved), the
//!   deliveries of their transitions and the retry schedule.

pub mod alerts;
pub mod budget;
pub mod period;

pub use alerts::{Alert, AlertKind, AlertState, Attempt, Delivery, DeliveryStatus, Transition};
pub use budget::{BudgetState, BudgetStatus};
pub use period::Period;
