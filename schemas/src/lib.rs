//! Event and wire types shared by every Tally service.
//!
//! - [`wire`]: the JSON shape application services send (usage event schema v1) and its JSON
//!   Schema. Parsing is lenient about nothing: unknown fields are rejected so typos surface.
//! - [`event`]: the validated [`UsageEvent`] that lives in the event log. Once an event is a
//!   `UsageEvent` every field is known-good (slugs, bounded strings, token arithmetic).
//! - [`money`]: exact money as integer pico-dollars (1e-12 USD); no floats on any cost path.
//! - [`score`]: a score (feedback or a grade) attached to a usage event, on the wire and
//!   validated; numbers are exact millionths.
//! - [`timestamp`]: `occurred_at` read the way chrono reads it, by arithmetic for the usual
//!   form.
//! - [`whole`]: integers as JSON Schema means them (`3.0` is `3`).
//! - [`validate`]: turning raw request bodies into events, with one error per rejected event
//!   naming its index, field and reason.

pub mod event;
pub mod money;
pub mod score;
pub mod timestamp;
pub mod validate;
pub mod whole;
pub mod wire;

pub use event::{Environment, Operation, Status, UsageEvent};
pub use money::Pico;
pub use score::{Score, ScoreV1, ScoreValue};
pub use validate::{parse_batch, BatchParse, EventError, Limits};
pub use wire::UsageEventV1;
