//! Filters, search, sort and pagination for configuration listings.
//!
//! Configuration is small (hundreds of rows), so a listing reads everything from the store and
//! narrows it here, one way for every resource: `?<filter>=value` (exact match on a field),
//! `q=` (case-insensitive substring of the name), `sort=field` or `sort=-field` (descending;
//! ties keep the store's order; `a.b` names a nested field), `limit` (1–1000, default 100) and `offset`. The answer is
//! `{"data": [...], "pagination": {"total", "limit", "offset"}}`, `total` counting every match.
//! Unknown parameters, fields and values are a `400` naming the parameter.

use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::DateTime;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use tally_http::http::ApiError;
use tally_http::route::Param;

/// What a resource's listing accepts.
pub struct ListSpec {
    /// `(parameter, field, allowed values)`; no values means any.
    pub filters: &'static [(&'static str, &'static str, &'static [&'static str])],
    /// Fields that may be sorted on; the first is the default (`-field`: descending).
    pub sorts: &'static [&'static str],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Pagination {
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Page {
    pub data: Vec<Value>,
    pub pagination: Pagination,
}

/// The shape of a listing of `T`, for the API contract.
#[derive(JsonSchema)]
pub struct Listing<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

/// The most a page holds.
const MAX_LIMIT: usize = 1000;

impl ListSpec {
    fn param_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.filters.iter().map(|(p, _, _)| *p).collect();
        names.extend(["q", "sort", "limit", "offset"]);
        names
    }

    /// Every query parameter the listing takes, typed as [`ListQuery::parse`] accepts them.
    pub fn params(&self) -> Vec<Param> {
        let mut params: Vec<Param> = self
            .filters
            .iter()
            .map(|(name, _, allowed)| match allowed {
                [] => Param::text(name),
                values => Param::one_of(name, values),
            })
            .collect();
        let sorts: Vec<String> = self
            .sorts
            .iter()
            .map(|s| s.trim_start_matches('-'))
            .flat_map(|s| [s.to_string(), format!("-{s}")])
            .collect();
        let sorts: Vec<&str> = sorts.iter().map(String::as_str).collect();
        params.extend([
            Param::text("q").describe("Case-insensitive substring of the name"),
            Param::one_of("sort", &sorts)
                .describe("The field to order by; prefix - for descending"),
            Param::integer("limit", 1, Some(MAX_LIMIT as u64)),
            Param::integer("offset", 0, None),
        ]);
        params
    }
}

#[derive(Debug)]
pub struct ListQuery {
    filters: Vec<(&'static str, String)>,
    search: Option<String>,
    sort: &'static str,
    descending: bool,
    limit: usize,
    /// No `limit` was given and the listing answers every match by default.
    unbounded: bool,
    offset: usize,
}

impl ListQuery {
    /// Without a `limit` parameter, answers every match (listings whose clients have always
    /// received everything); `pagination.limit` is then the number of matches.
    pub fn all_by_default(mut self, query_had_limit: bool) -> ListQuery {
        self.unbounded = !query_had_limit;
        self
    }

    pub fn parse(query: HashMap<String, String>, spec: &ListSpec) -> Result<ListQuery, ApiError> {
        let default = spec.sorts.first().copied().unwrap_or("name");
        let mut parsed = ListQuery {
            filters: Vec::new(),
            search: None,
            sort: default.trim_start_matches('-'),
            descending: default.starts_with('-'),
            limit: 100,
            unbounded: false,
            offset: 0,
        };
        for (key, value) in query {
            match key.as_str() {
                "q" => parsed.search = Some(value.to_lowercase()),
                "sort" => {
                    let (descending, field) = match value.strip_prefix('-') {
                        Some(f) => (true, f),
                        None => (false, value.as_str()),
                    };
                    let names: Vec<&'static str> = spec
                        .sorts
                        .iter()
                        .map(|s| s.trim_start_matches('-'))
                        .collect();
                    parsed.sort = names.iter().copied().find(|s| *s == field).ok_or_else(|| {
                        ApiError::bad_param(
                            "sort",
                            format!(
                                "must be one of {} (prefix - for descending)",
                                names.join(", ")
                            ),
                        )
                    })?;
                    parsed.descending = descending;
                }
                "limit" => parsed.limit = number(&key, &value, 1, MAX_LIMIT)?,
                "offset" => parsed.offset = offset(&value)?,
                _ => {
                    let (_, field, allowed) = spec
                        .filters
                        .iter()
                        .find(|(param, _, _)| *param == key)
                        .ok_or_else(|| {
                            ApiError::bad_param(
                                &key,
                                format!(
                                    "unknown parameter; accepted: {}",
                                    spec.param_names().join(", ")
                                ),
                            )
                        })?;
                    if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                        return Err(ApiError::bad_param(
                            &key,
                            format!("must be one of {}", allowed.join(", ")),
                        ));
                    }
                    parsed.filters.push((field, value));
                }
            }
        }
        Ok(parsed)
    }

    /// Narrows, orders and pages `items` (in the store's order).
    pub fn apply<T: Serialize>(&self, items: &[T]) -> Result<Page, ApiError> {
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let value = serde_json::to_value(item).map_err(ApiError::internal)?;
            if self.matches(&value) {
                rows.push(value);
            }
        }
        rows.sort_by(|a, b| {
            let order = compare(field(a, self.sort), field(b, self.sort));
            if self.descending {
                order.reverse()
            } else {
                order
            }
        });
        let total = rows.len();
        let limit = if self.unbounded { total } else { self.limit };
        let data = rows.into_iter().skip(self.offset).take(limit).collect();
        Ok(Page {
            data,
            pagination: Pagination {
                total,
                limit,
                offset: self.offset,
            },
        })
    }

