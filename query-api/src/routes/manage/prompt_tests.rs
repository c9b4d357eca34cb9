//! `POST /prompts/{id}/test {variables, version?, model?}`: renders a prompt version and, when
//! it can, tries it on a model.
//!
//! - The version is `version`, else the active one, else the latest. Its `{{name}}`
//!   placeholders are filled from `variables` (strings, numbers or booleans); a declared variable
//!   missing or an undeclared one given is a `422` naming them.
//! - `model` (a model id) defaults to the model deployed for the prompt's feature in
//!   `development`. Without one the answer is the rendered text alone (`sent: false`).
//! - When the model's provider can be reached ([`crate::prompt_calls::reach`]), the text is
//!   sent and the call recorded as a `development` usage event
//!   ([`crate::prompt_calls::call_and_record`], the path test runs take too). The answer
//!   carries the output, tokens, latency and exact cost (the model's price in force now).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_domain::config::{Model, PromptVersion};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};
use tally_schemas::event::Status;
use tally_schemas::{Environment, Pico};
use uuid::Uuid;

use crate::lookup::{find_model, find_prompt};
use crate::prompt_calls::{
    call_and_record, check_variables, choose_version, reach, render, CallContext,
};
use crate::routes::API_BASE;
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::post(
            format!("{API_BASE}/prompts/{{id}}/test"),
            Access::Admin,
            "Render a prompt version with variables and try it on a model (recorded as a development usage event)",
            test_prompt,
        )
        .accepts::<TestBody>()
        .returns::<Data<TestResult>>(200),
    )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PromptTest")]
struct TestBody {
    /// Values of the version's variables.
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::variable_values")]
    variables: BTreeMap<String, Value>,
    /// The version to render; the active one, else the latest, when absent.
    #[serde(default, deserialize_with = "tally_schemas::whole::whole_opt")]
    #[schemars(range(min = 1, max = 2_147_483_647))]
    version: Option<i32>,
    /// A model id; the feature's `development` deployment when absent.
    #[schemars(with = "Option<Uuid>")]
    model: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "PromptTestResult")]
struct TestResult {
    prompt_id: Uuid,
    version: i32,
    rendered: String,
    /// Whether the text was sent to a model.
    sent: bool,
    /// Why it was not sent, when it was not.
    reason: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    /// `success`, `error` or `timeout`, when sent.
    status: Option<Status>,
    error: Option<String>,
    output: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cached_input_tokens: Option<u64>,
    latency_ms: Option<f64>,
    /// Exact, from the model's price in force now; absent when the model has no price.
    cost_usd: Option<String>,
    /// The recorded usage event.
    event_id: Option<String>,
}

/// The variables as text, checked against what the version declares.
fn values(
    version: &PromptVersion,
    given: BTreeMap<String, Value>,
) -> Result<BTreeMap<String, String>, ApiError> {
    if let Some(why) = check_variables(version, given.keys().map(String::as_str)) {
        return Err(invalid("variables", why));
    }
    given
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(invalid(
                        &format!("variables.{k}"),
                        "must be a string, a number or a boolean",
                    ))
                }
            };
            Ok((k, text))
        })
        .collect()
}

async fn test_prompt(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<TestBody>,
) -> Result<impl IntoResponse, ApiError> {
    let prompt = find_prompt(&state, &id).await?;
    let prompt_id = prompt.id;
    let versions = state.config.prompt_versions(prompt.id).await?;
    let version = choose_version(&prompt, &versions, body.version, "version")?;
    let rendered = render(&version.content, &values(version, body.variables)?);
    let mut result = TestResult {
        prompt_id,
        version: version.version,
        rendered,
        sent: false,
        reason: None,
        provider: None,
        model: None,
        status: None,
        error: None,
        output: None,
        input_tokens: None,
        output_tokens: None,
        cached_input_tokens: None,
        latency_ms: None,
        cost_usd: None,
        event_id: None,
    };
    let model = match &body.model {
        Some(id) => Some(find_model(&state, id).await.map_err(|e| {
            if e.status == axum::http::StatusCode::NOT_FOUND {
                invalid("model", format!("no model with id {id}"))
            } else {
                e.with_field("model")
            }
        })?),
        None => development_model(&state, prompt.feature.as_deref()).await?,
    };
    let Some(model) = model else {
        result.reason =
            Some("no model given and none deployed for the prompt's feature in development".into());
        return Ok(data(result));
    };
    result.provider = Some(model.provider.clone());
    result.model = Some(model.name.clone());
    let reach = match reach(&state, &model).await? {
        Ok(reach) => reach,
        Err(why) => {
            result.reason = Some(why);
            return Ok(data(result));
        }
    };
    let recorded = call_and_record(
        &state,
        &reach,
        CallContext {
            prompt: &prompt,
            version,
            model: &model,
            caller: &caller.key_name,
            attributes: vec![("source".into(), "prompt-test".into())],
        },
        &result.rendered,
    )
    .await?;
    let event = &recorded.event;
    result.event_id = Some(event.event_id.clone());
    result.sent = true;
    result.status = Some(recorded.status);
    result.error = recorded.error;
    result.output = recorded.output;
    result.input_tokens = Some(event.input_tokens);
    result.output_tokens = Some(event.output_tokens);
    result.cached_input_tokens = Some(event.cached_input_tokens);
    result.latency_ms = Some(recorded.latency.as_secs_f64() * 1000.0);
    result.cost_usd = event
        .cost
        .picos()
        .map(|p| Pico(i128::from(p)).to_decimal_string());
    Ok(data(result))
}

/// The model deployed for `feature` in `development`.
async fn development_model(
    state: &QueryState,
    feature: Option<&str>,
) -> Result<Option<Model>, ApiError> {
    let Some(feature) = feature else {
        return Ok(None);
    };
    let assignment = state
        .config
        .active_assignments()
        .await?
        .into_iter()
        .find(|a| a.feature == feature && a.environment == Environment::Development);
    let Some(a) = assignment else {
        return Ok(None);
    };
    Ok(state
        .config
        .list_models()
        .await?
        .into_iter()
        .find(|m| m.provider == a.provider && m.name == a.model))
}
