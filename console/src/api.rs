//! The console's only source of numbers and configuration: the JSON API's own routes, called
//! in-process on behalf of the signed-in key ([`tally_http::auth::Delegated`]).
//!
//! Invariant: a page never computes an aggregate and never reads a store for something the
//! API answers; it asks the route a client would ask, with the same role checks, and shows
//! what came back. So a number on a page is the API's number for the same window.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::Value;
use tally_http::auth::{Caller, Delegated};
use tower::ServiceExt;
use tracing::instrument;

/// Where the JSON API lives (`tally_query_api`'s `API_BASE`).
pub const API: &str = "/api/platform/ai-management";

/// Answers larger than this are refused (a page never needs more).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// An API answer that was not a success: its status and the error shape's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl Failure {
    fn of(status: StatusCode, body: &Value) -> Failure {
        let error = &body["error"];
        Failure {
            status: status.as_u16(),
            code: error["code"].as_str().unwrap_or("error").to_string(),
            message: error["message"]
                .as_str()
                .map_or_else(|| format!("the API answered {status}"), str::to_string),
            field: error["field"].as_str().map(str::to_string),
        }
    }

    /// The message with the field it names, as shown next to a form.
    pub fn explain(&self) -> String {
        match &self.field {
            Some(field) => format!("{field}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// The JSON API as a caller sees it.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

impl Api {
    pub fn new(router: Router) -> Api {
        Api { router }
    }

    /// The raw answer of `method path` with `body`, for `caller`.
    #[instrument(name = "console.api", skip(self, caller, body), fields(role = caller.role.as_str()))]
    pub async fn call(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request
            .body(body)
            .unwrap_or_else(|_| Request::new(Body::empty()));
        request.extensions_mut().insert(Delegated(caller.clone()));
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// The JSON answer of `method path`: `Ok` for a 2xx, its error otherwise.
    pub async fn json(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let response = self.call(caller, method, path, body).await;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| Failure {
                status: 502,
                code: "unreadable".into(),
                message: format!("the API's answer could not be read: {e}"),
                field: None,
            })?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(Failure::of(status, &value))
        }
    }

    /// `GET path` (under [`API`]), its `data`.
    pub async fn get(&self, caller: &Caller, path: &str) -> Result<Value, Failure> {
        let mut answer = self
            .json(caller, Method::GET, &format!("{API}{path}"), None)
            .await?;
        Ok(answer.get_mut("data").map(Value::take).unwrap_or(answer))
    }

    /// `GET path` (under [`API`]), the whole answer (`data` and `pagination`).
    pub async fn page(&self, caller: &Caller, path: &str) -> Result<Value, Failure> {
        self.json(caller, Method::GET, &format!("{API}{path}"), None)
            .await
    }

    /// A change: `method path` (under [`API`]) with `body`, its `data`.
    pub async fn send(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut answer = self
            .json(caller, method, &format!("{API}{path}"), body)
            .await?;
        Ok(answer.get_mut("data").map(Value::take).unwrap_or(answer))
    }
}

/// `text` percent-encoded for a URL's query or path segment.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_unreserved_characters_only() {
        assert_eq!(encode("chat-bot_1.x~"), "chat-bot_1.x~");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn failures_name_their_field() {
        let body = serde_json::json!({"error": {"code": "invalid", "message": "must be positive", "field": "amount"}});
        let f = Failure::of(StatusCode::UNPROCESSABLE_ENTITY, &body);
        assert_eq!(f.status, 422);
        assert_eq!(f.explain(), "amount: must be positive");
        let bare = Failure::of(StatusCode::BAD_GATEWAY, &Value::Null);
        assert_eq!(bare.message, "the API answered 502 Bad Gateway");
    }
}
