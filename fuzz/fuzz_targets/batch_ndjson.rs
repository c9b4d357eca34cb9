//! A request body sent to `POST /v1/events` or `POST /v1/scores` as NDJSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_schemas::validate::BodyFormat;

fuzz_target!(|body: &[u8]| tally_fuzz::batch(body, BodyFormat::Ndjson));
