//! `occurred_at` read from its JSON string: the one form nearly every client sends,
//! `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, by direct arithmetic; anything else by chrono's
//! own parser, so the accepted inputs and the error messages are chrono's.
//!
//! chrono's parser is general (formats, padding, leniency) and was 2–3 % of the server's CPU at
//! full ingest (one call per event).
//!
//! Invariant: for every string, [`utc`] gives what `str::parse::<DateTime<Utc>>` gives; the
//! fast path answers only strings it reads completely and validly, and gives way otherwise.

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};

/// Deserializes a `DateTime<Utc>` as chrono's `Deserialize` does, faster for the usual form.
pub fn utc<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    struct Rfc3339;
    impl Visitor<'_> for Rfc3339 {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
            match fast(s) {
                Some(t) => Ok(t),
                None => s.parse().map_err(E::custom),
            }
        }
    }
    deserializer.deserialize_str(Rfc3339)
}

/// `s` when it is exactly `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)` with a year 1000–9999 and
/// valid fields (no leap second); `None` for anything else (chrono decides).
pub fn fast(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let (month, day) = (digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1000..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(&tail[..n])? * 10u32.pow(9 - n as u32);
        rest = &tail[n..];
    }
    let offset_s: i64 = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 3600 + m * 60);
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_s;
    DateTime::from_timestamp(secs, nanos)
}

/// The number the ASCII digits `b` write; `None` if any byte is not a digit.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono(s: &str) -> Option<DateTime<Utc>> {
        s.parse().ok()
    }

    #[test]
    fn the_usual_forms_read_as_chrono_reads_them() {
        for s in [
            "2026-03-01T12:00:00Z",
            "2026-03-01T12:00:00.5Z",
            "2026-12-05T14:21:10.123Z",
            "2024-02-29T23:59:59.999999999Z",
            "2026-03-01T12:00:00+05:30",
            "2026-03-01T00:10:00-01:00",
            "1970-01-01T00:00:00Z",
            "1000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.123456+23:59",
        ] {
            assert_eq!(fast(s), chrono(s), "{s}");
            assert!(fast(s).is_some(), "{s}");
        }
        // By hand: 2026-03-01T12:00:00+05:30 is 06:30 UTC, 1,772,346,600 s after the epoch.
        assert_eq!(
            fast("2026-03-01T12:00:00+05:30").map(|t| t.timestamp()),
            Some(1_772_346_600)
        );
    }

    #[test]
    fn anything_else_is_left_to_chrono() {
        for s in [
            "2026-03-01 12:00:00Z",
            "2026-03-01t12:00:00z",
            "2025-02-29T12:00:00Z",
            "2026-04-31T12:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T12:00:60Z",
            "2026-03-01T12:00:00.Z",
            "2026-03-01T12:00:00.1234567891Z",
            "2026-03-01T12:00:00+0530",
            "2026-03-01T12:00:00",
            "0999-03-01T12:00:00Z",
            "+2026-03-01T12:00:00Z",
            "2026-03-01T12:00:00Z ",
            "２026-03-01T12:00:00Z",
        ] {
            assert_eq!(fast(s), None, "{s}");
        }
    }

    proptest! {
        /// Whatever the string — near-misses of the usual form included — the fast path
        /// either gives way or agrees with chrono.
        #[test]
        fn the_fast_path_never_disagrees_with_chrono(
            s in prop_oneof![
                "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,11})?(Z|[+-][0-9]{2}:[0-9]{2})",
                "[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
                "\\PC{0,30}",
            ]
        ) {
            if let Some(t) = fast(&s) {
                prop_assert_eq!(Some(t), chrono(&s), "{}", s);
            }
        }

        /// Every instant of years 1000–9999, written the usual way, reads back exactly.
        #[test]
        fn every_instant_reads_back(secs in -30_610_224_000i64..253_402_300_800, nanos in 0u32..1_000_000_000) {
            let t = DateTime::from_timestamp(secs, nanos).expect("in range");
            let s = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            prop_assert_eq!(fast(&s), Some(t), "{}", s);
        }
    }
}
