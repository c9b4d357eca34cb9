//! Test cases through the API: defined for a prompt with a check the domain validates, listed
//! and filtered, changed field by field, deleted; every refusal a 4xx naming the field.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn test_cases_are_defined_changed_and_deleted_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let (status, prompt) = app
        .send(
            "POST",
            &format!("{API}/prompts"),
            Some(
                json!({"name": "greeter", "feature": "chatbot", "content": "Say hi to {{name}}."}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{prompt}");
    let pid = prompt["data"]["prompt"]["id"].as_str().unwrap().to_string();
    let cases = format!("{API}/test-cases");

    let (status, created) = app
        .send(
            "POST",
            &cases,
            Some(
                json!({"name": "greets Ada", "prompt_id": pid, "variables": {"name": "Ada"},
                        "check": "contains", "expected": "Ada"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let case = &created["data"];
    assert_eq!(
        (
            case["feature"].as_str(),
            case["check"].as_str(),
            case["expected"].as_str()
        ),
        (Some("chatbot"), Some("contains"), Some("Ada"))
    );
    let id = case["id"].as_str().unwrap().to_string();
    let (status, schema) = app
        .send(
            "POST",
            &cases,
            Some(
                json!({"name": "answers JSON", "prompt_id": pid, "check": "json_schema",
                        "expected": {"type": "object", "required": ["greeting"]}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{schema}");

    let listed = app.data(&format!("{cases}?check=json_schema")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "answers JSON");
    assert_eq!(
        app.data(&format!("{cases}?prompt_id={pid}"))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // PUT changes the fields given; a new check without an expectation keeps no old one.
    let (status, updated) = app
        .send(
            "PUT",
            &format!("{cases}/{id}"),
            Some(json!({"check": "regex", "expected": "^Hi,? Ada"})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            updated["data"]["name"].as_str(),
            updated["data"]["expected"].as_str()
        ),
        (Some("greets Ada"), Some("^Hi,? Ada"))
    );
    let (status, body) = app
        .send(
            "PUT",
            &format!("{cases}/{id}"),
            Some(json!({"check": "exact"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "expected");

    // Refusals name the field and change nothing.
    for (body, field) in [
        (
            json!({"name": "x", "prompt_id": pid, "check": "regex", "expected": "(unclosed"}),
            "expected",
        ),
        (
            json!({"name": "x", "prompt_id": pid, "check": "json_schema", "expected": "object"}),
            "expected",
        ),
        (
            json!({"name": "x", "prompt_id": pid, "check": "none", "expected": "y"}),
            "expected",
        ),
        (
            json!({"name": "x", "prompt_id": pid, "check": "sometimes"}),
            "check",
        ),
        (
            json!({"name": "x", "prompt_id": uuid::Uuid::now_v7(), "check": "none"}),
            "prompt_id",
        ),
        (json!({"prompt_id": pid, "check": "none"}), "name"),
        (
            json!({"name": "x", "prompt_id": pid, "check": "none", "colour": "red"}),
            "colour",
        ),
    ] {
        let (status, answer) = app.send("POST", &cases, Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(answer.to_string().contains(field), "{body}: {answer}");
    }
    assert_eq!(
        app.data(&cases).await.as_array().unwrap().len(),
        2,
        "nothing was added"
    );

    let (status, deleted) = app.send("DELETE", &format!("{cases}/{id}"), None).await;
    assert_eq!(status, 200, "{deleted}");
    let (status, _) = app.get(&format!("{cases}/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.get(&format!("{cases}/not-an-id")).await;
    assert_eq!(status, 400);
    let audit = app.data(&format!("{API}/audit?resource=test_case")).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "test_case.delete",
            "test_case.update",
            "test_case.create",
            "test_case.create"
        ]
    );
    app.stop().await;
}
