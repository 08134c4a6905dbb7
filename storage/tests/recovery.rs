//! Recovery property tests: cut a segment at a random byte, or flip random bytes in the
//! tail, reopen, and check that exactly the intact prefix remains and appends resume at
//! the next offset.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use proptest::prelude::*;
use storage::{Durability, LogConfig, PartitionLog};

/// Writes a log of `sizes.len()` batches, each fsynced, then drops it without a clean
/// close (as a crash would). Returns (base_offset, last_offset, stored bytes) per batch.
fn build_log(path: PathBuf, sizes: Vec<(i32, usize)>, cfg: LogConfig) -> Vec<(i64, i64, Vec<u8>)> {
    run(move || async move {
        let log = PartitionLog::open(path, cfg).await.unwrap();
        let mut pend = Vec::new();
        for (i, (count, len)) in sizes.iter().enumerate() {
            let vb = batch(*count, *len, 1000 + i as i64);
            pend.push(log.append(&vb, None).unwrap());
        }
        for p in pend {
            p.wait(Durability::Fsynced).await.unwrap();
        }
        log.set_read_cache_bytes(0);
        let r = log.read_written(0, usize::MAX, true).await.unwrap();
        let mut all = Vec::new();
        let mut offset = 0;
        let end = log.log_end_offset();
        let _ = r;
        while offset < end {
            let b = log
                .read_written(offset, usize::MAX, true)
                .await
                .unwrap()
                .into_bytes()
                .await
                .unwrap();
            let parts = split(&b);
            offset = parts.last().unwrap().1 + 1;
            all.extend(parts);
        }
        drop(log); // no close: the checkpoint still says "not clean"
        all
    })
}

/// Segment files in offset order with their base offsets.
fn segments(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut v: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.to_string();
            let base = name.strip_suffix(".log")?.parse().ok()?;
            Some((base, p))
        })
        .collect();
    v.sort();
    v
}

/// Reopens, reads everything, appends one more batch; returns the batches read and
/// the offset the new append got.
/// (base offset, last offset, bytes) of every batch.
type Batches = Vec<(i64, i64, Vec<u8>)>;

fn reopen_and_read(path: PathBuf, cfg: LogConfig) -> (Batches, i64, i64) {
    run(move || async move {
        let log = PartitionLog::open(path, cfg).await.unwrap();
        log.set_read_cache_bytes(0);
        let end = log.log_end_offset();
        let mut all = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < end {
            let b = log
                .read_written(offset, 1 << 20, true)
                .await
                .unwrap()
                .into_bytes()
                .await
                .unwrap();
            let parts = split(&b);
            offset = parts.last().unwrap().1 + 1;
            all.extend(parts);
        }
        let p = log.append(&batch(2, 40, 5), None).unwrap();
        let next = p.base_offset;
        p.wait(Durability::Fsynced).await.unwrap();
        let again = log
            .read_written(next, 1 << 20, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        assert_eq!(split(&again)[0].0, next);
        log.close().await.unwrap();
        (all, end, next)
    })
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 16 << 10,
        index_interval_bytes: 700,
        ..LogConfig::default()
    }
}

