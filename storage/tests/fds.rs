//! An open segment holds one file descriptor (its O_DIRECT file), sealed or not. Alone in
//! its test binary so no other test opens descriptors meanwhile.

mod common;

use common::*;
use storage::{Durability, LogConfig, PartitionLog};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn each_open_segment_holds_one_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fds");
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 8 << 10,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
        let mut last = None;
        for i in 0..60 {
            last = Some(log.append(&batch(1, 1000, i), None).unwrap());
        }
        last.unwrap().wait(Durability::Fsynced).await.unwrap();
        log.close().await.unwrap();
        let segments = std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count();
        assert!(segments >= 6, "{segments}");
        let before = open_fds();
        let log = PartitionLog::open(path, cfg).await.unwrap();
        let held = open_fds() - before;
        // One per segment, plus at most a couple the executor opens lazily.
        assert!(
            held >= segments && held <= segments + 2,
            "{held} descriptors for {segments} segments"
        );
        log.close().await.unwrap();
    });
}
