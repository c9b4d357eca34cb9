//! Pacing: ingest acknowledges events no faster than the projector makes them visible.
//!
//! A `200` promises durability; a dashboard that shows the event seconds later breaks a softer
//! promise, freshness. So before it appends, ingest looks at how long the oldest event not yet
//! projected has been in the log; while that is more than `max_lag`, the request waits (up to
//! `max_wait`, polling every few milliseconds) and is then refused with `429`. Ingest thus runs
//! at the projector's pace, and an acknowledged event waits behind at most about `max_lag` of
//! earlier ones. This needs the projector in the same process as ingest and exact counts of
//! the log's events: the embedded server. With a broker log `tally` turns pacing off (the
//! log's size comes from watermarks sampled every few seconds, in messages), and a process that
//! only ingests sees no backlog.
//!
//! How long the oldest event has waited comes from [`AppendMarks`]: after every append ingest
//! notes "by now the log held N events". The oldest unprojected event (number `projected`,
//! counting from zero) was appended after the last mark with N ≤ `projected` and by the first
//! mark with N > `projected`; its wait is measured from that first mark, so it is
//! underestimated by at most the time between two marks. Marks closer together than
//! [`SPACING`] are merged into the earlier one (an overestimate of at most `SPACING`), and at
//! most [`MAX_MARKS`] are kept (the oldest go first: past that, waits read short), so the
//! memory is bounded whatever the rate. A mark is dropped once the projector has passed it.
//!
//! Ingest does not pace itself by a projector that is catching up on events it did not see
//! arrive: while the projector is not running (starting, refusing a log that is not its own,
//! failing to commit), at the first look after start-up (a backlog left by the last run), and
//! when the projected count goes backwards (a replay restarts the projections, or a broker
//! rebalance hands partitions over), the waits read zero until the projector is back where the
//! log was then, and only the event-count limit (`max_lag_events`) holds ingest back. Otherwise
//! every request would be refused until that whole backlog was projected. A stale count read
//! just before a newer one can look like a replay too; that pauses pacing for as long as the
//! projector takes to reach the log's end, a fraction of a second.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Marks closer together than this are merged.
pub const SPACING: Duration = Duration::from_millis(1);
/// At most this many marks are kept.
pub const MAX_MARKS: usize = 1 << 16;

/// The log as the projector of this process sees it. A process that does not project sees no
/// backlog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events in the log.
    pub in_log: u64,
    /// Of them, events the projections do not count yet (the newest ones).
    pub unprojected: u64,
    /// Whether the projector is running: reading and committing. While it is not, ingest does
    /// not pace itself by it: the events wait in the log, up to `max_lag_events`.
    pub projecting: bool,
}

impl Backlog {
    /// Events the projections count: the log's first ones.
    pub fn projected(&self) -> u64 {
        self.in_log.saturating_sub(self.unprojected)
    }
}

/// When the log held how many events, as noted after appends.
#[derive(Debug, Default)]
pub struct AppendMarks {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    marks: VecDeque<Mark>,
    /// Whether a backlog has been looked at yet.
    looked: bool,
    /// The projected count seen last.
    projected: u64,
    /// While the projector catches up on what it did not see arrive: the events the log held
    /// when that began.
    catching_up_to: u64,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Events in the log…
    in_log: u64,
    /// …at the latest by this instant.
    at: Instant,
}

impl AppendMarks {
    /// Notes that by `at` the log held `in_log` events (call it after an append returned).
    pub fn note(&self, in_log: u64, at: Instant) {
        let marks = &mut self.lock().marks;
        match marks.back_mut() {
            Some(last) if in_log <= last.in_log => {}
            Some(last) if at.saturating_duration_since(last.at) < SPACING => last.in_log = in_log,
            _ => {
                if marks.len() == MAX_MARKS {
                    marks.pop_front();
                }
                marks.push_back(Mark { in_log, at });
            }
        }
    }

