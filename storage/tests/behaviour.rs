//! Retention, DeleteRecords, bad input, LogAppendTime, timestamp lookups, long-poll,
//! failure handling (write rollback, fsync poisoning) and group commit.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use storage::batch::build_test_batch;
use storage::{BatchHeader, Durability, LogConfig, PartitionLog, StorageError, ValidatedBatches};

fn seg_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count()
}

#[test]
fn retention_by_time_and_bytes_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ret");
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 8 << 10,
            retention_ms: 1_000,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
        // 40 batches of ~1 KiB: timestamps 0..40_000 step 1000.
        let mut last = None;
        for i in 0..40i64 {
            last = Some(log.append(&batch(1, 1000, i * 1000), None).unwrap());
        }
        last.unwrap().wait(Durability::Fsynced).await.unwrap();
        let segs_before = seg_files(&path);
        let mut bases_before: Vec<i64> = std::fs::read_dir(&path)
            .unwrap()
            .filter_map(|e| {
                e.unwrap()
                    .file_name()
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        bases_before.sort();
        assert!(segs_before >= 5, "{segs_before}");
        // now = 20_500: segments whose newest timestamp < 19_500 go.
        let out = log.apply_retention(20_500).await.unwrap();
        assert!(out.segments_deleted > 0);
        assert_eq!(seg_files(&path), segs_before - out.segments_deleted);
        let lso = log.log_start_offset();
        assert_eq!(out.log_start_offset, lso);
        // Batch i has offset i and timestamp 1000 * i, so a segment is older than
        // 19_500 exactly when it ends at or before offset 20: the first kept segment is
        // the one holding offset 20.
        let expected_start = bases_before
            .iter()
            .copied()
            .filter(|b| *b <= 20)
            .max()
            .unwrap();
        assert_eq!(lso, expected_start, "bases {bases_before:?}");
        assert_eq!(
            out.segments_deleted,
            bases_before.iter().filter(|b| **b < expected_start).count()
        );
        assert!(lso > 0);
        assert!(matches!(
            log.read_written(lso - 1, 100, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let first = log
            .read_written(lso, 1, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        assert_eq!(split(&first)[0].0, lso);
        // Time retention with "now" far in the future never deletes the active segment.
        let out = log.apply_retention(i64::MAX / 2).await.unwrap();
        assert_eq!(seg_files(&path), 1, "{out:?}");
        assert_eq!(
            log.log_start_offset(),
            log.log_end_offset() - {
                let b = log
                    .read_written(log.log_start_offset(), usize::MAX, true)
                    .await
                    .unwrap()
                    .into_bytes()
                    .await
                    .unwrap();
                split(&b).len() as i64
            }
        );
        // Bytes retention on a fresh series.
        let mut cfg2 = cfg.clone();
        cfg2.retention_ms = -1;
        cfg2.retention_bytes = 16 << 10;
        log.update_config(cfg2);
        let mut last = None;
        for i in 0..40i64 {
            last = Some(log.append(&batch(1, 1000, i), None).unwrap());
        }
        last.unwrap().wait(Durability::Written).await.unwrap();
        log.apply_retention(0).await.unwrap();
        let total: u64 = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| std::fs::metadata(p).unwrap().len().min(8 << 10))
            .sum();
        assert!(total <= (16 << 10) + (8 << 10), "retained {total} bytes");
        let lso = log.log_start_offset();
        log.close().await.unwrap();
        // The start offset survives a restart.
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        assert_eq!(log.log_start_offset(), lso);
        log.close().await.unwrap();
    });
}

#[test]
fn delete_records_moves_start_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dr");
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 4 << 10,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
        let mut last = None;
        for i in 0..30i64 {
            last = Some(log.append(&batch(2, 300, i), None).unwrap());
        }
        last.unwrap().wait(Durability::Written).await.unwrap();
        let before = seg_files(&path);
        assert!(matches!(
            log.delete_records_before(1000).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.delete_records_before(31).await.unwrap();
        assert_eq!(log.log_start_offset(), 31);
        assert!(seg_files(&path) < before);
        assert!(matches!(
            log.read_written(30, 100, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        // Offset 31 is inside a batch (30..31): reads return that whole batch.
        let b = log
            .read_written(31, 1, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        assert_eq!(split(&b)[0].0, 30);
        log.close().await.unwrap();
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        assert_eq!(log.log_start_offset(), 31);
        log.close().await.unwrap();
    });
}

#[test]
fn bad_input_never_reaches_disk() {
    let good = build_test_batch(3, 50, 1);
    let mut bad_crc = good.to_vec();
    bad_crc[80] ^= 0x40;
    assert!(matches!(
        ValidatedBatches::parse(Bytes::from(bad_crc)),
        Err(storage::BatchError::BadCrc { .. })
    ));
    let mut bad_magic = good.to_vec();
    bad_magic[16] = 0;
    assert!(ValidatedBatches::parse(Bytes::from(bad_magic)).is_err());
    let mut bad_len = good.to_vec();
    bad_len[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(ValidatedBatches::parse(Bytes::from(bad_len)).is_err());
    let mut neg_len = good.to_vec();
    neg_len[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(ValidatedBatches::parse(Bytes::from(neg_len)).is_err());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad");
    run(move || async move {
        let cfg = LogConfig {
            max_message_bytes: 1000,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        let big = batch(1, 2000, 1);
        assert!(matches!(
            log.append(&big, None),
            Err(StorageError::MessageTooLarge { .. })
        ));
        assert_eq!(log.log_end_offset(), 0);
        let p = log.append(&batch(1, 100, 1), None).unwrap();
        assert_eq!(p.base_offset, 0);
        p.wait(Durability::Fsynced).await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn log_append_time_and_leader_epoch_rewrite() {
    // Small batches are cached as a patched copy; large ones as the producer's bytes plus
    // patched headers (read as header + body chunks). Both must read back exactly as the
    // bytes on disk.
    for (name, record_len, per_batch) in [("small", 30, 2), ("large", 1024, 12)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        run(move || async move {
            let log = PartitionLog::open(path.clone(), LogConfig::default())
                .await
                .unwrap();
            log.set_leader_epoch(Some(7));
            let parts: Vec<Bytes> = (0..5)
                .map(|i| build_test_batch(per_batch, record_len, 5 + i))
                .collect();
            let vb = batches(&parts);
            let p = log.append(&vb, Some(123_456)).unwrap();
            assert_eq!(p.log_append_time_ms, Some(123_456));
            assert_eq!(
                (p.base_offset, p.last_offset),
                (0, 5 * i64::from(per_batch) - 1)
            );
            p.wait(Durability::Written).await.unwrap();
            let mut seen = Vec::new();
            for cache in [64 << 20, 0] {
                log.set_read_cache_bytes(cache);
                let chunks = log
                    .read_written(0, usize::MAX, true)
                    .await
                    .unwrap()
                    .into_chunks()
                    .await
                    .unwrap();
                let b: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
                let batches = split(&b);
                assert_eq!(batches.len(), 5);
                for (i, (base, _, bytes)) in batches.iter().enumerate() {
                    let h = BatchHeader::parse_and_verify(bytes).unwrap();
                    assert_eq!(*base, i as i64 * i64::from(per_batch));
                    assert!(h.timestamp_type_log_append());
                    assert_eq!(h.max_timestamp, 123_456);
                    assert_eq!(h.partition_leader_epoch, 7);
                }
                seen.push(b);
            }
            assert_eq!(seen[0], seen[1], "cached bytes differ from stored bytes");
            log.close().await.unwrap();
        });
    }
}

#[test]
fn timestamp_lookup_and_header_scan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ts");
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 8 << 10,
            index_interval_bytes: 512,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        let mut last = None;
        for i in 0..100i64 {
            last = Some(log.append(&batch(1, 200, 10 * i), None).unwrap());
        }
        last.unwrap().wait(Durability::Written).await.unwrap();
        for ts in [0i64, 1, 9, 10, 11, 500, 989, 990] {
            let b = log
                .find_batch_by_timestamp(ts, i64::MAX)
                .await
                .unwrap()
                .unwrap();
            let h = BatchHeader::parse_and_verify(&b).unwrap();
            assert!(h.max_timestamp >= ts);
            assert_eq!(h.base_offset, (ts + 9) / 10, "ts {ts}");
        }
        assert!(log
            .find_batch_by_timestamp(991, i64::MAX)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            log.max_timestamp_offset(i64::MAX).await.unwrap(),
            Some((99, 990))
        );
        let mut seen = Vec::new();
        log.for_each_batch_header(42, |h| seen.push(h.base_offset))
            .await
            .unwrap();
        assert_eq!(seen, (42..100).collect::<Vec<_>>());
        log.close().await.unwrap();
    });
}

#[test]
fn wait_for_data_wakes_on_append_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wait");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), LogConfig::default())
            .await
            .unwrap();
        let l2 = log.clone();
        let waiter = glommio::spawn_local(async move {
            l2.wait_for_data(0).await;
            l2.written_end_offset()
        });
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        let p = log.append(&batch(1, 10, 1), None).unwrap();
        assert!(waiter.await >= 1);
        p.wait(Durability::Written).await.unwrap();
        let l3 = log.clone();
        let waiter = glommio::spawn_local(async move { l3.wait_for_data(100).await });
        log.clone().close().await.unwrap();
        waiter.await;
        assert!(matches!(
            log.read_written(0, 10, true).await,
            Err(StorageError::Closed)
        ));
        assert!(matches!(
            log.append(&batch(1, 10, 1), None),
            Err(StorageError::Closed)
        ));
    });
}

#[test]
fn failed_write_rolls_back_and_offsets_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fail");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), LogConfig::default())
            .await
            .unwrap();
        let a = log.append(&batch(2, 100, 1), None).unwrap();
        a.wait(Durability::Fsynced).await.unwrap();
        log.inject_faults(1, 0);
        let b = log.append(&batch(3, 100, 2), None).unwrap();
        let c = log.append(&batch(1, 100, 3), None).unwrap();
        assert_eq!((b.base_offset, c.base_offset), (2, 5));
        assert!(matches!(
            b.wait(Durability::Written).await,
            Err(StorageError::Io(_))
        ));
        assert!(matches!(
            c.wait(Durability::Fsynced).await,
            Err(StorageError::Io(_))
        ));
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(log.written_end_offset(), 2);
        // Still readable, and the next append reuses the failed offsets.
        let r = log
            .read_written(0, usize::MAX, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        assert_eq!(split(&r).len(), 1);
        let d = log.append(&batch(1, 100, 4), None).unwrap();
        assert_eq!(d.base_offset, 2);
        d.wait(Durability::Fsynced).await.unwrap();
        log.clone().close().await.unwrap();
        let log = PartitionLog::open(path.clone(), LogConfig::default())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 3);
        let r = log
            .read_written(0, usize::MAX, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        let parts = split(&r);
        assert_eq!(parts.len(), 2);
        assert_eq!(BatchHeader::parse(&parts[1].2).unwrap().max_timestamp, 4);
        log.close().await.unwrap();
    });
}

#[test]
fn failed_fsync_poisons_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poison");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), LogConfig::default())
            .await
            .unwrap();
        let a = log.append(&batch(1, 100, 1), None).unwrap();
        a.wait(Durability::Fsynced).await.unwrap();
        log.inject_faults(0, 1);
        let b = log.append(&batch(1, 100, 2), None).unwrap();
        assert!(matches!(
            b.wait(Durability::Fsynced).await,
            Err(StorageError::Poisoned)
        ));
        assert!(log.is_poisoned());
        assert!(matches!(
            log.append(&batch(1, 100, 3), None),
            Err(StorageError::Poisoned)
        ));
        assert!(matches!(log.flush().await, Err(StorageError::Poisoned)));
        // Reads keep working up to the high watermark.
        let r = log.read_written(0, usize::MAX, true).await.unwrap();
        assert!(r.bytes > 0);
        assert!(matches!(
            log.clone().close().await,
            Err(StorageError::Poisoned)
        ));
        // Reopening recovers (the data was in fact written here).
        let log = PartitionLog::open(path.clone(), LogConfig::default())
            .await
            .unwrap();
        assert!(log.log_end_offset() >= 1);
        log.close().await.unwrap();
    });
}

