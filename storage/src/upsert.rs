//! What the two configuration stores share when writing rows keyed by a name: create (never
//! overwriting) or upsert, as one `INSERT … ON CONFLICT` statement in either SQL dialect, and
//! the audit entry such a write makes.

use tally_domain::audit::{Audited, Change};
use tally_domain::config::AuditSpec;

/// Whether a write may replace an existing row of the same name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    Create,
    Upsert,
}

impl Write {
    /// The `ON CONFLICT` action: update `columns` from the new row, or nothing (the caller then
    /// sees no row written and answers [`taken`]).
    pub(crate) fn on_conflict(self, columns: &[&str]) -> String {
        match self {
            Write::Create => "DO NOTHING".into(),
            Write::Upsert => {
                let sets: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                format!("DO UPDATE SET {}", sets.join(", "))
            }
        }
    }
}

impl Write {
    /// The audit entry of a write that turned `before` into `after`: `None` for an upsert that
    /// changed nothing (which the store then rolls back).
    pub(crate) fn audit<T: Audited>(
        self,
        change: &Change,
        before: Option<&T>,
        after: &T,
    ) -> Option<AuditSpec> {
        match self {
            Write::Create => Some(change.on("create", None, Some(after))),
            Write::Upsert => change.upserted(before, after),
        }
    }
}
