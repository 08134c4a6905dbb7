//! Segment replacement (the storage half of compaction): the swap, reads across the new
//! gaps, and a crash at every step of it.

mod common;

use common::{batch, read_all, run, split};
use storage::{LogConfig, PartitionLog};

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 8 << 10,
        index_interval_bytes: 700,
        ..LogConfig::default()
    }
}

/// Appends 60 batches of 3 records (about 11 segments), fsynced and sealed.
async fn filled_log(log: &PartitionLog) -> Vec<(i64, i64, Vec<u8>)> {
    for i in 0..60 {
        let p = log.append(&batch(3, 300, 1_000 + i), None).unwrap();
        p.wait(storage::Durability::Fsynced).await.unwrap();
    }
    log.flush().await.unwrap();
    // Wait for the background seals to move the recovery point.
    for _ in 0..1000 {
        if log.sealed_segments().len() + 1 >= count_segments(log) {
            break;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
    read_all(log, true).await
}

fn count_segments(log: &PartitionLog) -> usize {
    std::fs::read_dir(log.dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".log")
        })
        .count()
}

/// Cleans the first three sealed segments into one keeping every other batch; returns
/// the batches expected afterwards and the replaced bases.
async fn clean_first_three(
    log: &PartitionLog,
    all: &[(i64, i64, Vec<u8>)],
) -> (Vec<(i64, i64, Vec<u8>)>, Vec<i64>) {
    let sealed = log.sealed_segments();
    assert!(sealed.len() >= 4, "{sealed:?}");
    let group = &sealed[..3];
    let bases: Vec<i64> = group.iter().map(|s| s.base_offset).collect();
    let end = sealed[3].base_offset;
    let mut cleaned = log.begin_cleaned_segment(bases[0]).await.unwrap();
    let mut kept = Vec::new();
    for s in group {
        let mut pos = 0;
        while let Some((bytes, next)) = log.read_segment(s.base_offset, pos, 4096).await.unwrap() {
            for part in split(&bytes) {
                if part.0 % 2 == 0 {
                    cleaned
                        .append(bytes::Bytes::from(part.2.clone()))
                        .await
                        .unwrap();
                    kept.push(part);
                }
            }
            pos = next;
        }
    }
    let mut expected: Vec<_> = kept;
    expected.extend(all.iter().filter(|b| b.0 >= end).cloned());
    assert!(expected.len() < all.len());
    let replaced = log.replace_segments(&bases, cleaned, end).await.unwrap();
    assert!(replaced);
    (expected, bases)
}

fn same(got: &[(i64, i64, Vec<u8>)], want: &[(i64, i64, Vec<u8>)]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0, g.1), (w.0, w.1));
        assert_eq!(g.2, w.2, "batch {} bytes", g.0);
    }
}

#[test]
fn replaced_segments_read_back_with_gaps_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        let all = filled_log(&log).await;
        let before = count_segments(&log);
        let (expected, bases) = clean_first_three(&log, &all).await;
        assert_eq!(count_segments(&log), before - 2);
        assert_eq!(log.cleaner_offset(), log.sealed_segments()[1].base_offset);
        same(&read_all(&log, false).await, &expected);
        same(&read_all(&log, true).await, &expected);
        // A read inside a removed batch returns the next kept one.
        let gap = expected
            .windows(2)
            .find(|w| w[1].0 > w[0].1 + 1)
            .map(|w| w[0].1 + 1)
            .unwrap();
        let b = log
            .read_written(gap, 1, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        assert!(split(&b)[0].0 > gap);
        // Appends continue; the log end is unchanged by cleaning.
        let end = log.log_end_offset();
        assert_eq!(end, all.last().unwrap().1 + 1);
        log.close().await.unwrap();
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        same(&read_all(&log, true).await, &expected);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.sealed_segments()[0].base_offset, bases[0]);
        log.close().await.unwrap();
    });
}

fn interrupted(step: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        let all = filled_log(&log).await;
        let sealed = log.sealed_segments();
        let bases: Vec<i64> = sealed[..3].iter().map(|s| s.base_offset).collect();
        let end = sealed[3].base_offset;
        let mut cleaned = log.begin_cleaned_segment(bases[0]).await.unwrap();
        let mut kept = Vec::new();
        for s in &sealed[..3] {
            let mut pos = 0;
            while let Some((bytes, next)) =
                log.read_segment(s.base_offset, pos, 4096).await.unwrap()
            {
                for part in split(&bytes) {
                    if part.0 % 2 == 0 {
                        cleaned
                            .append(bytes::Bytes::from(part.2.clone()))
                            .await
                            .unwrap();
                        kept.push(part);
                    }
                }
                pos = next;
            }
        }
        let mut new_set = kept;
        new_set.extend(all.iter().filter(|b| b.0 >= end).cloned());
        log.inject_replace_stop(step);
        assert!(
            log.replace_segments(&bases, cleaned, end).await.is_err(),
            "step {step}"
        );
        drop(log); // the "crash"
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        let got = read_all(&log, true).await;
        // Step 1 stops before the commit record: the old set. Later: the new set.
        if step == 1 {
            same(&got, &all);
            assert_eq!(log.cleaner_offset(), 0);
        } else {
            same(&got, &new_set);
        }
        let leftovers = std::fs::read_dir(log.dir())
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_str().unwrap().to_string();
                n.ends_with(".cleaned") || n.ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
        log.close().await.unwrap();
        // The record is gone: a second reopen changes nothing.
        let log = PartitionLog::open(path, cfg()).await.unwrap();
        same(
            &read_all(&log, true).await,
            if step == 1 { &all } else { &new_set },
        );
        log.close().await.unwrap();
    });
}

#[test]
fn replacement_interrupted_before_the_commit() {
    interrupted(1);
}

#[test]
fn replacement_interrupted_after_the_commit() {
    interrupted(2);
}

#[test]
fn replacement_interrupted_after_deleting_old_segments() {
    interrupted(3);
}

#[test]
fn replacement_interrupted_after_the_rename() {
    interrupted(4);
}

#[test]
fn replacement_interrupted_before_clearing_the_record() {
    interrupted(5);
}

#[test]
fn unfinished_cleaned_file_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    run(move || async move {
        let log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        let all = filled_log(&log).await;
        let mut cleaned = log.begin_cleaned_segment(0).await.unwrap();
        let (bytes, _) = log.read_segment(0, 0, 4096).await.unwrap().unwrap();
        cleaned.append(bytes).await.unwrap();
        std::mem::forget(cleaned); // a crash while cleaning: the file stays
        drop(log);
        let log = PartitionLog::open(path, cfg()).await.unwrap();
        same(&read_all(&log, true).await, &all);
        assert!(!log.dir().join(format!("{:020}.log.cleaned", 0)).exists());
        log.close().await.unwrap();
    });
}