#[test]
fn concurrent_fsynced_appenders_get_dense_unique_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group");
    run(move || async move {
        let log = PartitionLog::open(
            path.clone(),
            LogConfig {
                segment_bytes: 64 << 10,
                ..LogConfig::default()
            },
        )
        .await
        .unwrap();
        let offsets = Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for t in 0..64 {
            let log = log.clone();
            let offsets = offsets.clone();
            tasks.push(glommio::spawn_local(async move {
                for i in 0..20 {
                    let p = log.append(&batch(1 + (t % 3), 100, i), None).unwrap();
                    let (b, l) = (p.base_offset, p.last_offset);
                    p.wait(Durability::Fsynced).await.unwrap();
                    offsets.borrow_mut().push((b, l));
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let mut v = offsets.borrow().clone();
        v.sort();
        let mut next = 0;
        for (b, l) in &v {
            assert_eq!(*b, next);
            next = l + 1;
        }
        assert_eq!(log.durable_offset(), next);
        log.close().await.unwrap();
    });
}

#[test]
fn writer_task_in_a_chosen_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue");
    run(move || async move {
        let q = glommio::executor().create_task_queue(
            glommio::Shares::Static(1000),
            glommio::Latency::NotImportant,
            "storage-writer",
        );
        let log = PartitionLog::open_in(path, LogConfig::default(), Some(q))
            .await
            .unwrap();
        let p = log.append(&batch(3, 100, 1), None).unwrap();
        p.wait(Durability::Fsynced).await.unwrap();
        assert_eq!(log.durable_offset(), 3);
        log.close().await.unwrap();
    });
}

/// Segment space is allocated ahead of the writer (so O_DIRECT writes land inside the file
/// instead of extending it), the zeros after the last batch are the end of the log when it
/// is reopened without a clean close, and a clean close trims the file to its data.
#[test]
fn space_is_allocated_ahead_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ahead");
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 64 << 20,
            preallocate: false,
            ..LogConfig::default()
        };
        let log_file = path.join(format!("{:020}.log", 0));
        let file_len = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
        let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
        let mut data_bytes = 0u64;
        for i in 0..300i64 {
            let vb = batch(10, 900, 1000 + i);
            data_bytes += vb.len() as u64;
            log.append(&vb, None)
                .unwrap()
                .wait(Durability::Written)
                .await
                .unwrap();
        }
        let len = file_len(&log_file);
        assert!(
            len > data_bytes + 4096,
            "file ({len} B) should be allocated beyond its {data_bytes} B of data"
        );
        assert!(len <= 64 << 20, "never beyond segment.bytes: {len}");
        // Reopen without a clean close, as after a crash: the allocated zeros end the log.
        drop(log);
        let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
        assert_eq!(log.log_end_offset(), 3000);
        let r = log.read_written(0, usize::MAX, true).await.unwrap();
        let got = split(&r.into_bytes().await.unwrap());
        assert_eq!(got.len(), 300);
        assert_eq!(got.last().map(|b| b.1), Some(2999));
        // Appends continue right after the recovered data.
        let p = log.append(&batch(5, 100, 5000), None).unwrap();
        assert_eq!(p.base_offset, 3000);
        p.wait(Durability::Fsynced).await.unwrap();
        let extra = batch(5, 100, 5000).len() as u64;
        log.close().await.unwrap();
        assert_eq!(
            file_len(&log_file),
            data_bytes + extra,
            "close trims the file"
        );
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        assert_eq!(log.log_end_offset(), 3005);
        log.close().await.unwrap();
    });
}

