//! Pacing: ingest acknowledges events no faster than the projector makes them visible.
//!
//! A `200` promises durability; a dashboard that shows the event seconds later breaks a softer
//! promise, freshness. So before it appends, ingest looks at how long the oldest event not yet
//! projected has been in the log; while that is more than `max_lag`, the request waits (up to
//! `max_wait`, polling every few milliseconds) and is then refused with `429`. Ingest thus runs
//! at the projector's pace, and an acknowledged event waits behind at most about `max_lag` of
//! earlier ones.
//!
//! How long the oldest event has waited comes from [`AppendMarks`]: after every append ingest
//! notes "by now the log held N events". The oldest unprojected event (number `projected`,
//! counting from zero) was appended after the last mark with N ≤ `projected` and by the first
//! mark with N > `projected`; its wait is measured from that first mark, so it is
//! underestimated by at most the time between two marks. Marks closer together than
//! [`SPACING`] are merged into the earlier one (an overestimate of at most `SPACING`), and at
//! most [`MAX_MARKS`] are kept (the oldest go first), so the memory is bounded whatever the rate.
//! A mark is dropped once the projector has passed it.
//!
//! When the projected count goes backwards, a replay has restarted the projections (a
//! repricing): until it is back where the log was then, the waits read zero and only the
//! event-count limit (`max_lag_events`) holds ingest back, as a replay of a long log would
//! otherwise refuse every request for its whole length.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Marks closer together than this are merged.
pub const SPACING: Duration = Duration::from_millis(1);
/// At most this many marks are kept.
pub const MAX_MARKS: usize = 1 << 16;

/// When the log held how many events, as noted after appends.
#[derive(Debug, Default)]
pub struct AppendMarks {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    marks: VecDeque<Mark>,
    /// The projected count seen last.
    projected: u64,
    /// While a replay runs: the events the log held when it began.
    replaying_until: u64,
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

    /// How long, at `now`, the oldest event not yet projected has been in the log, when the
    /// projector has made the first `projected` of the `in_log` events visible. Zero when the
    /// marks know of no event beyond `projected`, and while a replay catches up. Drops the
    /// marks the projector has passed.
    pub fn waited(&self, projected: u64, in_log: u64, now: Instant) -> Duration {
        let mut state = self.lock();
        if projected < state.projected {
            state.replaying_until = in_log;
        }
        state.projected = projected;
        let replaying = projected < state.replaying_until;
        let marks = &mut state.marks;
        while marks.front().is_some_and(|mark| mark.in_log <= projected) {
            marks.pop_front();
        }
        match marks.front() {
            Some(mark) if !replaying => now.saturating_duration_since(mark.at),
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

    #[test]
    fn the_oldest_unprojected_event_waits_since_the_first_mark_that_holds_it() {
        let marks = AppendMarks::default();
        let t0 = Instant::now();
        marks.note(1_000, t0);
        marks.note(2_000, t0 + ms(10));
        marks.note(3_000, t0 + ms(20));
        // Nothing projected: event 0 was in the log by t0.
        assert_eq!(marks.waited(0, 1 << 40, t0 + ms(100)), ms(100));
        // Events 0..999 visible: event 1,000 was in the log by the second mark.
        assert_eq!(marks.waited(1_000, 1 << 40, t0 + ms(100)), ms(90));
        // Event 1,500 is in the second record too.
        assert_eq!(marks.waited(1_500, 1 << 40, t0 + ms(100)), ms(90));
        assert_eq!(marks.waited(2_999, 1 << 40, t0 + ms(100)), ms(80));
        // Everything visible.
        assert_eq!(marks.waited(3_000, 1 << 40, t0 + ms(100)), Duration::ZERO);
        assert!(marks.is_empty());
    }

    #[test]
    fn marks_closer_than_the_spacing_count_from_the_earlier_one() {
        let marks = AppendMarks::default();
        let t0 = Instant::now();
        marks.note(10, t0);
        marks.note(20, t0 + Duration::from_micros(400));
        marks.note(30, t0 + Duration::from_micros(900));
        assert_eq!(marks.len(), 1);
        // Event 25 is counted from t0, 0.9 ms before it was noted: an overestimate.
        assert_eq!(marks.waited(25, 1 << 40, t0 + ms(5)), ms(5));
        marks.note(40, t0 + ms(2));
        assert_eq!(marks.len(), 2);
        assert_eq!(marks.waited(30, 1 << 40, t0 + ms(5)), ms(3));
    }

    #[test]
    fn a_mark_without_new_events_changes_nothing() {
        let marks = AppendMarks::default();
        let t0 = Instant::now();
        marks.note(10, t0);
        marks.note(10, t0 + ms(50));
        marks.note(7, t0 + ms(60));
        assert_eq!(marks.len(), 1);
        assert_eq!(marks.waited(9, 1 << 40, t0 + ms(70)), ms(70));
    }

    #[test]
    fn a_replay_does_not_pace_ingest_until_it_is_back_where_the_log_was() {
        let marks = AppendMarks::default();
        let t0 = Instant::now();
        marks.note(100, t0);
        assert_eq!(marks.waited(50, 100, t0 + ms(300)), ms(300));
        // The projections restart from zero while the log holds 100 events.
        assert_eq!(marks.waited(0, 100, t0 + ms(400)), Duration::ZERO);
        marks.note(150, t0 + ms(500));
        assert_eq!(marks.waited(99, 150, t0 + ms(900)), Duration::ZERO);
        // Back at 100: the events appended during the replay have waited since 500 ms.
        assert_eq!(marks.waited(100, 150, t0 + ms(900)), ms(400));
        assert_eq!(marks.waited(150, 150, t0 + ms(900)), Duration::ZERO);
    }

    #[test]
    fn memory_is_bounded_and_the_newest_marks_are_kept() {
        let marks = AppendMarks::default();
        let t0 = Instant::now();
        let total = MAX_MARKS as u64 + 100;
        for i in 0..total {
            marks.note((i + 1) * 10, t0 + ms(2 * i));
        }
        assert_eq!(marks.len(), MAX_MARKS);
        // The first 100 marks are gone: the oldest kept says 1,010 events by 200 ms.
        let now = t0 + ms(2 * total);
        assert_eq!(marks.waited(0, 1 << 40, now), now - (t0 + ms(200)));
    }
}
