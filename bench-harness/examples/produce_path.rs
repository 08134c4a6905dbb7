//! Cost of the producer's per-record work without a broker: generate records into batches
//! of one partition and seal them, keeping a window of sealed batches alive as if in flight
//! (so caches see the same pressure). Prints ns per record (min of several rounds).
//!
//! `cargo run --release --example produce_path -- 100 1000000`

use bench_harness::batch::{BatchBuilder, Codec, ProducerStamp};
use bench_harness::payload::PayloadGen;
use bench_harness::workload::{KeyMode, SizeDist};
use std::collections::VecDeque;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let records: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let batch_bytes = 128 << 10;
    let in_flight_bytes = 8 << 20;
    let mut gen = PayloadGen::new(1, SizeDist::Fixed { bytes: size }, KeyMode::None, 0);
    let mut builder = BatchBuilder::new(batch_bytes + size + 64);
    let mut window: VecDeque<bytes::Bytes> = VecDeque::new();
    let mut window_bytes = 0;
    let mut best = f64::MAX;
    let mut sum = 0u64;
    for _round in 0..5 {
        let t = Instant::now();
        for i in 0..records {
            let unix = 1_763_000_000_000_000_000 + (i / 32) * 1000;
            let rec = gen.append_record(&mut builder, (unix / 1_000_000) as i64, unix, None);
            sum = sum.wrapping_add(rec.checksum);
            if builder.size_bytes() >= batch_bytes {
                let b = builder
                    .seal(Codec::None, ProducerStamp::NONE)
                    .expect("seal");
                window_bytes += b.len();
                window.push_back(b);
                while window_bytes > in_flight_bytes {
                    if let Some(old) = window.pop_front() {
                        window_bytes -= old.len();
                    }
                }
            }
        }
        best = best.min(t.elapsed().as_nanos() as f64 / records as f64);
    }
    println!("size {size}: {best:.1} ns/record (checksum sum {sum})");
}
