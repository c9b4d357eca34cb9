//! Ingest metrics. The `outcome` label takes a fixed set of values.

pub const REQUESTS: &str = "tally_ingest_requests_total";
pub const EVENTS_ACCEPTED: &str = "tally_ingest_events_accepted_total";
pub const EVENTS_REJECTED: &str = "tally_ingest_events_rejected_total";
pub const SCORES_ACCEPTED: &str = "tally_ingest_scores_accepted_total";
pub const SCORES_REJECTED: &str = "tally_ingest_scores_rejected_total";
pub const APPEND_SECONDS: &str = "tally_ingest_append_seconds";
pub const PACING_SECONDS: &str = "tally_ingest_pacing_seconds";

pub fn describe() {
    metrics::describe_counter!(REQUESTS, "Ingest requests by outcome (accepted, rejected, overloaded, backlog, too_large, bad_body, failed).");
    metrics::describe_counter!(EVENTS_ACCEPTED, "Events acknowledged as durable.");
    metrics::describe_counter!(EVENTS_REJECTED, "Events rejected by validation.");
    metrics::describe_counter!(SCORES_ACCEPTED, "Scores acknowledged as durable.");
    metrics::describe_counter!(SCORES_REJECTED, "Scores rejected by validation.");
    metrics::describe_histogram!(
        APPEND_SECONDS,
        "Time from request start until the accepted events were durable."
    );
    metrics::describe_histogram!(
        PACING_SECONDS,
        "Time requests waited for the projector before appending (only requests that waited)."
    );
}

pub fn request(outcome: &'static str) {
    metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
}