fn batch_sizes() -> impl Strategy<Value = Vec<(i32, usize)>> {
    prop::collection::vec((1i32..6, 8usize..700), 5..60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn cut_at_random_position(sizes in batch_sizes(), seg_pick in 0usize..1000, cut_pick in 0u64..u64::MAX) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let written = build_log(path.clone(), sizes, cfg());
        let segs = segments(&path);
        let (base, file) = &segs[seg_pick % segs.len()];
        let len = std::fs::metadata(file).unwrap().len();
        // The active segment is preallocated: cut within its data, not the zeros.
        let data_len: u64 = written.iter().filter(|(b, _, _)| {
            let next_seg = segs.iter().map(|(s, _)| *s).find(|s| s > base).unwrap_or(i64::MAX);
            b >= base && *b < next_seg
        }).map(|(_, _, v)| v.len() as u64).sum();
        let cut = cut_pick % (data_len.min(len) + 1);
        std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(cut).unwrap();
        // Expected: every batch wholly before the cut in this segment, and everything in
        // earlier segments.
        let mut expected = Vec::new();
        let mut pos = 0u64;
        for w in &written {
            if w.0 < *base { expected.push(w.clone()); continue; }
            let next_seg = segs.iter().map(|(s, _)| *s).find(|s| s > base).unwrap_or(i64::MAX);
            if w.0 >= next_seg { break; }
            pos += w.2.len() as u64;
            if pos <= cut { expected.push(w.clone()); } else { break; }
        }
        let (got, end, next) = reopen_and_read(path, cfg());
        let expected_end = expected.last().map_or(*base, |w| w.1 + 1);
        prop_assert_eq!(end, expected_end);
        prop_assert_eq!(next, expected_end);
        prop_assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            prop_assert_eq!(g, e);
        }
    }

    #[test]
    fn flip_bytes_in_tail(sizes in batch_sizes(), at_pick in 0u64..u64::MAX, flips in prop::collection::vec((0u64..64, 1u8..=255), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let written = build_log(path.clone(), sizes, cfg());
        let segs = segments(&path);
        let (base, file) = segs.last().unwrap();
        let tail: Vec<&(i64, i64, Vec<u8>)> = written.iter().filter(|w| w.0 >= *base).collect();
        prop_assume!(!tail.is_empty());
        let data_len: u64 = tail.iter().map(|w| w.2.len() as u64).sum();
        let at = at_pick % data_len;
        let mut content = std::fs::read(file).unwrap();
        let mut first_flip = u64::MAX;
        for (delta, mask) in &flips {
            let p = (at + delta).min(data_len - 1);
            content[p as usize] ^= mask;
            first_flip = first_flip.min(p);
        }
        std::fs::write(file, &content).unwrap();
        // Batches wholly before the first flipped byte must survive; the batch holding
        // it is dropped (with everything after) unless only its leader epoch (bytes
        // 12..16) or base offset (bytes 0..8) changed: both lie outside the CRC, as in
        // Kafka, and a larger base offset is indistinguishable from an offset gap.
        let mut intact = written.iter().filter(|w| w.0 < *base).cloned().collect::<Vec<_>>();
        let mut pos = 0u64;
        for w in &tail {
            if pos + w.2.len() as u64 <= first_flip { intact.push((*w).clone()); pos += w.2.len() as u64; } else { break; }
        }
        let (got, end, next) = reopen_and_read(path, cfg());
        prop_assert!(got.len() >= intact.len());
        for (g, e) in got.iter().zip(&intact) {
            prop_assert_eq!(g, e);
        }
        prop_assert_eq!(next, end);
        for w in got.windows(2) {
            prop_assert!(w[1].0 > w[0].1, "offsets must increase");
        }
        if got.len() > intact.len() {
            // Only possible when every flip hit a leader-epoch or a base-offset field:
            // both lie outside the CRC, and since offsets may have gaps, a larger base
            // offset reads as a gap (a smaller one stops the scan).
            for (g, w) in got.iter().zip(written.iter().filter(|w| w.0 >= 0)).skip(intact.len()) {
                prop_assert_eq!(&g.2[16..], &w.2[16..]);
                prop_assert_eq!(&g.2[8..12], &w.2[8..12]);
            }
        } else {
            prop_assert_eq!(end, intact.last().map_or(*base, |w| w.1 + 1));
        }
    }
}

/// Batch sizes that put a header across the first 4 MiB read boundary of the recovery
/// scan and a large batch across the second one.
fn straddling_sizes() -> Vec<usize> {
    const MB4: usize = 4 << 20;
    let mut sizes = Vec::new();
    let mut pos = 0usize;
    while MB4 - 30 - pos > 200_000 {
        sizes.push(100_000);
        pos += 100_000;
    }
    sizes.push(MB4 - 30 - pos); // next batch header starts 30 bytes before 4 MiB
    pos = MB4 - 30;
    while 2 * MB4 - pos > 150_000 {
        sizes.push(100_000);
        pos += 100_000;
    }
    sizes.push(300_000); // crosses 8 MiB
    sizes.extend([5_000, 77, 61 + 7, 20_000]);
    sizes
}

