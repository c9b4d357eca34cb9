//! Test cases: a prompt's variables and a check on the output, run across models to compare
//! them (`/test-cases`). Whether a check is well formed (a regex compiles, a schema is a
//! schema) and how an output is graded are decided here, once, for every store and route.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::StoreError;

named_enum!(
    /// How an output is graded: `exact` (equal, surrounding whitespace aside), `contains` (the
    /// expected text appears), `regex` (the pattern matches somewhere), `json_schema` (the
    /// output is JSON valid against the schema), `none` (recorded, not graded).
    CheckKind { Exact => "exact", Contains => "contains", Regex => "regex", JsonSchema => "json_schema", None => "none" }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestCaseSpec {
    pub name: String,
    pub description: Option<String>,
    pub prompt_id: Uuid,
    /// Values of the prompt's variables.
    pub variables: BTreeMap<String, String>,
    pub check: CheckKind,
    /// `exact` and `contains`: the text; `regex`: the pattern; `json_schema`: the schema (an
    /// object); `none`: absent.
    pub expected: Option<Value>,
}

impl TestCaseSpec {
    /// The rules every store applies: a name, and an `expected` that fits the check.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.name.trim().is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        let text = || {
            self.expected
                .as_ref()
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    StoreError::invalid(
                        "expected",
                        format!("is required as a string for the {} check", self.check),
                    )
                })
        };
        match self.check {
            CheckKind::Exact => {
                text()?;
            }
            CheckKind::Contains => {
                if text()?.is_empty() {
                    return Err(StoreError::invalid("expected", "must not be empty"));
                }
            }
            CheckKind::Regex => {
                regex::Regex::new(text()?).map_err(|e| {
                    StoreError::invalid("expected", format!("is not a valid regex: {e}"))
                })?;
            }
            CheckKind::JsonSchema => {
                let schema = self
                    .expected
                    .as_ref()
                    .filter(|v| v.is_object())
                    .ok_or_else(|| {
                        StoreError::invalid(
                            "expected",
                            "is required as a JSON Schema object for the json_schema check",
                        )
                    })?;
                jsonschema::validator_for(schema).map_err(|e| {
                    StoreError::invalid("expected", format!("is not a valid JSON Schema: {e}"))
                })?;
            }
            CheckKind::None => {
                if self.expected.is_some() {
                    return Err(StoreError::invalid(
                        "expected",
                        "must be absent for the none check",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestCase {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: TestCaseSpec,
    /// The prompt's feature, when it has one.
    pub feature: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An output's grade: `passed` is `None` for the `none` check (recorded only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Grade {
    pub passed: Option<bool>,
    /// Why, in words (what did not match).
    pub reason: String,
}

/// The grade of a call that gave no output (an error, a timeout): it fails its check, unless
/// the check grades nothing (`none`).
pub fn failed_call(check: CheckKind, why: &str) -> Grade {
    Grade {
        passed: (check != CheckKind::None).then_some(false),
        reason: format!("the call failed: {why}"),
    }
}

/// Grades `output` against a case's check (`expected` as [`TestCaseSpec::validate`] admits it).
pub fn grade(check: CheckKind, expected: Option<&Value>, output: &str) -> Grade {
    let text = expected.and_then(Value::as_str).unwrap_or_default();
    let verdict = |passed: bool, reason: String| Grade {
        passed: Some(passed),
        reason,
    };
    match check {
        CheckKind::Exact => {
            let same = output.trim() == text.trim();
            verdict(
                same,
                if same {
                    "the output equals the expected text".into()
                } else {
                    "the output differs from the expected text".into()
                },
            )
        }
        CheckKind::Contains => {
            let found = output.contains(text);
            verdict(
                found,
                if found {
                    format!("the output contains {text:?}")
                } else {
                    format!("the output does not contain {text:?}")
                },
            )
        }
        CheckKind::Regex => match regex::Regex::new(text) {
            Ok(re) if re.is_match(output) => verdict(true, format!("the output matches /{text}/")),
            Ok(_) => verdict(false, format!("the output does not match /{text}/")),
            Err(e) => verdict(false, format!("the pattern does not compile: {e}")),
        },
        CheckKind::JsonSchema => {
            let Some(schema) = expected else {
                return verdict(false, "the case has no schema".into());
            };
            let value: Value = match serde_json::from_str(output.trim()) {
                Ok(v) => v,
                Err(e) => return verdict(false, format!("the output is not JSON: {e}")),
            };
            match jsonschema::validator_for(schema) {
                Ok(validator) => match validator.iter_errors(&value).next() {
                    None => verdict(true, "the output is JSON valid against the schema".into()),
                    Some(error) => verdict(
                        false,
                        format!(
                            "the output does not fit the schema at {}: {error}",
                            error.instance_path()
                        ),
                    ),
                },
                Err(e) => verdict(false, format!("the schema does not compile: {e}")),
            }
        }
        CheckKind::None => Grade {
            passed: None,
            reason: "recorded, not graded".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(check: CheckKind, expected: Option<Value>) -> TestCaseSpec {
        TestCaseSpec {
            name: "greets".into(),
            description: None,
            prompt_id: Uuid::nil(),
            variables: BTreeMap::from([("name".into(), "Ada".into())]),
            check,
            expected,
        }
    }

    #[test]
    fn checks_are_validated_when_defined() {
        assert!(spec(CheckKind::Exact, Some(json!("Hello, Ada")))
            .validate()
            .is_ok());
        assert!(spec(CheckKind::Regex, Some(json!("^Hello, \\w+$")))
            .validate()
            .is_ok());
        assert!(spec(CheckKind::JsonSchema, Some(json!({"type": "object"})))
            .validate()
            .is_ok());
        assert!(spec(CheckKind::None, None).validate().is_ok());
        for (bad, reason) in [
            (spec(CheckKind::Exact, None), "is required as a string"),
            (
                spec(CheckKind::Contains, Some(json!(""))),
                "must not be empty",
            ),
            (
                spec(CheckKind::Regex, Some(json!("(unclosed"))),
                "is not a valid regex",
            ),
            (
                spec(CheckKind::JsonSchema, Some(json!("object"))),
                "JSON Schema object",
            ),
            (
                spec(CheckKind::JsonSchema, Some(json!({"type": 12}))),
                "is not a valid JSON Schema",
            ),
            (spec(CheckKind::None, Some(json!("x"))), "must be absent"),
        ] {
            match bad.validate() {
                Err(StoreError::Invalid { field, reason: why }) => {
                    assert_eq!(field, "expected");
                    assert!(why.contains(reason), "{why}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let unnamed = TestCaseSpec {
            name: " ".into(),
            ..spec(CheckKind::None, None)
        };
        assert!(
            matches!(unnamed.validate(), Err(StoreError::Invalid { field, .. }) if field == "name")
        );
    }

    #[test]
    fn outputs_are_graded_by_their_check() {
        let pass =
            |check, expected: Value, output: &str| grade(check, Some(&expected), output).passed;
        assert_eq!(
            pass(CheckKind::Exact, json!("Hello, Ada"), "  Hello, Ada\n"),
            Some(true)
        );
        assert_eq!(
            pass(CheckKind::Exact, json!("Hello, Ada"), "Hello, Ada!"),
            Some(false)
        );
        assert_eq!(
            pass(CheckKind::Contains, json!("Ada"), "Hi Ada, welcome"),
            Some(true)
        );
        assert_eq!(
            pass(CheckKind::Contains, json!("ada"), "Hi Ada"),
            Some(false)
        );
        assert_eq!(
            pass(CheckKind::Regex, json!("^\\d{3}-\\d{4}$"), "555-0100"),
            Some(true)
        );
        assert_eq!(
            pass(CheckKind::Regex, json!("^\\d{3}-\\d{4}$"), "call 555-0100"),
            Some(false)
        );
        let schema = json!({
            "type": "object",
            "required": ["tags"],
            "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 1}}
        });
        assert_eq!(
            pass(
                CheckKind::JsonSchema,
                schema.clone(),
                r#"{"tags": ["cat"]}"#
            ),
            Some(true)
        );
        assert_eq!(
            pass(CheckKind::JsonSchema, schema.clone(), r#"{"tags": []}"#),
            Some(false)
        );
        let not_json = grade(CheckKind::JsonSchema, Some(&schema), "tags: cat");
        assert_eq!(not_json.passed, Some(false));
        assert!(
            not_json.reason.starts_with("the output is not JSON"),
            "{}",
            not_json.reason
        );
        let wrong = grade(CheckKind::JsonSchema, Some(&schema), r#"{"tags": [3]}"#);
        assert!(wrong.reason.contains("/tags/0"), "{}", wrong.reason);
        assert_eq!(grade(CheckKind::None, None, "anything").passed, None);
    }
}
