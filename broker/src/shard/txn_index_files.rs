//! A partition's persisted transaction index (Kafka's per-segment `.txnindex`), so opening
//! a partition reads the log only after the index's end instead of every batch header from
//! the log start.
//!
//! Owns: the files `txn-index-<from, 20 digits>-<to, 20 digits>.txnindex` in the partition's
//! directory (not segment names, so storage's recovery leaves them alone). Each holds one
//! [`IndexChunk`]: the transactions aborted by a marker in `[from, to)`, and the open
//! transactions and marker epochs as of `to`. Written like the producer snapshots, when the
//! active segment rolls and after a clean close, each chunk starting where the newest one
//! ends, so the chunks tile the log: one per segment in steady state.
//!
//! Invariants: a file is written whole (temporary file, fsync, rename, directory fsync) and
//! never changed; [`load`] uses only a chain of chunks whose ranges are contiguous from at or
//! below the log start up to at most the log end; anything else (a chunk past the log end
//! after a crash, a damaged or missing chunk) is deleted, and the caller rebuilds from the
//! log, after which the next chunk starts at 0 and covers everything again. Chunks wholly
//! below the log start (retention) are deleted.
//!
//! Runs on: the partition's owning shard (the file I/O on glommio's blocking pool).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::log::txn_index::{IndexChunk, PartitionTxns};

const PREFIX: &str = "txn-index-";
const SUFFIX: &str = ".txnindex";

fn path(dir: &Path, from: i64, to: i64) -> PathBuf {
    dir.join(format!("{PREFIX}{from:020}-{to:020}{SUFFIX}"))
}

/// (from, to, path) of every index file in `dir`, newest (largest `to`) first.
fn list(dir: &Path) -> io::Result<Vec<(i64, i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((from, to)) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.split_once('-'))
            .and_then(|(f, t)| Some((f.parse::<i64>().ok()?, t.parse::<i64>().ok()?)))
        else {
            continue;
        };
        out.push((from, to, entry.path()));
    }
    out.sort_unstable_by_key(|e| std::cmp::Reverse((e.1, e.0)));
    Ok(out)
}

