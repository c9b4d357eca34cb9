//! Exact money.
//!
//! All costs are integer **pico-dollars** (1 pUSD = 1e-12 USD). Per-token prices are stored as
//! micro-dollars per million tokens, so `tokens × price` is already pico-dollars: pricing never
//! divides and never rounds. A single event's cost fits `i64` (up to ~9.2 million USD); sums are
//! `i128`. Values only become decimal text at the API edge ([`Pico::to_decimal_string`]) and only
//! become floats for display ([`Pico::to_usd_f64_micro_rounded`]).

use std::fmt;

/// Pico-dollars per US dollar.
pub const PICOS_PER_USD: i128 = 1_000_000_000_000;
/// Pico-dollars per micro-dollar.
pub const PICOS_PER_MICRO: i128 = 1_000_000;
/// The most decimal places a sent `cost_usd` may have and still be kept exactly.
pub const MAX_COST_DECIMALS: usize = 12;

/// An exact amount of money in pico-dollars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pico(pub i128);

/// Why a decimal amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal number")]
    NotDecimal,
    #[error("must not be negative")]
    Negative,
    #[error("has more than {MAX_COST_DECIMALS} decimal places")]
    TooPrecise,
    #[error("is too large")]
    TooLarge,
}

impl Pico {
    pub const ZERO: Pico = Pico(0);

    /// Parses a plain decimal (`"0.0125"`, `"3"`, `"1e-3"` as sent in JSON) exactly.
    ///
    /// Accepts the JSON number grammar (sign, digits, fraction, exponent) so that a JSON number
    /// literal can be read from its raw text without ever passing through `f64`.
    pub fn parse_usd(text: &str) -> Result<Pico, MoneyError> {
        let text = text.trim();
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(pos) => {
                let exp: i32 = body[pos + 1..]
                    .parse()
                    .map_err(|_| MoneyError::NotDecimal)?;
                (&body[..pos], exp)
            }
            None => (body, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(MoneyError::NotDecimal);
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(MoneyError::NotDecimal);
        }
        // digits = int_part ++ frac_part, value = digits × 10^(exponent − len(frac)).
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let scale = exponent - frac_part.len() as i32 + MAX_COST_DECIMALS as i32;
        let mut value: i128 = 0;
        let significant = digits.trim_end_matches('0');
        let trailing_zeros = (digits.len() - significant.len()) as i32;
        if scale + trailing_zeros < 0 {
            return Err(MoneyError::TooPrecise);
        }
        for b in significant.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(b - b'0')))
                .ok_or(MoneyError::TooLarge)?;
        }
        let shift = scale + trailing_zeros;
        if shift > 30 && value != 0 {
            return Err(MoneyError::TooLarge);
        }
        for _ in 0..shift.max(0) {
            value = value.checked_mul(10).ok_or(MoneyError::TooLarge)?;
        }
        if value > i128::from(i64::MAX) {
            return Err(MoneyError::TooLarge);
        }
        if negative && value != 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Pico(value))
    }

    /// Exact decimal text in US dollars, with trailing zeros trimmed (at least 2 decimals).
    pub fn to_decimal_string(self) -> String {
        let negative = self.0 < 0;
        let abs = self.0.unsigned_abs();
        let whole = abs / PICOS_PER_USD as u128;
        let frac = abs % PICOS_PER_USD as u128;
        let mut frac_text = format!("{frac:012}");
        while frac_text.len() > 2 && frac_text.ends_with('0') {
            frac_text.pop();
        }
        format!("{}{whole}.{frac_text}", if negative { "-" } else { "" })
    }

    /// Rounds to whole micro-dollars, half away from zero.
    pub fn round_to_micros(self) -> i128 {
        let half = PICOS_PER_MICRO / 2;
        if self.0 >= 0 {
            (self.0 + half) / PICOS_PER_MICRO
        } else {
            -((-self.0 + half) / PICOS_PER_MICRO)
        }
    }

    /// US dollars rounded to the micro-dollar, as a float for JSON display. The decimal printed
    /// from this float is exactly the micro-dollar amount for any total below ~9 billion USD.
    pub fn to_usd_f64_micro_rounded(self) -> f64 {
        self.round_to_micros() as f64 / 1e6
    }

    pub fn checked_add(self, other: Pico) -> Option<Pico> {
        self.0.checked_add(other.0).map(Pico)
    }
}

impl std::ops::Add for Pico {
    type Output = Pico;
    fn add(self, rhs: Pico) -> Pico {
        Pico(self.0 + rhs.0)
    }
}

impl std::ops::AddAssign for Pico {
    fn add_assign(&mut self, rhs: Pico) {
        self.0 += rhs.0;
    }
}

impl std::iter::Sum for Pico {
    fn sum<I: Iterator<Item = Pico>>(iter: I) -> Pico {
        iter.fold(Pico::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Pico {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_decimals_exactly() {
        assert_eq!(Pico::parse_usd("0.1"), Ok(Pico(100_000_000_000)));
        assert_eq!(Pico::parse_usd("3"), Ok(Pico(3_000_000_000_000)));
        assert_eq!(Pico::parse_usd("0.000000000001"), Ok(Pico(1)));
        assert_eq!(
            Pico::parse_usd("12.345678901234"),
            Ok(Pico(12_345_678_901_234))
        );
        assert_eq!(Pico::parse_usd(".5"), Ok(Pico(500_000_000_000)));
        assert_eq!(
            Pico::parse_usd("0.10000000000000000000"),
            Ok(Pico(100_000_000_000))
        );
    }

    #[test]
    fn parses_exponents_exactly() {
        assert_eq!(Pico::parse_usd("1e-3"), Ok(Pico(1_000_000_000)));
        assert_eq!(Pico::parse_usd("2.5E2"), Ok(Pico(250_000_000_000_000)));
        assert_eq!(Pico::parse_usd("1e-12"), Ok(Pico(1)));
    }

    #[test]
    fn rejects_what_it_cannot_keep_exactly() {
        assert_eq!(
            Pico::parse_usd("0.0000000000001"),
            Err(MoneyError::TooPrecise)
        );
        assert_eq!(Pico::parse_usd("1e-13"), Err(MoneyError::TooPrecise));
        assert_eq!(Pico::parse_usd("-1"), Err(MoneyError::Negative));
        assert_eq!(Pico::parse_usd("abc"), Err(MoneyError::NotDecimal));
        assert_eq!(Pico::parse_usd(""), Err(MoneyError::NotDecimal));
        assert_eq!(Pico::parse_usd("1e40"), Err(MoneyError::TooLarge));
        assert_eq!(Pico::parse_usd("99999999999"), Err(MoneyError::TooLarge));
    }

    #[test]
    fn formats_and_rounds() {
        assert_eq!(Pico(1).to_decimal_string(), "0.000000000001");
        assert_eq!(Pico(3_000_000_000_000).to_decimal_string(), "3.00");
        assert_eq!(Pico(1_234_500_000).to_decimal_string(), "0.0012345");
        assert_eq!(Pico(499_999).round_to_micros(), 0);
        assert_eq!(Pico(500_000).round_to_micros(), 1);
        assert_eq!(Pico(-500_000).round_to_micros(), -1);
        assert_eq!(
            Pico(12_345_678_500_000).to_usd_f64_micro_rounded(),
            12.345679
        );
    }

    proptest::proptest! {
        #[test]
        fn decimal_text_round_trips(p in 0i64..i64::MAX) {
            let text = Pico(i128::from(p)).to_decimal_string();
            proptest::prop_assert_eq!(Pico::parse_usd(&text), Ok(Pico(i128::from(p))));
        }
    }
}
