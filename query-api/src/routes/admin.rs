//! API keys and the audit log, platform admins only:
//! `GET|POST /api-keys`, `DELETE /api-keys/{id}` (revokes), `GET /audit?limit=&before=`.
//!
//! A created key's secret is answered once, in `key`; listings never carry secrets. Every
//! change is recorded in the audit log ([`tally_domain::audit`]) as made by the calling key.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Extension;
use chrono::{DateTime, Utc};
use tally_domain::access::ApiKey;
use tally_domain::access::Role;
use tally_domain::config::AuditEntry;
use tally_domain::keys::{self, CreatedKey};
use tally_http::auth::{Access, Caller, Routes};
use tally_http::http::{data, ApiError, Body, Data};

use super::{change, parse_id, API_BASE};
use crate::params::Params;
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let keys = format!("{API_BASE}/api-keys");
    r.route(Method::GET, &keys, Access::Admin, get(list_keys))
        .doc("Every API key, revoked ones included (never a secret)")
        .returns::<Data<Vec<ApiKey>>>(200)
        .route(Method::POST, &keys, Access::Admin, post(create_key))
        .doc("Create an API key; its secret is answered once, in key")
        .accepts::<KeyBody>()
        .returns::<Data<CreatedKey>>(201)
        .route(
            Method::DELETE,
            &format!("{keys}/{{id}}"),
            Access::Admin,
            delete(revoke_key),
        )
        .doc("Revoke an API key (idempotent)")
        .returns::<Data<ApiKey>>(200)
        .route(
            Method::GET,
            &format!("{API_BASE}/audit"),
            Access::Admin,
            get(audit),
        )
        .doc("The audit log, newest first")
        .query(["limit", "before"])
        .returns::<Data<Vec<AuditEntry>>>(200)
}

async fn list_keys(State(state): State<QueryState>) -> Result<impl IntoResponse, ApiError> {
    Ok(data(state.config.list_api_keys().await?))
}

/// A new key: its name and role.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    /// 1 to 100 characters.
    name: String,
    role: Role,
}

async fn create_key(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<KeyBody>,
) -> Result<impl IntoResponse, ApiError> {
    let created = keys::create_key(
        state.config.as_ref(),
        &body.name,
        body.role,
        &change(&state, &caller),
    )
    .await?;
    Ok((StatusCode::CREATED, data(created)))
}

async fn revoke_key(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    let (revoked, _) = state
        .config
        .revoke_api_key(id, &change(&state, &caller))
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