/// The recent-batch caches of all partitions of a shard share one budget: with many
/// partitions the total stays under it, the oldest entries go first, and evicted data is
/// still read back from disk.
#[test]
fn shard_wide_cache_budget_bounds_many_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run(move || async move {
        let budget = 2 << 20;
        storage::set_shard_cache_bytes(budget);
        let mut logs = Vec::new();
        for p in 0..40 {
            logs.push(
                PartitionLog::open(root.join(format!("p{p}")), small_config())
                    .await
                    .unwrap(),
            );
        }
        // 40 partitions x 20 batches of ~10 KiB: 8 MiB of data, far over the budget
        // (and each partition stays under its own 8 MiB cap).
        for round in 0..20 {
            for log in &logs {
                log.append(&batch(10, 1000, 1000 + round), None)
                    .unwrap()
                    .wait(Durability::Written)
                    .await
                    .unwrap();
                assert!(
                    storage::shard_cache_bytes() <= budget,
                    "shard cache {} over budget {budget}",
                    storage::shard_cache_bytes()
                );
            }
        }
        assert!(
            storage::shard_cache_bytes() > budget / 2,
            "the budget is used"
        );
        // Everything is still readable (evicted parts from disk), in order.
        for log in &logs {
            let mut bases = Vec::new();
            let mut offset = 0;
            while offset < log.written_end_offset() {
                let r = log.read_written(offset, usize::MAX, true).await.unwrap();
                for (base, last, _) in split(&r.into_bytes().await.unwrap()) {
                    bases.push(base);
                    offset = last + 1;
                }
            }
            assert_eq!(bases, (0..20).map(|i| i * 10).collect::<Vec<_>>());
        }
        for log in logs {
            log.close().await.unwrap();
        }
        assert_eq!(
            storage::shard_cache_bytes(),
            0,
            "closing releases every entry"
        );
    });
}