    fn matches(&self, value: &Value) -> bool {
        let filtered = self
            .filters
            .iter()
            .all(|(field, wanted)| match &value[*field] {
                Value::Array(items) => items.iter().any(|v| text(v) == *wanted),
                v => text(v) == *wanted,
            });
        let found = self.search.as_ref().is_none_or(|q| {
            value["name"]
                .as_str()
                .is_some_and(|n| n.to_lowercase().contains(q))
        });
        filtered && found
    }
}

/// A field of a listed item: `name`, or `metrics.error_rate` for a nested one.
fn field<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| &v[key])
}

/// An offset: any whole number; one too large to count is past every list's end.
fn offset(value: &str) -> Result<usize, ApiError> {
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<usize>() {
        Ok(n) => Ok(n),
        Err(_) if digits => Ok(usize::MAX),
        Err(_) => Err(ApiError::bad_param(
            "offset",
            "must be a whole number of at least 0",
        )),
    }
}

fn number(key: &str, value: &str, min: usize, max: usize) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_param(
                key,
                if max == usize::MAX {
                    format!("must be a whole number of at least {min}")
                } else {
                    format!("must be a whole number from {min} to {max}")
                },
            )
        })
}

/// A scalar as query-string text (`null` never matches anything given).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "\u{0}null".into(),
        other => other.to_string(),
    }
}

/// Nulls first, then numbers, then times (RFC 3339 text, whose fractional seconds vary in
/// length, so their text does not sort), then everything else by its text.
fn compare(a: &Value, b: &Value) -> Ordering {
    let time = |v: &Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    };
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        _ => match (time(a), time(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => text(a).cmp(&text(b)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC: ListSpec = ListSpec {
        filters: &[("status", "status", &["on", "off"]), ("tag", "tags", &[])],
        sorts: &["name", "size", "at", "m.n"],
    };

    fn query(pairs: &[(&str, &str)]) -> Result<ListQuery, ApiError> {
        ListQuery::parse(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            &SPEC,
        )
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"name": "beta", "status": "on", "size": 10, "tags": ["x"], "at": "2026-01-01T00:00:00.5Z", "m": {"n": 3}}),
            json!({"name": "Alpha", "status": "off", "size": 2, "tags": [], "m": {"n": 1}}),
            json!({"name": "gamma", "status": "on", "size": 7, "tags": ["x", "y"], "at": "2026-01-01T00:00:00Z", "m": {"n": 2}}),
        ]
    }

    fn names(page: &Page) -> Vec<&str> {
        page.data
            .iter()
            .map(|v| v["name"].as_str().unwrap_or(""))
            .collect()
    }

    #[test]
    fn filters_search_sort_and_pages() {
        let page = query(&[("status", "on"), ("sort", "-size")])
            .and_then(|q| q.apply(&items()))
            .expect("page");
        assert_eq!(names(&page), vec!["beta", "gamma"]);
        let page = query(&[("tag", "y")])
            .and_then(|q| q.apply(&items()))
            .expect("page");
        assert_eq!(
            names(&page),
            vec!["gamma"],
            "array fields match any element"
        );
        let page = query(&[("q", "ALP")])
            .and_then(|q| q.apply(&items()))
            .expect("page");
        assert_eq!(names(&page), vec!["Alpha"]);
        let page = query(&[("sort", "size"), ("limit", "1"), ("offset", "1")])
            .and_then(|q| q.apply(&items()))
            .expect("page");
        assert_eq!(names(&page), vec!["gamma"]);
        let page = query(&[("sort", "-at")])
            .and_then(|q| q.apply(&items()))
            .expect("page");
        assert_eq!(
            names(&page),
            vec!["beta", "gamma", "Alpha"],
            "times sort as times (not as text); a missing one is last descending"
        );
        let page = query(&[("sort", "-m.n")])
            .and_then(|q| q.apply(&items()))
            .expect("page");
        assert_eq!(
            names(&page),
            vec!["beta", "gamma", "Alpha"],
            "a nested field"
        );
        let page = query(&[("sort", "size"), ("limit", "1"), ("offset", "1")])
            .and_then(|q| q.apply(&items()))
            .expect("page");
        assert_eq!(
            page.pagination,
            Pagination {
                total: 3,
                limit: 1,
                offset: 1
            }
        );
        let everything: Vec<Value> = (0..250)
            .map(|i| json!({"name": format!("f{i:03}")}))
            .collect();
        let page = query(&[])
            .map(|q| q.all_by_default(false))
            .and_then(|q| q.apply(&everything))
            .expect("page");
        assert_eq!((page.data.len(), page.pagination.limit), (250, 250));
        let page = query(&[("limit", "2")])
            .map(|q| q.all_by_default(true))
            .and_then(|q| q.apply(&everything))
            .expect("page");
        assert_eq!(
            names(&page),
            vec!["f000", "f001"],
            "an explicit limit still pages"
        );
        let page = query(&[]).and_then(|q| q.apply(&everything)).expect("page");
        assert_eq!(page.data.len(), 100, "other listings: 100 by default");
    }

    #[test]
    fn an_offset_too_large_to_count_is_past_the_end() {
        let page = query(&[("offset", "707268896905654453925838848")])
            .and_then(|q| q.apply(&items()))
            .expect("page");
        assert!(page.data.is_empty());
        assert_eq!(page.pagination.total, 3);
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (pairs, field) in [
            (vec![("status", "maybe")], "status"),
            (vec![("sort", "colour")], "sort"),
            (vec![("limit", "0")], "limit"),
            (vec![("offset", "-1")], "offset"),
            (vec![("colour", "red")], "colour"),
        ] {
            let err = query(&pairs).expect_err("refused");
            assert_eq!(err.field.as_deref(), Some(field), "{pairs:?}");
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }
}
