//! A real failing write: RLIMIT_FSIZE makes the kernel refuse to grow the segment file
//! (EFBIG or a short write), as a full disk would. The append must fail, the log must
//! stay readable with everything acknowledged, and appends resume once space returns.
//! Alone in its own test binary because the limit is process-wide.

mod common;

use common::*;
use storage::{Durability, LogConfig, PartitionLog, StorageError};

fn set_fsize_limit(bytes: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = bytes.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

#[test]
fn write_beyond_file_size_limit_fails_cleanly_and_recovers() {
    // SAFETY: ignoring SIGXFSZ (otherwise the kernel kills us at the limit) touches no
    // Rust state; this test binary has only this test.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fsize");
    run(move || async move {
        let cfg = LogConfig {
            preallocate: false,
            segment_bytes: 8 << 20,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), cfg.clone()).await.unwrap();
        set_fsize_limit(256 << 10);
        let mut acked = Vec::new();
        let mut failure = None;
        for i in 0..100i64 {
            let p = log.append(&batch(1, 10_000, i), None).unwrap();
            let base = p.base_offset;
            match p.wait(Durability::Fsynced).await {
                Ok(()) => acked.push(base),
                Err(e) => {
                    failure = Some((base, e));
                    break;
                }
            }
        }
        let (failed_at, err) = failure.expect("the file size limit must stop the log");
        assert!(matches!(err, StorageError::Io(_)), "{err:?}");
        assert!(!log.is_poisoned());
        assert_eq!(log.log_end_offset(), failed_at);
        assert_eq!(log.written_end_offset(), failed_at);
        log.set_read_cache_bytes(0);
        let all = log
            .read_written(0, usize::MAX, true)
            .await
            .unwrap()
            .into_bytes()
            .await
            .unwrap();
        let parts = split(&all);
        assert_eq!(parts.len(), acked.len());
        // Space "comes back": the next append reuses the failed offset.
        set_fsize_limit(u64::MAX);
        let p = log.append(&batch(1, 10_000, 1000), None).unwrap();
        assert_eq!(p.base_offset, failed_at);
        p.wait(Durability::Fsynced).await.unwrap();
        log.clone().close().await.unwrap();
        let log = PartitionLog::open(path.clone(), cfg).await.unwrap();
        assert_eq!(log.log_end_offset(), failed_at + 1);
        log.close().await.unwrap();
    });
}