/// A write group of hundreds of chunks (appends queued faster than the writer drains them,
/// as under acks=0) completes. Re-polling every pending write on each wake-up used to leave
/// a glommio waker clone per poll on each write and overflowed the writer task's reference
/// count (a panic that took the shard down).
#[test]
fn write_group_of_many_chunks_completes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many");
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 1 << 30,
            preallocate: false,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        let mut pending = Vec::new();
        for i in 0..5000i64 {
            // ~64 KiB each: one staging chunk per append, all in one run.
            pending.push(log.append(&batch(60, 1070, i), None).unwrap());
        }
        let end = log.log_end_offset();
        for p in pending {
            p.wait(Durability::Written).await.unwrap();
        }
        assert_eq!(log.written_end_offset(), end);
        assert_eq!(end, 5000 * 60);
        log.close().await.unwrap();
    });
}

/// acks=0 appends (`Durability::Queued`) get backpressure: when the writer falls behind,
/// the wait returns only once the partition's unwritten backlog is back under the bound,
/// so a producer faster than the disk cannot grow the broker's memory without bound.
#[test]
fn queued_appends_are_paced_by_the_unwritten_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paced");
    run(move || async move {
        let cfg = LogConfig {
            preallocate: false,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        let max = storage::log::QUEUED_BACKLOG_MAX;
        let mut peak = 0;
        let one = batch(200, 1000, 1).len() as u64;
        for i in 0..1200i64 {
            // ~200 KiB per append, 240 MB in all: several times the bound.
            let p = log.append(&batch(200, 1000, i), None).unwrap();
            peak = peak.max(log.unwritten_bytes());
            p.wait(Durability::Queued).await.unwrap();
            assert!(
                log.unwritten_bytes() <= max,
                "backlog {} over {max} after a Queued wait",
                log.unwritten_bytes()
            );
        }
        assert!(peak <= max + one, "peak backlog {peak}");
        log.flush().await.unwrap();
        assert_eq!(log.written_end_offset(), 1200 * 200);
        log.close().await.unwrap();
    });
}

