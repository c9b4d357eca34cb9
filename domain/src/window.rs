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

/// The end of a window read from coarser rows: the plan of a read (see [`by_coarser_rows`]).
///
/// Two properties of the stores make an empty probe conclusive, and a store must keep both:
/// spans are read one after another in the order given (the coarse row before the probes), each
/// read seeing the store as of then or later; and the rows one commit adds to a day become
/// visible together, or the finer ones first (SQLite commits in one transaction; ClickHouse
/// inserts a day's rows in one block, minute rows first). A probe read after the coarse row then
/// sees every later-stamped event the coarse row holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoarserRowsPlan {
    /// The spans to read: the window's spans before `coarse`, then `coarse`, then the probes.
    pub spans: Vec<Span>,
    /// The day's or the hour's own rows, in place of [`CoarserRowsPlan::trailing`].
    pub coarse: Span,
    /// The window's trailing spans that `coarse` stands for (today's hours and the current
    /// hour's minutes so far): what to read instead when a probe finds a row.
    pub trailing: Vec<Span>,
    /// The rest of that day or hour, after the window's end. If any row comes back from them, the
    /// coarse rows hold events the window does not, and the plan is void for them.
    pub probes: Vec<Span>,
}

impl CoarserRowsPlan {
    /// Takes the rows read by [`CoarserRowsPlan::spans`] (`at` gives a row's resolution and
    /// bucket). When a probe found a row, the coarse rows hold events the window does not: they
    /// and the probes' rows are dropped, and the spans to read in their place are returned.
    pub fn settle<R>(
        &self,
        rows: &mut Vec<R>,
        at: impl Fn(&R) -> (Resolution, i64),
    ) -> Option<&[Span]> {
        if !rows.iter().any(|r| {
            let (resolution, bucket) = at(r);
            self.probed(resolution, bucket)
        }) {
            return None;
        }
        rows.retain(|r| {
            let (resolution, bucket) = at(r);
            !self.may_drop(resolution, bucket)
        });
        Some(&self.trailing)
    }

    /// Whether [`settle`](Self::settle) may drop the row of `resolution` starting at `bucket`
    /// (the coarse rows and the probes' rows): a reader that folds rows as they come holds these
    /// back until the plan is settled.
    pub fn may_drop(&self, resolution: Resolution, bucket: i64) -> bool {
        self.coarse.holds(resolution, bucket) || self.probed(resolution, bucket)
    }

    /// Whether the row of `resolution` starting at `bucket` is one a probe reads.
    fn probed(&self, resolution: Resolution, bucket: i64) -> bool {
        self.probes.iter().any(|p| p.holds(resolution, bucket))
    }
}

