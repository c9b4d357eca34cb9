//! What the console's forms change. Each form is a `POST` carrying the session's CSRF token;
//! its handler checks the role and the token, makes the one API call a client would make,
//! and redirects back (`303`) with a flash: what happened, or the API's error with the field
//! it names (shown next to that control). Forms work without JavaScript.
//!
//! Invariant: no rule is decided here — the API route validates and refuses; the console
//! translates form fields to the route's JSON body and shows the answer.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde_json::{json, Value};
use tally_domain::access::Access;

use crate::api::{encode, Failure};
use crate::document::Refusal;
use crate::flash::Flash;
use crate::session::Signed;
use crate::{Console, BASE};

type Fields = HashMap<String, String>;

/// Where to return after a form: its `back` field when that is a console page.
pub fn back(form: &Fields, default: &str) -> String {
    match form.get("back") {
        Some(b) if b.starts_with(BASE) && !b.contains("//") && !b.contains('\\') => b.clone(),
        _ => default.to_string(),
    }
}

/// A form field, trimmed; empty is absent.
pub fn field<'a>(form: &'a Fields, name: &str) -> Option<&'a str> {
    form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Checks role and token, calls the API, and redirects to `to` with what happened.
async fn submit(
    console: &Console,
    signed: &Signed,
    form: &Fields,
    call: (Method, String, Option<Value>),
    to: String,
    done: impl FnOnce(&Value) -> String,
) -> Response {
    if let Err(refused) = allowed(signed, form) {
        return refused.into_response();
    }
    let (method, path, body) = call;
    match console.api.send(&signed.caller, method, &path, body).await {
        Ok(answer) => Flash::ok(done(&answer)).redirect(&to),
        Err(failure) => refuse(failure, &to, form),
    }
}

/// Every console form changes configuration, which only admins may: the role, then the
/// form's CSRF token, are checked before anything else is read or done.
pub fn allowed(signed: &Signed, form: &Fields) -> Result<(), Refusal> {
    signed
        .may(Access::Admin)
        .and_then(|()| signed.check_csrf(form))
}

/// A text field of an API answer (empty when absent), for the flash that says what happened.
fn word<'a>(answer: &'a Value, key: &str) -> &'a str {
    answer[key].as_str().unwrap_or_default()
}

/// Back to the form with the API's refusal, the field it names and what was typed.
fn refuse(failure: Failure, to: &str, form: &Fields) -> Response {
    Flash::error(failure.message, failure.field)
        .keeping(form)
        .redirect(to)
}

fn feature_page(name: &str, tab: &str) -> String {
    format!("{BASE}/features/{}?tab={tab}", encode(name))
}

/// `POST /features/{name}/deploy`: the change-model dialog (`model_id`, `environment`).
pub async fn deploy_to_feature(
    State(console): State<Console>,
    signed: Signed,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let to = back(&form, &feature_page(&name, "models"));
    if let Err(refused) = allowed(&signed, &form) {
        return refused.into_response();
    }
    let Some(model) = field(&form, "model_id") else {
        return Flash::error("choose a model", Some("model_id".into())).redirect(&to);
    };
    let environment = field(&form, "environment").unwrap_or_default();
    submit(
        &console,
        &signed,
        &form,
        (
            Method::POST,
            format!("/models/{}/deploy", encode(model)),
            Some(json!({"feature": name, "environment": environment})),
        ),
        to,
        |a| {
            format!(
                "{} in {} now uses {}/{}",
                word(a, "feature"),
                word(a, "environment"),
                word(a, "provider"),
                word(a, "model")
            )
        },
    )
    .await
}

/// `POST /models/{id}/deploy`: deploy from a model's card (`feature`, `environment`).
pub async fn deploy_model(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let to = back(&form, &format!("{BASE}/models"));
    let body = json!({
        "feature": field(&form, "feature").unwrap_or_default(),
        "environment": field(&form, "environment").unwrap_or_default(),
    });
    submit(
        &console,
        &signed,
        &form,
        (
            Method::POST,
            format!("/models/{}/deploy", encode(&id)),
            Some(body),
        ),
        to,
        |a| {
            format!(
                "deployed {}/{} to {} in {}",
                word(a, "provider"),
                word(a, "model"),
                word(a, "feature"),
                word(a, "environment")
            )
        },
    )
    .await
}

/// `POST /features/{name}/rollback` (`environment`).
pub async fn rollback(
    State(console): State<Console>,
    signed: Signed,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let to = back(&form, &feature_page(&name, "models"));
    let environment = field(&form, "environment").unwrap_or_default();
    submit(
        &console,
        &signed,
        &form,
        (
            Method::POST,
            format!("/features/{}/rollback", encode(&name)),
            Some(json!({"environment": environment})),
        ),
        to,
        |a| {
            format!(
                "rolled back {} in {} to {}/{}",
                word(a, "feature"),
                word(a, "environment"),
                word(a, "provider"),
                word(a, "model")
            )
        },
    )
    .await
}

/// `POST /features/{name}/settings` (`display_name`, `description`, `status`): a partial
/// `PUT /features/{name}` — what the form does not name (the config) stays as it is; an
/// empty description clears it.
pub async fn feature_settings(
    State(console): State<Console>,
    signed: Signed,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let to = back(&form, &feature_page(&name, "settings"));
    let body = json!({
        "display_name": field(&form, "display_name").unwrap_or_default(),
        "description": form.get("description").map(|d| d.trim()).unwrap_or_default(),
        "status": field(&form, "status").unwrap_or_default(),
    });
    submit(
        &console,
        &signed,
        &form,
        (
            Method::PUT,
            format!("/features/{}", encode(&name)),
            Some(body),
        ),
        to,
        |a| format!("saved the settings of {}", word(a, "name")),
    )
    .await
}