/// One read of at least one batch from `offset`, checked to continue exactly there (`split`
/// verifies every batch's CRC); returns the offset after it.
async fn read_on(log: &PartitionLog, offset: i64, max_bytes: usize) -> i64 {
    let bytes = log
        .read_written(offset, max_bytes, true)
        .await
        .unwrap()
        .into_bytes()
        .await
        .unwrap();
    let mut next = offset;
    for (base, last, _) in split(&bytes) {
        assert_eq!(
            base, next,
            "a read from {offset} skipped or repeated records"
        );
        next = last + 1;
    }
    assert!(next > offset, "a read from {offset} returned nothing");
    next
}

#[test]
fn sequential_disk_reads_are_read_ahead_within_the_shard_budget() {
    // Batches smaller than a read, and batches far larger than one (the read-ahead ranges
    // must grow to hold them, or every read would go to disk).
    for (name, records, batches, max_bytes) in
        [("small", 4, 64i64, 100 << 10), ("large", 300, 12, 64 << 10)]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        run(move || async move {
            let cfg = LogConfig {
                max_message_bytes: 4 << 20,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
            let mut last = None;
            for i in 0..batches {
                last = Some(log.append(&batch(records, 4000, i), None).unwrap());
            }
            last.unwrap().wait(Durability::Written).await.unwrap();
            log.set_read_cache_bytes(0);
            for budget in [storage::DEFAULT_SHARD_READ_AHEAD_BYTES, 0] {
                storage::set_shard_read_ahead_bytes(budget);
                let hits_before = storage::shard_read_ahead_hits();
                let (mut off, mut reads, mut ahead_seen) = (0i64, 0, 0usize);
                while off < log.log_end_offset() {
                    off = read_on(&log, off, max_bytes).await;
                    reads += 1;
                    ahead_seen = ahead_seen.max(storage::shard_read_ahead_bytes());
                }
                assert_eq!(off, batches * i64::from(records));
                assert!(reads > 5, "{reads}");
                let hits = storage::shard_read_ahead_hits() - hits_before;
                if budget == 0 {
                    assert_eq!((ahead_seen, hits), (0, 0));
                } else {
                    assert!(ahead_seen > 0 && ahead_seen <= budget, "{ahead_seen}");
                    // All but the first read (from disk) and the ones right after a
                    // segment or range boundary come from read-ahead.
                    assert!(hits * 2 >= reads, "{name}: {hits} of {reads} reads");
                }
            }
            log.close().await.unwrap();
        });
    }
}

