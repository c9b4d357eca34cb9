//! Bytes read back from the event log or the analytics store: a log record, a drill-down chunk
//! of references, a dedup chunk, a latency sketch or a unique-user sketch.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| tally_fuzz::stored(bytes));
