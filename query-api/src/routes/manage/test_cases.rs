//! Test cases: `GET|POST /test-cases`, `GET|PUT|DELETE /test-cases/{id}` (platform admins).
//!
//! A case belongs to a prompt (and so to the prompt's feature), gives values to the prompt's
//! variables and says how an output is graded: `exact`, `contains`, `regex` (with `expected`
//! the text or pattern), `json_schema` (`expected` a JSON Schema object) or `none` (recorded,
//! not graded). The domain decides whether a check is well formed
//! ([`tally_domain::config::TestCaseSpec::validate`]). `PUT` updates the fields given and
//! keeps the others. Running cases across models is `POST /test-cases/execute`
//! (`test_runs.rs`).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;
use tally_domain::config::{CheckKind, TestCase, TestCaseSpec};
use tally_domain::store::StoreError;
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};

use crate::listing::{ListQuery, ListSpec, Listing};
use crate::lookup::{find_prompt, find_test_case};
use crate::routes::{change, API_BASE};
use crate::state::QueryState;

pub(super) fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let cases = format!("{API_BASE}/test-cases");
    let case = format!("{cases}/{{id}}");
    r.serve(
        Route::get(&cases, Access::Admin, "Test cases, oldest first", list)
            .query(LIST.params())
            .returns::<Listing<TestCase>>(200),
    )
    .serve(
        Route::post(
            &cases,
            Access::Admin,
            "Define a test case of a prompt",
            create,
        )
        .accepts_requiring::<CaseBody>(&["name", "prompt_id", "check"])
        .returns::<Data<TestCase>>(201),
    )
    .serve(Route::get(&case, Access::Admin, "A test case", detail).returns::<Data<TestCase>>(200))
    .serve(
        Route::put(
            &case,
            Access::Admin,
            "Change a test case (fields given; the rest kept)",
            update,
        )
        .accepts::<CaseBody>()
        .returns::<Data<TestCase>>(200),
    )
    .serve(
        Route::delete(&case, Access::Admin, "Delete a test case", remove)
            .returns::<Data<TestCase>>(200),
    )
}

const LIST: ListSpec = ListSpec {
    filters: &[
        ("prompt_id", "prompt_id", &[]),
        ("feature", "feature", &[]),
        ("check", "check", CheckKind::NAMES),
    ],
    sorts: &["created_at", "name", "updated_at"],
};

async fn list(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let query = ListQuery::parse(q, &LIST)?;
    Ok(axum::Json(
        query.apply(&state.config.list_test_cases().await?)?,
    ))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CaseBody {
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::text")]
    name: Option<String>,
    description: Option<String>,
    prompt_id: Option<uuid::Uuid>,
    /// Values of the prompt's variables.
    variables: Option<BTreeMap<String, String>>,
    check: Option<CheckKind>,
    /// The text or pattern (`exact`, `contains`, `regex`), the schema (`json_schema`); absent
    /// for `none`.
    expected: Option<Value>,
}

impl CaseBody {
    /// The case after this body, checked as the store checks it (so the API names the field).
    fn spec(self, current: Option<&TestCaseSpec>) -> Result<TestCaseSpec, ApiError> {
        let required = |field: &str| invalid(field, "is required");
        let check = self
            .check
            .or(current.map(|c| c.check))
            .ok_or_else(|| required("check"))?;
        let spec = TestCaseSpec {
            name: self
                .name
                .or_else(|| current.map(|c| c.name.clone()))
                .ok_or_else(|| required("name"))?,
            description: self
                .description
                .or_else(|| current.and_then(|c| c.description.clone()))
                .filter(|d| !d.trim().is_empty()),
            prompt_id: self
                .prompt_id
                .or(current.map(|c| c.prompt_id))
                .ok_or_else(|| required("prompt_id"))?,
            variables: self
                .variables
                .or_else(|| current.map(|c| c.variables.clone()))
                .unwrap_or_default(),
            check,
            // A new check without a new expectation keeps none of the old one's.
            expected: match (self.expected, self.check) {
                (Some(v), _) => Some(v),
                (None, Some(_)) => None,
                (None, None) => current.and_then(|c| c.expected.clone()),
            },
        };
        spec.validate().map_err(|e| match e {
            StoreError::Invalid { field, reason } => invalid(&field, reason),
            other => ApiError::from(other),
        })?;
        Ok(spec)
    }
}

/// The prompt a case names must exist: a 422 naming `prompt_id` otherwise.
async fn known_prompt(state: &QueryState, spec: &TestCaseSpec) -> Result<(), ApiError> {
    find_prompt(state, &spec.prompt_id.to_string())
        .await
        .map(drop)
        .map_err(|_| invalid("prompt_id", format!("no prompt {}", spec.prompt_id)))
}

async fn detail(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(data(find_test_case(&state, &id).await?))
}

async fn create(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<CaseBody>,
) -> Result<impl IntoResponse, ApiError> {
    let spec = body.spec(None)?;
    known_prompt(&state, &spec).await?;
    let created = state
        .config
        .create_test_case(spec, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(created)))
}

async fn update(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<CaseBody>,
) -> Result<impl IntoResponse, ApiError> {
    let before = find_test_case(&state, &id).await?;
    let spec = body.spec(Some(&before.spec))?;
    known_prompt(&state, &spec).await?;
    let updated = state
        .config
        .update_test_case(before.id, spec, &change(&state, &caller))
        .await?;
    Ok(data(updated))
}

async fn remove(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = find_test_case(&state, &id).await?.id;
    let deleted = state
        .config
        .delete_test_case(id, &change(&state, &caller))
        .await?;
    Ok(data(deleted))
}