/// Writes the chunk of `txns` from the newest file's end (or 0) to `end_offset`, unless it
/// would be empty. Blocking: run it on the blocking pool.
fn write_blocking(dir: &Path, txns: &PartitionTxns, end_offset: i64) -> io::Result<()> {
    let from = list(dir)?
        .first()
        .map_or(0, |(_, to, _)| *to)
        .min(end_offset);
    if from == end_offset {
        return Ok(());
    }
    let chunk = txns.chunk(from, end_offset);
    let bytes = chunk.encode();
    // Pair assertion: what goes to disk reads back as the same chunk.
    assert_eq!(
        IndexChunk::decode(&bytes).as_ref(),
        Ok(&chunk),
        "a transaction index chunk must decode as written"
    );
    let target = path(dir, from, end_offset);
    let tmp = target.with_extension("txnindex.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
    }
    fs::rename(&tmp, &target)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Persists `txns` up to `end_offset` (everything below it applied, nothing at or past it).
/// Failures are logged, not returned: a missing chunk only makes the next open read more.
pub async fn write(dir: PathBuf, txns: PartitionTxns, end_offset: i64) {
    let d = dir.clone();
    let res = glommio::executor()
        .spawn_blocking(move || write_blocking(&d, &txns, end_offset))
        .await;
    match res {
        Ok(()) => debug!(dir = %dir.display(), end_offset, "transaction index written"),
        Err(e) => {
            warn!(dir = %dir.display(), end_offset, error = %e, "could not write the transaction index")
        }
    }
}

/// Deletes every index file of `dir` (a broken chain: the next write starts over at 0).
fn remove_all(files: &[(i64, i64, PathBuf)]) {
    for (_, _, p) in files {
        let _ = fs::remove_file(p);
    }
}

/// The chain of chunks to rebuild from, oldest first, or `None` (rebuild from the log).
fn load_blocking(
    dir: &Path,
    log_start_offset: i64,
    log_end_offset: i64,
) -> io::Result<Option<Vec<IndexChunk>>> {
    let mut files = list(dir)?;
    // Past the log end: its offsets were lost in a crash (or truncated away).
    let (past_end, usable): (Vec<_>, Vec<_>) =
        files.drain(..).partition(|(_, to, _)| *to > log_end_offset);
    for (_, _, p) in &past_end {
        info!(path = %p.display(), log_end_offset, "removing a transaction index past the log end");
        let _ = fs::remove_file(p);
    }
    let Some(newest) = usable.first() else {
        return Ok(None);
    };
    let mut chain: Vec<IndexChunk> = Vec::new();
    let mut want_to = newest.1;
    let mut used = Vec::new();
    for (i, (from, to, p)) in usable.iter().enumerate() {
        if *to != want_to {
            continue; // a superseded chunk, not part of the chain
        }
        let chunk = match fs::read(p).map(|b| IndexChunk::decode(&b)) {
            Ok(Ok(c)) if c.from == *from && c.to == *to => c,
            Ok(Ok(_)) => {
                warn!(path = %p.display(), "transaction index does not match its name; rebuilding from the log");
                remove_all(&usable);
                return Ok(None);
            }
            Ok(Err(e)) => {
                warn!(path = %p.display(), error = %e, "damaged transaction index; rebuilding from the log");
                remove_all(&usable);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        used.push(i);
        chain.push(chunk);
        if *from <= log_start_offset {
            chain.reverse();
            // Not in the chain: superseded chunks and those wholly below the log start.
            for (j, (_, _, p)) in usable.iter().enumerate() {
                if !used.contains(&j) {
                    let _ = fs::remove_file(p);
                }
            }
            return Ok(Some(chain));
        }
        want_to = *from;
    }
    warn!(dir = %dir.display(), "transaction index has a gap; rebuilding from the log");
    remove_all(&usable);
    Ok(None)
}

/// The partition's transactions as of some offset `end` at or below `log_end_offset`, from
/// its index files: `Some((txns, end))`; the caller replays the log from `end`. `None`:
/// no usable index, rebuild from the log start.
pub async fn load(
    dir: PathBuf,
    log_start_offset: i64,
    log_end_offset: i64,
) -> Option<(PartitionTxns, i64)> {
    let d = dir.clone();
    let found = glommio::executor()
        .spawn_blocking(move || load_blocking(&d, log_start_offset, log_end_offset))
        .await;
    match found {
        Ok(Some(chain)) => {
            let end = chain.last().map_or(log_start_offset, |c| c.to);
            let mut txns = PartitionTxns::from_chunks(&chain);
            txns.trim_before(log_start_offset);
            Some((txns, end))
        }
        Ok(None) => None,
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot read the transaction index; rebuilding from the log");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition with one aborted transaction per 10 offsets: producer `n` writes
    /// `10n..10n+8` and aborts at `10n+9`.
    fn txns_up_to(end: i64) -> PartitionTxns {
        let mut t = PartitionTxns::new();
        let mut n = 0;
        while 10 * n + 10 <= end {
            t.on_data(n, 0, 10 * n, 10 * n + 8);
            t.on_marker(n, 0, false, 10 * n + 9);
            n += 1;
        }
        t
    }

    #[test]
    fn chunks_tile_the_log_and_survive_crashes_and_damage() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        for end in [20, 50, 50, 80] {
            write_blocking(&dir, &txns_up_to(end), end).unwrap();
        }
        assert_eq!(
            list(&dir).unwrap().len(),
            3,
            "an empty chunk is not written"
        );
        let all = |chain: Vec<IndexChunk>| {
            PartitionTxns::from_chunks(&chain)
                .aborted_between(0, 1000)
                .len()
        };

        let chain = load_blocking(&dir, 0, 80).unwrap().unwrap();
        assert_eq!((chain[0].from, chain.last().unwrap().to), (0, 80));
        assert_eq!(all(chain), 8);

        // A crash lost offsets 70..: the chunk ending at 80 goes, the chain ends at 50.
        let chain = load_blocking(&dir, 0, 70).unwrap().unwrap();
        assert_eq!(chain.last().unwrap().to, 50);
        assert_eq!(all(chain), 5);
        assert_eq!(list(&dir).unwrap().len(), 2);

        // The next chunk starts where the newest left off.
        write_blocking(&dir, &txns_up_to(90), 90).unwrap();
        assert!(path(&dir, 50, 90).exists());

        // Retention moved the log start to 20: the chunk 0..20 goes, 20..50 starts the chain.
        let chain = load_blocking(&dir, 20, 90).unwrap().unwrap();
        assert_eq!(chain[0].from, 20);
        assert!(!path(&dir, 0, 20).exists());

        // A damaged chunk: everything goes and the caller rebuilds from the log.
        fs::write(path(&dir, 20, 50), b"RTTX garbage").unwrap();
        assert!(load_blocking(&dir, 20, 90).unwrap().is_none());
        assert!(list(&dir).unwrap().is_empty());
        // The next write covers everything again.
        write_blocking(&dir, &txns_up_to(100), 100).unwrap();
        let chain = load_blocking(&dir, 0, 100).unwrap().unwrap();
        assert_eq!(all(chain), 10);

        // A gap (a chunk deleted by hand): rebuild from the log.
        write_blocking(&dir, &txns_up_to(120), 120).unwrap();
        write_blocking(&dir, &txns_up_to(140), 140).unwrap();
        fs::remove_file(path(&dir, 100, 120)).unwrap();
        assert!(load_blocking(&dir, 0, 140).unwrap().is_none());
    }
}
