//! Distributed mode against real services, one test executable: a Kafka-protocol broker,
//! ClickHouse and Postgres (`TALLY_TEST_*` variables), and the TLS and SASL servers of
//! `.ci/secure-services.sh`. Every test here is `#[ignore]`d in the default run and selected in
//! `.ci/run`'s service tier with `--ignored`.

#[path = "../common/mod.rs"]
mod common;

mod alerts;
mod kafka_security;
mod pipeline;
mod secure_connections;
mod stores;
mod topic_change;
