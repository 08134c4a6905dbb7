//! Replica-side storage: follower appends that keep the leader's offsets (with gaps),
//! reads inside gaps, reads bounded by the caller's visible end, `truncate_to` (also
//! interrupted at each of its steps), and the leader-epoch file.

mod common;

use common::*;
use storage::{Durability, EpochEntry, EpochError, LogConfig, PartitionLog, StorageError};

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 8 << 10,
        index_interval_bytes: 700,
        ..LogConfig::default()
    }
}

/// (base, last, epoch, ts) of the batches `gappy_log` appends.
type Expected = Vec<(i64, i64, i32, i64)>;

/// Appends `n` follower batches with gaps of 0..=4 offsets between them (epochs
/// `epoch0` + 1, 2 and 5), in appends of 1-3 batches, and waits until they are fsynced.
async fn gappy_log(log: &PartitionLog, n: usize, epoch0: i32) -> Expected {
    let mut expected = Vec::new();
    let mut next = log.log_end_offset();
    let mut i = 0usize;
    while i < n {
        let mut parts = Vec::new();
        for _ in 0..(1 + i % 3).min(n - i) {
            let gap = (i * 7 % 5) as i64;
            let count = 1 + (i % 4) as i32;
            let base = next + gap;
            let epoch = epoch0
                + match i * 3 / n {
                    0 => 1,
                    1 => 2,
                    _ => 5,
                };
            let ts = 10_000 + i as i64;
            parts.push(replica_batch(base, count, 300 + (i * 53) % 400, ts, epoch));
            expected.push((base, base + count as i64 - 1, epoch, ts));
            next = base + count as i64;
            i += 1;
        }
        log.append_replica(&batches(&parts))
            .unwrap()
            .wait(Durability::Fsynced)
            .await
            .unwrap();
    }
    expected
}

/// Every batch reads back with its own offsets, epoch and content, in order.
async fn check_log(log: &PartitionLog, expected: &Expected) {
    for disk in [false, true] {
        let got = read_all(log, disk).await;
        let want: Vec<&(i64, i64, i32, i64)> = expected
            .iter()
            .filter(|e| e.1 >= log.log_start_offset())
            .collect();
        assert_eq!(got.len(), want.len(), "batches (disk: {disk})");
        for (g, w) in got.iter().zip(&want) {
            let h = storage::BatchHeader::parse_and_verify(&g.2).unwrap();
            assert_eq!(
                (
                    h.base_offset,
                    h.last_offset(),
                    h.partition_leader_epoch,
                    h.max_timestamp
                ),
                **w
            );
        }
    }
    assert_eq!(
        log.log_end_offset(),
        expected.last().map_or(log.log_end_offset(), |e| e.1 + 1)
    );
}

