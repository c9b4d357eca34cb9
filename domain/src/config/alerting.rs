//! What alerts watch and where they go: notification channels (webhooks, Slack) and alert rules
//! (a metric of a scope compared with a threshold over a window), with the rules both stores
//! enforce. Budgets name channels too ([`crate::config::BudgetSpec::channels`]).

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tally_schemas::Environment;
use uuid::Uuid;

use crate::error::StoreError;

named_enum!(
    /// How a channel is reached: a JSON webhook (signed when it names a secret) or a Slack
    /// incoming webhook.
    ChannelType { Webhook => "webhook", Slack => "slack" }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    /// Where notifications are posted (`http://` or `https://`).
    pub url: String,
    /// The environment variable holding the HMAC secret a webhook's body is signed with
    /// (`Tally-Signature: sha256=<hex>`); never the secret itself.
    pub secret_env: Option<String>,
}

impl ChannelSpec {
    /// The rules both stores enforce.
    pub fn validate(&self) -> Result<(), StoreError> {
        not_blank("name", &self.name)?;
        http_url("url", &self.url)?;
        if let Some(env) = &self.secret_env {
            if self.channel_type == ChannelType::Slack {
                return Err(StoreError::invalid(
                    "secret_env",
                    "Slack incoming webhooks are not signed; only a webhook channel takes a secret",
                ));
            }
            env_name("secret_env", env, "secret")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Channel {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: ChannelSpec,
    pub created_at: DateTime<Utc>,
}

named_enum!(
    /// What a rule measures over its window: `error_rate` in percent of requests,
    /// `latency_p95_ms` / `latency_p99_ms` in milliseconds, `cost_per_request_usd` over the
    /// priced requests, `spend_usd` the window's cost, `requests_per_minute` its throughput.
    AlertMetric {
        ErrorRate => "error_rate",
        LatencyP95Ms => "latency_p95_ms",
        LatencyP99Ms => "latency_p99_ms",
        CostPerRequestUsd => "cost_per_request_usd",
        SpendUsd => "spend_usd",
        RequestsPerMinute => "requests_per_minute",
    }
);

named_enum!(
    /// Whether the condition is the value being greater or less than the threshold.
    Comparator { Gt => "gt", Lt => "lt" }
);

impl Comparator {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparator::Gt => value > threshold,
            Comparator::Lt => value < threshold,
        }
    }
}

named_enum!(
    /// The window a rule's metric is computed over, ending with the current minute.
    RuleWindow { FiveMinutes => "5m", FifteenMinutes => "15m", Hour => "1h", Day => "24h" }
);

impl RuleWindow {
    pub fn duration(self) -> Duration {
        match self {
            RuleWindow::FiveMinutes => Duration::minutes(5),
            RuleWindow::FifteenMinutes => Duration::minutes(15),
            RuleWindow::Hour => Duration::hours(1),
            RuleWindow::Day => Duration::days(1),
        }
    }
}

named_enum!(
    Severity { Info => "info", Warning => "warning", Critical => "critical" }
);

/// Which traffic a rule watches: every field given narrows it (none: all traffic).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), regex(pattern = "[^\\s\\u0085]"))]
    pub feature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), regex(pattern = "[^\\s\\u0085]"))]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), regex(pattern = "[^\\s\\u0085]"))]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
}

/// Longest `for_seconds` a rule may wait before firing (a week).
pub const MAX_FOR_SECONDS: u64 = 7 * 86_400;
/// Largest `min_requests` a rule may ask for.
pub const MAX_MIN_REQUESTS: u64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertRuleSpec {
    pub name: String,
    pub metric: AlertMetric,
    pub scope: RuleScope,
    pub comparator: Comparator,
    pub threshold: f64,
    pub window: RuleWindow,
    /// Fewer requests than this in the window is "no data": the rule never fires on it.
    pub min_requests: u64,
    /// How long the condition must hold before the alert fires (0: at once).
    pub for_seconds: u64,
    pub severity: Severity,
    /// Notification channels the alert goes to.
    pub channels: Vec<Uuid>,
}

