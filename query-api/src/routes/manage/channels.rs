//! Notification channels: `GET|POST /notification-channels`, `DELETE /notification-channels/{id}`,
//! `POST /notification-channels/{id}/test`.
//!
//! A channel is a `webhook` (JSON, signed with HMAC-SHA256 when it names the environment variable
//! holding a secret, `secret_env`) or a `slack` incoming webhook. Their URLs often carry a secret
//! themselves (Slack's do), so only platform admins read channels. A channel named by an alert
//! rule or a budget cannot be deleted (`409`). `test` sends a sample notification at once and
//! answers how the receiver took it; nothing is stored.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use serde::{Deserialize, Serialize};
use tally_domain::alerting::{Alert, AlertKind, AlertState, Attempt, Delivery};
use tally_domain::config::{Channel, ChannelSpec, ChannelType, Severity};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};
use uuid::Uuid;

use crate::lookup::find_channel;
use crate::routes::{change, API_BASE};
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let channels = format!("{API_BASE}/notification-channels");
    let channel = format!("{channels}/{{id}}");
    r.serve(
        Route::get(
            &channels,
            Access::Admin,
            "Notification channels, by name",
            list,
        )
        .returns::<Data<Vec<Channel>>>(200),
    )
    .serve(
        Route::post(
            &channels,
            Access::Admin,
            "Create a notification channel",
            create,
        )
        .accepts_requiring::<ChannelBody>(&["name", "type", "url"])
        .returns::<Data<Channel>>(201),
    )
    .serve(
        Route::delete(
            &channel,
            Access::Admin,
            "Delete a notification channel no rule or budget names",
            remove,
        )
        .returns::<Data<Channel>>(200),
    )
    .serve(
        Route::post(
            format!("{channel}/test"),
            Access::Admin,
            "Send a sample notification to the channel now",
            test,
        )
        .returns::<Data<TestOutcome>>(200),
    )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ChannelBody {
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::text")]
    name: Option<String>,
    #[serde(rename = "type")]
    channel_type: Option<ChannelType>,
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::http_url")]
    url: Option<String>,
    /// The environment variable holding a webhook's signing secret (never the secret).
    #[serde(default)]
    #[schemars(schema_with = "crate::fields::env_name")]
    secret_env: Option<String>,
}

impl ChannelBody {
    fn spec(self) -> Result<ChannelSpec, ApiError> {
        let spec = ChannelSpec {
            name: self.name.ok_or_else(|| invalid("name", "is required"))?,
            channel_type: self.channel_type.ok_or_else(|| {
                invalid(
                    "type",
                    format!("is required: one of {}", ChannelType::NAMES.join(", ")),
                )
            })?,
            url: self.url.ok_or_else(|| invalid("url", "is required"))?,
            secret_env: self.secret_env,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// How a test notification went.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct TestOutcome {
    /// The receiver answered 2xx.
    delivered: bool,
    attempt: Attempt,
}

async fn list(State(state): State<QueryState>) -> Result<impl IntoResponse, ApiError> {
    Ok(data(state.config.list_channels().await?))
}

async fn create(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<ChannelBody>,
) -> Result<impl IntoResponse, ApiError> {
    let created = state
        .config
        .create_channel(body.spec()?, &change(&state, &caller))
        .await?;
    Ok((StatusCode::CREATED, data(created)))
}

async fn remove(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = find_channel(&state, &id).await?.id;
    Ok(data(
        state
            .config
            .delete_channel(id, &change(&state, &caller))
            .await?,
    ))
}

async fn test(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let channel = find_channel(&state, &id).await?;
    let now = state.clock.now();
    let sample = Alert {
        id: Uuid::now_v7(),
        kind: AlertKind::Rule,
        rule_id: None,
        budget_id: None,
        key: "test".into(),
        name: format!("Test notification to {}", channel.spec.name),
        state: AlertState::Firing,
        severity: Severity::Info,
        labels: BTreeMap::from([
            ("test".to_string(), "true".to_string()),
            ("requested_by".to_string(), caller.key_name.clone()),
        ]),
        value: 0.0,
        threshold: 0.0,
        summary: "A test notification from Tally: this channel is reachable.".into(),
        started_at: now,
        firing_at: Some(now),
        resolved_at: None,
        acknowledged_by: None,
        acknowledged_at: None,
        updated_at: now,
        deliveries: Vec::new(),
    };
    let dedup_key = Delivery::dedup_key(sample.id, AlertState::Firing);
    let body = tally_alerting::notify::body(
        channel.spec.channel_type,
        &sample,
        AlertState::Firing,
        &dedup_key,
        &state.public_url,
    );
    let attempt = state.notifier.send(&channel, &body, &dedup_key, now).await;
    Ok(data(TestOutcome {
        delivered: attempt.error.is_none(),
        attempt,
    }))
}