/// `POST /features/{name}/prompts/{id}/activate` (`version`).
pub async fn activate_prompt(
    State(console): State<Console>,
    signed: Signed,
    Path((name, id)): Path<(String, String)>,
    Form(form): Form<Fields>,
) -> Response {
    let to = back(&form, &feature_page(&name, "prompts"));
    let version = field(&form, "version").unwrap_or_default().to_string();
    submit(
        &console,
        &signed,
        &form,
        (
            Method::POST,
            format!(
                "/prompts/{}/versions/{}/activate",
                encode(&id),
                encode(&version)
            ),
            None,
        ),
        to,
        |a| format!("version {} is now active", a["version"]),
    )
    .await
}

/// `POST /features/{name}/prompts/{id}/test-runs` (`model_<id>` checkboxes): runs every test
/// case of the prompt on the checked models, then shows the run.
pub async fn run_test_cases(
    State(console): State<Console>,
    signed: Signed,
    Path((name, id)): Path<(String, String)>,
    Form(form): Form<Fields>,
) -> Response {
    if let Err(refused) = allowed(&signed, &form) {
        return refused.into_response();
    }
    let to = back(&form, &feature_page(&name, "prompts"));
    let mut models: Vec<&str> = form
        .iter()
        .filter(|(_, v)| v.as_str() == "on")
        .filter_map(|(k, _)| k.strip_prefix("model_"))
        .collect();
    models.sort_unstable();
    let body = json!({"prompt_id": id, "models": models});
    match console
        .api
        .send(
            &signed.caller,
            Method::POST,
            "/test-cases/execute",
            Some(body),
        )
        .await
    {
        Ok(run) => Flash::ok(format!(
            "test run started: {} calls",
            run["calls_total"].as_u64().unwrap_or(0)
        ))
        .redirect(&format!("{BASE}/test-runs/{}", encode(word(&run, "id")))),
        Err(failure) => refuse(failure, &to, &form),
    }
}

/// `POST /features/{name}/prompts/{id}/status` (`version`, `status`): a review step.
pub async fn prompt_status(
    State(console): State<Console>,
    signed: Signed,
    Path((name, id)): Path<(String, String)>,
    Form(form): Form<Fields>,
) -> Response {
    let to = back(&form, &feature_page(&name, "prompts"));
    let version = field(&form, "version").unwrap_or_default().to_string();
    let status = field(&form, "status").unwrap_or_default().to_string();
    submit(
        &console,
        &signed,
        &form,
        (
            Method::POST,
            format!(
                "/prompts/{}/versions/{}/status",
                encode(&id),
                encode(&version)
            ),
            Some(json!({ "status": status })),
        ),
        to,
        |a| format!("version {} is now {}", a["version"], word(a, "status")),
    )
    .await
}

/// `POST /models/{id}/prices` (`effective_from`, dollars per million tokens).
pub async fn add_price(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let to = back(&form, &format!("{BASE}/models"));
    // A date alone means its start (UTC); a `datetime-local` value is read as UTC.
    let effective = field(&form, "effective_from").map(|v| match v.len() {
        10 => format!("{v}T00:00:00Z"),
        16 => format!("{v}:00Z"),
        _ => v.to_string(),
    });
    let mut body = json!({
        "effective_from": effective,
        "input_usd_per_mtok": field(&form, "input_usd_per_mtok"),
        "output_usd_per_mtok": field(&form, "output_usd_per_mtok"),
    });
    if let Some(cached) = field(&form, "cached_input_usd_per_mtok") {
        body["cached_input_usd_per_mtok"] = json!(cached);
    }
    submit(
        &console,
        &signed,
        &form,
        (
            Method::POST,
            format!("/models/{}/prices", encode(&id)),
            Some(body),
        ),
        to,
        |a| {
            format!(
                "added a price for {}/{} from {}",
                word(a, "provider"),
                word(a, "model"),
                word(a, "effective_from")
            )
        },
    )
    .await
}

/// `POST /alerts/{id}/acknowledge`.
pub async fn acknowledge(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let to = back(&form, &format!("{BASE}/budgets"));
    submit(
        &console,
        &signed,
        &form,
        (
            Method::POST,
            format!("/alerts/{}/acknowledge", encode(&id)),
            None,
        ),
        to,
        |_| "alert acknowledged".to_string(),
    )
    .await
}

/// `POST /api-keys/{id}/revoke` (`DELETE /api-keys/{id}`).
pub async fn revoke_key(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let to = back(&form, &format!("{BASE}/api-keys"));
    submit(
        &console,
        &signed,
        &form,
        (Method::DELETE, format!("/api-keys/{}", encode(&id)), None),
        to,
        |a| format!("revoked the key {}", word(a, "name")),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_return_only_to_console_pages() {
        let mut form = Fields::new();
        assert_eq!(back(&form, "/d"), "/d");
        form.insert("back".into(), "https://evil.example/".into());
        assert_eq!(back(&form, "/d"), "/d");
        form.insert("back".into(), format!("{BASE}//evil.example"));
        assert_eq!(back(&form, "/d"), "/d");
        let page = format!("{BASE}/features/chatbot?tab=models");
        form.insert("back".into(), page.clone());
        assert_eq!(back(&form, "/d"), page);
        form.insert("x".into(), "  ".into());
        assert_eq!(field(&form, "x"), None);
    }
}
