//! The one error shape of every HTTP answer: `{"error": {"code", "message", "field"?}}`.
//!
//! Handlers return `Result<_, ApiError>`; [`ApiError`] is mapped to a status code here and only
//! here. 5xx answers never carry internals: the real error is logged and the body says only
//! that something failed. [`Json`] replaces axum's extractor so body rejections use this shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::FromRequest;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;

use tally_domain::store::StoreError;
use tally_domain::window::WindowError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_s: None,
        }
    }

    pub fn bad_param(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(message: impl Into<String>, retry_after_s: u32) -> Self {
        ApiError {
            retry_after_s: Some(retry_after_s),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see server logs",
        )
    }
}

impl From<WindowError> for ApiError {
    fn from(err: WindowError) -> Self {
        ApiError::bad_param(err.param, err.reason)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { what } => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::Invalid { field, reason } => invalid(&field, reason),
            StoreError::Unavailable(message) => {
                error!(error = %message, "storage unavailable");
                ApiError::unavailable("storage is unavailable; retry later", 1)
            }
            other => ApiError::internal(other),
        }
    }
}

/// The body of every error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct ErrorDetail<'a> {
    /// Machine-readable: `unauthorized`, `forbidden`, `not_found`, `invalid`, `conflict`, ….
    pub code: &'a str,
    /// What went wrong, for people.
    pub message: &'a str,
    /// The request field, parameter or header at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// A JSON body extractor whose rejections are [`ApiError`]s.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    "unsupported_media_type"
                } else {
                    "invalid_body"
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// A JSON body read into `T` field by field: every failure is a `422` naming the field (a
/// missing or unknown field, a wrong type, an unknown enum value); a body that is not JSON at
/// all is a `400`. Use `#[serde(deny_unknown_fields)]` on `T` so misspelt fields are refused.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<serde_json::Value>::from_request(req, state).await?;
        parse_body(value).map(Body)
    }
}

/// Reads `value` into `T` (see [`Body`]).
pub fn parse_body<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let message = err.inner().to_string();
        let path = err.path().to_string();
        // serde names a missing or unknown field only in its message, between backticks.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next());
        // An unknown field is already the last step of the path; a missing one is not.
        let field = match (path.as_str(), named) {
            (".", Some(name)) => name.to_string(),
            (".", None) => "body".to_string(),
            (path, Some(name)) if path != name && !path.ends_with(&format!(".{name}")) => {
                format!("{path}.{name}")
            }
            (path, _) => path.to_string(),
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message).with_field(&field)
    })
}

/// A `422` naming `field`, for rules beyond the body's shape.
pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message).with_field(field)
}

/// Wraps a payload as `{"data": …}`, the envelope of every successful answer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Data<T> {
    pub data: T,
}

pub fn data<T: Serialize>(payload: T) -> axum::Json<Data<T>> {
    axum::Json(Data { data: payload })
}
