//! The API contract: an OpenAPI 3.1 document generated from the route catalog
//! ([`crate::route::Routes`]), so it lists exactly the routes a process serves, with the access
//! each needs, and the JSON Schemas (2020-12 compatible, from the Rust types via `schemars`) of
//! the bodies each reads and answers. Every error answer is the shared `Error` schema.

use std::collections::BTreeMap;

use schemars::gen::SchemaSettings;
use schemars::schema::Schema;
use schemars::visit::{ReplaceBoolSchemas, Visitor};
use serde_json::{json, Map, Value};

use crate::auth::Access;
use crate::http::ErrorBody;
use crate::route::{Doc, Param, RouteInfo};

/// The document for `routes`, titled with the build's `version`.
pub fn document(routes: &[RouteInfo], version: &str) -> Value {
    let mut settings = SchemaSettings::draft2019_09();
    settings.definitions_path = "#/components/schemas/".into();
    settings.option_add_null_type = true;
    settings.option_nullable = false;
    let mut generator = settings.into_generator();
    let error = generator.subschema_for::<ErrorBody>();
    let error_response = |description: &str| json!({"description": description, "content": {"application/json": {"schema": error}}});
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in routes {
        let method = route.method.as_str().to_ascii_lowercase();
        let mut op = Map::new();
        op.insert(
            "operationId".into(),
            json!(operation_id(&method, &route.path)),
        );
        let doc = &route.doc;
        op.insert("summary".into(), json!(doc.summary));
        let mut parameters: Vec<Value> = doc.path.iter().map(|p| parameter(p, "path")).collect();
        parameters.extend(doc.query.iter().map(|p| parameter(p, "query")));
        if let Some(request) = doc.request {
            let mut schema = plain(request(&mut generator));
            if !doc.request_requires.is_empty()
                || !doc.request_omits.is_empty()
                || !doc.request_rules.is_empty()
            {
                schema = narrowed(schema, doc);
            }
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }
        let mut responses = Map::new();
        let mut ok = json!({"description": doc.summary});
        if let Some(response) = doc.response {
            ok["content"] = json!({doc.content_type: {"schema": plain(response(&mut generator))}});
        } else if doc.content_type != "application/json" {
            ok["content"] = json!({doc.content_type: {"schema": {"type": "string"}}});
        }
        if let Some(media) = doc.also_media {
            ok["content"][media] = json!({"schema": {"type": "string"}});
        }
        for status in &doc.also {
            responses.insert(status.to_string(), ok.clone());
        }
        responses.insert(doc.status.to_string(), ok);
        if route.access != Access::Public {
            op.insert("security".into(), json!([{"bearer": []}]));
            responses.insert("401".into(), error_response("No valid API key"));
            responses.insert(
                "403".into(),
                error_response(&format!(
                    "The key's role may not call this; allowed: {}",
                    route.access.roles().join(", ")
                )),
            );
        } else {
            op.insert("security".into(), json!([]));
        }
        responses.insert("default".into(), error_response("Any other error"));
        op.insert("responses".into(), Value::Object(responses));
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        op.insert(
            "x-roles".into(),
            json!(if route.access == Access::Public {
                Vec::new()
            } else {
                route.access.roles()
            }),
        );
        paths
            .entry(route.path.clone())
            .or_default()
            .insert(method, Value::Object(op));
    }
    let schemas: Map<String, Value> = generator
        .take_definitions()
        .into_iter()
        .map(|(name, schema)| (name, plain(schema)))
        .collect();
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Tally",
            "version": version,
            "description": "Event-sourced AI usage analytics: usage events in; dashboards, spending, configuration and management out. Every answer is {\"data\": …}; every error {\"error\": {\"code\", \"message\", \"field\"?}}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key: tally keys create --role …"}},
        },
    })
}

/// `schema` with the route's required fields present and not null, its omitted fields absent,
/// and its further rules.
fn narrowed(schema: Value, doc: &Doc) -> Value {
    let (requires, omits) = (doc.request_requires, doc.request_omits);
    let mut all = json!({"allOf": [schema]});
    if let Some(rules) = all["allOf"].as_array_mut() {
        rules.extend(doc.request_rules.iter().cloned());
    }
    if !requires.is_empty() {
        let not_null: Map<String, Value> = requires
            .iter()
            .map(|f| (f.to_string(), json!({"not": {"type": "null"}})))
            .collect();
        all["required"] = json!(requires);
        all["properties"] = Value::Object(not_null);
    }
    if !omits.is_empty() {
        let present: Vec<Value> = omits.iter().map(|f| json!({"required": [f]})).collect();
        all["not"] = json!({"anyOf": present});
    }
    all
}

/// A parameter object; lists are comma-separated (`style: form, explode: false`).
fn parameter(param: &Param, location: &str) -> Value {
    let required = location == "path" || param.required;
    let mut p =
        json!({"name": param.name, "in": location, "required": required, "schema": param.schema});
    if let Some(description) = &param.description {
        p["description"] = json!(description);
    }
    if param.list {
        p["style"] = json!("form");
        p["explode"] = json!(false);
    }
    p
}

/// `schema` as JSON with boolean subschemas (`true` for "any JSON") written as objects (`{}`):
/// the same meaning, and what tools that walk schemas as objects (OpenAPI fuzzers, generators)
/// expect. `additionalProperties: false` stays as it is.
fn plain(mut schema: Schema) -> Value {
    ReplaceBoolSchemas {
        skip_additional_properties: true,
    }
    .visit_schema(&mut schema);
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

/// `get /api/x/{id}/y` → `get_api_x_id_y`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    for part in path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        id.push('_');
        id.push_str(part);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_path_and_lists_are_comma_separated() {
        assert_eq!(operation_id("get", "/api/x/{id}/y-z"), "get_api_x_id_y_z");
        let list = parameter(&Param::list_of("group_by", &["a", "b"]), "query");
        assert_eq!(list["style"], "form");
        assert_eq!(list["explode"], false);
        assert_eq!(list["schema"]["items"]["enum"], json!(["a", "b"]));
    }
}
