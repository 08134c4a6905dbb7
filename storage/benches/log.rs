//! Storage benchmarks (criterion, run with `cargo bench -p ringtail-storage --bench log`).
//!
//! - `write/raw_odirect/*` vs `write/append_*/*`: sequential O_DIRECT write bandwidth of
//!   the same file system (a raw glommio DMA write loop on a preallocated file) next to
//!   `PartitionLog::append` of the same sizes, one write at a time (append + wait for
//!   `Written`), and pipelined (appends keep flowing; group commit merges them).
//! - `fsync/appenders/{1,64}`: records/s when every appender waits for `Fsynced`.
//! - `recovery/scan`: bytes/s of `PartitionLog::open` validating an uncleanly closed log.
//! - `append_call/*`: the time inside `PartitionLog::append` alone, per call: offset
//!   assignment and header patching, index bookkeeping, staging for the writer and the batch
//!   cache entry. The writes it causes complete outside the timed part.
//!
//! Set `RINGTAIL_BENCH_DIR` to choose the file system (default: the system temp dir).

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::io::OpenOptions;
use glommio::{LocalExecutorBuilder, Placement};
use storage::batch::build_test_batch;
use storage::{Durability, LogConfig, PartitionLog, ValidatedBatches};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("RINGTAIL_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("bench dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn run<T: Send + 'static, Fut: std::future::Future<Output = T> + 'static>(
    f: impl FnOnce() -> Fut + Send + 'static,
) -> T {
    // Default io_memory (10 MiB of registered buffers; needs CAP_IPC_LOCK, i.e. root
    // here). `RINGTAIL_BENCH_IO_MEMORY` overrides it, e.g. 524288 for non-root runs.
    let mut b = LocalExecutorBuilder::new(Placement::Unbound);
    if let Some(m) = std::env::var("RINGTAIL_BENCH_IO_MEMORY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        b = b.io_memory(m);
    }
    b.spawn(f).expect("executor").join().expect("join")
}

/// One batch of `size` bytes total (a single large record, like a linger'd producer).
fn batch_of(size: usize) -> ValidatedBatches {
    let b = build_test_batch(1, size - 61, 1);
    assert_eq!(b.len(), size);
    ValidatedBatches::parse(b).expect("valid")
}

const SEGMENT_BYTES: u64 = 1 << 30;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    }
}

fn raw_write(size: usize, iters: u64) -> Duration {
    run(move || async move {
        let dir = bench_dir();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(dir.path().join("raw"))
            .await
            .expect("open");
        file.pre_allocate(SEGMENT_BYTES, false)
            .await
            .expect("fallocate");
        // One buffer reused for every write: this is the device/file-system bound.
        let mut buf = file.alloc_dma_buffer(size);
        buf.as_bytes_mut().fill(7);
        let buf = Rc::new(buf);
        let mut pos = 0u64;
        let start = Instant::now();
        for _ in 0..iters {
            file.write_rc_at(buf.clone(), pos).await.expect("write");
            pos = (pos + size as u64) % SEGMENT_BYTES;
        }
        let t = start.elapsed();
        file.close().await.expect("close");
        t
    })
}

fn append_serial(size: usize, iters: u64) -> Duration {
    run(move || async move {
        let dir = bench_dir();
        let log = PartitionLog::open(dir.path().join("p"), config())
            .await
            .expect("open");
        let vb = batch_of(size);
        let start = Instant::now();
        for _ in 0..iters {
            log.append(&vb, None)
                .expect("append")
                .wait(Durability::Written)
                .await
                .expect("write");
        }
        let t = start.elapsed();
        log.delete().await.expect("delete");
        t
    })
}

/// Appends without waiting for each one, keeping at most `window` bytes unwritten.
fn append_pipelined(size: usize, iters: u64) -> Duration {
    run(move || async move {
        let dir = bench_dir();
        let log = PartitionLog::open(dir.path().join("p"), config())
            .await
            .expect("open");
        let vb = batch_of(size);
        let window = (8usize << 20).div_ceil(size).max(2);
        let mut inflight = std::collections::VecDeque::new();
        let start = Instant::now();
        for _ in 0..iters {
            inflight.push_back(log.append(&vb, None).expect("append"));
            if inflight.len() >= window {
                if let Some(p) = inflight.pop_front() {
                    p.wait(Durability::Written).await.expect("write");
                }
            }
        }
        for p in inflight {
            p.wait(Durability::Written).await.expect("write");
        }
        let t = start.elapsed();
        log.delete().await.expect("delete");
        t
    })
}

/// `iters` calls of `append` with one batch of `records` records of `record_len` bytes, timed
/// 64 calls at a time; the writes they cause are waited for between the timed parts.
fn append_calls(records: i32, record_len: usize, iters: u64) -> Duration {
    run(move || async move {
        let dir = bench_dir();
        let log = PartitionLog::open(dir.path().join("p"), config())
            .await
            .expect("open");
        let vb = ValidatedBatches::parse(build_test_batch(records, record_len, 1)).expect("valid");
        let mut timed = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(64);
            left -= n;
            let start = Instant::now();
            let mut last = None;
            for _ in 0..n {
                last = Some(log.append(std::hint::black_box(&vb), None).expect("append"));
            }
            timed += start.elapsed();
            if let Some(p) = last {
                p.wait(Durability::Written).await.expect("write");
            }
        }
        log.delete().await.expect("delete");
        timed
    })
}

