//! Exact dollar amounts in configuration bodies (prices, budgets): read from a JSON number or a
//! decimal string into whole micro-dollars without passing through a float, and written back
//! as exact decimal text.

use serde_json::Value;
use tally_http::http::{invalid, ApiError};
use tally_schemas::Pico;

/// `value` (dollars, at most 6 decimal places, not negative) in micro-dollars; a `422` naming
/// `field` otherwise.
pub fn micros_from_json(field: &str, value: &Value) -> Result<i64, ApiError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(invalid(field, "must be a decimal number of dollars")),
    };
    let pico = Pico::parse_usd(&text)
        .map_err(|e| invalid(field, format!("must be a decimal number of dollars: {e}")))?;
    if pico.0 < 0 {
        return Err(invalid(field, "must not be negative"));
    }
    if pico.0 % 1_000_000 != 0 {
        return Err(invalid(field, "has more than 6 decimal places"));
    }
    i64::try_from(pico.0 / 1_000_000).map_err(|_| invalid(field, "is too large"))
}

/// Micro-dollars as exact decimal dollars (`"2.50"`).
pub fn usd_of_micros(micros: i64) -> String {
    Pico(i128::from(micros) * 1_000_000).to_decimal_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_exact() {
        assert_eq!(micros_from_json("a", &json!("2.5")).ok(), Some(2_500_000));
        assert_eq!(micros_from_json("a", &json!(10)).ok(), Some(10_000_000));
        assert_eq!(micros_from_json("a", &json!("0.000001")).ok(), Some(1));
        for bad in [json!("0.0000001"), json!("-1"), json!(true), json!("two")] {
            let err = micros_from_json("a", &bad).expect_err("refused");
            assert_eq!(err.field.as_deref(), Some("a"), "{bad}");
        }
        assert_eq!(usd_of_micros(2_500_000), "2.50");
        assert_eq!(usd_of_micros(1_500_500_000), "1500.50");
    }
}
