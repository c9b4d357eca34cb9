//! A local stand-in for an OpenAI-compatible provider (tests never reach the internet).

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The environment variable the stand-in provider's key is read from.
pub const KEY_VAR: &str = "TALLY_TEST_STANDIN_PROVIDER_KEY";
pub const KEY: &str = "standin-secret-123";

/// What the stand-in received: the Authorization header and the body, per call.
pub type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// Starts the stand-in: `POST /v1/chat/completions` answers `echo: <the user message>` with
/// fixed token counts (12 prompt, 2 of them cached, and 7 completion) for model `standin-1`,
/// and a 500 for any other model. Returns its base URL and what it received.
pub async fn stand_in() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let record = record.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                record.lock().unwrap().push((auth.clone(), body.clone()));
                if auth.as_deref() != Some(&format!("Bearer {KEY}")) {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "bad key"}})));
                }
                if body["model"] != "standin-1" {
                    return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": {"message": "model overloaded"}})));
                }
                let text = body["messages"][0]["content"].as_str().unwrap_or("");
                (
                    StatusCode::OK,
                    Json(json!({
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("echo: {text}")}}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 2}},
                    })),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}