/// A window that ends now ends partway through the current day (and, unless it ends on the hour,
/// the current hour), so its spans end with today's hours and the current hour's minutes so far:
/// up to 23 + 59 rows per combination of dimensions, each with full-size sketches (a minute of a
/// busy feature holds hundreds of users). The day's (or the hour's) own row holds the same
/// events, and only one more kind: events stamped later than the window's end, which can only be
/// ahead of the clock (ingest takes events up to 5 minutes in the future). So when the rest of
/// the day (or hour) holds no row, that one row *is* the trailing rows merged, exactly, sketches
/// included.
///
/// `widest_s` is the widest row the caller may be handed: its chart step (a row must fall in
/// one step), or a day when it only totals or groups by day. The day is tried first, then the
/// hour (so with steps under a day only the current hour's minutes are replaced). There is no
/// plan when the window ended by `now_s` (its day's later rows would be full: no use probing),
/// when the window ends on the unit's boundary (it already reads whole rows), or when no span
/// starts at the unit's start (a span that crosses it, as an hour span joined across midnight).
pub fn by_coarser_rows(spans: &[Span], now_s: i64, widest_s: i64) -> Option<CoarserRowsPlan> {
    let end = spans.last()?.to;
    if end <= now_s || spans.iter().any(|s| s.to > end) {
        return None;
    }
    for (resolution, unit) in [(Resolution::Day, DAY), (Resolution::Hour, HOUR)] {
        let start = floor(end - 1, unit);
        let stop = start + unit;
        if unit > widest_s || end == stop {
            continue;
        }
        let Some(i) = spans.iter().position(|s| s.from == start) else {
            continue;
        };
        let (before, trailing) = spans.split_at(i);
        let contiguous = trailing.windows(2).all(|w| w[0].to == w[1].from);
        if !contiguous || before.iter().any(|s| s.to > start) {
            continue;
        }
        let hour_end = ceil(end, HOUR).min(stop);
        let probes: Vec<Span> = [
            (Resolution::Minute, end, hour_end),
            (Resolution::Hour, hour_end, stop),
        ]
        .into_iter()
        .filter(|&(_, from, to)| from < to)
        .map(|(resolution, from, to)| Span {
            resolution,
            from,
            to,
        })
        .collect();
        let coarse = Span {
            resolution,
            from: start,
            to: stop,
        };
        let mut read = before.to_vec();
        read.push(coarse);
        read.extend(probes.iter().copied());
        return Some(CoarserRowsPlan {
            spans: read,
            coarse,
            trailing: trailing.to_vec(),
            probes,
        });
    }
    None
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

    /// Rows of `folded` that `spans` select, as a store's scan would.
    fn read(
        folded: &std::collections::BTreeMap<crate::rollup::RollupKey, crate::rollup::Rollup>,
        spans: &[Span],
    ) -> Vec<(crate::rollup::RollupKey, crate::rollup::Rollup)> {
        folded
            .iter()
            .filter(|(k, _)| spans.iter().any(|s| s.holds(k.resolution, k.bucket)))
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }

    fn usage_event(i: u64, second: i64) -> tally_schemas::UsageEvent {
        tally_schemas::UsageEvent {
            event_id: format!("e{i}"),
            occurred_at_us: second * 1_000_000 + 7,
            model: ["m1", "m2"][(i % 2) as usize].into(),
            latency_us: i * 7_919 % 3_000_000,
            user_id: Some(format!("u{}", i % 23)),
            ..tally_schemas::UsageEvent::example()
        }
    }

    mod coarser_rows {
        use super::*;
        use crate::rollup::{fold, Rollup, RollupTotal};
        use proptest::prelude::*;

        proptest! {
            /// Reading by the plan when its probes come back empty, and by the spans otherwise,
            /// gives per chart step exactly the events of the window folded directly: the same
            /// counts, sums, latency buckets and users, whether or not some events were stamped
            /// ahead of the clock.
            #[test]
            fn reading_coarser_rows_counts_exactly_the_windows_events(
                seconds in prop::collection::vec(-3 * DAY..0i64, 1..150),
                ahead in prop::collection::vec(0i64..300, 0..4),
                now_in_day in 0i64..DAY,
                length in prop::sample::select(vec![HOUR, 3 * HOUR, DAY, 2 * DAY, 7 * DAY, 30 * DAY]),
                // A window asked for by its bounds may end after now (up to two hours on).
                custom_end in prop::option::of(0i64..2 * HOUR),
            ) {
                let now = 1_767_225_600 + 40 * DAY + now_in_day; // on 2026-02-10
                let events: Vec<_> = seconds
                    .iter()
                    .chain(ahead.iter())
                    .enumerate()
                    .map(|(i, &s)| usage_event(i as u64, now + s))
                    .collect();
                let folded = fold(&events);
                let window = match custom_end {
                    None => Window::last(Duration::seconds(length), at(now)),
                    Some(after) => Window::between(at(now + after - length), at(now + after))
                        .expect("a window"),
                };
                let step = step_for(window.len_s());
                let spans = window.stepped_spans(step);
                let rows = match by_coarser_rows(&spans, now, step) {
                    Some(plan) => {
                        let mut rows = read(&folded, &plan.spans);
                        if let Some(trailing) = plan.settle(&mut rows, |(k, _)| (k.resolution, k.bucket)) {
                            rows.extend(read(&folded, trailing));
                        }
                        rows
                    }
                    None => read(&folded, &spans),
                };
                let starts = window.steps(step);
                let mut by_rows = vec![RollupTotal::new(); starts.len()];
                for (key, rollup) in &rows {
                    let i = ((key.bucket - starts[0]) / step) as usize;
                    by_rows[i].add(rollup);
                }
                let mut direct = vec![Rollup::default(); starts.len()];
                for e in &events {
                    let t = e.occurred_at_us.div_euclid(1_000_000);
                    if t >= window.from && t < window.to {
                        direct[((t - starts[0]) / step) as usize].add_event(e);
                    }
                }
                let by_rows: Vec<Rollup> = by_rows.into_iter().map(RollupTotal::rollup).collect();
                prop_assert_eq!(by_rows, direct);
            }
        }

        fn at(now: i64) -> DateTime<Utc> {
            DateTime::from_timestamp(now, 0).unwrap_or_default()
        }

        #[test]
        fn the_widest_row_the_caller_takes_decides_the_plan() {
            let day = 1_767_225_600 + 40 * DAY;
            let hour = day + 5 * HOUR;
            let now = hour + 17 * MINUTE + 30;
            let minute_probe = Span {
                resolution: Resolution::Minute,
                from: hour + 18 * MINUTE,
                to: hour + HOUR,
            };
            // 30 days in day steps: today's row, probed by the rest of this hour's minutes
            // and the rest of today's hours.
            let w = Window::last(Duration::days(30), at(now));
            let plan = by_coarser_rows(&w.stepped_spans(DAY), now, DAY).expect("planned");
            assert_eq!(
                plan.probes,
                vec![
                    minute_probe,
                    Span {
                        resolution: Resolution::Hour,
                        from: hour + HOUR,
                        to: day + DAY
                    }
                ]
            );
            assert_eq!(
                plan.spans[plan.spans.len() - 3],
                Span {
                    resolution: Resolution::Day,
                    from: day,
                    to: day + DAY
                }
            );
            assert_eq!(
                plan.coarse,
                Span {
                    resolution: Resolution::Day,
                    from: day,
                    to: day + DAY
                }
            );
            assert_eq!(
                plan.trailing,
                vec![
                    Span {
                        resolution: Resolution::Hour,
                        from: day,
                        to: hour
                    },
                    Span {
                        resolution: Resolution::Minute,
                        from: hour,
                        to: hour + 18 * MINUTE
                    },
                ]
            );
            // A day in hour steps: the hour's row only.
            let w = Window::last(Duration::days(1), at(now));
            let plan = by_coarser_rows(&w.stepped_spans(HOUR), now, HOUR).expect("planned");
            assert_eq!(plan.probes, vec![minute_probe]);
            assert_eq!(
                plan.spans[plan.spans.len() - 2],
                Span {
                    resolution: Resolution::Hour,
                    from: hour,
                    to: hour + HOUR
                }
            );
            // The same windows read an hour later: they ended in the past.
            assert_eq!(
                by_coarser_rows(&w.stepped_spans(HOUR), now + HOUR, HOUR),
                None
            );
            // Five-minute steps take no coarser row, even where the last span starts on the hour.
            let w = Window::between(at(hour), at(hour + 31 * MINUTE)).expect("a window");
            assert_eq!(
                by_coarser_rows(&w.stepped_spans(5 * MINUTE), now, 5 * MINUTE),
                None
            );
            assert!(by_coarser_rows(&w.spans(), now, DAY).is_some());
            // A day ending on the hour: its hour rows form one span across midnight (no span
            // starts at the day's start) and its last hour is whole.
            let w = Window::between(at(hour - DAY), at(hour)).expect("a window");
            assert_eq!(by_coarser_rows(&w.spans(), hour - 30, DAY), None);
            // Thirty days ending on the hour, in day steps: today's row, probed by the rest of
            // today's hours only.
            let w = Window::between(at(hour - 30 * DAY), at(hour)).expect("a window");
            let plan = by_coarser_rows(&w.stepped_spans(DAY), hour - 30, DAY).expect("planned");
            assert_eq!(
                plan.trailing,
                vec![Span {
                    resolution: Resolution::Hour,
                    from: day,
                    to: hour
                }]
            );
            assert_eq!(
                plan.probes,
                vec![Span {
                    resolution: Resolution::Hour,
                    from: hour,
                    to: day + DAY
                }]
            );
        }
    }

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
