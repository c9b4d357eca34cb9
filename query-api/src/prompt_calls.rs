//! Trying a prompt on a model: the one path both the prompt test (`POST /prompts/{id}/test`)
//! and test runs (`POST /test-cases/execute`) take.
//!
//! - [`render`] fills a version's `{{name}}` placeholders; [`check_variables`] holds given
//!   values against what the version declares.
//! - [`reach`] finds how to call a model: its provider's `base_url` and the key in the
//!   environment variable `api_key_env` names (read per call, never stored or returned).
//! - [`call_and_record`] ([`call`], then [`record`]) sends the text as one user message to the provider's
//!   OpenAI-compatible `{base_url}/chat/completions` (60 s timeout) and records the call as a
//!   usage event of environment `development` with the prompt's id and version — failed calls
//!   too, as `error` or `timeout` — priced at the price in force now and appended by the same
//!   [`Recorder`](tally_domain::recording::Recorder) as `POST /v1/events`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_domain::config::{Model, Prompt, PromptVersion};
use tally_http::http::{invalid, ApiError};
use tally_schemas::event::{Cost, Operation, Status};
use tally_schemas::{Environment, UsageEvent};
use uuid::Uuid;

use crate::lookup::find_provider;
use crate::state::QueryState;

/// Features of prompts that belong to none are recorded under this name.
pub const UNASSIGNED_FEATURE: &str = "prompt-test";

/// How long a provider may take to answer one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Why `given` does not fit the variables `version` declares (missing or unknown ones), in
/// words; `None` when it fits.
pub fn check_variables<'a>(
    version: &PromptVersion,
    given: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let given: BTreeSet<&str> = given.into_iter().collect();
    let declared: BTreeSet<&str> = version.variables.iter().map(String::as_str).collect();
    let missing: Vec<&str> = declared.difference(&given).copied().collect();
    if !missing.is_empty() {
        return Some(format!("missing: {}", missing.join(", ")));
    }
    let unknown: Vec<&str> = given.difference(&declared).copied().collect();
    if !unknown.is_empty() {
        return Some(format!(
            "unknown: {} (version {} declares {})",
            unknown.join(", "),
            version.version,
            version.variables.join(", ")
        ));
    }
    None
}

/// The version `asked` for (`field` names it in the refusal), else the active one, else the
/// latest.
pub fn choose_version<'a>(
    prompt: &Prompt,
    versions: &'a [PromptVersion],
    asked: Option<i32>,
    field: &str,
) -> Result<&'a PromptVersion, ApiError> {
    match asked {
        Some(n) => versions
            .iter()
            .find(|v| v.version == n)
            .ok_or_else(|| invalid(field, format!("prompt {} has no version {n}", prompt.id))),
        None => versions
            .iter()
            .find(|v| v.is_active)
            .or(versions.last())
            .ok_or_else(|| ApiError::internal(format!("prompt {} has no versions", prompt.id))),
    }
}

/// Where and how to call a model.
#[derive(Clone)]
pub struct Reach {
    pub base_url: String,
    pub key: String,
}

/// How to call `model`, or why it cannot be called (in words).
pub async fn reach(state: &QueryState, model: &Model) -> Result<Result<Reach, String>, ApiError> {
    let provider = find_provider(state, &model.provider).await?;
    let (Some(base_url), Some(key_env)) = (provider.base_url.clone(), provider.api_key_env.clone())
    else {
        return Ok(Err(format!(
            "provider {} has no base_url or api_key_env",
            provider.name
        )));
    };
    let Some(key) = std::env::var(&key_env).ok().filter(|k| !k.is_empty()) else {
        return Ok(Err(format!(
            "{key_env} is not set in this process's environment"
        )));
    };
    Ok(Ok(Reach { base_url, key }))
}

/// A call made: what the provider said and the usage event that records it (priced, not yet
/// appended).
#[derive(Debug, Clone)]
pub struct Called {
    pub status: Status,
    pub error: Option<String>,
    pub output: Option<String>,
    pub latency: Duration,
    /// The event that records the call: tokens as counted, cost as priced.
    pub event: UsageEvent,
}

/// What a call is recorded with, besides what the call itself tells.
pub struct CallContext<'a> {
    pub prompt: &'a Prompt,
    pub version: &'a PromptVersion,
    pub model: &'a Model,
    /// Who asked (the key's name), recorded as the event's `user_id`.
    pub caller: &'a str,
    /// `source` and whatever else identifies the call (a run, a case).
    pub attributes: Vec<(String, String)>,
}

/// Calls the model with `text` and records the call (see the module docs); a failure to
/// record is the answer's error.
pub async fn call_and_record(
    state: &QueryState,
    reach: &Reach,
    context: CallContext<'_>,
    text: &str,
) -> Result<Called, ApiError> {
    let called = call(state, reach, context, text).await?;
    record(state, &called.event).await?;
    Ok(called)
}

/// Calls the model with `text`; the call's usage event, priced at the price in force now.
pub async fn call(
    state: &QueryState,
    reach: &Reach,
    context: CallContext<'_>,
    text: &str,
) -> Result<Called, ApiError> {
    let model = context.model;
    let started = Instant::now();
    let answer = chat_completion(&reach.base_url, &reach.key, &model.name, text).await;
    let latency = started.elapsed();
    let (status, error) = match &answer {
        Ok(_) => (Status::Success, None),
        Err(Failure::Timeout) => (
            Status::Timeout,
            Some(format!(
                "the provider did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            )),
        ),
        Err(Failure::Error(message)) => (Status::Error, Some(message.clone())),
    };
    let answer = answer.unwrap_or_default();
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
        feature: context
            .prompt
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
        user_id: Some(context.caller.to_string()),
        prompt_id: Some(context.prompt.id.to_string()),
        prompt_version: Some(context.version.version.to_string()),
        experiment_id: None,
        variant: None,
        attributes: context.attributes,
    };
    state
        .recorder
        .price_now(state.config.as_ref(), std::iter::once(&mut event))
        .await?;
    Ok(Called {
        status,
        error,
        output: answer.output,
        latency,
        event,
    })
}

/// Appends a call's event, trying again (after 0.2, 1 and 3 s) while the log answers that it
/// is unavailable (a full queue): the same `event_id` sent again counts once.
pub async fn record(state: &QueryState, event: &UsageEvent) -> Result<(), ApiError> {
    let mut waits = [200u64, 1_000, 3_000].into_iter();
    loop {
        match state.recorder.append(vec![event.clone()]).await {
            Ok(_) => return Ok(()),
            Err(err @ tally_domain::store::StoreError::Unavailable(_)) => match waits.next() {
                Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                None => return Err(err.into()),
            },
            Err(err) => return Err(err.into()),
        }
    }
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
        .timeout(CALL_TIMEOUT)
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
    let body: Value = match response.json().await {
        Ok(body) => body,
        Err(e) if status.is_success() => {
            return Err(Failure::Error(format!(
                "the provider's answer could not be read: {e}"
            )))
        }
        Err(_) => Value::Null,
    };
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