/// A read at every offset from the log start to the end returns the batch holding it,
/// or the next one when it lies in a gap.
async fn check_gap_reads(log: &PartitionLog, expected: &Expected, disk: bool) {
    log.set_read_cache_bytes(if disk { 0 } else { 64 << 20 });
    let end = log.log_end_offset();
    for offset in log.log_start_offset()..end {
        let want = expected.iter().find(|e| e.1 >= offset).unwrap();
        let b = log
            .read_written(offset, 1, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        let parts = split(&b);
        assert_eq!(
            (parts[0].0, parts[0].1),
            (want.0, want.1),
            "read at {offset}"
        );
    }
}

#[test]
fn follower_appends_with_gaps_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gaps");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        let expected = gappy_log(&log, 120, 0).await;
        assert!(
            std::fs::read_dir(&path).unwrap().count() > 6,
            "want several segments"
        );
        check_log(&log, &expected).await;
        check_gap_reads(&log, &expected, false).await;
        check_gap_reads(&log, &expected, true).await;
        // Epochs learned from the batches, each starting at its first batch.
        let first_of = |e: i32| expected.iter().find(|x| x.2 == e).unwrap().0;
        let epochs: Vec<(i32, i64)> = log
            .leader_epochs()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        assert_eq!(epochs, vec![(1, 0), (2, first_of(2)), (5, first_of(5))]);
        log.clone().close().await.unwrap();
        drop(log);
        for clean in [true, false] {
            let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
            check_log(&log, &expected).await;
            check_gap_reads(&log, &expected, true).await;
            assert_eq!(log.leader_epochs().len(), 3);
            if clean {
                log.close().await.unwrap();
            } else {
                drop(log); // as a crash would
            }
        }
        // No checkpoint and no index files: a full scan accepts the gaps too.
        for entry in std::fs::read_dir(&path).unwrap() {
            let p = entry.unwrap().path();
            if p.extension()
                .is_some_and(|x| x == "index" || x == "timeindex")
                || p.ends_with("partition.checkpoint")
                || p.ends_with("leader-epoch-checkpoint")
            {
                std::fs::remove_file(p).unwrap();
            }
        }
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        check_log(&log, &expected).await;
        assert_eq!(storage::last_recovery_stats().bytes_truncated, 0);
        assert_eq!(log.leader_epochs().len(), 3, "epochs learned by the scan");
        // A leader append continues right after the last batch.
        let p = log.append(&batch(2, 50, 7), None).unwrap();
        assert_eq!(p.base_offset, expected.last().unwrap().1 + 1);
        p.wait(Durability::Written).await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn follower_appends_refuse_offsets_that_do_not_increase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refuse");
    run(move || async move {
        let log = PartitionLog::open(path, cfg()).await.unwrap();
        let one = |base, epoch| replica_batch(base, 3, 20, 1, epoch);
        log.append_replica(&batches(&[one(10, 4)]))
            .unwrap()
            .wait(Durability::Written)
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 13);
        // Below the log end, overlapping it, or overlapping inside one append.
        for parts in [
            vec![one(0, 4)],
            vec![one(12, 4)],
            vec![one(20, 4), one(22, 4)],
            vec![one(20, 4), one(20, 4)],
            vec![one(30, 4), one(14, 4)],
        ] {
            let err = log.append_replica(&batches(&parts)).unwrap_err();
            assert!(
                matches!(err, StorageError::OffsetsNotIncreasing { .. }),
                "{err}"
            );
            assert_eq!(log.log_end_offset(), 13, "nothing stored");
        }
        // An older leader epoch than the latest known one.
        let err = log.append_replica(&batches(&[one(13, 3)])).unwrap_err();
        assert!(
            matches!(err, StorageError::Epoch(EpochError::NotMonotonic { .. })),
            "{err}"
        );
        // Offsets too far apart for one segment.
        let far = replica_batch(i32::MAX as i64 + 100, 1, 20, 1, 4);
        let err = log
            .append_replica(&batches(&[one(13, 4), far.clone()]))
            .unwrap_err();
        assert!(
            matches!(err, StorageError::OffsetSpanTooLarge { .. }),
            "{err}"
        );
        assert_eq!(log.log_end_offset(), 13);
        // Exactly at the end and after a gap are fine; a huge gap rolls a new segment.
        log.append_replica(&batches(&[one(13, 4), one(17, 4)]))
            .unwrap()
            .wait(Durability::Written)
            .await
            .unwrap();
        log.append_replica(&batches(&[far]))
            .unwrap()
            .wait(Durability::Fsynced)
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), i32::MAX as i64 + 101);
        let b = log
            .read_written(21, 1, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        assert_eq!(split(&b)[0].0, i32::MAX as i64 + 100);
        log.close().await.unwrap();
    });
}

