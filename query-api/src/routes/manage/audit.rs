//! The audit log, platform admins only: `GET /audit?limit=&before=&actor=&action=&resource=`,
//! newest first — who changed what in the configuration, the resource before and after, and
//! when. The filters are applied by the store, so a page of `limit` entries is a page of
//! matching entries.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use tally_domain::config::AuditEntry;
use tally_domain::store::AuditQuery;
use tally_http::auth::Access;
use tally_http::http::{data, ApiError, Data};
use tally_http::route::{Param, Route, Routes};

use crate::params::{limit_param, Params};
use crate::routes::API_BASE;
use crate::state::QueryState;

static AUDIT: LazyLock<Vec<Param>> = LazyLock::new(|| {
    vec![
        limit_param(1000).describe("How many entries (default 100)"),
        Param::instant("before").describe("Only entries made before this instant"),
        Param::uuid("before_id").describe(
            "Only entries older than this entry (the last id of a page: the next page, none skipped)",
        ),
        Param::text("actor").describe("Only changes by this actor (a key's name, cli, …)"),
        Param::text("action").describe("Only this action, e.g. feature.update"),
        Param::text("resource").describe(
            "Only this resource and what lies under it: feature, feature:chatbot (its assignments too)",
        ),
    ]
});

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/audit"),
            Access::Admin,
            "The audit log, newest first",
            audit,
        )
        .query(AUDIT.clone())
        .returns::<Data<Vec<AuditEntry>>>(200),
    )
}

async fn audit(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &AUDIT)?;
    let limit = params.limit(100, 1000)?;
    let before = params
        .get("before")
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| ApiError::bad_param("before", "must be an RFC 3339 time"))
        })
        .transpose()?;
    let text = |name: &str| params.get(name).map(str::to_string);
    let before_entry = params
        .get("before_id")
        .map(|id| crate::routes::parse_id(id).map_err(|e| e.with_field("before_id")))
        .transpose()?;
    let query = AuditQuery {
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        before,
        before_entry,
        actor: text("actor"),
        action: text("action"),
        resource: text("resource"),
    };
    Ok(data(state.config.list_audit(&query).await?))
}
