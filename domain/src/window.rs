//! Time windows and how they map onto stored rollup rows.
//!
//! A window is `[from, to)` in whole UTC minutes: requested instants are widened outward to
//! minute boundaries (and the answer says so). `time_range=24h` means the 24 hours ending with
//! the current minute (inclusive). A window is decomposed into the fewest rows: whole days as day
//! rows, whole hours as hour rows, the remaining edges as minute rows. Every row lies entirely in
//! one day (and in one step of a chart series), which is what lets grouping by day or by step
//! work on rows without splitting them.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::rollup::Resolution;
use crate::store::Span;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// Longest window a query may ask for.
pub const MAX_WINDOW_DAYS: i64 = 400;

/// A window that cannot be asked for: the query parameter at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {reason}")]
pub struct WindowError {
    pub param: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Unix seconds, minute-aligned, inclusive.
    pub from: i64,
    /// Unix seconds, minute-aligned, exclusive.
    pub to: i64,
    /// Whether the requested instants were moved outward to whole minutes.
    pub widened: bool,
}

/// How the window was described to the caller.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct WindowInfo {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub minutes: i64,
    pub widened_to_whole_minutes: bool,
    pub note: Option<&'static str>,
}

fn floor(t: i64, unit: i64) -> i64 {
    t.div_euclid(unit) * unit
}

fn ceil(t: i64, unit: i64) -> i64 {
    -floor(-t, unit)
}

/// Named ranges the dashboards use, with their length in minutes.
pub const RANGES: [(&str, i64); 6] = [
    ("5m", 5),
    ("15m", 15),
    ("1h", 60),
    ("24h", 24 * 60),
    ("7d", 7 * 24 * 60),
    ("30d", 30 * 24 * 60),
];

/// The length of a named range.
pub fn named_range(name: &str) -> Option<Duration> {
    RANGES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, minutes)| Duration::minutes(*minutes))
}

impl Window {
    /// The `range` ending with the current minute.
    pub fn last(range: Duration, now: DateTime<Utc>) -> Window {
        let to = floor(now.timestamp(), MINUTE) + MINUTE;
        Window {
            from: to - range.num_seconds(),
            to,
            widened: false,
        }
    }

    /// `[from, to)` widened outward to whole minutes.
    pub fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Window, WindowError> {
        if from >= to {
            return Err(WindowError {
                param: "from",
                reason: "must be earlier than to".into(),
            });
        }
        if to - from > Duration::days(MAX_WINDOW_DAYS) {
            return Err(WindowError {
                param: "from",
                reason: format!("the window may span at most {MAX_WINDOW_DAYS} days"),
            });
        }
        let exact_from = from.timestamp_micros();
        let exact_to = to.timestamp_micros();
        let w = Window {
            from: floor(from.timestamp(), MINUTE),
            to: ceil(ceil(exact_to, 1_000_000) / 1_000_000, MINUTE),
            widened: false,
        };
        let widened = w.from * 1_000_000 != exact_from || w.to * 1_000_000 != exact_to;
        Ok(Window { widened, ..w })
    }

    pub fn len_s(&self) -> i64 {
        self.to - self.from
    }

    pub fn minutes(&self) -> i64 {
        self.len_s() / MINUTE
    }

    /// The window of equal length just before this one.
    pub fn previous(&self) -> Window {
        Window {
            from: self.from - self.len_s(),
            to: self.from,
            widened: false,
        }
    }

    pub fn info(&self) -> WindowInfo {
        WindowInfo {
            from: DateTime::from_timestamp(self.from, 0).unwrap_or_default(),
            to: DateTime::from_timestamp(self.to, 0).unwrap_or_default(),
            minutes: self.minutes(),
            widened_to_whole_minutes: self.widened,
            note: self
                .widened
                .then_some("from/to were widened outward to whole UTC minutes"),
        }
    }

