//! Producer-state snapshot files of a partition (Kafka's `<offset>.snapshot`), so start-up
//! replays only the log after the newest snapshot instead of the whole log.
//!
//! Owns: the files `producer-state-<end offset, 20 digits>.snapshot` in the partition's
//! directory (the name is not a segment name, so storage's recovery leaves them alone), their
//! atomic writes (temporary file, fsync, rename, directory fsync) and which ones are kept
//! ([`SNAPSHOTS_KEPT`], newest first). The content is
//! `log::producer_state::ProducerStateTable::snapshot` (checksummed); this module only does
//! the I/O.
//!
//! When: the shard writes one when a partition's active segment rolls (in the background)
//! and after the log closed cleanly at shutdown; [`load`] runs when the partition opens.
//!
//! Invariants: a snapshot's end offset is where replay resumes; a snapshot ending past the
//! recovered log end (its batches were lost in a crash) is never used, and is deleted; a
//! damaged or unreadable snapshot is skipped (an older one, or a full replay, is always
//! correct).
//!
//! Runs on: the partition's owning shard (the file I/O on glommio's blocking pool).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::log::producer_state::ProducerStateTable;

/// Snapshots kept per partition: the newest may end past what a crash leaves of the log.
pub const SNAPSHOTS_KEPT: usize = 2;

const PREFIX: &str = "producer-state-";
const SUFFIX: &str = ".snapshot";

fn path(dir: &Path, end_offset: i64) -> PathBuf {
    dir.join(format!("{PREFIX}{end_offset:020}{SUFFIX}"))
}

/// (end offset, path) of every snapshot file in `dir`, newest first.
fn list(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(offset) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        out.push((offset, entry.path()));
    }
    out.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
    Ok(out)
}

/// Writes `table`'s snapshot atomically and drops all but the newest [`SNAPSHOTS_KEPT`].
/// Blocking: run it on the blocking pool.
fn write_blocking(dir: &Path, end_offset: i64, bytes: &[u8]) -> io::Result<()> {
    let target = path(dir, end_offset);
    let tmp = target.with_extension("snapshot.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    fs::rename(&tmp, &target)?;
    fs::File::open(dir)?.sync_all()?;
    for (_, old) in list(dir)?.into_iter().skip(SNAPSHOTS_KEPT) {
        let _ = fs::remove_file(old);
    }
    Ok(())
}

/// Writes a snapshot of `table` into `dir`. Failures are logged, not returned: a missing
/// snapshot only makes the next start replay more.
pub async fn write(dir: PathBuf, table: &ProducerStateTable) {
    let bytes = table.snapshot();
    let end_offset = table.end_offset();
    let d = dir.clone();
    let res = glommio::executor()
        .spawn_blocking(move || write_blocking(&d, end_offset, &bytes))
        .await;
    match res {
        Ok(()) => debug!(dir = %dir.display(), end_offset, "producer state snapshot written"),
        Err(e) => {
            warn!(dir = %dir.display(), end_offset, error = %e, "could not write a producer state snapshot")
        }
    }
}

/// The newest usable snapshot of `dir`: one ending at or below `log_end_offset` that
/// decodes. Snapshots ending past the log end are deleted. `None`: replay everything.
pub async fn load(dir: PathBuf, log_end_offset: i64) -> Option<ProducerStateTable> {
    let d = dir.clone();
    let found = glommio::executor()
        .spawn_blocking(move || -> io::Result<Option<ProducerStateTable>> {
            for (end, p) in list(&d)? {
                if end > log_end_offset {
                    info!(path = %p.display(), log_end_offset, "removing a producer state snapshot past the log end");
                    let _ = fs::remove_file(&p);
                    continue;
                }
                match fs::read(&p).map(|b| ProducerStateTable::restore(&b)) {
                    Ok(Ok(table)) if table.end_offset() == end => return Ok(Some(table)),
                    Ok(Ok(_)) => warn!(path = %p.display(), "producer state snapshot does not match its name; skipped"),
                    Ok(Err(e)) => warn!(path = %p.display(), error = %e, "damaged producer state snapshot; skipped"),
                    Err(e) => warn!(path = %p.display(), error = %e, "unreadable producer state snapshot; skipped"),
                }
            }
            Ok(None)
        })
        .await;
    match found {
        Ok(t) => t,
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot list producer state snapshots; replaying the whole log");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::producer_state::ProducerBatch;

    fn table(end: i64) -> ProducerStateTable {
        let mut t = ProducerStateTable::new();
        t.record(&ProducerBatch {
            producer_id: 9,
            producer_epoch: 0,
            first_seq: 0,
            last_seq: 0,
            base_offset: end - 1,
            last_offset: end - 1,
            max_timestamp_ms: 1,
        });
        t
    }

    #[test]
    fn newest_usable_snapshot_wins_and_old_ones_go() {
        let d = tempfile::tempdir().unwrap();
        for end in [10, 20, 30] {
            write_blocking(d.path(), end, &table(end).snapshot()).unwrap();
        }
        assert_eq!(list(d.path()).unwrap().len(), SNAPSHOTS_KEPT);
        fs::write(path(d.path(), 25), b"garbage").unwrap();
        let dir = d.path().to_path_buf();
        let (newest, past_end_kept) =
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .spawn(move || async move {
                    // The log ends at 27: the snapshot at 30 is past it, the one at 25 damaged.
                    let a = load(dir.clone(), 27).await.map(|t| t.end_offset());
                    let b = path(&dir, 30).exists();
                    (a, b)
                })
                .unwrap()
                .join()
                .unwrap();
        assert_eq!(newest, Some(20));
        assert!(!past_end_kept, "the snapshot past the log end is removed");
    }
}