/// Two sequential readers at different places in the same partition (two consumer groups
/// replaying) each keep their own read-ahead stream: with one stream per partition they
/// replaced each other's on every read and neither was ever served from memory.
#[test]
fn interleaved_sequential_readers_each_keep_their_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-readers");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), LogConfig::default())
            .await
            .unwrap();
        let batches = 128i64;
        let mut last = None;
        for i in 0..batches {
            last = Some(log.append(&batch(4, 4000, i), None).unwrap());
        }
        last.unwrap().wait(Durability::Written).await.unwrap();
        log.set_read_cache_bytes(0);
        storage::set_shard_read_ahead_bytes(storage::DEFAULT_SHARD_READ_AHEAD_BYTES);
        let end = log.log_end_offset();
        // Reader 0 starts at the beginning, reader 1 in the middle; they take turns.
        let mut next = [0i64, end / 2];
        let stop = [end / 2, end];
        let (mut reads, hits_before) = (0, storage::shard_read_ahead_hits());
        while (0..2).any(|r| next[r] < stop[r]) {
            for r in 0..2 {
                if next[r] >= stop[r] {
                    continue;
                }
                next[r] = read_on(&log, next[r], 64 << 10).await;
                reads += 1;
            }
        }
        let hits = storage::shard_read_ahead_hits() - hits_before;
        assert!(reads > 20, "{reads}");
        // All but each reader's first read (and reads right after a range boundary) hit.
        assert!(hits * 2 >= reads, "{hits} of {reads} reads from read-ahead");
        log.close().await.unwrap();
    });
}

/// A log of `batches` written batches of 4 records of 4000 B (about 16 KiB each), with no
/// batch cache, so that every read goes to disk or read-ahead.
async fn uncached_log(path: std::path::PathBuf, batches: i64) -> PartitionLog {
    let log = PartitionLog::open(path, LogConfig::default())
        .await
        .unwrap();
    let mut last = None;
    for i in 0..batches {
        last = Some(log.append(&batch(4, 4000, i), None).unwrap());
    }
    last.unwrap().wait(Durability::Written).await.unwrap();
    log.set_read_cache_bytes(0);
    log
}

/// Streams read deep ahead (the disk's throughput grows with the reads in flight), but the
/// ranges past a stream's first few leave a reserve of the shard's budget, so a reader of
/// another partition that arrives later still gets read-ahead instead of going to disk.
#[test]
fn deep_read_ahead_leaves_room_for_a_later_reader() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run(move || async move {
        let logs = [
            uncached_log(root.join("first"), 400).await,
            uncached_log(root.join("later"), 400).await,
        ];
        let budget = 4usize << 20;
        storage::set_shard_read_ahead_bytes(budget);
        // 256 KiB reads: ranges of 256 KiB, a stream wants 16 of them (4 MiB, the whole
        // budget) but may take only 3 MiB.
        let max_bytes = 256 << 10;
        let mut off_first = read_on(&logs[0], 0, max_bytes).await;
        let first_holds = storage::shard_read_ahead_bytes();
        assert!(
            first_holds > 4 * max_bytes && first_holds <= budget - budget / 4,
            "the first stream holds {first_holds} bytes"
        );
        let mut off_later = read_on(&logs[1], 0, max_bytes).await;
        let both_hold = storage::shard_read_ahead_bytes();
        assert!(
            both_hold > first_holds,
            "the later reader got no read-ahead"
        );
        assert!(both_hold <= budget, "{both_hold}");
        let hits_before = storage::shard_read_ahead_hits();
        for _ in 0..3 {
            off_later = read_on(&logs[1], off_later, max_bytes).await;
            off_first = read_on(&logs[0], off_first, max_bytes).await;
        }
        let hits = storage::shard_read_ahead_hits() - hits_before;
        assert_eq!(hits, 6, "both readers are served from read-ahead");
        assert!(storage::shard_read_ahead_bytes() <= budget);
        storage::set_shard_read_ahead_bytes(storage::DEFAULT_SHARD_READ_AHEAD_BYTES);
        for log in logs {
            log.close().await.unwrap();
        }
    });
}

