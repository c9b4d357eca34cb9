//! Drill-down to the counted events: which ones a query asks for, and their order.
//!
//! Events come newest first: by `occurred_at` descending, ties by `event_id` descending — a
//! total order on counted events (the projector counts an id once), so a cursor (the last
//! event of a page) says exactly where the next page starts, and pages never skip or repeat
//! an event. Both analytics stores answer with this order and these predicates.

use tally_schemas::event::Status;
use tally_schemas::{Environment, UsageEvent};

/// Which outcomes to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Success,
    Error,
    Timeout,
    /// Errors and timeouts.
    Failed,
}

impl StatusFilter {
    pub const NAMES: [&'static str; 4] = ["success", "error", "timeout", "failed"];

    pub fn parse(text: &str) -> Option<StatusFilter> {
        Some(match text {
            "success" => StatusFilter::Success,
            "error" => StatusFilter::Error,
            "timeout" => StatusFilter::Timeout,
            "failed" => StatusFilter::Failed,
            _ => return None,
        })
    }

    pub fn admits(self, status: Status) -> bool {
        match self {
            StatusFilter::Success => status == Status::Success,
            StatusFilter::Error => status == Status::Error,
            StatusFilter::Timeout => status == Status::Timeout,
            StatusFilter::Failed => status != Status::Success,
        }
    }

    /// Whether only failed events can match (stores may skip what holds none).
    pub fn only_failures(self) -> bool {
        self != StatusFilter::Success
    }

    /// The stored status words this filter admits.
    pub fn words(self) -> &'static [&'static str] {
        match self {
            StatusFilter::Success => &["success"],
            StatusFilter::Error => &["error"],
            StatusFilter::Timeout => &["timeout"],
            StatusFilter::Failed => &["error", "timeout"],
        }
    }
}

/// Exact matches on the events' fields; `None` matches anything, `Some("")` the events that
/// named none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub feature: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub environment: Option<Environment>,
    pub status: Option<StatusFilter>,
    pub prompt_id: Option<String>,
    pub experiment_id: Option<String>,
    pub variant: Option<String>,
    pub user_id: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, e: &UsageEvent) -> bool {
        // An empty value asks for the events that named none (as the rollup filters do, and
        // as ClickHouse stores a missing field).
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have.unwrap_or("") == w)
        };
        same(&self.feature, Some(&e.feature))
            && same(&self.model, Some(&e.model))
            && same(&self.provider, Some(&e.provider))
            && self.environment.is_none_or(|env| env == e.environment)
            && self.status.is_none_or(|s| s.admits(e.status))
            && same(&self.prompt_id, e.prompt_id.as_deref())
            && same(&self.experiment_id, e.experiment_id.as_deref())
            && same(&self.variant, e.variant.as_deref())
            && same(&self.user_id, e.user_id.as_deref())
    }
}

/// Where a page ends: the last event it held.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub occurred_at_us: i64,
    pub event_id: String,
}

impl Cursor {
    pub fn of(e: &UsageEvent) -> Cursor {
        Cursor {
            occurred_at_us: e.occurred_at_us,
            event_id: e.event_id.clone(),
        }
    }

    /// Whether `e` comes after this cursor in the newest-first order.
    pub fn precedes(&self, e: &UsageEvent) -> bool {
        (e.occurred_at_us, e.event_id.as_str()) < (self.occurred_at_us, self.event_id.as_str())
    }
}

/// A page of counted events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub filter: EventFilter,
    /// `occurred_at` from (inclusive), microseconds.
    pub from_us: i64,
    /// `occurred_at` before (exclusive), microseconds.
    pub to_us: i64,
    /// Only events after this one (the previous page's last).
    pub after: Option<Cursor>,
    pub limit: usize,
}

impl EventQuery {
    /// Whether `e` belongs to the answer (before the limit is applied).
    pub fn admits(&self, e: &UsageEvent) -> bool {
        e.occurred_at_us >= self.from_us
            && e.occurred_at_us < self.to_us
            && self.after.as_ref().is_none_or(|c| c.precedes(e))
            && self.filter.matches(e)
    }

    /// Whether an event known only by its filtered fields and time (its id unknown, as a
    /// drill-down chunk that points into the log holds it) may belong to the answer: as
    /// [`EventQuery::admits`], except that at the cursor's own time it may, whatever its id.
    pub fn may_admit(&self, e: &UsageEvent) -> bool {
        e.occurred_at_us >= self.from_us
            && e.occurred_at_us < self.to_us
            && self
                .after
                .as_ref()
                .is_none_or(|c| e.occurred_at_us <= c.occurred_at_us)
            && self.filter.matches(e)
    }
}

/// The newest-first order: `a` before `b` when it is newer (ties: the greater event id first).
pub fn newest_first(a: &UsageEvent, b: &UsageEvent) -> std::cmp::Ordering {
    (b.occurred_at_us, b.event_id.as_str()).cmp(&(a.occurred_at_us, a.event_id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str, us: i64) -> UsageEvent {
        UsageEvent {
            event_id: id.into(),
            occurred_at_us: us,
            ..UsageEvent::example()
        }
    }

    #[test]
    fn the_cursor_continues_exactly_after_the_last_event() {
        let mut events = [at("a", 5), at("c", 5), at("b", 5), at("z", 4), at("y", 6)];
        events.sort_by(newest_first);
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["y", "c", "b", "a", "z"]);
        let cursor = Cursor::of(&events[1]);
        let rest: Vec<&str> = events
            .iter()
            .filter(|e| cursor.precedes(e))
            .map(|e| e.event_id.as_str())
            .collect();
        assert_eq!(rest, ["b", "a", "z"]);
    }

    #[test]
    fn without_its_id_an_event_at_the_cursors_time_may_belong() {
        let q = EventQuery {
            filter: EventFilter {
                feature: Some("feature".into()),
                ..EventFilter::default()
            },
            from_us: 2,
            to_us: 10,
            after: Some(Cursor {
                occurred_at_us: 5,
                event_id: "c".into(),
            }),
            limit: 10,
        };
        // At the cursor's time only ids below "c" belong; without the id, any may.
        assert!(q.admits(&at("b", 5)) && !q.admits(&at("d", 5)));
        assert!(q.may_admit(&at("", 5)) && q.may_admit(&at("", 4)));
        // Newer than the cursor, outside the window or another feature: never.
        assert!(!q.may_admit(&at("", 6)) && !q.may_admit(&at("", 1)));
        let other = UsageEvent {
            feature: "other".into(),
            ..at("", 4)
        };
        assert!(!q.may_admit(&other));
    }

    #[test]
    fn failed_means_errors_and_timeouts() {
        let failed = StatusFilter::Failed;
        assert!(failed.admits(Status::Error) && failed.admits(Status::Timeout));
        assert!(!failed.admits(Status::Success));
        assert_eq!(StatusFilter::parse("failed"), Some(failed));
        assert_eq!(StatusFilter::parse("ok"), None);
    }
}
