//! Deciding when to tell people: budgets measured against their period's spending.
//!
//! - [`period`]: the calendar period (day, week from Monday, month, quarter) holding an instant
//!   in a budget's time zone, across DST changes.
//! - [`budget`]: a budget's spend, forecasts, thresholds crossed and state, read from the same
//!   rollups as the dashboards.

pub mod budget;
pub mod period;

pub use budget::{BudgetState, BudgetStatus};
pub use period::Period;
