//! A small JSON Schema checker for the keywords the API contract uses (`$ref` into
//! `#/components/schemas`, `type`, `enum`, `const`, `properties`, `required`,
//! `additionalProperties`, `items`, `anyOf`, `oneOf`, `allOf`, `minimum`), written here so the
//! contract test does not trust the code that wrote the contract.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;

/// Every way `value` breaks `schema` (resolved against `doc`), with a JSON path each.
pub fn violations(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(doc, schema, value, "$", &mut out, 0);
    out
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}

fn check(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        out.push(format!("{at}: schema nests too deep"));
        return;
    }
    let schema = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            out.push(format!("{at}: nothing is allowed here"));
            return;
        }
        Value::Object(o) => o,
        other => {
            out.push(format!("{at}: not a schema: {other}"));
            return;
        }
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "$ref to missing schema {name}");
        check(doc, target, value, at, out, depth + 1);
    }
    if let Some(t) = schema.get("type") {
        let names: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.iter().any(|n| type_matches(n, value)) {
            out.push(format!("{at}: {value} is not of type {names:?}"));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            out.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            out.push(format!("{at}: {value} is not {c}"));
        }
    }
    if let (Some(min), Some(v)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if v < min {
            out.push(format!("{at}: {v} is below {min}"));
        }
    }
    if let Value::Object(fields) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) {
                    out.push(format!("{at}: required field {name} is missing"));
                }
            }
        }
        for (name, v) in fields {
            let path = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(s) => check(doc, s, v, &path, out, depth + 1),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => out.push(format!("{path}: not a documented field")),
                    Some(s @ Value::Object(_)) => check(doc, s, v, &path, out, depth + 1),
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(
                doc,
                item_schema,
                item,
                &format!("{at}[{i}]"),
                out,
                depth + 1,
            );
        }
    }
    let passes = |s: &Value| {
        let mut inner = Vec::new();
        check(doc, s, value, at, &mut inner, depth + 1);
        inner.is_empty()
    };
    if let Some(Value::Array(all)) = schema.get("allOf") {
        for s in all {
            check(doc, s, value, at, out, depth + 1);
        }
    }
    if let Some(Value::Array(any)) = schema.get("anyOf") {
        if !any.iter().any(passes) {
            out.push(format!("{at}: {value} matches none of anyOf"));
        }
    }
    if let Some(Value::Array(one)) = schema.get("oneOf") {
        let n = one.iter().filter(|s| passes(s)).count();
        if n != 1 {
            out.push(format!("{at}: {value} matches {n} of oneOf, not exactly 1"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_checker_catches_what_it_should() {
        let doc = json!({"components": {"schemas": {"P": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 0}}, "additionalProperties": false}}}});
        let s = json!({"$ref": "#/components/schemas/P"});
        assert!(violations(&doc, &s, &json!({"n": 3})).is_empty());
        assert_eq!(violations(&doc, &s, &json!({})).len(), 1);
        assert_eq!(violations(&doc, &s, &json!({"n": -1})).len(), 1);
        assert_eq!(violations(&doc, &s, &json!({"n": 1, "x": 2})).len(), 1);
        assert_eq!(violations(&doc, &s, &json!({"n": "1"})).len(), 1);
        let opt = json!({"anyOf": [{"$ref": "#/components/schemas/P"}, {"type": "null"}]});
        assert!(violations(&doc, &opt, &Value::Null).is_empty());
        assert_eq!(violations(&doc, &opt, &json!(5)).len(), 1);
        let e = json!({"type": "string", "enum": ["a", "b"]});
        assert_eq!(violations(&doc, &e, &json!("c")).len(), 1);
    }
}