    /// Fewest rows covering the window (days, hours, minutes).
    pub fn spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        let (day_from, day_to) = (ceil(self.from, DAY), floor(self.to, DAY));
        if day_from < day_to {
            hours_and_minutes(self.from, day_from, &mut out);
            push(&mut out, Resolution::Day, day_from, day_to);
            hours_and_minutes(day_to, self.to, &mut out);
        } else {
            hours_and_minutes(self.from, self.to, &mut out);
        }
        out
    }

    /// Rows covering the window with nothing coarser than hours (for hour-of-day questions).
    pub fn hour_spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        hours_and_minutes(self.from, self.to, &mut out);
        out
    }

    /// Rows covering the window such that none crosses a boundary of `step` seconds
    /// (a multiple of 60 dividing a day, aligned to UTC midnight).
    pub fn stepped_spans(&self, step: i64) -> Vec<Span> {
        let mut out = Vec::new();
        let mut start = self.from;
        while start < self.to {
            let end = (floor(start, step) + step).min(self.to);
            Window {
                from: start,
                to: end,
                widened: false,
            }
            .spans()
            .into_iter()
            .for_each(|s| push(&mut out, s.resolution, s.from, s.to));
            start = end;
        }
        out
    }

    /// Start of each step of a chart series over this window.
    pub fn steps(&self, step: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut t = floor(self.from, step);
        while t < self.to {
            out.push(t);
            t += step;
        }
        out
    }
}

/// Appends a span, joining it to the previous one when contiguous and of the same resolution.
fn push(out: &mut Vec<Span>, resolution: Resolution, from: i64, to: i64) {
    if from >= to {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.resolution == resolution && last.to == from {
            last.to = to;
            return;
        }
    }
    out.push(Span {
        resolution,
        from,
        to,
    });
}

fn hours_and_minutes(from: i64, to: i64, out: &mut Vec<Span>) {
    let (hour_from, hour_to) = (ceil(from, HOUR), floor(to, HOUR));
    if hour_from < hour_to {
        push(out, Resolution::Minute, from, hour_from);
        push(out, Resolution::Hour, hour_from, hour_to);
        push(out, Resolution::Minute, hour_to, to);
    } else {
        push(out, Resolution::Minute, from, to);
    }
}

/// The chart step the dashboards use for a window length: 5 min up to 1 h, 1 h up to 24 h,
/// 6 h up to 7 d, 1 day beyond.
pub fn step_for(len_s: i64) -> i64 {
    match len_s {
        l if l <= HOUR => 5 * MINUTE,
        l if l <= DAY => HOUR,
        l if l <= 7 * DAY => 6 * HOUR,
        _ => DAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(spans: &[Span]) -> Vec<(i64, i64)> {
        let mut minutes = Vec::new();
        for s in spans {
            let mut t = s.from;
            while t < s.to {
                minutes.push((t, t + s.resolution.seconds()));
                t += s.resolution.seconds();
            }
        }
        minutes
    }

    #[test]
    fn decomposition_covers_every_minute_exactly_once() {
        let base = 1_767_225_600; // 2026-01-01T00:00:00Z
        for (from, to) in [
            (base + 90 * 60, base + 3 * DAY + 17 * 60),
            (base, base + DAY),
            (base + 60, base + 120),
            (base + 5 * 60, base + 2 * HOUR),
        ] {
            let w = Window {
                from,
                to,
                widened: false,
            };
            for spans in [
                w.spans(),
                w.hour_spans(),
                w.stepped_spans(6 * HOUR),
                w.stepped_spans(5 * 60),
            ] {
                let rows = covered(&spans);
                let total: i64 = rows.iter().map(|(a, b)| b - a).sum();
                assert_eq!(total, to - from);
                let mut t = from;
                let mut sorted = rows.clone();
                sorted.sort();
                for (a, b) in sorted {
                    assert_eq!(a, t);
                    t = b;
                }
            }
        }
    }

    #[test]
    fn uses_coarse_rows_where_it_can() {
        let base = 1_767_225_600;
        let w = Window {
            from: base + 30 * 60,
            to: base + 2 * DAY + HOUR + 60,
            widened: false,
        };
        let spans = w.spans();
        assert_eq!(spans.len(), 5);
        assert_eq!(
            spans[2],
            Span {
                resolution: Resolution::Day,
                from: base + DAY,
                to: base + 2 * DAY
            }
        );
    }

    #[test]
    fn widening_is_reported() {
        let a = DateTime::parse_from_rfc3339("2026-01-01T00:00:30Z")
            .map(|d| d.with_timezone(&Utc))
            .expect("t");
        let b = DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .expect("t");
        let w = Window::between(a, b).expect("valid");
        assert!(w.widened);
        assert_eq!(w.to - w.from, HOUR);
        let exact = Window::between(b - Duration::hours(1), b).expect("valid");
        assert!(!exact.widened);
        assert!(Window::between(b, a).is_err());
    }
}
