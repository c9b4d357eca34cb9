//! API keys, platform admins only: `GET|POST /api-keys`, `DELETE /api-keys/{id}` (revokes).
//!
//! A created key's secret is answered once, in `key`; listings never carry secrets. Every
//! change is recorded in the audit log ([`tally_domain::audit`]) as made by the calling key.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use tally_domain::access::ApiKey;
use tally_domain::access::Role;
use tally_domain::keys::{self, CreatedKey};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, ApiError, Body, Data};
use tally_http::route::{Route, Routes};

use crate::routes::{change, parse_id, API_BASE};
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let keys = format!("{API_BASE}/api-keys");
    r.serve(
        Route::get(
            &keys,
            Access::Admin,
            "Every API key, revoked ones included (never a secret)",
            list_keys,
        )
        .returns::<Data<Vec<ApiKey>>>(200),
    )
    .serve(
        Route::post(
            &keys,
            Access::Admin,
            "Create an API key; its secret is answered once, in key",
            create_key,
        )
        .accepts::<KeyBody>()
        .returns::<Data<CreatedKey>>(201),
    )
    .serve(
        Route::delete(
            format!("{keys}/{{id}}"),
            Access::Admin,
            "Revoke an API key (idempotent)",
            revoke_key,
        )
        .returns::<Data<ApiKey>>(200),
    )
}

async fn list_keys(State(state): State<QueryState>) -> Result<impl IntoResponse, ApiError> {
    Ok(data(state.config.list_api_keys().await?))
}

/// A new key: its name and role.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    /// 1 to 100 characters.
    #[schemars(schema_with = "crate::fields::key_name")]
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
