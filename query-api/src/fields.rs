//! The JSON Schemas of request-body fields whose rules the handlers check — slugs, lengths,
//! names, URLs, dollar amounts — so the API contract states what the server accepts and a client
//! generated from it sends only that. Used as `#[schemars(schema_with = "…")]` on body fields
//! (with `#[serde(default)]` on optional ones, so they stay optional in the contract).
//!
//! A field schema may be narrower than the server (an optional field is documented without
//! `null`, which the server also takes as absent), never wider.

use schemars::gen::SchemaGenerator;
use schemars::schema::Schema;
use serde_json::{json, Value};
use tally_http::route::SLUG_PATTERN;

/// Holds a character that is whitespace neither to ECMA-262's `\s` nor to Rust's `trim` (which
/// also counts U+0085).
const NOT_BLANK: &str = "[^\\s\\u0085]";

/// Starts and ends with such a character: text that `trim` leaves as it is.
const TRIMMED: &str = "^[^\\s\\u0085]([\\s\\S]*[^\\s\\u0085])?$";

fn schema(value: Value) -> Schema {
    serde_json::from_value(value).unwrap_or(Schema::Bool(true))
}

/// A slug (`tally_schemas::validate::check_slug`).
pub fn slug(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "string", "pattern": SLUG_PATTERN}))
}

/// A list of slugs.
pub fn slugs(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "array", "items": {"type": "string", "pattern": SLUG_PATTERN}}))
}

/// A display name: 1 to 200 characters, not all blank.
pub fn display_name(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK}))
}

/// An API key's name: 1 to 100 characters once trimmed.
pub fn key_name(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "string", "minLength": 1, "maxLength": 100, "pattern": TRIMMED}))
}

/// Text that is not blank (a budget's or experiment's name).
pub fn text(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "string", "minLength": 1, "pattern": NOT_BLANK}))
}

/// The name of an environment variable: `A-Z 0-9 _`, not starting with a digit, ≤ 128.
pub fn env_name(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "string", "pattern": "^[A-Z_][A-Z0-9_]{0,127}$"}))
}

/// An `http://` or `https://` URL with a host, without whitespace (Rust's `char::is_whitespace`
/// also counts U+0085, which ECMA-262's `\s` does not).
pub fn http_url(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "string", "pattern": "^https?://[^/\\s\\u0085][^\\s\\u0085]*$"}))
}

/// Any JSON object.
pub fn object(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "object"}))
}

/// Dollars below a million, at most 6 decimal places: a decimal string, or a whole number.
/// (The server's exact amounts end at about 9.2 million dollars.)
pub fn dollars(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"anyOf": [
        {"type": "string", "pattern": "^[0-9]{1,6}(\\.[0-9]{1,6})?$"},
        {"type": "integer", "minimum": 0, "maximum": 999_999},
    ]}))
}

/// Dollars greater than zero and below a million, at most 6 decimal places.
pub fn positive_dollars(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"anyOf": [
        {"type": "string", "pattern": "^([1-9][0-9]{0,5}(\\.[0-9]{1,6})?|0\\.[0-9]{0,5}[1-9])$"},
        {"type": "integer", "minimum": 1, "maximum": 999_999},
    ]}))
}

/// An IANA time zone name.
pub fn time_zone(_: &mut SchemaGenerator) -> Schema {
    let names: Vec<&str> = tally_domain::config::time_zone_names().collect();
    schema(json!({"type": "string", "enum": names}))
}

/// Prompt content: 1 to 100,000 characters, not all blank; `{{name}}` marks a variable.
pub fn prompt_content(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "string", "minLength": 1, "maxLength": 100_000, "pattern": NOT_BLANK,
        "description": "{{name}} marks a variable (letters, digits and _, not starting with a digit); every {{ needs its }}",
    }))
}

/// Budget thresholds: percentages of the amount from 1 to 1000, ascending.
pub fn thresholds(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "array", "minItems": 1, "uniqueItems": true,
                  "items": {"type": "integer", "minimum": 1, "maximum": 1000},
                  "description": "Ascending"}))
}

/// Values of a prompt's variables: text, numbers or booleans, by variable name.
pub fn variable_values(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "object",
                  "additionalProperties": {"type": ["string", "number", "boolean"]}}))
}

/// A prompt's variable names.
pub fn variable_names(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "array", "uniqueItems": true,
                  "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::gen::SchemaSettings;

    fn pattern(f: fn(&mut SchemaGenerator) -> Schema) -> regex::Regex {
        let mut generator = SchemaSettings::draft2019_09().into_generator();
        let value = serde_json::to_value(f(&mut generator)).expect("a schema");
        regex::Regex::new(value["pattern"].as_str().expect("a pattern")).expect("a regex")
    }

    #[test]
    fn patterns_accept_what_the_handlers_accept() {
        let env = pattern(env_name);
        assert!(env.is_match("OPENAI_API_KEY") && env.is_match("_X1"));
        assert!(!env.is_match("1X") && !env.is_match("sk-abc") && !env.is_match(""));
        let url = pattern(http_url);
        assert!(url.is_match("https://api.example.com/v1") && url.is_match("http://h"));
        assert!(!url.is_match("https://") && !url.is_match("https:///x"));
        assert!(!url.is_match("ftp://h") && !url.is_match("http://a b"));
        assert!(!url.is_match("http://a\u{85}b") && !url.is_match("http://\u{85}"));
        let key = pattern(key_name);
        assert!(key.is_match("ci") && key.is_match("a b") && key.is_match("a\nb"));
        assert!(!key.is_match(" a") && !key.is_match("a ") && !key.is_match("a\u{85}"));
        let blank = pattern(display_name);
        assert!(blank.is_match(" x ") && !blank.is_match(" \u{85}\t"));
    }
}
