//! A query string sent to the query API's dashboards and listings.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &[u8]| tally_fuzz::query(query));
