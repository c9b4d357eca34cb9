//! Calendar periods in a time zone: the day, the week (starting on Monday), the month or the
//! quarter that holds an instant, as the zone's clocks show it.
//!
//! A period starts at local midnight of its first day. Where that midnight does not exist
//! (a zone that moves its clocks forward at midnight) the period starts at the first local
//! instant that does; where it happens twice (clocks moved back across midnight) at the first.
//! So periods are contiguous and never overlap: one period's end is the next one's start, and
//! a day across a DST change lasts 23 or 25 hours.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::BudgetPeriod;

/// `[start, end)` of one calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Tz>,
    pub end: DateTime<Tz>,
}

impl Period {
    /// The period of kind `kind` in zone `tz` that holds `now`.
    pub fn holding(kind: BudgetPeriod, tz: Tz, now: DateTime<Utc>) -> Period {
        let today = now.with_timezone(&tz).date_naive();
        let first = first_day(kind, today);
        let next = first_day_after(kind, first);
        Period {
            start: local_midnight(tz, first),
            end: local_midnight(tz, next),
        }
    }

    /// Length in microseconds.
    pub fn len_us(&self) -> i64 {
        (self.end - self.start)
            .num_microseconds()
            .unwrap_or(i64::MAX)
    }
}

fn first_day(kind: BudgetPeriod, day: NaiveDate) -> NaiveDate {
    let first_of_month = |month: u32| NaiveDate::from_ymd_opt(day.year(), month, 1).unwrap_or(day);
    match kind {
        BudgetPeriod::Daily => day,
        BudgetPeriod::Weekly => {
            day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
        }
        BudgetPeriod::Monthly => first_of_month(day.month()),
        BudgetPeriod::Quarterly => first_of_month((day.month() - 1) / 3 * 3 + 1),
    }
}

fn first_day_after(kind: BudgetPeriod, first: NaiveDate) -> NaiveDate {
    let months_on = |months: u32| {
        first
            .checked_add_months(chrono::Months::new(months))
            .unwrap_or(NaiveDate::MAX)
    };
    match kind {
        BudgetPeriod::Daily => first + Duration::days(1),
        BudgetPeriod::Weekly => first + Duration::days(7),
        BudgetPeriod::Monthly => months_on(1),
        BudgetPeriod::Quarterly => months_on(3),
    }
}

