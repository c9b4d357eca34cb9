//! The catalog platform admins manage: features, providers, models with their effective-dated
//! prices, and deployments (which model serves a feature in an environment).
//!
//! - Features: `POST /features`, `GET|PUT|DELETE /features/{name}` (the listing with metrics is
//!   [`super::features`]), `GET /features/{name}/deployments?environment=`,
//!   `POST /features/{name}/rollback {environment}`.
//! - Providers: `GET|POST /providers`, `GET|PUT|DELETE /providers/{name}`,
//!   `GET /providers/{name}/models`. A provider names the *environment variable* holding its API
//!   key (`api_key_env`); a secret is never accepted, stored or returned.
//! - Models: `GET|POST /models`, `GET|PUT|DELETE /models/{id}`, `GET|POST /models/{id}/prices`,
//!   `POST /models/{id}/deploy {feature, environment}`.
//! - `GET /deployments`: every assignment ever made, newest first.
//!
//! `PUT` updates the fields it is given and keeps the others; names are identities and cannot
//! change. Deleting what history refers to (a deployed model or feature, a provider with models)
//! is a `409`: set a status instead. Prices are only ever added: a new price applies to events
//! ingested from then on whose `occurred_at` is on or after its `effective_from`; events already
//! accepted keep their cost. Every change is recorded in the audit log.

mod deployments;
mod features;
mod models;
mod providers;

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_domain::config::{
    Assignment, DeploySpec, Feature, FeatureSpec, FeatureStatus, Model, ModelPrice, ModelSpec,
    PriceSpec, Provider, ProviderSpec,
};
use tally_http::auth::{Access, Caller, Routes};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_schemas::validate::check_slug;
use tally_schemas::Environment;

use super::{change, parse_id, API_BASE};
use crate::dollars::{micros_from_json, usd_of_micros};
use crate::listing::{ListQuery, ListSpec, Listing};
use crate::lookup::{find_feature, find_model, find_provider, model_prices};
use crate::params::Params;
use crate::state::QueryState;

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let r = features::routes(r);
    let r = providers::routes(r);
    let r = models::routes(r);
    deployments::routes(r)
}

fn slug(field: &'static str, value: &str) -> Result<(), ApiError> {
    check_slug(field, value).map_err(|e| invalid(field, e.reason))
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
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