#[test]
fn reads_stop_before_the_visible_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bound");
    run(move || async move {
        let log = PartitionLog::open(path, cfg()).await.unwrap();
        // Batches of 3 offsets: 0..=2, 3..=5, ...
        let mut last = None;
        for i in 0..40i64 {
            last = Some(log.append(&batch(3, 200, 100 + i), None).unwrap());
        }
        last.unwrap().wait(Durability::Written).await.unwrap();
        for disk in [false, true] {
            log.set_read_cache_bytes(if disk { 0 } else { 64 << 20 });
            // A visible end on a batch boundary, and one inside a batch (that batch is
            // not visible either).
            for (visible_end, last_visible) in [(30i64, 29i64), (31, 29), (32, 29), (33, 32)] {
                let mut offset = 0;
                let mut seen_last = -1;
                loop {
                    let r = log.read(offset, 2000, true, visible_end).await.unwrap();
                    let b = r.into_bytes().await.unwrap();
                    if b.is_empty() {
                        break;
                    }
                    for (base, last, _) in split(&b) {
                        assert!(
                            last < visible_end,
                            "batch {base}..={last} past {visible_end}"
                        );
                        seen_last = last;
                        offset = last + 1;
                    }
                }
                assert_eq!(seen_last, last_visible, "disk {disk}, end {visible_end}");
            }
            // At or past the visible end: empty, not an error.
            let r = log.read(35, 1 << 20, true, 30).await.unwrap();
            assert_eq!(r.bytes, 0);
        }
        // Timestamp lookups and MAX_TIMESTAMP respect it too.
        assert!(log
            .find_batch_by_timestamp(120, 30)
            .await
            .unwrap()
            .is_none());
        assert!(log
            .find_batch_by_timestamp(105, 30)
            .await
            .unwrap()
            .is_some());
        let (off, ts) = log.max_timestamp_offset(i64::MAX).await.unwrap().unwrap();
        assert_eq!((off, ts), (119, 139));
        log.close().await.unwrap();
    });
}

/// Model of the log for the truncation tests: (base, last, epoch, ts) per batch.
fn truncated(expected: &Expected, offset: i64) -> Expected {
    expected.iter().copied().filter(|e| e.1 < offset).collect()
}

#[test]
fn truncate_to_across_segments_then_append_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trunc");
    run(move || async move {
        let mut log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        let mut expected = gappy_log(&log, 150, 0).await;
        let segs_before = std::fs::read_dir(&path).unwrap().count();
        // Offsets to truncate at: inside a batch, inside a gap, at a batch boundary, at
        // a segment's base; each time from a log grown again.
        let mut picks = Vec::new();
        let mid = expected[expected.len() * 2 / 3];
        picks.push(mid.0 + (mid.1 - mid.0) / 2 + 1); // inside (or at the end of) a batch
        let gap = expected
            .windows(2)
            .find(|w| w[1].0 > w[0].1 + 1 && w[0].0 > expected[expected.len() / 3].0)
            .map(|w| w[0].1 + 1)
            .unwrap();
        picks.push(gap);
        picks.push(expected[expected.len() / 4].0);
        let mut seg_bases: Vec<i64> = std::fs::read_dir(&path)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().to_str()?.to_string();
                n.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        seg_bases.sort();
        picks.push(seg_bases[2]);
        for (round, offset) in picks.into_iter().enumerate() {
            let offset = offset.min(log.log_end_offset() - 1);
            let want = truncated(&expected, offset);
            let end = log.truncate_to(offset).await.unwrap();
            assert_eq!(end, want.last().map_or(0, |e| e.1 + 1), "round {round}");
            assert!(end <= offset);
            assert_eq!(log.log_end_offset(), end);
            assert_eq!(log.written_end_offset(), end);
            expected = want;
            check_log(&log, &expected).await;
            check_gap_reads(&log, &expected, true).await;
            assert!(log.leader_epochs().iter().all(|e| e.start_offset < end));
            // Reads at or past the new end are out of range or empty.
            assert!(log.read_written(end, 100, true).await.unwrap().bytes == 0);
            // Grow again with follower batches (a new epoch) and leader appends.
            let more = gappy_log(&log, 30 + round * 10, 10 * (round as i32 + 1)).await;
            expected.extend(more);
            let p = log.append(&batch(2, 100, 77), None).unwrap();
            expected.push((p.base_offset, p.last_offset, -1, 77));
            p.wait(Durability::Fsynced).await.unwrap();
            check_log(&log, &expected).await;
            // Reopen: clean in even rounds, as after a crash in odd ones.
            if round % 2 == 0 {
                log.clone().close().await.unwrap();
            }
            drop(log);
            log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
            assert_eq!(storage::last_recovery_stats().bytes_truncated, 0);
            check_log(&log, &expected).await;
        }
        // Truncating at the log start empties the log; below it is refused.
        let lso = log.log_start_offset();
        assert!(matches!(
            log.truncate_to(lso - 1).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.truncate_to(lso).await.unwrap(), lso);
        assert_eq!(read_all(&log, true).await.len(), 0);
        assert!(std::fs::read_dir(&path).unwrap().count() < segs_before);
        let p = log.append(&batch(1, 10, 5), None).unwrap();
        assert_eq!(p.base_offset, lso);
        p.wait(Durability::Fsynced).await.unwrap();
        log.close().await.unwrap();
    });
}

