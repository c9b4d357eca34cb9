//! Query parameters: what each route declares it takes ([`tally_http::route::Param`], typed as
//! the parsing here accepts them, so the API contract and the server agree), and their parsing
//! with errors that name the parameter.
//!
//! Unknown parameters are rejected (a misspelt `time_range` would otherwise silently fall back
//! to the default window). A route passes the same declaration to its contract and to
//! [`Params::new`], so the names accepted and the names documented are one list.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};
use tally_domain::store::Filter;
use tally_http::http::ApiError;
use tally_http::route::Param;
use tally_schemas::Environment;

use tally_domain::window::{named_range, Window, MAX_WINDOW_DAYS, RANGES};

pub struct Params(HashMap<String, String>);

/// Dimensions and time keys a breakdown can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKey {
    Feature,
    Provider,
    Model,
    Environment,
    PromptId,
    PromptVersion,
    ExperimentId,
    Variant,
    Hour,
    Day,
}

impl GroupKey {
    pub const ALL: [GroupKey; 10] = [
        GroupKey::Feature,
        GroupKey::Provider,
        GroupKey::Model,
        GroupKey::Environment,
        GroupKey::PromptId,
        GroupKey::PromptVersion,
        GroupKey::ExperimentId,
        GroupKey::Variant,
        GroupKey::Hour,
        GroupKey::Day,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupKey::Feature => "feature",
            GroupKey::Provider => "provider",
            GroupKey::Model => "model",
            GroupKey::Environment => "environment",
            GroupKey::PromptId => "prompt_id",
            GroupKey::PromptVersion => "prompt_version",
            GroupKey::ExperimentId => "experiment_id",
            GroupKey::Variant => "variant",
            GroupKey::Hour => "hour",
            GroupKey::Day => "day",
        }
    }

    fn parse(text: &str) -> Option<GroupKey> {
        GroupKey::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// `time_range` (and its alias `timeRange`): a window ending now.
pub fn range_params() -> Vec<Param> {
    let names: Vec<&str> = RANGES.iter().map(|(name, _)| *name).collect();
    vec![
        Param::one_of("time_range", &names).describe(
            "The window ending now (the route's default when no window is given); not with from/to",
        ),
        Param::one_of("timeRange", &names).describe("Alias of time_range"),
    ]
}

/// The window: [`range_params`], or `from` (and `to`, default now) as RFC 3339 instants.
pub fn window_params() -> Vec<Param> {
    let mut params = range_params();
    params.extend([
        Param::instant("from").describe(format!(
            "Start of the window (inclusive), earlier than to; the window spans at most \
             {MAX_WINDOW_DAYS} days and is widened to whole minutes; not with time_range"
        )),
        Param::instant("to").describe("End of the window (exclusive; default now); needs from"),
    ]);
    params
}

/// `environment`.
pub fn environment_param() -> Param {
    let names: Vec<&str> = Environment::ALL.iter().map(|e| e.as_str()).collect();
    Param::one_of("environment", &names)
}

/// `environment` and the window: the routes that read one environment's recent events.
pub static ENVIRONMENT_WINDOW: LazyLock<Vec<Param>> =
    LazyLock::new(|| joined([vec![environment_param()], window_params()]));

/// The dimension filters: exact matches on the events' fields.
pub fn filter_params() -> Vec<Param> {
    vec![
        Param::text("feature"),
        Param::text("model"),
        Param::text("provider"),
        environment_param(),
        Param::text("prompt_id"),
        Param::text("prompt_version"),
        Param::text("experiment_id"),
        Param::text("variant"),
    ]
}

/// `group_by`: a comma-separated list of `allowed` keys (hour and day not together).
pub fn group_by_param(allowed: &[GroupKey]) -> Param {
    let names: Vec<&str> = allowed.iter().map(|k| k.name()).collect();
    let mut param = Param::list_of("group_by", &names);
    if allowed.contains(&GroupKey::Hour) && allowed.contains(&GroupKey::Day) {
        param.schema["not"] = serde_json::json!({"allOf": [
            {"contains": {"const": "hour"}},
            {"contains": {"const": "day"}},
        ]});
    }
    param
}

/// `limit`: 1 to `max`.
pub fn limit_param(max: u64) -> Param {
    Param::integer("limit", 1, Some(max))
}

/// Concatenates parameter lists.
pub fn joined(parts: impl IntoIterator<Item = Vec<Param>>) -> Vec<Param> {
    parts.into_iter().flatten().collect()
}

/// A `400` naming the first parameter of `query` that the route does not declare.
pub fn refuse_unknown(query: &HashMap<String, String>, declared: &[Param]) -> Result<(), ApiError> {
    match query
        .keys()
        .find(|k| !declared.iter().any(|p| p.name == k.as_str()))
    {
        Some(unknown) => {
            let names: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
            Err(ApiError::bad_param(
                unknown,
                format!("unknown parameter; accepted: {}", names.join(", ")),
            ))
        }
        None => Ok(()),
    }
}

impl Params {
    /// Wraps the query map, rejecting any parameter the route does not declare.
    pub fn new(query: HashMap<String, String>, declared: &[Param]) -> Result<Params, ApiError> {
        refuse_unknown(&query, declared)?;
        Ok(Params(query))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn instant(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::bad_param(
                            name,
                            "must be an RFC 3339 instant, e.g. 2026-01-31T00:00:00Z",
                        )
                    })
            })
            .transpose()
    }

    /// The value of `name` read by `parse` (a closed set of words), `None` when absent; a
    /// `400` naming `name` and the accepted words otherwise.
    pub fn word<T>(
        &self,
        name: &str,
        words: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                parse(v).ok_or_else(|| {
                    ApiError::bad_param(name, format!("must be one of {}", words.join(", ")))
                })
            })
            .transpose()
    }

    /// The window from `time_range` (5m|15m|1h|24h|7d|30d) or `from`/`to` (RFC 3339), else `default`.
    /// Returns the window and the named range when one was used.
    pub fn window(
        &self,
        now: DateTime<Utc>,
        default: &str,
    ) -> Result<(Window, Option<String>), ApiError> {
        let named = self.get("time_range").or_else(|| self.get("timeRange"));
        let (from, to) = (self.instant("from")?, self.instant("to")?);
        if named.is_some() && (from.is_some() || to.is_some()) {
            return Err(ApiError::bad_param(
                "time_range",
                "use either time_range or from/to, not both",
            ));
        }
        if let Some(from) = from {
            return Ok((Window::between(from, to.unwrap_or(now))?, None));
        }
        if to.is_some() {
            return Err(ApiError::bad_param("from", "is required when to is given"));
        }
        let name = named.unwrap_or(default);
        let range = named_range(name).ok_or_else(|| {
            ApiError::bad_param("time_range", "must be one of 5m, 15m, 1h, 24h, 7d, 30d")
        })?;
        Ok((Window::last(range, now), Some(name.to_string())))
    }

    pub fn filter(&self) -> Result<Filter, ApiError> {
        let environment = self
            .get("environment")
            .map(|e| {
                Environment::parse(e).ok_or_else(|| {
                    ApiError::bad_param("environment", "must be development, staging or production")
                })
            })
            .transpose()?;
        Ok(Filter {
            feature: self.get("feature").map(str::to_string),
            model: self.get("model").map(str::to_string),
            provider: self.get("provider").map(str::to_string),
            environment,
            prompt_id: self.get("prompt_id").map(str::to_string),
            prompt_version: self.get("prompt_version").map(str::to_string),
            experiment_id: self.get("experiment_id").map(str::to_string),
            variant: self.get("variant").map(str::to_string),
        })
    }

    /// `group_by` as a comma-separated list of `allowed` keys; `default` when absent.
    pub fn group_by(
        &self,
        allowed: &[GroupKey],
        default: &[GroupKey],
    ) -> Result<Vec<GroupKey>, ApiError> {
        let Some(text) = self.get("group_by") else {
            return Ok(default.to_vec());
        };
        let names: Vec<&str> = allowed.iter().map(|k| k.name()).collect();
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let key = GroupKey::parse(part)
                .filter(|k| allowed.contains(k))
                .ok_or_else(|| {
                    ApiError::bad_param(
                        "group_by",
                        format!("{part} is not a grouping; use any of {}", names.join(", ")),
                    )
                })?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.contains(&GroupKey::Hour) && keys.contains(&GroupKey::Day) {
            return Err(ApiError::bad_param(
                "group_by",
                "group by hour or by day, not both",
            ));
        }
        Ok(keys)
    }

    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_param("limit", format!("must be an integer from 1 to {max}"))
                }),
        }
    }
}

/// The span of a named range in seconds, for callers that need it.
pub fn range_seconds(name: &str) -> Option<i64> {
    named_range(name).map(|d: Duration| d.num_seconds())
}

/// The `{id}` of a path, as a UUID (`400` naming `id` otherwise).
pub fn parse_id(id: &str) -> Result<uuid::Uuid, tally_http::http::ApiError> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| tally_http::http::ApiError::bad_param("id", "must be a UUID"))
}
