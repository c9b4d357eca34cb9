//! Managing: the configuration platform admins keep — features, providers, models with their
//! effective-dated prices and reprices, deployments, prompts and their tests, budgets,
//! experiments, API keys — and the audit log of every change. One file per resource, named as
//! its URL:
//!
//! - `features`: `POST /features`, `GET|PUT|DELETE /features/{name}`,
//!   `GET /features/{name}/deployments?environment=`, `POST /features/{name}/rollback`.
//! - `providers`: `GET|POST /providers`, `GET|PUT|DELETE /providers/{name}`,
//!   `GET /providers/{name}/models`. A provider names the *environment variable* holding its API
//!   key (`api_key_env`); a secret is never accepted, stored or returned.
//! - `models`: `GET|POST /models`, `GET|PUT|DELETE /models/{id}`, `GET|POST /models/{id}/prices`;
//!   `reprices`: `POST /models/{id}/reprice`, `GET /models/{id}/reprices`.
//! - `deployments`: `POST /models/{id}/deploy`, `GET /deployments` (every assignment, newest
//!   first).
//! - `prompts`: `/prompts…` and their versions; `prompt_tests`: `POST /prompts/{id}/test`.
//! - `budgets`, `experiments`, `test_cases` (`/test-cases…`), `keys` (`/api-keys…`), `audit`
//!   (`/audit`).
//! - `alert_rules` (`/alert-rules…`), `channels` (`/notification-channels…`).
//!
//! `PUT` updates the fields it is given and keeps the others; names are identities and cannot
//! change. Deleting what history refers to (a deployed model or feature, a provider with models)
//! is a `409`: set a status instead. Prices are only ever added: a new price applies to events
//! ingested from then on whose `occurred_at` is on or after its `effective_from`; events already
//! accepted keep their cost. Every change is recorded in the audit log. The rules themselves
//! live in the domain (`tally_domain::rules`); these handlers parse, call the store and answer.

mod alert_rules;
mod audit;
mod budgets;
mod channels;
mod deployments;
mod experiments;
mod features;
mod keys;
mod models;
mod prompt_tests;
mod prompts;
mod providers;
mod reprices;
mod test_cases;
mod test_runs;

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_domain::config::{
    Assignment, DeploySpec, Feature, FeatureSpec, FeatureStatus, Model, ModelPrice, ModelSpec,
    ModelStatus, ModelType, PriceSpec, Provider, ProviderSpec, ProviderStatus, ProviderType,
};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};
use tally_schemas::validate::check_slug;
use tally_schemas::Environment;

use super::{change, parse_id, API_BASE};
use crate::dollars::{micros_from_json, usd_of_micros};
use crate::listing::{ListQuery, ListSpec, Listing};
use crate::lookup::{find_feature, find_model, find_provider, model_prices};
use crate::params::{environment_param, Params};
use crate::state::QueryState;

/// Every managing route.
pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let r = features::routes(r);
    let r = providers::routes(r);
    let r = models::routes(r);
    let r = reprices::routes(r);
    let r = deployments::routes(r);
    let r = prompts::routes(r);
    let r = prompt_tests::routes(r);
    let r = budgets::routes(r);
    let r = alert_rules::routes(r);
    let r = channels::routes(r);
    let r = experiments::routes(r);
    let r = test_cases::routes(r);
    let r = test_runs::routes(r);
    let r = keys::routes(r);
    audit::routes(r)
}

fn slug(field: &'static str, value: &str) -> Result<(), ApiError> {
    check_slug(field, value).map_err(|e| invalid(field, e.reason))
}

/// One of a closed set's words, or a 422 naming `field` and the words it may be.
fn word<T>(
    field: &str,
    text: &str,
    parse: fn(&str) -> Option<T>,
    names: &[&str],
) -> Result<T, ApiError> {
    parse(text).ok_or_else(|| invalid(field, format!("must be one of {}", names.join(", "))))
}

/// Names are identities: a body may repeat the path's name, never change it.
fn same_name(given: Option<&str>, current: &str) -> Result<(), ApiError> {
    match given {
        Some(name) if name != current => Err(invalid(
            "name",
            "cannot be changed; create a new one and delete this one",
        )),
        _ => Ok(()),
    }
}

/// Empty text clears an optional field.
fn optional_text(given: Option<String>, current: Option<String>) -> Option<String> {
    match given {
        Some(text) if text.trim().is_empty() => None,
        Some(text) => Some(text),
        None => current,
    }
}

/// The model listing: `GET /models` and `GET /providers/{name}/models`.
pub(super) const MODEL_LIST: ListSpec = ListSpec {
    filters: &[
        ("provider", "provider", &[]),
        ("type", "model_type", ModelType::NAMES),
        ("status", "status", ModelStatus::NAMES),
        ("capability", "capabilities", &[]),
    ],
    sorts: &[
        "name",
        "provider",
        "model_type",
        "status",
        "created_at",
        "updated_at",
    ],
};