/// Builds a gappy log, truncates it with a stop (a simulated crash) before `step`, drops
/// it and reopens: the log must come back truncated, whole below the offset.
fn interrupted_truncation(step: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("stop{step}"));
    run(move || async move {
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        let expected = gappy_log(&log, 150, 0).await;
        let cut_at = expected[expected.len() / 2];
        let offset = cut_at.0 + 1; // inside a batch, or right after a one-record batch
        let want = truncated(&expected, offset);
        log.inject_truncate_stop(step);
        assert!(log.truncate_to(offset).await.is_err(), "step {step}");
        assert!(log.is_poisoned());
        assert!(log.append(&batch(1, 10, 1), None).is_err());
        drop(log); // the "crash"
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        check_log(&log, &want).await;
        check_gap_reads(&log, &want, true).await;
        assert!(log
            .leader_epochs()
            .iter()
            .all(|e| e.start_offset < log.log_end_offset()));
        // The record of the truncation is gone: a second reopen changes nothing.
        log.close().await.unwrap();
        let log = PartitionLog::open(path, cfg()).await.unwrap();
        check_log(&log, &want).await;
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_interrupted_after_recording_it() {
    interrupted_truncation(1);
}

#[test]
fn truncation_interrupted_after_deleting_segments() {
    interrupted_truncation(2);
}

#[test]
fn truncation_interrupted_after_cutting_the_file() {
    interrupted_truncation(3);
}

#[test]
fn truncation_interrupted_before_clearing_the_record() {
    interrupted_truncation(4);
}

#[test]
fn truncate_to_waits_for_pending_appends_and_fails_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pending");
    run(move || async move {
        let log = PartitionLog::open(path, cfg()).await.unwrap();
        // Ten appends of 2 offsets, none waited for yet.
        let pending: Vec<_> = (0..10)
            .map(|i| log.append(&batch(2, 500, i), None).unwrap())
            .collect();
        let end = log.truncate_to(9).await.unwrap();
        // Offset 9 lies inside the append 8..=9, which goes whole.
        assert_eq!(end, 8);
        for p in pending {
            let (base, res) = (p.base_offset, p.wait(Durability::Fsynced).await);
            if base < 8 {
                res.unwrap();
            } else {
                assert!(
                    matches!(res, Err(StorageError::Truncated)),
                    "{base}: {res:?}"
                );
            }
        }
        // The next append reuses the removed offsets, and is durable on its own terms.
        let p = log.append(&batch(1, 10, 99), None).unwrap();
        assert_eq!(p.base_offset, 8);
        p.wait(Durability::Fsynced).await.unwrap();
        assert_eq!(log.durable_offset(), 9);
        log.close().await.unwrap();
    });
}

#[test]
fn leader_epoch_file_round_trip_truncation_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("epochs");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        assert_eq!(log.end_offset_for_epoch(0), None);
        // Leader in epoch 3 from 0, appends 10 offsets.
        log.assign_epoch(3, 0).await.unwrap();
        log.set_leader_epoch(Some(3));
        for i in 0..5 {
            log.append(&batch(2, 100, i), None)
                .unwrap()
                .wait(Durability::Written)
                .await
                .unwrap();
        }
        // Epoch 6 from 10; an older epoch, or one not starting at the log end, is refused.
        log.assign_epoch(6, 10).await.unwrap();
        assert!(matches!(
            log.assign_epoch(5, 10).await,
            Err(StorageError::Epoch(EpochError::NotMonotonic { .. }))
        ));
        assert!(matches!(
            log.assign_epoch(7, 4).await,
            Err(StorageError::Epoch(EpochError::NotAtLogEnd { .. }))
        ));
        assert!(matches!(
            log.assign_epoch(7, 11).await,
            Err(StorageError::Epoch(EpochError::NotAtLogEnd { .. }))
        ));
        log.set_leader_epoch(Some(6));
        let p = log.append(&batch(4, 100, 9), None).unwrap();
        p.wait(Durability::Written).await.unwrap();
        let stored = log
            .read_written(10, 1, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        assert_eq!(
            storage::BatchHeader::parse(&stored)
                .unwrap()
                .partition_leader_epoch,
            6
        );
        // A follower-style append learns epoch 8 from its batch.
        log.append_replica(&batches(&[replica_batch(20, 2, 30, 1, 8)]))
            .unwrap()
            .wait(Durability::Written)
            .await
            .unwrap();
        let entries = |l: &PartitionLog| -> Vec<(i32, i64)> {
            l.leader_epochs()
                .iter()
                .map(|e| (e.epoch, e.start_offset))
                .collect()
        };
        assert_eq!(entries(&log), vec![(3, 0), (6, 10), (8, 20)]);
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 10)));
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 10)));
        assert_eq!(log.end_offset_for_epoch(6), Some((6, 20)));
        assert_eq!(log.end_offset_for_epoch(8), Some((8, 22)));
        assert_eq!(log.end_offset_for_epoch(2), Some((2, 0)));
        assert_eq!(log.end_offset_for_epoch(9), None);
        // The lazily persisted epoch 8 survives a crash (learned again by the scan), and
        // a newly assigned epoch with nothing appended yet survives too.
        log.assign_epoch(9, 22).await.unwrap();
        drop(log);
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        assert_eq!(entries(&log), vec![(3, 0), (6, 10), (8, 20), (9, 22)]);
        assert_eq!(log.end_offset_for_epoch(8), Some((8, 22)));
        assert_eq!(log.end_offset_for_epoch(9), Some((9, 22)));
        // Truncation drops the epochs at and above the new end.
        assert_eq!(log.truncate_to(14).await.unwrap(), 14);
        assert_eq!(entries(&log), vec![(3, 0), (6, 10)]);
        assert_eq!(log.end_offset_for_epoch(6), Some((6, 14)));
        // Moving the log start moves the first entry.
        log.delete_records_before(4).await.unwrap();
        assert_eq!(entries(&log), vec![(3, 4), (6, 10)]);
        log.close().await.unwrap();
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        assert_eq!(
            log.leader_epochs(),
            vec![
                EpochEntry {
                    epoch: 3,
                    start_offset: 4
                },
                EpochEntry {
                    epoch: 6,
                    start_offset: 10
                }
            ]
        );
        let file = std::fs::read_to_string(path.join("leader-epoch-checkpoint")).unwrap();
        assert_eq!(file, "0\n2\n3 4\n6 10\n");
        log.close().await.unwrap();
    });
}

#[test]
fn a_file_range_read_back_differently_is_a_typed_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        let mut last = None;
        for i in 0..30 {
            last = Some(log.append(&batch(1, 1000, i), None).unwrap());
        }
        last.unwrap().wait(Durability::Fsynced).await.unwrap();
        log.set_read_cache_bytes(0);
        let r = log.read_written(0, 1 << 20, true).await.unwrap();
        assert!(matches!(r.chunks[0], storage::Chunk::File { .. }));
        // Someone rewrites the first batch's base offset (outside the CRC) between the
        // read's scan and the load.
        let seg = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .min()
            .unwrap();
        let mut content = std::fs::read(&seg).unwrap();
        content[0..8].copy_from_slice(&5i64.to_be_bytes());
        std::fs::write(&seg, &content).unwrap();
        let err = r.into_bytes().await.unwrap_err();
        assert!(matches!(err, StorageError::CorruptLog { .. }), "{err}");
        log.close().await.unwrap();
    });
}
