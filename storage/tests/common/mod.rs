#![allow(dead_code)]
//! Shared helpers for the storage integration tests.

use std::future::Future;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use storage::batch::build_test_batch;
use storage::{LogConfig, ValidatedBatches};

/// Runs `f` on a fresh glommio executor. io_memory is kept small so the tests also
/// work without CAP_IPC_LOCK (RLIMIT_MEMLOCK 8 MiB).
pub fn run<F, Fut>(f: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}

pub fn batch(count: i32, record_len: usize, ts: i64) -> ValidatedBatches {
    ValidatedBatches::parse(build_test_batch(count, record_len, ts)).expect("valid test batch")
}

pub fn batches(parts: &[Bytes]) -> ValidatedBatches {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p);
    }
    ValidatedBatches::parse(Bytes::from(v)).expect("valid test batches")
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

/// Splits concatenated batches into (base_offset, last_offset, bytes) triples,
/// verifying each CRC.
pub fn split(bytes: &[u8]) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = storage::BatchHeader::parse_and_verify(&bytes[pos..]).expect("stored batch valid");
        out.push((
            h.base_offset,
            h.last_offset(),
            bytes[pos..pos + h.total_len()].to_vec(),
        ));
        pos += h.total_len();
    }
    out
}

/// A batch as a leader would have stored it: `count` records from `base_offset`, written in
/// leader epoch `epoch` (both fields lie outside the CRC).
pub fn replica_batch(
    base_offset: i64,
    count: i32,
    record_len: usize,
    ts: i64,
    epoch: i32,
) -> Bytes {
    let mut b = build_test_batch(count, record_len, ts).to_vec();
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..16].copy_from_slice(&epoch.to_be_bytes());
    Bytes::from(b)
}

/// Reads every batch from the log start to the written end (from disk when `disk`), as
/// (base offset, last offset, bytes).
pub async fn read_all(log: &storage::PartitionLog, disk: bool) -> Vec<(i64, i64, Vec<u8>)> {
    if disk {
        log.set_read_cache_bytes(0);
    }
    let end = log.written_end_offset();
    let mut offset = log.log_start_offset();
    let mut all = Vec::new();
    while offset < end {
        let b = log
            .read_written(offset, 1 << 16, true)
            .await
            .expect("read")
            .into_bytes()
            .await
            .expect("load");
        let parts = split(&b);
        assert!(!parts.is_empty(), "empty read at {offset} below {end}");
        offset = parts.last().map_or(end, |p| p.1 + 1);
        all.extend(parts);
    }
    if disk {
        log.set_read_cache_bytes(storage::log::DEFAULT_READ_CACHE_BYTES);
    }
    all
}