/// Many sequential readers on one shard split the read-ahead budget: the first ones do not
/// keep it all while the later ones read every fetch from disk. Deep streams stop refilling
/// once only the reserve is left, so memory moves to the newcomers as the first ones read on.
#[test]
fn many_readers_share_the_read_ahead_budget() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run(move || async move {
        const READERS: usize = 8;
        const ROUNDS: usize = 24;
        let mut logs = Vec::new();
        for r in 0..READERS {
            logs.push(uncached_log(root.join(format!("p{r}")), 640).await);
        }
        // Room for every reader's first four 256 KiB ranges and a little more.
        let budget = 12usize << 20;
        storage::set_shard_read_ahead_bytes(budget);
        let max_bytes = 256 << 10;
        let mut offsets = [0i64; READERS];
        let mut late_hits = [0usize; READERS];
        for round in 0..ROUNDS {
            for r in 0..READERS {
                let before = storage::shard_read_ahead_hits();
                offsets[r] = read_on(&logs[r], offsets[r], max_bytes).await;
                let hit = storage::shard_read_ahead_hits() - before;
                if round >= ROUNDS - 8 {
                    late_hits[r] += hit as usize;
                }
                assert!(storage::shard_read_ahead_bytes() <= budget);
            }
        }
        // Once the budget has been split, every reader is served from memory most of the
        // time (a read right after a range boundary may still go to disk).
        assert!(
            late_hits.iter().all(|&h| h >= 4),
            "read-ahead hits per reader in the last 8 rounds: {late_hits:?}"
        );
        storage::set_shard_read_ahead_bytes(storage::DEFAULT_SHARD_READ_AHEAD_BYTES);
        for log in logs {
            log.close().await.unwrap();
        }
    });
}

/// Space is allocated ahead in the background while a segment fills; a rolled segment is
/// still trimmed to exactly its batches (the seal waits for an allocation in flight).
#[test]
fn rolled_segments_are_trimmed_to_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rolls");
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 3 << 20,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        let mut last = None;
        for i in 0..2400i64 {
            let p = log.append(&batch(4, 1000, i), None).unwrap();
            if i % 16 == 0 {
                p.wait(Durability::Written).await.unwrap();
            } else {
                last = Some(p);
            }
        }
        last.unwrap().wait(Durability::Fsynced).await.unwrap();
        let mut logs: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        assert!(logs.len() >= 3, "{logs:?}");
        for file in &logs[..logs.len() - 1] {
            let data = std::fs::read(file).unwrap();
            let batches = split(&data);
            let used: usize = batches.iter().map(|b| b.2.len()).sum();
            assert!(!batches.is_empty());
            assert_eq!(
                used,
                data.len(),
                "{} has bytes after its batches",
                file.display()
            );
        }
        log.close().await.unwrap();
    });
}

/// Descriptors of this process open on files under `dir`.
fn fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// The broker budgets RLIMIT_NOFILE with `FDS_PER_SEGMENT`: an open segment holds exactly
/// that many descriptors, the active one and sealed ones alike.
#[test]
fn an_open_segment_holds_fds_per_segment_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fds");
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 8 << 10,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        assert_eq!(fds_under(&path), storage::FDS_PER_SEGMENT);
        let mut last = None;
        for i in 0..20i64 {
            last = Some(log.append(&batch(1, 1000, i * 1000), None).unwrap());
        }
        // Fsynced: every earlier segment is sealed too (its index files written and closed).
        last.unwrap().wait(Durability::Fsynced).await.unwrap();
        let segments = seg_files(&path);
        assert!(segments >= 2, "{segments}");
        assert_eq!(fds_under(&path), segments * storage::FDS_PER_SEGMENT);
        log.close().await.unwrap();
    });
}