    /// How long, at `now`, the oldest event the projections do not count yet has been in the
    /// log. Zero when the marks know of no such event, and while the projector catches up on
    /// a backlog it did not see arrive (see the module docs). Drops the marks the projector
    /// has passed.
    pub fn waited(&self, backlog: Backlog, now: Instant) -> Duration {
        let projected = backlog.projected();
        let mut state = self.lock();
        if !backlog.projecting || !state.looked || projected < state.projected {
            state.catching_up_to = backlog.in_log;
        }
        state.looked = true;
        state.projected = projected;
        let catching_up = projected < state.catching_up_to;
        let marks = &mut state.marks;
        while marks.front().is_some_and(|mark| mark.in_log <= projected) {
            marks.pop_front();
        }
        match marks.front() {
            Some(mark) if backlog.projecting && !catching_up => {
                now.saturating_duration_since(mark.at)
            }
            _ => Duration::ZERO,
        }
    }

    /// Marks held (for tests).
    pub fn len(&self) -> usize {
        self.lock().marks.len()
    }

    /// Whether no mark is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed: every change is
        // one push, pop or field write.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A running projector that counts the first `projected` of `in_log` events.
    fn at(projected: u64, in_log: u64) -> Backlog {
        Backlog {
            in_log,
            unprojected: in_log - projected,
            projecting: true,
        }
    }

    /// Marks that have looked at an empty log once, as at the start of a fresh server.
    fn started(t0: Instant) -> AppendMarks {
        let marks = AppendMarks::default();
        assert_eq!(marks.waited(at(0, 0), t0), Duration::ZERO);
        marks
    }

    #[test]
    fn the_oldest_unprojected_event_waits_since_the_first_mark_that_holds_it() {
        let t0 = Instant::now();
        let marks = started(t0);
        marks.note(1_000, t0);
        marks.note(2_000, t0 + ms(10));
        marks.note(3_000, t0 + ms(20));
        // Nothing projected: event 0 was in the log by t0.
        assert_eq!(marks.waited(at(0, 3_000), t0 + ms(100)), ms(100));
        // Events 0..999 visible: event 1,000 was in the log by the second mark.
        assert_eq!(marks.waited(at(1_000, 3_000), t0 + ms(100)), ms(90));
        // Event 1,500 is in the second record too.
        assert_eq!(marks.waited(at(1_500, 3_000), t0 + ms(100)), ms(90));
        assert_eq!(marks.waited(at(2_999, 3_000), t0 + ms(100)), ms(80));
        // Everything visible.
        assert_eq!(marks.waited(at(3_000, 3_000), t0 + ms(100)), Duration::ZERO);
        assert!(marks.is_empty());
    }

    #[test]
    fn marks_closer_than_the_spacing_count_from_the_earlier_one() {
        let t0 = Instant::now();
        let marks = started(t0);
        marks.note(10, t0);
        marks.note(20, t0 + Duration::from_micros(400));
        marks.note(30, t0 + Duration::from_micros(900));
        assert_eq!(marks.len(), 1);
        // Event 25 is counted from t0, 0.9 ms before it was noted: an overestimate.
        assert_eq!(marks.waited(at(25, 30), t0 + ms(5)), ms(5));
        marks.note(40, t0 + ms(2));
        assert_eq!(marks.len(), 2);
        assert_eq!(marks.waited(at(30, 40), t0 + ms(5)), ms(3));
    }

    #[test]
    fn a_mark_without_new_events_changes_nothing() {
        let t0 = Instant::now();
        let marks = started(t0);
        marks.note(10, t0);
        marks.note(10, t0 + ms(50));
        marks.note(7, t0 + ms(60));
        assert_eq!(marks.len(), 1);
        assert_eq!(marks.waited(at(9, 10), t0 + ms(70)), ms(70));
    }

