//! The configuration model: what platform admins manage and what pricing reads, one module per
//! resource group, re-exported here. Words that name a closed set (types, statuses, scopes) are
//! enums stored and answered as their text (`named_enum!`).

mod alerting;
mod alerts;
mod audit_log;
mod budgets;
mod catalog;
mod experiments;
mod prompts;
mod test_cases;
mod test_runs;

pub use alerting::*;
pub use alerts::*;
pub use audit_log::*;
pub use budgets::*;
pub use catalog::*;
pub use experiments::*;
pub use prompts::*;
pub use test_cases::*;
pub use test_runs::*;
