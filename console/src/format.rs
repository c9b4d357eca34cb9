//! How the console writes numbers (`../shared/CONSOLE.md`, "Numbers"): money from the API's
//! exact decimal strings (`$1,234.56`; below a dollar, enough digits to be non-zero), counts
//! with thousands separators, rates with one decimal, latency in ms below 10 s, times relative
//! with the absolute time beside.
//!
//! Invariant: these only write numbers the API answered; nothing here adds numbers up.

use chrono::{DateTime, Utc};

/// Pico-dollars in a dollar: the API's `*_usd` strings are exact to 12 decimals.
const PICO: i128 = 1_000_000_000_000;

/// Parses an exact decimal string (`"-12.5"`, `"0.000000000001"`) into pico-dollars; `None`
/// when it is not one or has more than 12 decimals.
pub fn pico_dollars(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || fraction.len() > 12
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i128 = whole.parse().ok()?;
    let fraction: i128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i128>().ok()? * 10i128.pow(12 - fraction.len() as u32)
    };
    let value = whole.checked_mul(PICO)?.checked_add(fraction)?;
    Some(if negative { -value } else { value })
}

/// Money from an exact decimal string: `$1,234.56`, `$0.0042`, `-$3.10`. Text that is not a
/// decimal is shown as it came.
pub fn money(text: &str) -> String {
    let Some(value) = pico_dollars(text) else {
        return text.to_string();
    };
    let magnitude = value.unsigned_abs();
    // Two decimals, or below a dollar two significant digits (at most 12 decimals).
    let decimals = if magnitude == 0 || magnitude >= PICO as u128 {
        2
    } else {
        let mut d = 2u32;
        while d < 12 && magnitude < 10u128.pow(12 - d) * 10 {
            d += 1;
        }
        d
    };
    let unit = 10u128.pow(12 - decimals);
    let mut rounded = (magnitude + unit / 2) / unit;
    let mut decimals = decimals;
    while decimals > 2 && rounded.is_multiple_of(10) {
        rounded /= 10;
        decimals -= 1;
    }
    let scale = 10u128.pow(decimals);
    let (whole, fraction) = (rounded / scale, rounded % scale);
    let sign = if value < 0 && rounded != 0 { "-" } else { "" };
    format!(
        "{sign}${}.{fraction:0width$}",
        grouped(whole),
        width = decimals as usize
    )
}

/// Money from a JSON answer's exact string field (or `—` when absent).
pub fn money_of(value: &serde_json::Value) -> String {
    value.as_str().map_or_else(|| "—".to_string(), money)
}

/// `1234567` → `1,234,567`.
pub fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count from JSON (`—` when absent).
pub fn count(value: &serde_json::Value) -> String {
    match value.as_u64() {
        Some(n) => grouped(u128::from(n)),
        None => value
            .as_f64()
            .map_or_else(|| "—".to_string(), |f| grouped(f.round().max(0.0) as u128)),
    }
}

/// A percentage (the API's rates are already in percent): `2.4%`.
pub fn percent(value: &serde_json::Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "—".to_string(), |p| format!("{p:.1}%"))
}

/// Latency in ms: `812 ms`, `1,398 ms`, `0.8 ms`, `12.3 s`; `—` when there was none.
pub fn latency(value: &serde_json::Value) -> String {
    let Some(ms) = value.as_f64() else {
        return "—".to_string();
    };
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", grouped(ms.round() as u128))
    }
}

/// A change against the previous period, with an arrow and a sign: `▲ +12.4%`.
pub fn change(percent: f64) -> String {
    if percent.abs() < 0.05 {
        "■ 0.0%".to_string()
    } else if percent > 0.0 {
        format!("▲ +{percent:.1}%")
    } else {
        format!("▼ −{:.1}%", -percent)
    }
}

/// `3 min ago`, `2 h ago`, `5 d ago` (or `in 3 min` for a time ahead of `now`).
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let (ahead, s) = (seconds < 0, seconds.unsigned_abs());
    let text = match s {
        0..=59 => return "just now".to_string(),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    if ahead {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// An absolute time, for tooltips and tables: `2026-12-01 14:03 UTC`.
pub fn absolute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An RFC 3339 time from JSON.
pub fn instant(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn money_is_written_from_the_exact_string() {
        assert_eq!(money("1234.567"), "$1,234.57");
        assert_eq!(money("1234.565"), "$1,234.57", "half up");
        assert_eq!(money("0"), "$0.00");
        assert_eq!(money("0.5"), "$0.50");
        assert_eq!(money("0.0042"), "$0.0042");
        assert_eq!(money("0.004251"), "$0.0043");
        assert_eq!(money("0.000000000001"), "$0.000000000001");
        assert_eq!(money("0.005"), "$0.005");
        assert_eq!(money("-3.1"), "-$3.10");
        assert_eq!(money("1000000"), "$1,000,000.00");
        assert_eq!(money("0.099999"), "$0.10");
        assert_eq!(money("not money"), "not money");
        assert_eq!(pico_dollars("1.0000000000001"), None, "13 decimals");
        assert_eq!(pico_dollars("12.5"), Some(12_500_000_000_000));
    }

    #[test]
    fn counts_rates_and_latencies() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(count(&json!(12345)), "12,345");
        assert_eq!(count(&Value::Null), "—");
        assert_eq!(percent(&json!(2.44)), "2.4%");
        assert_eq!(latency(&json!(1398.2)), "1,398 ms");
        assert_eq!(latency(&json!(0.84)), "0.8 ms");
        assert_eq!(latency(&json!(12_345.0)), "12.3 s");
        assert_eq!(latency(&Value::Null), "—");
        assert_eq!(change(12.44), "▲ +12.4%");
        assert_eq!(change(-3.06), "▼ −3.1%");
        assert_eq!(change(0.0), "■ 0.0%");
    }

    #[test]
    fn times_are_relative_with_an_absolute_form() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let ago = |s: i64| relative(now - chrono::Duration::seconds(s), now);
        assert_eq!(ago(30), "just now");
        assert_eq!(ago(180), "3 min ago");
        assert_eq!(ago(7200), "2 h ago");
        assert_eq!(ago(5 * 86_400), "5 d ago");
        assert_eq!(ago(-600), "in 10 min");
        assert_eq!(absolute(now), "2026-12-01 12:00 UTC");
    }
}