fn append_call(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_call");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    // A linger'd 100 B producer's batch, a small batch, and a single 1 KiB record.
    for (label, records, len) in [
        ("128KiB_of_100B", 1150, 100),
        ("16KiB_of_100B", 140, 100),
        ("1KiB_record", 1, 1024),
    ] {
        g.bench_function(label, |b| b.iter_custom(|n| append_calls(records, len, n)));
    }
    g.finish();
}

fn write_bandwidth(c: &mut Criterion) {
    let mut g = c.benchmark_group("write");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2));
    for size in [16usize << 10, 1 << 20] {
        let label = if size >= 1 << 20 { "1MiB" } else { "16KiB" };
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("raw_odirect", label), |b| {
            b.iter_custom(|n| raw_write(size, n))
        });
        g.bench_function(BenchmarkId::new("append_serial", label), |b| {
            b.iter_custom(|n| append_serial(size, n))
        });
        g.bench_function(BenchmarkId::new("append_pipelined", label), |b| {
            b.iter_custom(|n| append_pipelined(size, n))
        });
    }
    g.finish();
}

/// `appenders` tasks, each appending a 1 KiB batch and waiting for `Fsynced`, `iters`
/// appends in total.
fn fsynced_appends(appenders: u64, iters: u64) -> Duration {
    run(move || async move {
        let dir = bench_dir();
        let log = PartitionLog::open(dir.path().join("p"), config())
            .await
            .expect("open");
        let vb = Rc::new(batch_of(1024));
        let left = Rc::new(std::cell::Cell::new(iters));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..appenders {
            let (log, vb, left) = (log.clone(), vb.clone(), left.clone());
            tasks.push(glommio::spawn_local(async move {
                while left.get() > 0 {
                    left.set(left.get() - 1);
                    log.append(&vb, None)
                        .expect("append")
                        .wait(Durability::Fsynced)
                        .await
                        .expect("fsync");
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let t = start.elapsed();
        log.delete().await.expect("delete");
        t
    })
}

fn fsync_coalescing(c: &mut Criterion) {
    let mut g = c.benchmark_group("fsync");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
    for appenders in [1u64, 64] {
        g.bench_function(BenchmarkId::new("appenders", appenders), |b| {
            b.iter_custom(|n| fsynced_appends(appenders, n))
        });
    }
    g.finish();
}

fn recovery_scan(c: &mut Criterion) {
    const LOG_BYTES: usize = 512 << 20;
    let dir = bench_dir();
    let path: PathBuf = dir.path().join("p");
    let p = path.clone();
    // 512 MiB of 64 KiB batches in one segment, dropped without a clean close.
    run(move || async move {
        let log = PartitionLog::open(p, config()).await.expect("open");
        let chunk = build_test_batch(1, (64 << 10) - 61, 1);
        let vb = ValidatedBatches::parse(Bytes::from(chunk.to_vec())).expect("valid");
        let mut last = None;
        for _ in 0..LOG_BYTES / (64 << 10) {
            last = Some(log.append(&vb, None).expect("append"));
            if log.log_end_offset() % 64 == 0 {
                if let Some(p) = last.take() {
                    p.wait(Durability::Written).await.expect("write");
                }
            }
        }
        if let Some(p) = last {
            p.wait(Durability::Fsynced).await.expect("fsync");
        }
        log.flush().await.expect("flush");
        drop(log);
    });
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(LOG_BYTES as u64));
    g.bench_function("scan", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let p = path.clone();
                total += run(move || async move {
                    let start = Instant::now();
                    let log = PartitionLog::open(p, config()).await.expect("open");
                    let t = start.elapsed();
                    let stats = storage::last_recovery_stats();
                    assert_eq!(stats.bytes_scanned, LOG_BYTES as u64, "{stats:?}");
                    drop(log); // unclean again, so the next open scans too
                    t
                });
            }
            total
        })
    });
    // The same bytes read back with plain sequential 4 MiB O_DIRECT reads (no
    // validation): the ceiling for the scan on this file system.
    let file = path.join("00000000000000000000.log");
    g.bench_function("raw_read_4MiB", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let f = file.clone();
                total += run(move || async move {
                    let dma = OpenOptions::new()
                        .read(true)
                        .dma_open(&f)
                        .await
                        .expect("open");
                    let start = Instant::now();
                    let mut pos = 0u64;
                    while pos < LOG_BYTES as u64 {
                        let r = dma.read_at_aligned(pos, 4 << 20).await.expect("read");
                        pos += r.len() as u64;
                    }
                    let t = start.elapsed();
                    dma.close().await.expect("close");
                    t
                });
            }
            total
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    write_bandwidth,
    fsync_coalescing,
    recovery_scan,
    append_call
);
criterion_main!(benches);
