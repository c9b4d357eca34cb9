//! `cargo bench -p tally-benches`: validation of a 1,000-event body, the fold of 1,000 events,
//! and the log codec — the per-event CPU costs behind ingest throughput.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tally_schemas::validate::{parse_batch, BodyFormat, Limits};

fn benches(c: &mut Criterion) {
    let now = chrono::Utc::now();
    let body = tally_benches::batch_body(1000, now);
    let events = tally_benches::events(1000, now);
    assert_eq!(events.len(), 1000);
    let mut g = c.benchmark_group("per_1000_events");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("validate", |b| {
        b.iter(|| {
            parse_batch(&body, BodyFormat::JsonArray, &Limits::default(), now)
                .map(|p| p.events.len())
        })
    });
    g.bench_function("fold", |b| {
        b.iter(|| tally_domain::rollup::fold(&events).len())
    });
    g.bench_function("encode_log_record", |b| {
        b.iter(|| tally_storage::codec::encode_events(&events).map(|v| v.len()))
    });
    let encoded = tally_storage::codec::encode_events(&events).unwrap_or_default();
    g.bench_function("decode_log_record", |b| {
        b.iter_batched(
            || encoded.clone(),
            |e| tally_storage::codec::decode_events(&e).map(|v| v.len()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
