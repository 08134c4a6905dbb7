//! Opening a partition directory: find segments, validate what may be torn, rebuild
//! indexes, truncate the tail, and compute where appends resume.
//!
//! Rules:
//! - A truncation recorded in the checkpoint (`truncate_to`, written by
//!   [`crate::PartitionLog::truncate_to`] before it touches a file) is completed first:
//!   segments starting at or above its offset are deleted (all but the first segment),
//!   and the last remaining segment is scanned and cut before its first batch holding an
//!   offset at or above it. So a crash at any point of a truncation opens as truncated.
//! - Segments wholly below the checkpoint's recovery point (and the last segment after
//!   a clean shutdown) are trusted when their index files load and their footer agrees
//!   with the log file size; otherwise they are scanned.
//! - A scan validates each batch (length, magic 2, CRC32C, offsets strictly increasing
//!   from at least the segment's base offset; gaps are fine) and stops at the first bad
//!   one; the file is truncated there and any later segment is deleted (the log would
//!   otherwise have a hole where the lost batches were). The base offset lies outside
//!   the batch CRC (as in Kafka), so a corrupted base offset that grows reads as a gap;
//!   one that shrinks stops the scan.
//! - Segments abut: a rolled segment starts at the log end offset at the time. A segment
//!   not ending where the next one starts is fine when it ends below it (a gap between
//!   segments); ending above it means overlapping offsets, and everything after is cut.
//! - The leader-epoch file is loaded, entries starting past the recovered log end are
//!   dropped (their data did not survive), the first entry is moved up to the log start,
//!   and epochs are learned again from the batches of every scanned segment (the file is
//!   written lazily, so it may miss epochs of data after the recovery point).
//! - Every truncation is logged with the segment, position, byte count and reason.
//!   Preallocated zeros after the last batch are the normal end of an active segment and
//!   are logged at debug level only.
//! - A segment replacement recorded in the checkpoint (`replace_segments`, written by
//!   [`crate::PartitionLog::replace_segments`] once the cleaned file is complete and
//!   fsynced, before any old file changes) is completed next: the replaced segments after
//!   the first are deleted and `<first>.log.cleaned` is renamed over `<first>.log` (its old
//!   index files go, so it is scanned). Without such a record a `.log.cleaned` file is an
//!   unfinished cleaning and is deleted. So a crash at any step opens with either the old
//!   or the new segments, never a mix.
//! - The checkpoint is rewritten with `clean = false` before the log accepts appends.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::checkpoint::{self, Checkpoint};
use crate::config::LogConfig;
use crate::epoch::{self, LeaderEpochs};
use crate::index::SegmentIndex;
use crate::log::now_ms;
use crate::segment::{self, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use crate::StorageError;

pub(crate) struct Recovered {
    pub segments: BTreeMap<i64, Rc<Segment>>,
    pub log_start_offset: i64,
    pub recovery_point: i64,
    pub next_offset: i64,
    pub tail_segment_base: i64,
    pub tail_block_pos: u64,
    pub tail_bytes: Vec<u8>,
    pub epochs: LeaderEpochs,
    pub cleaner_offset: i64,
}

/// Statistics of the last recovery on this thread (for benchmarks and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecoveryStats {
    pub segments: usize,
    pub segments_scanned: usize,
    pub bytes_scanned: u64,
    pub bytes_truncated: u64,
    pub seconds: f64,
}

thread_local! {
    static LAST_STATS: Cell<RecoveryStats> = Cell::new(RecoveryStats::default());
}

/// What the most recent [`crate::PartitionLog::open`] on this thread did.
pub fn last_recovery_stats() -> RecoveryStats {
    LAST_STATS.with(|s| s.get())
}

fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

fn list_segments(dir: &Path) -> std::io::Result<Vec<i64>> {
    let mut logs = Vec::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            // An interrupted atomic write: the previous version (if any) is intact.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        match parse_segment_name(name) {
            Some((base, LOG_SUFFIX)) => logs.push(base),
            Some((base, _)) => others.push((base, entry.path())),
            None => {}
        }
    }
    for (base, path) in others {
        if !logs.contains(&base) {
            info!(path = %path.display(), "removing index file without a log file");
            let _ = std::fs::remove_file(path);
        }
    }
    logs.sort_unstable();
    Ok(logs)
}

