//! Ingest: `POST /v1/events` and the event schema at `GET /v1/schema/usage-event`.
//!
//! Delivery contract: a `200` answer means every accepted event is durable in the event log
//! (the log's `append` returned after fsync); any other answer means nothing of that request was
//! acknowledged, and the client should retry with the same `event_id`s (the projector
//! deduplicates). Events are priced here, before the append, so the log holds final costs.
//!
//! Backpressure keeps memory bounded: at most `max_in_flight` request bodies are held at once
//! (each at most `max_body_bytes`); beyond that, and when the log's write queue is full, the
//! answer is `503` with `Retry-After`. When the projector is more than `max_lag_events` behind,
//! the answer is `429` with `Retry-After`, so freshness degrades visibly instead of silently.
//! A refused request's body is still read (and discarded, up to `max_body_bytes`) so that the
//! client gets the refusal rather than a connection reset halfway through its upload.

mod metrics;
mod routes;

pub use routes::{router, IngestConfig, IngestState, LagProbe};
