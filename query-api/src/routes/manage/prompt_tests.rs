//! `POST /prompts/{id}/test {variables, version?, model?}`: renders a prompt version and, when
//! it can, tries it on a model.
//!
//! - The version is `version`, else the active one, else the latest. Its `{{name}}`
//!   placeholders are filled from `variables` (strings, numbers or booleans); a declared variable
//!   missing or an undeclared one given is a `422` naming them.
//! - `model` (a model id) defaults to the model deployed for the prompt's feature in
//!   `development`. Without one the answer is the rendered text alone (`sent: false`).
//! - When the model's provider has a `base_url` and its `api_key_env` variable is set in this
//!   process, the text is sent as one user message to the provider's OpenAI-compatible
//!   `{base_url}/chat/completions` (60 s timeout). The answer carries the output, tokens, latency
//!   and exact cost (the model's price in force now), and the call is recorded as a usage event
//!   of environment `development` with the prompt's id and version — failed calls too, as
//!   `error` or `timeout` — priced and appended by the same
//!   [`Recorder`](tally_domain::recording::Recorder) as `POST /v1/events`. The key is read from the environment per call and never stored or
//!   returned.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tally_domain::config::{Model, PromptVersion};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};
use tally_schemas::event::{Cost, Operation, Status};
use tally_schemas::{Environment, Pico, UsageEvent};
use uuid::Uuid;

use crate::lookup::find_prompt;
use crate::lookup::{find_model, find_provider};
use crate::routes::API_BASE;
use crate::state::QueryState;

/// Features of prompts that belong to none are recorded under this name.
pub const UNASSIGNED_FEATURE: &str = "prompt-test";

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

/// Fills `{{name}}` placeholders (whitespace inside the braces allowed).
pub fn render(content: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(content.len());
    let mut rest = content;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The variables as text, checked against what the version declares.
fn values(
    version: &PromptVersion,
    given: BTreeMap<String, Value>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let declared: BTreeSet<&str> = version.variables.iter().map(String::as_str).collect();
    let missing: Vec<&str> = declared
        .iter()
        .copied()
        .filter(|d| !given.contains_key(*d))
        .collect();
    if !missing.is_empty() {
        return Err(invalid(
            "variables",
            format!("missing: {}", missing.join(", ")),
        ));
    }
    let unknown: Vec<&str> = given
        .keys()
        .map(String::as_str)
        .filter(|g| !declared.contains(g))
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(
            "variables",
            format!(
                "unknown: {} (version {} declares {})",
                unknown.join(", "),
                version.version,
                version.variables.join(", ")
            ),
        ));
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
    let version = match body.version {
        Some(n) => versions
            .iter()
            .find(|v| v.version == n)
            .ok_or_else(|| invalid("version", format!("prompt {prompt_id} has no version {n}")))?,
        None => versions
            .iter()
            .find(|v| v.is_active)
            .or(versions.last())
            .ok_or_else(|| ApiError::internal(format!("prompt {prompt_id} has no versions")))?,
    };
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
    let provider = find_provider(&state, &model.provider).await?;
    let (Some(base_url), Some(key_env)) = (provider.base_url.clone(), provider.api_key_env.clone())
    else {
        result.reason = Some(format!(
            "provider {} has no base_url or api_key_env",
            provider.name
        ));
        return Ok(data(result));
    };
    let Some(key) = std::env::var(&key_env).ok().filter(|k| !k.is_empty()) else {
        result.reason = Some(format!(
            "{key_env} is not set in this process's environment"
        ));
        return Ok(data(result));
    };

    let started = Instant::now();
    let call = chat_completion(&base_url, &key, &model.name, &result.rendered).await;
    let latency = started.elapsed();
    let (status, error) = match &call {
        Ok(_) => (Status::Success, None),
        Err(Failure::Timeout) => (
            Status::Timeout,
            Some("the provider did not answer within 60 s".to_string()),
        ),
        Err(Failure::Error(message)) => (Status::Error, Some(message.clone())),
    };
    let answer = call.unwrap_or_default();
    let (error_message, error_message_truncated) = match error.clone().filter(|t| !t.is_empty()) {
        Some(text) => {
            let (kept, cut) = tally_schemas::validate::truncate_message(text);
            (Some(kept), cut)
        }
        None => (None, false),
    };
    let mut event = UsageEvent {
        event_id: format!("prompt-test-{}", Uuid::now_v7()),
        occurred_at_us: state.clock.now().timestamp_micros(),
        feature: prompt
            .feature
            .clone()
            .unwrap_or_else(|| UNASSIGNED_FEATURE.to_string()),
        model: model.name.clone(),
        provider: model.provider.clone(),
        environment: Environment::Development,
        operation: Operation::Chat,
        status,
        error_type: match status {
            Status::Success => None,
            Status::Timeout => Some("timeout".into()),
            Status::Error => Some("provider_error".into()),
        },
        error_message,
        error_message_truncated,
        latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        input_tokens: answer.input_tokens,
        output_tokens: answer.output_tokens,
        cached_input_tokens: answer.cached_input_tokens.min(answer.input_tokens),
        cost: Cost::Pending,
        user_id: Some(caller.key_name.clone()),
        prompt_id: Some(prompt.id.to_string()),
        prompt_version: Some(version.version.to_string()),
        experiment_id: None,
        variant: None,
        attributes: vec![("source".into(), "prompt-test".into())],
    };
    state
        .recorder
        .price_now(state.config.as_ref(), std::iter::once(&mut event))
        .await?;
    result.event_id = Some(event.event_id.clone());
    result.sent = true;
    result.status = Some(status);
    result.error = error;
    result.output = answer.output;
    result.input_tokens = Some(event.input_tokens);
    result.output_tokens = Some(event.output_tokens);
    result.cached_input_tokens = Some(event.cached_input_tokens);
    result.latency_ms = Some(latency.as_secs_f64() * 1000.0);
    result.cost_usd = event
        .cost
        .picos()
        .map(|p| Pico(i128::from(p)).to_decimal_string());
    state.recorder.append(vec![event]).await?;
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

#[derive(Debug, Default)]
struct Answer {
    output: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
}

enum Failure {
    Timeout,
    Error(String),
}

/// One OpenAI-compatible chat completion.
#[tracing::instrument(name = "provider.chat_completion", skip(key, text), err(Display))]
async fn chat_completion(
    base_url: &str,
    key: &str,
    model: &str,
    text: &str,
) -> Result<Answer, Failure> {
    let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Failure::Error(format!("cannot build an HTTP client: {e}")))?;
    let response = client
        .post(&url)
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                Failure::Timeout
            } else {
                Failure::Error(format!("calling {url}: {e}"))
            }
        })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>();
        return Err(Failure::Error(
            format!("the provider answered {status} {detail}")
                .trim()
                .to_string(),
        ));
    }
    let usage = &body["usage"];
    Ok(Answer {
        output: body["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string),
        input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
        cached_input_tokens: usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
    })
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => write!(f, "timeout"),
            Failure::Error(m) => write!(f, "{m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_fills_every_placeholder() {
        let values: BTreeMap<String, String> = [
            ("name".to_string(), "Ada".to_string()),
            ("n".to_string(), "3".to_string()),
        ]
        .into();
        assert_eq!(
            render("Hi {{ name }}, {{n}} tags for {{name}}.", &values),
            "Hi Ada, 3 tags for Ada."
        );
        assert_eq!(render("no {{ placeholder", &values), "no {{ placeholder");
    }
}
