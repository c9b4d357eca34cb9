//! The event log seam ([`tally_domain::store::EventLog`]): the append-only source of truth.
//! [`SqliteEventLog`] keeps it in the data directory's `events.db`; [`kafka::KafkaLog`] in one
//! Kafka topic. Both return from `append` only once the record is durable.

pub mod kafka;
mod sqlite;

pub use sqlite::SqliteEventLog;
