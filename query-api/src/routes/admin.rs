//! API keys and the audit log, platform admins only:
//! `GET|POST /api-keys`, `DELETE /api-keys/{id}` (revokes), `GET /audit?limit=&before=`.
//!
//! A created key's secret is answered once, in `key`; listings never carry secrets. Every
//! change is recorded in the audit log ([`tally_core::audit`]) as made by the calling key.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Extension;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tally_core::access::{self, Role};
use tally_core::audit::Actor;
use tally_core::auth::{Access, Caller, Routes};
use tally_core::http::{data, ApiError, Json};
use uuid::Uuid;

use super::API_BASE;
use crate::params::Params;
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let keys = format!("{API_BASE}/api-keys");
    r.route(Method::GET, &keys, Access::Admin, get(list_keys))
        .route(Method::POST, &keys, Access::Admin, post(create_key))
        .route(
            Method::DELETE,
            &format!("{keys}/{{id}}"),
            Access::Admin,
            delete(revoke_key),
        )
        .route(
            Method::GET,
            &format!("{API_BASE}/audit"),
            Access::Admin,
            get(audit),
        )
}

async fn list_keys(State(state): State<QueryState>) -> Result<impl IntoResponse, ApiError> {
    Ok(data(state.config.list_api_keys().await?))
}

async fn create_key(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let invalid = |field: &str, message: &str| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message).with_field(field)
    };
    let name = body["name"]
        .as_str()
        .ok_or_else(|| invalid("name", "must be a string of 1 to 100 characters"))?;
    let role = body["role"].as_str().and_then(Role::parse).ok_or_else(|| {
        invalid(
            "role",
            "must be one of platform_admin, viewer, finance, ingest",
        )
    })?;
    if let Some(unknown) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !["name", "role"].contains(&k.as_str())))
    {
        return Err(invalid(unknown, "is not a field of an API key"));
    }
    let created = access::create_key(
        state.config.as_ref(),
        name,
        role,
        state.clock.now(),
        &Actor::from(&caller),
    )
    .await?;
    Ok((StatusCode::CREATED, data(created)))
}

async fn revoke_key(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad_param("id", "must be a UUID"))?;
    let revoked = access::revoke_key(
        state.config.as_ref(),
        id,
        state.clock.now(),
        &Actor::from(&caller),
    )
    .await?;
    Ok(data(revoked))
}

async fn audit(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &["limit", "before"])?;
    let limit = params.limit(100, 1000)?;
    let before = params
        .get("before")
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| ApiError::bad_param("before", "must be an RFC 3339 time"))
        })
        .transpose()?;
    Ok(data(
        state
            .config
            .list_audit(u32::try_from(limit).unwrap_or(u32::MAX), before)
            .await?,
    ))
}