#[test]
fn recovery_scan_stitches_batches_across_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let sizes = straddling_sizes();
    let cfg = LogConfig {
        segment_bytes: 64 << 20,
        ..LogConfig::default()
    };
    let p = path.clone();
    let c = cfg.clone();
    let sz = sizes.clone();
    let written = run(move || async move {
        let log = PartitionLog::open(p, c).await.unwrap();
        let mut last = None;
        for (i, s) in sz.iter().enumerate() {
            let b = storage::batch::build_test_batch(1, s - 61, i as i64);
            assert_eq!(b.len(), *s);
            last = Some(
                log.append(&storage::ValidatedBatches::parse(b).unwrap(), None)
                    .unwrap(),
            );
        }
        last.unwrap().wait(Durability::Fsynced).await.unwrap();
        let n = log.log_end_offset();
        drop(log);
        n
    });
    assert_eq!(written as usize, sizes.len());
    let (got, end, _) = reopen_and_read(path.clone(), cfg.clone());
    assert_eq!(end as usize, sizes.len());
    assert_eq!(got.len(), sizes.len());
    for (g, s) in got.iter().zip(&sizes) {
        assert_eq!(g.2.len(), *s);
    }
    // Corrupt the batch that crosses 8 MiB: it and everything after are dropped. The
    // log was closed cleanly above, so remove the checkpoint to force a full scan.
    std::fs::remove_file(path.join("partition.checkpoint")).unwrap();
    let file = segments(&path)[0].1.clone();
    let idx = sizes.iter().position(|s| *s == 300_000).unwrap();
    let start: usize = sizes[..idx].iter().sum();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .unwrap();
    use std::io::{Read, Seek, SeekFrom, Write};
    f.seek(SeekFrom::Start((start + 250_000) as u64)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start((start + 250_000) as u64)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
    drop(f);
    let (got, end, _) = reopen_and_read(path, cfg);
    assert_eq!(end as usize, idx);
    assert_eq!(got.len(), idx);
}

/// Rolled segments are sealed (trimmed, fsynced) in the background, so a crash can leave
/// allocated zeros after the data of a segment that is not the last one. Recovery must
/// trim them and keep every later segment (it used to treat that as a torn segment and
/// delete everything after it).
#[test]
fn unsealed_rolled_segment_keeps_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unsealed");
    let cfg = LogConfig {
        segment_bytes: 16 << 10,
        preallocate: false,
        ..LogConfig::default()
    };
    let sizes: Vec<(i32, usize)> = (0..40)
        .map(|i| (1 + i % 3, 500 + (i as usize * 97) % 900))
        .collect();
    let written = build_log(path.clone(), sizes, cfg.clone());
    let segs = segments(&path);
    assert!(segs.len() >= 3, "need several segments, got {}", segs.len());
    // Simulate a crash before the seal of the second-to-last segment: allocated zeros
    // after its data, and no trusted checkpoint.
    let (_, victim) = &segs[segs.len() - 2];
    let len = std::fs::metadata(victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap()
        .set_len(len + (1 << 20))
        .unwrap();
    let _ = std::fs::remove_file(path.join("partition.checkpoint"));
    let (batches, end, next) = reopen_and_read(path.clone(), cfg);
    assert_eq!(batches.len(), written.len(), "no batch lost");
    for (got, want) in batches.iter().zip(&written) {
        assert_eq!((got.0, got.1), (want.0, want.1));
    }
    assert_eq!(end, written.last().unwrap().1 + 1);
    assert_eq!(next, end);
    assert!(segments(&path).len() >= segs.len(), "no segment deleted");
    assert!(
        std::fs::metadata(victim).unwrap().len() <= len,
        "zeros trimmed"
    );
}
