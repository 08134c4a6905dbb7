//! Append/read round trips across segment rolls, index lookups at every offset.

mod common;

use common::*;
use storage::{Durability, LogConfig, PartitionLog, StorageError};

#[test]
fn append_read_round_trip_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p0");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), small_config())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 0);
        let mut expected = Vec::new();
        for i in 0..200i64 {
            let count = (i % 5 + 1) as i32;
            let vb = batch(count, 100 + (i as usize * 37) % 900, 1000 + i);
            let p = log.append(&vb, None).unwrap();
            assert_eq!(
                p.base_offset,
                expected.iter().map(|(c, _)| *c as i64).sum::<i64>()
            );
            expected.push((count, vb.bytes().clone()));
            if i % 7 == 0 {
                p.wait(Durability::Fsynced).await.unwrap();
            } else {
                p.wait(Durability::Written).await.unwrap();
            }
        }
        let end = log.log_end_offset();
        assert_eq!(log.written_end_offset(), end);
        // Disable the cache so reads go to disk, then read everything back.
        for cache in [0usize, 64 << 20] {
            log.set_read_cache_bytes(cache);
            let mut offset = 0;
            let mut seen = Vec::new();
            while offset < end {
                let r = log.read_written(offset, 10_000, true).await.unwrap();
                assert!(r.bytes > 0);
                let bytes = r.into_bytes().await.unwrap();
                for (base, last, b) in split(&bytes) {
                    assert_eq!(base, offset);
                    offset = last + 1;
                    seen.push(b);
                }
            }
            assert_eq!(seen.len(), expected.len());
            for (i, (b, (_, orig))) in seen.iter().zip(&expected).enumerate() {
                assert_eq!(&b[8..], &orig[8..], "batch {i} differs");
            }
        }
        assert!(
            std::fs::read_dir(&path).unwrap().count() > 4,
            "expected several segments"
        );
        log.close().await.unwrap();
        // Reopen (clean) and read again from disk.
        let log = PartitionLog::open(path.clone(), small_config())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), end);
        let r = log.read_written(0, usize::MAX, true).await.unwrap();
        assert!(r.bytes > 0);
        assert!(matches!(
            log.read_written(end + 1, 100, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.read_written(end, 100, true).await.unwrap().bytes, 0);
        log.close().await.unwrap();
    });
}

#[test]
fn index_lookup_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p1");
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 32 << 10,
            index_interval_bytes: 512,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
        log.set_read_cache_bytes(0);
        let mut last = None;
        for i in 0..300i64 {
            let vb = batch((i % 4 + 1) as i32, 50 + (i as usize % 13) * 20, i);
            last = Some(log.append(&vb, None).unwrap());
        }
        last.unwrap().wait(Durability::Written).await.unwrap();
        let end = log.log_end_offset();
        let check = |log: PartitionLog| async move {
            for off in 0..end {
                let r = log.read_written(off, 1, true).await.unwrap();
                let b = r.into_bytes().await.unwrap();
                let parts = split(&b);
                assert_eq!(
                    parts.len(),
                    1,
                    "min_one returns exactly one batch for a tiny max"
                );
                assert!(
                    parts[0].0 <= off && off <= parts[0].1,
                    "offset {off} not in batch {:?}",
                    (parts[0].0, parts[0].1)
                );
                let none = log.read_written(off, 1, false).await.unwrap();
                assert_eq!(none.bytes, 0);
                if off % 17 == 0 {
                    // Unbounded reads stop at the segment end with whole, dense batches.
                    let all = log.read_written(off, usize::MAX, false).await.unwrap();
                    let b = all.into_bytes().await.unwrap();
                    let parts = split(&b);
                    assert!(parts[0].0 <= off && off <= parts[0].1);
                    for w in parts.windows(2) {
                        assert_eq!(w[0].1 + 1, w[1].0);
                    }
                }
            }
        };
        check(log.clone()).await;
        log.close().await.unwrap();
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        log.set_read_cache_bytes(0);
        check(log.clone()).await;
        log.close().await.unwrap();
    });
}