fn remove_segment_files(dir: &Path, base: i64) {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let p = segment::segment_path(dir, base, suffix);
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %p.display(), error = %e, "could not remove segment file");
            }
        }
    }
}

/// Finishes a committed replacement of the segments `bases` by `<bases[0]>.log.cleaned`
/// (idempotent: every step may already have happened). Blocking.
pub(crate) fn complete_replacement(dir: &Path, bases: &[i64]) -> std::io::Result<()> {
    let Some((&first, rest)) = bases.split_first() else {
        return Ok(());
    };
    for &b in rest {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_present(&segment::segment_path(dir, b, suffix))?;
        }
    }
    let cleaned = segment::segment_path(dir, first, segment::CLEANED_SUFFIX);
    if cleaned.exists() {
        // The old index files describe the old content; the new ones are written after
        // the rename (or rebuilt by the scan of a segment without them).
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_present(&segment::segment_path(dir, first, suffix))?;
        }
        std::fs::rename(&cleaned, segment::segment_path(dir, first, LOG_SUFFIX))?;
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Deletes `.log.cleaned` files no committed replacement refers to (a cleaning that did
/// not get as far as its commit). Blocking.
fn remove_unfinished_cleanings(dir: &Path) -> std::io::Result<()> {
    let suffix = format!(".{}", segment::CLEANED_SUFFIX);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(&suffix))
        {
            info!(path = %entry.path().display(), "removing an unfinished cleaned segment");
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

fn remove_if_present(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn load_index(
    dir: &Path,
    base: i64,
    log_size: u64,
) -> Option<(SegmentIndex, crate::index::SegmentFooter)> {
    let index = std::fs::read(segment::segment_path(dir, base, INDEX_SUFFIX)).ok()?;
    let time = std::fs::read(segment::segment_path(dir, base, TIME_INDEX_SUFFIX)).ok()?;
    SegmentIndex::decode(base, &index, &time, log_size)
}

pub(crate) async fn recover(dir: &PathBuf, config: &LogConfig) -> Result<Recovered, StorageError> {
    let started = Instant::now();
    let mut stats = RecoveryStats::default();
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        // Make the new directory's entry durable, or a power loss could drop the whole
        // partition even after fsynced appends (the directory itself is synced with the
        // checkpoint below).
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    segment::ensure_dma_probe(dir).await?;
    let cp = checkpoint::read(dir)?;
    if let Some(bases) = cp.as_ref().and_then(|c| c.replace.as_ref()) {
        info!(dir = %dir.display(), segments = ?bases, "completing an interrupted segment replacement");
        complete_replacement(dir, bases)?;
    }
    remove_unfinished_cleanings(dir)?;
    let mut bases = list_segments(dir)?;
    let cp_known = cp.is_some();
    let cp = cp.unwrap_or_default();
    if let Some(t) = cp.truncate_to {
        // Complete an interrupted truncation: whole segments at or above the offset go
        // (highest first, like truncate_to), the first segment always stays.
        info!(dir = %dir.display(), offset = t, "completing an interrupted truncation");
        while bases.len() > 1 && bases.last().is_some_and(|b| *b >= t) {
            if let Some(b) = bases.pop() {
                // Strictly: a log file left behind would come back once the record of
                // the truncation is cleared below.
                for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                    match std::fs::remove_file(segment::segment_path(dir, b, suffix)) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                        _ => {}
                    }
                }
            }
        }
    }
    let mut epochs = match epoch::read(dir) {
        Ok(e) => e.unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            warn!(dir = %dir.display(), error = %e, "ignoring a malformed leader-epoch file; epochs are learned again from scanned batches");
            LeaderEpochs::default()
        }
        Err(e) => return Err(e.into()),
    };
    // Epoch changes seen in scanned batches, in log order.
    let mut learned: Vec<(i32, i64)> = Vec::new();
    let now = now_ms();
    let interval = config.index_interval_bytes.max(1);

    let mut segments: BTreeMap<i64, Rc<Segment>> = BTreeMap::new();
    let mut rebuilt: Vec<Rc<Segment>> = Vec::new();
    let mut cut_after: Option<usize> = None;
    for (i, &base) in bases.iter().enumerate() {
        if cut_after.is_some() {
            warn!(dir = %dir.display(), base_offset = base, "deleting segment after a truncated one");
            remove_segment_files(dir, base);
            continue;
        }
        let is_last = i + 1 == bases.len();
        let next_base = bases.get(i + 1).copied();
        let seg = Rc::new(Segment::new(dir, base, now));
        let files = segment::open_files(&seg.log_path, false).await?;
        let file_size = files.dma.file_size().await?;
        // The segment a pending truncation cuts is always scanned.
        let stop_at = cp.truncate_to.filter(|_| is_last);
        let trusted = cp_known
            && stop_at.is_none()
            && ((next_base.is_some_and(|nb| nb <= cp.recovery_point)) || (is_last && cp.clean));
        let loaded = if trusted {
            load_index(dir, base, file_size)
        } else {
            None
        };
        if let Some((index, footer)) = loaded {
            seg.written_size.set(footer.size);
            seg.next_offset.set(footer.next_offset);
            seg.max_timestamp.set(footer.max_timestamp);
            seg.offset_of_max_timestamp
                .set(footer.offset_of_max_timestamp);
            *seg.index.borrow_mut() = index;
        } else {
            stats.segments_scanned += 1;
            let out =
                segment::scan_and_validate(&files.dma, base, file_size, interval, stop_at).await?;
            stats.bytes_scanned += out.valid_size;
            learned.extend_from_slice(&out.epochs);
            seg.written_size.set(out.valid_size);
            seg.next_offset.set(out.next_offset);
            seg.max_timestamp.set(out.max_timestamp);
            seg.offset_of_max_timestamp.set(out.offset_of_max_timestamp);
            *seg.index.borrow_mut() = out.index;
            if out.valid_size < file_size {
                let dropped = file_size - out.valid_size;
                let reason = out.stop_reason.as_deref().unwrap_or("end of data");
                // A rolled segment is sealed (its allocated tail trimmed) in the
                // background, so a crash can leave allocated zeros after the data of a
                // segment that is not the last. If its data ends exactly where the next
                // segment starts, nothing is missing: trim it like the seal would have.
                let unsealed = out.tail_is_zeros && next_base == Some(out.next_offset);
                if out.stopped_at_offset {
                    info!(segment = %seg.log_path.display(), position = out.valid_size, bytes = dropped, next_offset = out.next_offset, "cut by the interrupted truncation");
                } else if unsealed && !is_last {
                    info!(segment = %seg.log_path.display(), position = out.valid_size, "trimming an unsealed rolled segment (zeros follow its data)");
                } else if is_last && out.tail_is_zeros {
                    debug!(segment = %seg.log_path.display(), position = out.valid_size, "end of data (zeros follow)");
                } else {
                    stats.bytes_truncated += dropped;
                    warn!(
                        segment = %seg.log_path.display(),
                        position = out.valid_size,
                        bytes = dropped,
                        next_offset = out.next_offset,
                        reason,
                        "truncating torn or corrupt log tail"
                    );
                }
                files.dma.truncate(out.valid_size).await?;
                if !is_last && !unsealed {
                    cut_after = Some(i);
                }
            }
            if !is_last {
                rebuilt.push(seg.clone());
            }
        }
        if let Some(nb) = next_base {
            if cut_after.is_none() && seg.next_offset.get() > nb {
                warn!(
                    segment = %seg.log_path.display(),
                    next_offset = seg.next_offset.get(),
                    next_segment = nb,
                    "segment overlaps the next one; cutting the log after it"
                );
                cut_after = Some(i);
            } else if cut_after.is_none() && seg.next_offset.get() < nb {
                debug!(
                    segment = %seg.log_path.display(),
                    next_offset = seg.next_offset.get(),
                    next_segment = nb,
                    "offset gap between segments"
                );
            }
        }
        seg.staged_size.set(seg.written_size.get());
        *seg.files.borrow_mut() = Some(files);
        segments.insert(base, seg);
        stats.segments += 1;
    }

    if segments.is_empty() {
        let base = cp.log_start_offset.max(0);
        let seg = Rc::new(Segment::new(dir, base, now));
        let files = segment::open_files(&seg.log_path, true).await?;
        *seg.files.borrow_mut() = Some(files);
        segments.insert(base, seg);
        stats.segments = 1;
    }

    // ok: non-empty by construction just above
    let active = segments
        .values()
        .next_back()
        .expect("at least one segment") // ok: see above
        .clone();
    let next_offset = active.next_offset.get();
    let dma = active.dma_or_err()?;
    if config.preallocate {
        match dma
            .pre_allocate(config.segment_bytes_clamped(), false)
            .await
        {
            Ok(()) => active.allocated.set(config.segment_bytes_clamped()),
            Err(e) => {
                warn!(segment = %active.log_path.display(), error = %e, "preallocation failed; continuing without")
            }
        }
    }
    let size = active.written_size.get();
    let block_pos = size & !4095;
    let mut tail_bytes = Vec::new();
    if size > block_pos {
        let buf = dma.read_at_aligned(block_pos, 4096).await?;
        let n = (size - block_pos) as usize;
        if buf.len() < n {
            return Err(active.corrupt(block_pos, "short read of the tail block"));
        }
        tail_bytes.extend_from_slice(&buf[..n]);
    }
    for seg in rebuilt {
        crate::log::write_index_files(dir, &seg).await;
    }
    let first_base = segments.keys().next().copied().unwrap_or(0);
    let log_start_offset = cp.log_start_offset.max(first_base).min(next_offset);
    let recovery_point = active.base_offset;
    // Epochs: what the file knows, plus what the scanned batches say, minus what did not
    // survive. An entry starting exactly at the log end stays: an epoch assigned with
    // nothing appended in it yet.
    for (e, start) in learned {
        if start < next_offset && epochs.latest().is_none_or(|l| e > l.epoch) {
            if let Err(err) = epochs.assign(e, start) {
                debug!(dir = %dir.display(), epoch = e, start_offset = start, error = %err, "epoch of a scanned batch not recorded");
            }
        }
    }
    // (After a truncation, epochs starting at the new end go too, as in truncate_to.)
    let keep_at_end = cp.truncate_to.is_none() as i64;
    epochs.truncate_from_end(next_offset + keep_at_end);
    epochs.truncate_from_start(log_start_offset);
    let new_cp = Checkpoint {
        log_start_offset,
        recovery_point,
        clean: false,
        truncate_to: None,
        replace: None,
        cleaner_offset: cp.cleaner_offset.min(next_offset),
    };
    let epoch_data = epochs.is_dirty().then(|| epochs.encode());
    epochs.set_dirty(false);
    let d = dir.clone();
    glommio::executor()
        .spawn_blocking(move || -> std::io::Result<()> {
            // The epochs first: the checkpoint moves the recovery point past the segments
            // scanned now, whose epochs are not learned again.
            if let Some(e) = epoch_data {
                epoch::write(&d, &e)?;
            }
            checkpoint::write(&d, &new_cp)
        })
        .await?;
    stats.seconds = started.elapsed().as_secs_f64();
    LAST_STATS.with(|s| s.set(stats));
    info!(
        dir = %dir.display(),
        segments = stats.segments,
        scanned_bytes = stats.bytes_scanned,
        truncated_bytes = stats.bytes_truncated,
        log_start_offset,
        log_end_offset = next_offset,
        "partition log opened"
    );
    Ok(Recovered {
        segments,
        log_start_offset,
        recovery_point,
        next_offset,
        tail_segment_base: active.base_offset,
        tail_block_pos: block_pos,
        tail_bytes,
        epochs,
        cleaner_offset: cp.cleaner_offset.min(next_offset),
    })
}