    #[test]
    fn a_replay_does_not_pace_ingest_until_it_is_back_where_the_log_was() {
        let t0 = Instant::now();
        let marks = started(t0);
        marks.note(100, t0);
        assert_eq!(marks.waited(at(50, 100), t0 + ms(300)), ms(300));
        // The projections restart from zero while the log holds 100 events.
        assert_eq!(marks.waited(at(0, 100), t0 + ms(400)), Duration::ZERO);
        marks.note(150, t0 + ms(500));
        assert_eq!(marks.waited(at(99, 150), t0 + ms(900)), Duration::ZERO);
        // Back at 100: the events appended during the replay have waited since 500 ms.
        assert_eq!(marks.waited(at(100, 150), t0 + ms(900)), ms(400));
        assert_eq!(marks.waited(at(150, 150), t0 + ms(900)), Duration::ZERO);
    }

    #[test]
    fn a_replay_is_seen_even_when_nobody_looked_while_the_projector_kept_up() {
        let t0 = Instant::now();
        let marks = started(t0);
        // A quiet server: every look finds the projector caught up.
        for (i, n) in [10u64, 20, 30].into_iter().enumerate() {
            marks.note(n, t0 + ms(10 * i as u64));
            assert_eq!(
                marks.waited(at(n, n), t0 + ms(10 * i as u64 + 5)),
                Duration::ZERO
            );
        }
        // A replay starts; the next append lands while it is at event 5.
        marks.note(40, t0 + ms(100));
        assert_eq!(marks.waited(at(5, 40), t0 + ms(2_000)), Duration::ZERO);
        assert_eq!(marks.waited(at(39, 40), t0 + ms(2_100)), Duration::ZERO);
        assert_eq!(marks.waited(at(40, 40), t0 + ms(2_100)), Duration::ZERO);
        assert!(marks.is_empty());
    }

    #[test]
    fn a_backlog_from_before_the_start_does_not_pace_ingest() {
        let t0 = Instant::now();
        let marks = AppendMarks::default();
        // The log holds 5,000 events, 1,000 of them projected, when the server starts.
        marks.note(5_100, t0);
        assert_eq!(marks.waited(at(1_000, 5_100), t0 + ms(900)), Duration::ZERO);
        marks.note(5_200, t0 + ms(950));
        assert_eq!(
            marks.waited(at(4_000, 5_200), t0 + ms(1_000)),
            Duration::ZERO
        );
        // Past the log's end at the first look, the events since count again.
        assert_eq!(marks.waited(at(5_100, 5_200), t0 + ms(1_000)), ms(50));
    }

    #[test]
    fn a_projector_that_stopped_is_not_waited_for_and_its_backlog_is_not_held_against_ingest() {
        let t0 = Instant::now();
        let marks = started(t0);
        marks.note(100, t0);
        let stopped = Backlog {
            projecting: false,
            ..at(0, 100)
        };
        assert_eq!(marks.waited(stopped, t0 + ms(5_000)), Duration::ZERO);
        marks.note(200, t0 + ms(5_000));
        // Running again: it catches up on the 100 events it had not counted before it may be
        // waited for; the 100 since then count.
        assert_eq!(marks.waited(at(50, 200), t0 + ms(5_100)), Duration::ZERO);
        assert_eq!(marks.waited(at(100, 200), t0 + ms(5_100)), ms(100));
    }

    #[test]
    fn memory_is_bounded_and_the_newest_marks_are_kept() {
        let t0 = Instant::now();
        let marks = started(t0);
        let total = MAX_MARKS as u64 + 100;
        for i in 0..total {
            marks.note((i + 1) * 10, t0 + ms(2 * i));
        }
        assert_eq!(marks.len(), MAX_MARKS);
        // The first 100 marks are gone: the oldest kept says 1,010 events by 200 ms.
        let now = t0 + ms(2 * total);
        assert_eq!(marks.waited(at(0, total * 10), now), now - (t0 + ms(200)));
    }
}
