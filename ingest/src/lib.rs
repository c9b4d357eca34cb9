//! Ingest: `POST /v1/events` and `POST /v1/scores`, and their schemas at
//! `GET /v1/schema/usage-event` and `GET /v1/schema/score`.
//!
//! Delivery contract: a `200` answer means every accepted event (or score) is durable in the
//! event log (the log's `append` returned after fsync); any other answer means nothing of that
//! request was acknowledged, and the client should retry with the same `event_id`s (the
//! projector deduplicates) or `score_id`s (the analytics store keeps the first copy). Events are
//! priced here, before the append, so the log holds final costs.
//!
//! Backpressure keeps memory bounded: at most `max_in_flight` request bodies are held at once
//! (each at most `max_body_bytes`); beyond that, and when the log's write queue is full, the
//! answer is `503` with `Retry-After`. Ingest keeps pace with the projector ([`pacing`]): while
//! the oldest event not yet projected has waited longer than `max_lag`, a request waits before
//! it appends, and after `max_wait` it is refused with `429` and `Retry-After`; so is a request
//! while the projector is more than `max_lag_events` behind. Freshness thus degrades visibly,
//! as refusals, instead of silently.
//! A refused request's body is still read (and discarded, up to `max_body_bytes`) so that the
//! client gets the refusal rather than a connection reset halfway through its upload.

mod metrics;
pub mod pacing;
mod routes;

pub use pacing::Backlog;
pub use routes::{router, IngestConfig, IngestState, LagProbe};
