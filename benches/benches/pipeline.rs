//! `cargo bench -p tally-benches`: validation of a 1,000-event body, the fold of 1,000 events,
//! and the log codec — the per-event CPU costs behind ingest throughput; the dedup memory's
//! filter probes per event, with 48 million ids held as 96 seals or as 3 merged runs (event by
//! event, and as the projector probes a commit's sorted fingerprints run by run); and the
//! per-entry CPU of a merge step of its runs (block decode, merge, block encode).

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

/// One filter probe per sealed run is the dedup memory's per-event cost once ids are sealed
/// (`Dedup::suspects`): the same 48 million ids as 96 unmerged seals of 500,000 (what the
/// projector held before runs merged) and as the 3 runs merging by size class leaves of them
/// (96 = 64 + 2 × 16 seals), each stored as parts over fingerprint ranges of `PART_ENTRIES` ids
/// (a lookup finds its part, then probes its filter), probed with 1,000 ids not among them.
fn dedup_probes(c: &mut Criterion) {
    use tally_domain::dedup::{split_range, GenerationSummary, Placement, PART_ENTRIES};
    use tally_domain::store::DedupGeneration;
    use tally_projector::Dedup;
    let mut fingerprints = Fingerprints::default();
    let mut keys = |n: usize| fingerprints.sorted(n);
    // A run of `n` ids as parts: (first fingerprint covered, summary).
    let mut run = |n: usize, id: u64| -> Vec<(u64, GenerationSummary)> {
        let all = keys(n);
        split_range(n.div_ceil(PART_ENTRIES))
            .into_iter()
            .filter_map(|(lo, hi)| {
                let part: Vec<u64> = all
                    .iter()
                    .copied()
                    .filter(|k| (lo..=hi).contains(k))
                    .collect();
                let placement = Placement {
                    run: id,
                    lo,
                    hi,
                    replaces: Vec::new(),
                };
                GenerationSummary::part(&part, placement).map(|s| (lo, s))
            })
            .collect()
    };
    let seals: Vec<Vec<(u64, GenerationSummary)>> = (0..96).map(|_| run(500_000, 1)).collect();
    let runs: Vec<Vec<(u64, GenerationSummary)>> = [32_000_000, 8_000_000, 8_000_000]
        .into_iter()
        .zip(1..)
        .map(|(n, id)| run(n, id))
        .collect();
    // A million probes, taken a thousand at a time in turn, so that no iteration finds the
    // filters' lines in cache from the one before.
    let probes = keys(1_000_000);
    let mut g = c.benchmark_group("dedup_probes_per_1000_events");
    g.throughput(Throughput::Elements(1000));
    for (name, held) in [("96_seals", &seals), ("3_merged_runs", &runs)] {
        let mut batches = probes.chunks(1_000).cycle();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut hits = 0;
                for fp in batches.next().unwrap_or_default() {
                    for parts in held.iter() {
                        let at = parts
                            .partition_point(|(lo, _)| *lo <= *fp)
                            .saturating_sub(1);
                        hits += usize::from(parts[at].1.block_of(*fp).is_some());
                    }
                }
                hits
            })
        });
    }
    g.finish();
    // What the projector does with a commit's fingerprints (`Dedup::suspects_in_order`): the
    // same 3 merged runs probed run by run, a batch of 20,000 sorted fingerprints at a time.
    let now_s = 1_000_000;
    let generations: Vec<(DedupGeneration, GenerationSummary)> = runs
        .iter()
        .flatten()
        .zip(1..)
        .map(|((_, summary), id)| {
            let generation = DedupGeneration {
                id,
                max_seen_s: now_s,
                entries: 1,
            };
            (generation, summary.clone())
        })
        .collect();
    let dedup = Dedup::new(86_400, None, Vec::new(), generations);
    assert_eq!(dedup.runs(), 3);
    let batches: Vec<Vec<u64>> = probes
        .chunks(20_000)
        .map(|batch| {
            let mut sorted = batch.to_vec();
            sorted.sort_unstable();
            sorted
        })
        .collect();
    let mut batches = batches.iter().cycle();
    let mut g = c.benchmark_group("dedup_probes_per_1000_events");
    g.throughput(Throughput::Elements(20_000));
    g.bench_function("3_merged_runs_sorted_batch_of_20000", |b| {
        b.iter(|| {
            let mut hits = 0;
            let batch = batches.next().map_or(&[][..], Vec::as_slice);
            dedup.suspects_in_order(batch, now_s, |_, _| hits += 1);
            hits
        })
    });
    g.finish();
}

/// Fingerprints as XXH3 makes them (uniform), from splitmix64 so that every run sees the same.
struct Fingerprints(u64);

impl Default for Fingerprints {
    fn default() -> Self {
        Fingerprints(0x2545_F491_4F6C_DD1D)
    }
}

impl Fingerprints {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` of them (fewer if any repeat), sorted.
    fn sorted(&mut self, n: usize) -> Vec<u64> {
        let mut k: Vec<u64> = (0..n).map(|_| self.next()).collect();
        k.sort_unstable();
        k.dedup();
        k
    }
}

/// The CPU of one merge step of the dedup memory (`Dedup::advance`), per entry: a part's
/// entries read from the stored blocks of four input runs (decoding them), merged (newest
/// second per fingerprint) and written back as packed blocks. Each input's 65,536 fingerprints
/// spread over the whole space, so their gaps take 48 bits: a little wider than in a real
/// merge, whose inputs hold more ids (a seal of 500,000 ids: 46 bits).
fn dedup_merge_step(c: &mut Criterion) {
    use tally_domain::codec::{decode_dedup_chunk, encode_dedup_chunk};
    use tally_domain::dedup::{merge_entries, BLOCK_ENTRIES, PART_ENTRIES};
    let mut fingerprints = Fingerprints::default();
    let inputs: Vec<Vec<(u64, u32)>> = (0..4)
        .map(|_| {
            let fps = fingerprints.sorted(PART_ENTRIES / 4);
            let seen = fps.iter().map(|fp| 1_000_000 + (fp % 86_400) as u32);
            fps.iter().copied().zip(seen).collect()
        })
        .collect();
    let blocks: Vec<&[(u64, u32)]> = inputs
        .iter()
        .flat_map(|i| i.chunks(BLOCK_ENTRIES))
        .collect();
    let stored: Vec<Vec<u8>> = blocks.iter().map(|b| encode_dedup_chunk(b)).collect();
    let mut decoded = Vec::new();
    for block in &stored {
        decode_dedup_chunk(block, 0, &mut decoded).expect("a block just encoded decodes");
    }
    assert_eq!(decoded, inputs.concat(), "the blocks read back as written");
    let merged = merge_entries(blocks.iter().copied(), 0, u64::MAX, 0);
    let mut g = c.benchmark_group("dedup_merge_step_per_entry");
    g.throughput(Throughput::Elements(merged.len() as u64));
    g.bench_function("decode_blocks", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(merged.len());
            for block in &stored {
                decode_dedup_chunk(block, 0, &mut out).map_err(|e| e.to_string())?;
            }
            Ok::<usize, String>(out.len())
        })
    });
    g.bench_function("merge_entries", |b| {
        b.iter(|| merge_entries(blocks.iter().copied(), 0, u64::MAX, 0).len())
    });
    g.bench_function("encode_blocks", |b| {
        b.iter(|| {
            merged
                .chunks(BLOCK_ENTRIES)
                .map(|block| encode_dedup_chunk(block).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(pipeline, benches, dedup_probes, dedup_merge_step);
criterion_main!(pipeline);
