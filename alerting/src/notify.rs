//! What a channel receives for a transition, and sending it.
//!
//! - **webhook**: `POST` of a JSON body `{dedup_key, transition, alert, link}` (the same bytes on
//!   every retry of one transition). When the channel names `secret_env`, the body is signed:
//!   `Tally-Signature: sha256=<hex HMAC-SHA256 of the body, keyed by that variable's value>`.
//!   `Tally-Dedup-Key` repeats the key as a header.
//! - **slack**: an incoming-webhook body with `text` (the fallback line) and `blocks`: what
//!   crossed what, the value and threshold, the labels, and a link to the console.
//!
//! A send succeeds when the receiver answers 2xx within the timeout; anything else is a failed
//! attempt with its status code or error.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tally_domain::alerting::{Alert, AlertState, Attempt};
use tally_domain::config::{Channel, ChannelType};

/// The header carrying a signed webhook body's HMAC.
pub const SIGNATURE_HEADER: &str = "Tally-Signature";
/// The header repeating the transition's dedup key.
pub const DEDUP_HEADER: &str = "Tally-Dedup-Key";

/// `sha256=<hex>` of the HMAC-SHA256 of `body` keyed by `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The console page of an alert, under `public_url`.
pub fn link(public_url: &str, alert: &Alert) -> String {
    format!(
        "{}/platform/ai-management/alerts/{}",
        public_url.trim_end_matches('/'),
        alert.id
    )
}

fn headline(alert: &Alert, transition: AlertState) -> String {
    let word = match transition {
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "RESOLVED",
        AlertState::Pending => "PENDING",
    };
    format!("[{word}] {} ({})", alert.name, alert.severity)
}

/// The body a channel of `kind` receives for `alert`'s transition into `transition`.
pub fn body(
    kind: ChannelType,
    alert: &Alert,
    transition: AlertState,
    dedup_key: &str,
    public_url: &str,
) -> Value {
    let mut bare = alert.clone();
    bare.deliveries.clear();
    let url = link(public_url, alert);
    match kind {
        ChannelType::Webhook => json!({
            "dedup_key": dedup_key,
            "transition": transition,
            "alert": bare,
            "link": url,
        }),
        ChannelType::Slack => {
            let labels: Vec<String> = alert
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let head = headline(alert, transition);
            json!({
                "text": format!("{head}: {}", alert.summary),
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": head}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": alert.summary}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": format!("*Value*\n{}", alert.value)},
                        {"type": "mrkdwn", "text": format!("*Threshold*\n{}", alert.threshold)},
                        {"type": "mrkdwn", "text": format!("*Started*\n{}", alert.started_at.to_rfc3339())},
                        {"type": "mrkdwn", "text": format!("*Kind*\n{}", alert.kind)},
                    ]},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": labels.join(" · ")},
                    ]},
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!("<{url}|Open in Tally>")}},
                ],
            })
        }
    }
}

/// Posts bodies to channels.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    pub fn new(timeout: StdDuration) -> Sender {
        Sender {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
        }
    }

    /// Posts `body` to `channel` (signed when it names a secret) and says how it went.
    pub async fn send(
        &self,
        channel: &Channel,
        body: &Value,
        dedup_key: &str,
        at: DateTime<Utc>,
    ) -> Attempt {
        let failed = |status_code: Option<u16>, error: String| Attempt {
            at,
            status_code,
            error: Some(error),
        };
        let bytes = body.to_string().into_bytes();
        let mut request = self
            .client
            .post(&channel.spec.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DEDUP_HEADER, dedup_key);
        if let Some(env) = &channel.spec.secret_env {
            match std::env::var(env) {
                Ok(secret) => {
                    request =
                        request.header(SIGNATURE_HEADER, signature(secret.as_bytes(), &bytes));
                }
                Err(_) => {
                    return failed(
                        None,
                        format!("the signing secret's environment variable {env} is not set"),
                    )
                }
            }
        }
        match request.body(bytes).send().await {
            Ok(response) if response.status().is_success() => Attempt {
                at,
                status_code: Some(response.status().as_u16()),
                error: None,
            },
            Ok(response) => {
                let status = response.status();
                failed(
                    Some(status.as_u16()),
                    format!("the receiver answered {status}"),
                )
            }
            Err(e) => failed(None, without_url(&e)),
        }
    }
}

/// A request error in words, without the URL (a webhook URL is often a secret itself).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut cause = String::new();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_gets_a_fallback_line_and_blocks_with_the_numbers_and_a_link() {
        use std::collections::BTreeMap;
        use tally_domain::alerting::AlertKind;
        use tally_domain::config::Severity;
        let at = DateTime::from_timestamp(1_775_000_000, 0).unwrap_or_default();
        let alert = Alert {
            id: uuid::Uuid::from_u128(5),
            kind: AlertKind::Budget,
            rule_id: None,
            budget_id: Some(uuid::Uuid::from_u128(6)),
            key: "k".into(),
            name: "chat month".into(),
            state: AlertState::Firing,
            severity: Severity::Critical,
            labels: BTreeMap::from([("budget".to_string(), "chat month".to_string())]),
            value: 104.5,
            threshold: 100.0,
            summary: "Budget chat month is at 104.5%".into(),
            started_at: at,
            firing_at: Some(at),
            resolved_at: None,
            acknowledged_by: None,
            acknowledged_at: None,
            updated_at: at,
            deliveries: vec![],
        };
        let body = body(
            ChannelType::Slack,
            &alert,
            AlertState::Firing,
            "k:firing",
            "https://tally.example.com/",
        );
        assert_eq!(
            body["text"],
            "[FIRING] chat month (critical): Budget chat month is at 104.5%"
        );
        let blocks = body["blocks"].as_array().map(Vec::len);
        assert_eq!(blocks, Some(5));
        let text = body.to_string();
        assert!(text.contains("*Value*\\n104.5"), "{text}");
        assert!(text.contains("*Threshold*\\n100"), "{text}");
        assert!(text.contains("<https://tally.example.com/platform/ai-management/alerts/00000000-0000-0000-0000-000000000005|Open in Tally>"), "{text}");
        let hook = super::body(
            ChannelType::Webhook,
            &alert,
            AlertState::Resolved,
            "k:resolved",
            "http://x",
        );
        assert_eq!(hook["dedup_key"], "k:resolved");
        assert_eq!(hook["transition"], "resolved");
        assert_eq!(hook["alert"]["value"], 104.5);
    }

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
