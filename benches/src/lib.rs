//! Inputs for the Criterion benchmarks: a realistic batch body and validated events.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tally_schemas::validate::{parse_batch, BodyFormat, Limits};
use tally_schemas::UsageEvent;

/// A JSON array body of `n` varied events ending at `now`.
pub fn batch_body(n: usize, now: DateTime<Utc>) -> Vec<u8> {
    let models = [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet"),
        ("google", "gemini-1.5-flash"),
    ];
    let events: Vec<_> = (0..n)
        .map(|i| {
            let (provider, model) = models[i % 3];
            let feature = ["chatbot", "photo-tagging", "ai-search"][i % 3];
            let environment = ["production", "staging"][i % 2];
            json!({
                "event_id": format!("bench-{i:08}"),
                "occurred_at": (now - Duration::milliseconds((i * 37 % 3_600_000) as i64)).to_rfc3339(),
                "feature": feature,
                "model": model, "provider": provider,
                "environment": environment,
                "operation": "chat",
                "status": if i % 50 == 0 { "error" } else { "success" },
                "latency_ms": (i * 7919 % 4000) as f64 + 0.5,
                "input_tokens": i * 13 % 3000, "output_tokens": i * 7 % 800,
                "cached_input_tokens": i * 13 % 3000 / 4,
                "user_id": format!("user-{}", i % 300),
            })
        })
        .collect();
    serde_json::to_vec(&events).unwrap_or_default()
}

/// Validated events from [`batch_body`].
pub fn events(n: usize, now: DateTime<Utc>) -> Vec<UsageEvent> {
    parse_batch(
        &batch_body(n, now),
        BodyFormat::JsonArray,
        &Limits::default(),
        now,
    )
    .map(|b| b.events.into_iter().map(|(_, e)| e).collect())
    .unwrap_or_default()
}
