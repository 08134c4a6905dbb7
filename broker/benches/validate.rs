//! Record-level produce validation ([`broker::log::records::validate_records`], Kafka's
//! `validateRecord`): the per-record CPU cost every produced batch pays with Kafka 4 defaults.
//! `cargo bench -p ringtail-broker --bench validate`.
//!
//! - `validate/none_16x1KiB`, `validate/none_160x100B`: uncompressed batches (the walk over
//!   the records alone).
//! - `validate/lz4_16x1KiB`: an lz4 batch (decompression plus the walk);
//!   `decompress/lz4_16x1KiB` is the decompression alone, to show what the walk adds.
//! - `crc/*`: the CRC32C pass `validate_records` starts with (unchanged by the walk; subtract
//!   it to see the record walk alone).
//! - `produce/*`: the whole `validate_produce` call the shard makes for a `producer`
//!   compression topic (header checks, one CRC pass, the record walk, max timestamp check).
//!
//! Payloads are random upper-case letters, like `kafka-producer-perf-test`, with a 16-byte key
//! and no headers. Throughput is reported in records.
//!
//! Instruction counts (repeatable on a noisy machine): with `RINGTAIL_VALIDATE_ITERS=N` set the
//! binary skips criterion and runs every case N times in `run_iters`, e.g.
//! `valgrind --tool=callgrind --toggle-collect='validate::run_iters*' <bench binary>`
//! and divide the collected instructions by N and the number of cases. With
//! `RINGTAIL_VALIDATE_PRODUCE=1` as well, `run_iters` times the whole `validate_produce` call
//! (the `produce/*` cases) instead of `validate_records`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};

use broker::log::compression::{self, Codec, TopicCompression};
use broker::log::records::{
    build_batch, validate_produce, validate_records, BatchSpec, NewRecord, ValidationOptions,
};
use storage::batch::{verify_crc, BATCH_HEADER_LEN};

const NOW_MS: i64 = 1_700_000_000_000;

/// One case: a name, the batch and how many records it holds.
struct Case {
    name: &'static str,
    batch: Bytes,
    records: u64,
}

fn batch(codec: Codec, count: usize, value_bytes: usize) -> Bytes {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut letters = |n: usize| -> Bytes {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b'A' + (seed % 26) as u8
            })
            .collect::<Vec<u8>>()
            .into()
    };
    let records: Vec<NewRecord> = (0..count)
        .map(|i| NewRecord {
            timestamp: NOW_MS + i as i64,
            key: Some(letters(16)),
            value: Some(letters(value_bytes)),
            headers: Vec::new(),
        })
        .collect();
    let spec = BatchSpec {
        codec,
        producer_id: 1000,
        producer_epoch: 0,
        base_sequence: 0,
        ..BatchSpec::default()
    };
    build_batch(&spec, &records).expect("bench batch builds")
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "none_16x1KiB",
            batch: batch(Codec::None, 16, 1024),
            records: 16,
        },
        Case {
            name: "none_160x100B",
            batch: batch(Codec::None, 160, 100),
            records: 160,
        },
        Case {
            name: "lz4_16x1KiB",
            batch: batch(Codec::Lz4, 16, 1024),
            records: 16,
        },
    ]
}

fn options() -> ValidationOptions {
    // Kafka 4 defaults: `message.timestamp.after.max.ms` = 1 h, so records are checked.
    ValidationOptions::kafka_defaults(NOW_MS)
}

fn bench_validate(c: &mut Criterion) {
    let opts = options();
    let mut group = c.benchmark_group("validate");
    for case in cases() {
        // The bench measures the accept path: make sure it is the one taken.
        let summary = validate_records(&case.batch, &opts).expect("bench batch is valid");
        assert_eq!(summary.record_count as u64, case.records);
        group.throughput(Throughput::Elements(case.records));
        group.bench_function(case.name, |b| {
            b.iter(|| validate_records(black_box(&case.batch), black_box(&opts)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("crc");
    for case in cases() {
        group.throughput(Throughput::Elements(case.records));
        group.bench_function(case.name, |b| b.iter(|| verify_crc(black_box(&case.batch))));
    }
    group.finish();

    let mut group = c.benchmark_group("produce");
    for case in cases() {
        let v = validate_produce(&case.batch, TopicCompression::Producer, &opts)
            .expect("bench batch is valid");
        assert!(v.records_checked && !v.rewritten);
        group.throughput(Throughput::Elements(case.records));
        group.bench_function(case.name, |b| {
            b.iter(|| {
                validate_produce(
                    black_box(&case.batch),
                    TopicCompression::Producer,
                    black_box(&opts),
                )
            })
        });
    }
    group.finish();

    let lz4 = batch(Codec::Lz4, 16, 1024);
    let payload = lz4.slice(BATCH_HEADER_LEN..);
    let mut group = c.benchmark_group("decompress");
    group.throughput(Throughput::Elements(16));
    group.bench_function("lz4_16x1KiB", |b| {
        b.iter(|| {
            compression::decompress(
                Codec::Lz4,
                black_box(&payload),
                compression::DEFAULT_MAX_DECOMPRESSED_BYTES,
            )
        })
    });
    group.finish();
}

/// The measured loop for instruction counting; kept out of line so callgrind can collect
/// exactly this function (`--toggle-collect`).
#[inline(never)]
fn run_iters(case: &Case, opts: &ValidationOptions, iters: u64, produce: bool) -> u64 {
    let mut total = 0u64;
    for _ in 0..iters {
        total += if produce {
            let v = validate_produce(
                black_box(&case.batch),
                TopicCompression::Producer,
                black_box(opts),
            );
            v.map_or(0, |v| v.info.records_count as u64)
        } else {
            let summary = validate_records(black_box(&case.batch), black_box(opts));
            summary.map_or(0, |s| s.record_count as u64)
        };
    }
    total
}

criterion_group!(benches, bench_validate);

fn main() {
    if let Some(iters) = std::env::var("RINGTAIL_VALIDATE_ITERS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let opts = options();
        let only = std::env::var("RINGTAIL_VALIDATE_CASE").ok();
        let produce = std::env::var_os("RINGTAIL_VALIDATE_PRODUCE").is_some();
        for case in cases() {
            if only.as_deref().is_some_and(|o| o != case.name) {
                continue;
            }
            let records = run_iters(&case, &opts, iters, produce);
            assert_eq!(
                records,
                iters * case.records,
                "{}: every batch valid",
                case.name
            );
            println!("{}: {iters} validations", case.name);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