/// The first instant of `day` in `tz`.
fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Tz> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A gap is at most a few hours long: the first local minute after it exists.
    for minutes in 0..=24 * 60 {
        match tz.from_local_datetime(&(midnight + Duration::minutes(minutes))) {
            LocalResult::Single(t) => return t,
            LocalResult::Ambiguous(earliest, _) => return earliest,
            LocalResult::None => continue,
        }
    }
    tz.from_utc_datetime(&midnight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid instant")
            .with_timezone(&Utc)
    }

    fn period(kind: BudgetPeriod, tz: &str, now: &str) -> (String, String) {
        let p = Period::holding(kind, tz.parse().expect("zone"), at(now));
        (
            p.start.fixed_offset().to_rfc3339(),
            p.end.fixed_offset().to_rfc3339(),
        )
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn month_end_and_quarter_end_in_utc() {
        // The last second of January belongs to January; the next to February.
        assert_eq!(
            period(BudgetPeriod::Monthly, "UTC", "2026-01-31T23:59:59Z"),
            pair("2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00")
        );
        assert_eq!(
            period(BudgetPeriod::Monthly, "UTC", "2026-02-01T00:00:00Z"),
            pair("2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00")
        );
        // A leap year's February.
        assert_eq!(
            period(BudgetPeriod::Monthly, "UTC", "2028-02-29T12:00:00Z"),
            pair("2028-02-01T00:00:00+00:00", "2028-03-01T00:00:00+00:00")
        );
        assert_eq!(
            period(BudgetPeriod::Quarterly, "UTC", "2026-09-30T23:59:59Z"),
            pair("2026-07-01T00:00:00+00:00", "2026-10-01T00:00:00+00:00")
        );
        assert_eq!(
            period(BudgetPeriod::Quarterly, "UTC", "2026-12-31T23:00:00Z"),
            pair("2026-10-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
        );
    }

    #[test]
    fn the_zone_decides_which_period_an_instant_is_in() {
        // 23:30 UTC on 31 March is already 1 April in Berlin (UTC+2 in summer).
        assert_eq!(
            period(
                BudgetPeriod::Monthly,
                "Europe/Berlin",
                "2026-03-31T22:30:00Z"
            ),
            pair("2026-04-01T00:00:00+02:00", "2026-05-01T00:00:00+02:00")
        );
        // 03:00 UTC on 1 January is still 31 December in New York (UTC-5).
        assert_eq!(
            period(
                BudgetPeriod::Quarterly,
                "America/New_York",
                "2027-01-01T03:00:00Z"
            ),
            pair("2026-10-01T00:00:00-04:00", "2027-01-01T00:00:00-05:00")
        );
    }

    #[test]
    fn a_berlin_week_across_the_spring_change_lasts_167_hours() {
        // Summer time began on Sunday 29 March 2026 at 02:00 CET. Wednesday 25 March is in
        // the week from Monday 23 March (CET, +01:00) to Monday 30 March (CEST, +02:00).
        let p = Period::holding(
            BudgetPeriod::Weekly,
            "Europe/Berlin".parse().expect("zone"),
            at("2026-03-25T10:00:00Z"),
        );
        assert_eq!(
            p.start.fixed_offset().to_rfc3339(),
            "2026-03-23T00:00:00+01:00"
        );
        assert_eq!(
            p.end.fixed_offset().to_rfc3339(),
            "2026-03-30T00:00:00+02:00"
        );
        assert_eq!(p.len_us(), 167 * 3_600 * 1_000_000);
        // The Sunday of the change is a 23-hour day.
        let day = Period::holding(
            BudgetPeriod::Daily,
            "Europe/Berlin".parse().expect("zone"),
            at("2026-03-29T12:00:00Z"),
        );
        assert_eq!(day.len_us(), 23 * 3_600 * 1_000_000);
    }

    #[test]
    fn a_new_york_day_in_the_autumn_change_lasts_25_hours() {
        // Daylight time ended on Sunday 1 November 2026 at 02:00 EDT.
        let tz: Tz = "America/New_York".parse().expect("zone");
        let day = Period::holding(BudgetPeriod::Daily, tz, at("2026-11-01T20:00:00Z"));
        assert_eq!(
            day.start.fixed_offset().to_rfc3339(),
            "2026-11-01T00:00:00-04:00"
        );
        assert_eq!(
            day.end.fixed_offset().to_rfc3339(),
            "2026-11-02T00:00:00-05:00"
        );
        assert_eq!(day.len_us(), 25 * 3_600 * 1_000_000);
        // Weeks start on Monday: Sunday 1 November belongs to the week of Monday 26 October.
        let week = Period::holding(BudgetPeriod::Weekly, tz, at("2026-11-01T20:00:00Z"));
        assert_eq!(
            week.start.fixed_offset().to_rfc3339(),
            "2026-10-26T00:00:00-04:00"
        );
        assert_eq!(
            week.end.fixed_offset().to_rfc3339(),
            "2026-11-02T00:00:00-05:00"
        );
    }

    #[test]
    fn a_missing_midnight_starts_the_day_when_the_clocks_resume() {
        // Santiago moved its clocks from 00:00 to 01:00 on Sunday 6 September 2026:
        // that day starts at 01:00 local (-03:00), which is 04:00 UTC.
        let day = Period::holding(
            BudgetPeriod::Daily,
            "America/Santiago".parse().expect("zone"),
            at("2026-09-06T15:00:00Z"),
        );
        assert_eq!(
            day.start.fixed_offset().to_rfc3339(),
            "2026-09-06T01:00:00-03:00"
        );
        assert_eq!(day.len_us(), 23 * 3_600 * 1_000_000);
    }
}