impl AlertRuleSpec {
    /// The rules both stores enforce.
    pub fn validate(&self) -> Result<(), StoreError> {
        not_blank("name", &self.name)?;
        if !self.threshold.is_finite() {
            return Err(StoreError::invalid("threshold", "must be a finite number"));
        }
        if self.metric != AlertMetric::ErrorRate && self.threshold < 0.0 {
            return Err(StoreError::invalid("threshold", "must not be negative"));
        }
        if self.metric == AlertMetric::ErrorRate && !(0.0..=100.0).contains(&self.threshold) {
            return Err(StoreError::invalid(
                "threshold",
                "is a percentage of requests for error_rate: 0 to 100",
            ));
        }
        if self.min_requests > MAX_MIN_REQUESTS {
            return Err(StoreError::invalid(
                "min_requests",
                format!("must be at most {MAX_MIN_REQUESTS}"),
            ));
        }
        if self.for_seconds > MAX_FOR_SECONDS {
            return Err(StoreError::invalid(
                "for_seconds",
                format!("must be at most {MAX_FOR_SECONDS} (a week)"),
            ));
        }
        for (field, value) in [
            ("scope.feature", &self.scope.feature),
            ("scope.model", &self.scope.model),
            ("scope.provider", &self.scope.provider),
        ] {
            if let Some(v) = value {
                not_blank(field, v)?;
            }
        }
        distinct_channels(&self.channels)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertRule {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: AlertRuleSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A list of channels names each at most once.
pub fn distinct_channels(channels: &[Uuid]) -> Result<(), StoreError> {
    let mut sorted = channels.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(StoreError::invalid("channels", "names a channel twice"));
    }
    Ok(())
}

fn not_blank(field: &str, value: &str) -> Result<(), StoreError> {
    if value.trim().is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    Ok(())
}

/// `url` is an `http://` or `https://` URL with a host and no whitespace (a provider's
/// `base_url`, a channel's `url`).
pub fn http_url(field: &str, url: &str) -> Result<(), StoreError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !url.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(StoreError::invalid(
            field,
            "must be an http:// or https:// URL",
        )),
    }
}

/// `name` is an environment variable's name (A-Z, 0-9 and _, not starting with a digit), the
/// variable holding a `what` (key, secret) — never the `what` itself.
pub fn env_name(field: &str, name: &str, what: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            field,
            format!(
                "must be the name of an environment variable (A-Z, 0-9 and _), not the {what} itself"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> AlertRuleSpec {
        AlertRuleSpec {
            name: "errors".into(),
            metric: AlertMetric::ErrorRate,
            scope: RuleScope::default(),
            comparator: Comparator::Gt,
            threshold: 5.0,
            window: RuleWindow::FiveMinutes,
            min_requests: 10,
            for_seconds: 60,
            severity: Severity::Critical,
            channels: vec![],
        }
    }

    fn field_of(r: Result<(), StoreError>) -> String {
        match r {
            Err(StoreError::Invalid { field, .. }) => field,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn rules_refuse_what_cannot_be_evaluated() {
        assert!(rule().validate().is_ok());
        for (bad, field) in [
            (
                AlertRuleSpec {
                    threshold: f64::NAN,
                    ..rule()
                },
                "threshold",
            ),
            (
                AlertRuleSpec {
                    threshold: 101.0,
                    ..rule()
                },
                "threshold",
            ),
            (
                AlertRuleSpec {
                    metric: AlertMetric::SpendUsd,
                    threshold: -1.0,
                    ..rule()
                },
                "threshold",
            ),
            (
                AlertRuleSpec {
                    for_seconds: MAX_FOR_SECONDS + 1,
                    ..rule()
                },
                "for_seconds",
            ),
            (
                AlertRuleSpec {
                    name: " ".into(),
                    ..rule()
                },
                "name",
            ),
            (
                AlertRuleSpec {
                    channels: vec![Uuid::nil(), Uuid::nil()],
                    ..rule()
                },
                "channels",
            ),
        ] {
            assert_eq!(field_of(bad.validate()), field);
        }
        // A spend threshold is not a percentage.
        let spend = AlertRuleSpec {
            metric: AlertMetric::SpendUsd,
            threshold: 250.0,
            ..rule()
        };
        assert!(spend.validate().is_ok());
    }

    #[test]
    fn channels_need_a_web_url_and_sign_only_webhooks() {
        let hook = ChannelSpec {
            name: "ops".into(),
            channel_type: ChannelType::Webhook,
            url: "https://hooks.example.com/tally".into(),
            secret_env: Some("TALLY_HOOK_SECRET".into()),
        };
        assert!(hook.validate().is_ok());
        for url in [
            "ftp://x",
            "https://",
            "http:///x",
            "https://a b",
            "hooks.example.com",
        ] {
            let bad = ChannelSpec {
                url: url.into(),
                ..hook.clone()
            };
            assert_eq!(field_of(bad.validate()), "url", "{url}");
        }
        let signed_slack = ChannelSpec {
            channel_type: ChannelType::Slack,
            ..hook.clone()
        };
        assert_eq!(field_of(signed_slack.validate()), "secret_env");
        let secret_itself = ChannelSpec {
            secret_env: Some("s3cr3t-value".into()),
            ..hook
        };
        assert_eq!(field_of(secret_itself.validate()), "secret_env");
    }
}
