//! CPU-only storage micro-benchmarks (criterion; `cargo bench -p ringtail-storage --bench hot`).
//!
//! - `index/lookup_offset` and `index/lookup_time`: one lookup in the sparse index of a full
//!   1 GiB segment indexed every 4 KiB (262 144 entries, Kafka's default
//!   `index.interval.bytes`), at pseudo-random offsets/timestamps. Every disk read of a
//!   fetch does one offset lookup; ListOffsets by time does one time lookup per segment.
//! - `index/build`: adding the entries of a full segment batch by batch (128 KiB batches),
//!   the per-batch bookkeeping of an append.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use storage::SegmentIndex;

const SEGMENT_BYTES: u64 = 1 << 30;
const INTERVAL: u32 = 4096;
/// Records per 4 KiB of log in this model (1 KiB records).
const RECORDS_PER_ENTRY: i64 = 4;

fn full_index() -> SegmentIndex {
    let mut idx = SegmentIndex::default();
    let mut offset = 0i64;
    let mut pos = 0u64;
    while pos < SEGMENT_BYTES {
        idx.on_batch(offset, pos as u32, offset * 10, INTERVAL);
        offset += RECORDS_PER_ENTRY;
        pos += INTERVAL as u64;
    }
    idx
}

/// A fixed pseudo-random sequence (xorshift), so every run looks up the same keys.
fn keys(n: usize, max: i64) -> Vec<i64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % max as u64) as i64
        })
        .collect()
}

/// Looks up every key (opaque to the optimiser) and sums the positions found.
fn sum_positions(keys: &[i64], lookup: impl Fn(i64) -> (i64, u32)) -> u64 {
    keys.iter().fold(0u64, |sum, &k| {
        sum.wrapping_add(lookup(std::hint::black_box(k)).1 as u64)
    })
}

fn index(c: &mut Criterion) {
    let idx = full_index();
    let last = (SEGMENT_BYTES / INTERVAL as u64) as i64 * RECORDS_PER_ENTRY;
    // The last entry points at the segment's last 4 KiB.
    assert_eq!(
        idx.lookup(0, last).1 as u64,
        SEGMENT_BYTES - INTERVAL as u64
    );
    let offsets = keys(4096, last);
    let mut g = c.benchmark_group("index");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(offsets.len() as u64));
    g.bench_function("lookup_offset", |b| {
        b.iter(|| sum_positions(&offsets, |o| idx.lookup(0, o)))
    });
    let stamps: Vec<i64> = offsets.iter().map(|o| o * 10).collect();
    g.bench_function("lookup_time", |b| {
        b.iter(|| sum_positions(&stamps, |ts| idx.lookup_time(0, ts)))
    });
    g.throughput(Throughput::Bytes(SEGMENT_BYTES));
    g.sample_size(20);
    const BATCH: u64 = 128 << 10;
    g.bench_function("build_1GiB_segment_128KiB_batches", |b| {
        b.iter_batched(
            SegmentIndex::default,
            |mut idx| {
                let mut pos = 0u64;
                let mut offset = 0i64;
                while pos < SEGMENT_BYTES {
                    idx.on_batch(offset, pos as u32, offset, INTERVAL);
                    offset += 128;
                    pos += BATCH;
                }
                idx
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, index);
criterion_main!(benches);
