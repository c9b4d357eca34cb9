//! A score: user feedback or an evaluator's grade attached to a usage event by its `event_id`
//! (`POST /v1/scores`). On the wire ([`ScoreV1`]) a score carries a `value` (a number) or a
//! `label` (a category); validated ([`Score`]) a number is kept as an integer count of
//! millionths ([`ScoreValue::Micros`]), so sums, means and replays are exact and equal in every
//! store.
//!
//! Invariants: a `Score` is valid by construction (ids and label are bounded text, the name a
//! slug, a number finite and within ±[`MAX_SCORE_VALUE`]); exactly one of value and label.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{check_slug, check_text, FieldError};

/// The largest magnitude of a numeric score.
pub const MAX_SCORE_VALUE: f64 = 1e9;

/// Numeric scores are kept to this many parts per unit (six decimal places).
pub const SCORE_SCALE: i64 = 1_000_000;

/// One score as clients send it (schema v1).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Score",
    description = "A score attached to a usage event: a number (`value`) or a category (`label`)."
)]
pub struct ScoreV1 {
    /// Client-chosen idempotency key (1–128 characters): a score sent again with the same id
    /// counts once, whenever it arrives.
    #[schemars(length(min = 1, max = 128))]
    pub score_id: String,
    /// The `event_id` of the usage event this score grades. The event may arrive later: the
    /// score is kept and joined to it when it does.
    #[schemars(length(min = 1, max = 128))]
    pub event_id: String,
    /// What is scored, a slug such as `helpfulness` or `thumbs`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._:/-]{0,127}$"))]
    pub name: String,
    /// A numeric score (finite, at most 1e9 in magnitude, kept to six decimal places).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// A categorical score such as `good` (1–128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub label: Option<String>,
}

/// What a score says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScoreValue {
    /// A number in millionths ([`SCORE_SCALE`]).
    Micros(i64),
    Label(String),
}

/// A validated score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    pub score_id: String,
    pub event_id: String,
    pub name: String,
    pub value: ScoreValue,
}

impl Score {
    /// A valid numeric score (for tests and examples).
    pub fn number(score_id: &str, event_id: &str, name: &str, micros: i64) -> Score {
        Score {
            score_id: score_id.into(),
            event_id: event_id.into(),
            name: name.into(),
            value: ScoreValue::Micros(micros),
        }
    }
}

impl From<&Score> for ScoreV1 {
    fn from(s: &Score) -> ScoreV1 {
        let (value, label) = match &s.value {
            ScoreValue::Micros(m) => (Some(*m as f64 / SCORE_SCALE as f64), None),
            ScoreValue::Label(l) => (None, Some(l.clone())),
        };
        ScoreV1 {
            score_id: s.score_id.clone(),
            event_id: s.event_id.clone(),
            name: s.name.clone(),
            value,
            label,
        }
    }
}

/// Applies the score rules to one parsed score.
pub fn validate_score(wire: ScoreV1) -> Result<Score, FieldError> {
    check_text("score_id", &wire.score_id, 128)?;
    check_text("event_id", &wire.event_id, 128)?;
    check_slug("name", &wire.name)?;
    let value = match (wire.value, wire.label) {
        (Some(v), None) => {
            if !v.is_finite() || v.abs() > MAX_SCORE_VALUE {
                return Err(FieldError::new(
                    "value",
                    "must be a finite number between -1000000000 and 1000000000",
                ));
            }
            ScoreValue::Micros((v * SCORE_SCALE as f64).round() as i64)
        }
        (None, Some(label)) => {
            check_text("label", &label, 128)?;
            ScoreValue::Label(label)
        }
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "label",
                "give either value (a number) or label (a category), not both",
            ))
        }
        (None, None) => {
            return Err(FieldError::new(
                "value",
                "is required: give value (a number) or label (a category)",
            ))
        }
    };
    Ok(Score {
        score_id: wire.score_id,
        event_id: wire.event_id,
        name: wire.name,
        value,
    })
}

/// The JSON Schema of a score, as served in the contract.
pub fn score_json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ScoreV1)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{parse_items, BodyFormat};

    fn parse(body: &str) -> (Vec<(usize, Score)>, Vec<crate::EventError>) {
        parse_items(
            body.as_bytes(),
            BodyFormat::JsonArray,
            100,
            "score",
            validate_score,
        )
        .map(|parsed| (parsed.accepted, parsed.errors))
        .expect("a body")
    }

    #[test]
    fn numbers_are_kept_in_millionths_and_labels_as_text() {
        let (ok, errors) = parse(
            r#"[{"score_id":"s1","event_id":"e1","name":"helpfulness","value":0.1},
                {"score_id":"s2","event_id":"e1","name":"helpfulness","value":-4.0000006},
                {"score_id":"s3","event_id":"e2","name":"thumbs","label":"up"}]"#,
        );
        assert!(errors.is_empty(), "{errors:?}");
        // 0.1 · 10⁶ = 100 000; −4.0000006 · 10⁶ = −4 000 000.6, to the nearest millionth.
        assert_eq!(ok[0].1.value, ScoreValue::Micros(100_000));
        assert_eq!(ok[1].1.value, ScoreValue::Micros(-4_000_001));
        assert_eq!(ok[2].1.value, ScoreValue::Label("up".into()));
    }

    #[test]
    fn each_bad_score_is_refused_with_its_field() {
        let (ok, errors) = parse(
            r#"[{"score_id":"s1","event_id":"e1","name":"x","value":1,"label":"a"},
                {"score_id":"s2","event_id":"e1","name":"x"},
                {"score_id":"s3","event_id":"e1","name":"Not A Slug","value":1},
                {"score_id":"","event_id":"e1","name":"x","value":1},
                {"score_id":"s5","event_id":"e1","name":"x","value":1e10},
                {"score_id":"s6","event_id":"e1","name":"x","value":"high"},
                {"score_id":"s7","event_id":"e1","name":"x","value":2,"weight":3},
                {"score_id":"s8","event_id":"e1","name":"x","label":""},
                {"score_id":"s9","event_id":"e1","name":"x","value":2}]"#,
        );
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].0, 8);
        let fields: Vec<(usize, Option<&str>)> = errors
            .iter()
            .map(|e| (e.index, e.field.as_deref()))
            .collect();
        assert_eq!(
            fields,
            vec![
                (0, Some("label")),
                (1, Some("value")),
                (2, Some("name")),
                (3, Some("score_id")),
                (4, Some("value")),
                (5, Some("value")),
                (6, Some("weight")),
                (7, Some("label")),
            ]
        );
        assert_eq!(errors[6].reason, "is not a field of score");
    }

    #[test]
    fn the_wire_form_gives_back_what_was_sent() {
        let score = Score::number("s", "e", "n", 2_500_000);
        let wire = ScoreV1::from(&score);
        assert_eq!(wire.value, Some(2.5));
        assert_eq!(validate_score(wire).expect("valid"), score);
    }
}
