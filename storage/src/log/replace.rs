//! Segment replacement for log compaction: the storage half of the cleaner.
//!
//! The broker's cleaner (`broker/src/log/compaction.rs` decides which records survive,
//! `broker/src/shard/cleaner.rs` drives it) reads sealed segments with
//! [`PartitionLog::read_segment`], writes the surviving batches into a
//! [`CleanedSegment`] (`<first base>.log.cleaned`) and swaps it in with
//! [`PartitionLog::replace_segments`], which replaces one run of adjacent sealed segments
//! by that one file (so small segments are merged as they are cleaned).
//!
//! Crash safety, in steps (the same style as `truncate_to`):
//! 1. the cleaned file is written and fdatasync'ed, the directory fsynced; a crash here
//!    leaves an unreferenced `.log.cleaned` file that recovery deletes (old set);
//! 2. the replacement is recorded in the checkpoint (`replace_segments b1,b2,..`): from
//!    here on recovery completes it (new set);
//! 3. the old segments after the first are deleted, then the cleaned file is renamed over
//!    the first one (its old index files removed first), the directory fsynced, the new
//!    index files written;
//! 4. the record is cleared and the cleaner offset moved, in one checkpoint write.
//!
//! Invariants: only sealed segments (wholly below the recovery point, never the active
//! one) are replaced; the cleaned batches keep their offsets and lie inside the replaced
//! range, strictly increasing (checked as they are written and again by the scan that
//! indexes the new file); the in-memory segment map switches in one synchronous step
//! after the record is durable, so readers see the old or the new set. Runs on the
//! partition's shard; a truncation waits for a replacement, retention skips while one runs.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use tracing::{info, warn};

use super::{write_checkpoint, write_index_files, PartitionLog};
use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::segment::{self, Segment, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use crate::StorageError;

/// How long a test pause point (see [`PartitionLog::set_replace_pause`]) holds a
/// replacement: long enough for any kill -9 test.
const REPLACE_PAUSE: Duration = Duration::from_secs(3600);

/// A sealed segment as the cleaner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    /// The last batch's last offset + 1 (the base offset when empty).
    pub next_offset: i64,
    pub size_bytes: u64,
    /// Largest batch max timestamp (-1 when empty).
    pub max_timestamp_ms: i64,
}

/// A cleaned segment being written (`<base>.log.cleaned`); hand it to
/// [`PartitionLog::replace_segments`], or drop it (the file is removed then, or by the
/// next recovery).
pub struct CleanedSegment {
    base_offset: i64,
    path: PathBuf,
    file: Option<File>,
    size_bytes: u64,
    /// Offset after the last batch written (the base offset when empty).
    next_offset: i64,
    batches: u64,
}

impl CleanedSegment {
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Batches written so far.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Appends whole batches, which must keep offsets strictly increasing from the
    /// segment's base offset (gaps are fine). Checks every header and CRC first.
    pub async fn append(&mut self, batches: Bytes) -> Result<(), StorageError> {
        let mut pos = 0;
        let mut next = self.next_offset;
        let mut count = 0;
        while pos < batches.len() {
            let h = BatchHeader::parse_and_verify(&batches[pos..])?;
            if h.base_offset < next || h.last_offset_delta < 0 {
                return Err(StorageError::OffsetsNotIncreasing {
                    base_offset: h.base_offset,
                    min_offset: next,
                });
            }
            if h.last_offset() - self.base_offset >= i32::MAX as i64 {
                return Err(StorageError::OffsetSpanTooLarge {
                    first_offset: self.base_offset,
                    last_offset: h.last_offset(),
                });
            }
            next = h.last_offset() + 1;
            pos += h.total_len();
            count += 1;
        }
        let Some(mut file) = self.file.take() else {
            return Err(StorageError::Closed);
        };
        let len = batches.len() as u64;
        let (file, res) = glommio::executor()
            .spawn_blocking(move || {
                let res = file.write_all(&batches);
                (file, res)
            })
            .await;
        self.file = Some(file);
        res?;
        self.size_bytes += len;
        self.next_offset = next;
        self.batches += count;
        Ok(())
    }
}

impl Drop for CleanedSegment {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Not committed: the partial file is useless (recovery would delete it too).
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl PartitionLog {
    /// The segments the cleaner may read and replace, in offset order: every segment
    /// wholly below the recovery point (sealed: fsynced, indexed), never the active one.
    pub fn sealed_segments(&self) -> Vec<SegmentInfo> {
        let st = self.inner.st.borrow();
        if st.closed || st.closing {
            return Vec::new();
        }
        let segs: Vec<&Rc<Segment>> = st.segments.values().collect();
        let mut out = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let Some(next) = segs.get(i + 1) else { break };
            if next.base_offset > st.recovery_point || seg.files.borrow().is_none() {
                break;
            }
            out.push(SegmentInfo {
                base_offset: seg.base_offset,
                next_offset: seg.next_offset.get(),
                size_bytes: seg.written_size.get(),
                max_timestamp_ms: seg.max_timestamp.get(),
            });
        }
        out
    }

    /// Base offset of the active (last) segment: it changes when the log rolls.
    pub fn active_segment_base(&self) -> i64 {
        self.inner.st.borrow().active().base_offset
    }

    /// Bytes of every segment (what a dirty ratio is a fraction of).
    pub fn size_bytes(&self) -> u64 {
        let st = self.inner.st.borrow();
        st.segments.values().map(|s| s.written_size.get()).sum()
    }

    /// Offsets below this were compacted (persisted; 0 before the first cleaning).
    pub fn cleaner_offset(&self) -> i64 {
        self.inner.st.borrow().cleaner_offset
    }

    /// Moves the cleaner offset up to `offset` (never down, never past the log end) and
    /// persists it: the cleaner found nothing to rewrite below it.
    pub async fn set_cleaner_offset(&self, offset: i64) -> Result<(), StorageError> {
        {
            let mut st = self.inner.st.borrow_mut();
            if st.closed || st.closing {
                return Err(StorageError::Closed);
            }
            let offset = offset.min(st.leo);
            if offset <= st.cleaner_offset {
                return Ok(());
            }
            st.cleaner_offset = offset;
        }
        write_checkpoint(&self.inner, false).await
    }

    /// Whole batches of the segment `base_offset` from byte `position` (a batch boundary)
    /// up to about `max_bytes` (at least one batch), each checked (header, CRC), and the
    /// position after them; `None` at the end of the segment. Errors when the segment is
    /// gone (retention or a replacement removed it).
    pub async fn read_segment(
        &self,
        base_offset: i64,
        position: u64,
        max_bytes: usize,
    ) -> Result<Option<(Bytes, u64)>, StorageError> {
        let seg = {
            let st = self.inner.st.borrow();
            if st.closed {
                return Err(StorageError::Closed);
            }
            st.segments.get(&base_offset).cloned()
        };
        let Some(seg) = seg else {
            return Err(StorageError::OffsetOutOfRange {
                offset: base_offset,
                log_start_offset: self.log_start_offset(),
                written_end_offset: self.written_end_offset(),
            });
        };
        let limit = seg.written_size.get();
        if position >= limit {
            return Ok(None);
        }
        let dma = seg.dma_or_err()?;
        let want = (max_bytes.max(BATCH_HEADER_LEN) as u64).min(limit - position);
        let mut buf = dma.read_at(position, want as usize).await?;
        let first = BatchHeader::parse(&buf[..BATCH_HEADER_LEN.min(buf.len())])
            .map_err(|e| seg.corrupt(position, e.to_string()))?;
        if first.total_len() as u64 > limit - position {
            return Err(seg.corrupt(position, "batch runs past the segment end"));
        }
        if first.total_len() > buf.len() {
            buf = dma.read_at(position, first.total_len()).await?;
        }
        let mut end = 0;
        while end + BATCH_HEADER_LEN <= buf.len() {
            let h = BatchHeader::parse(&buf[end..end + BATCH_HEADER_LEN])
                .map_err(|e| seg.corrupt(position + end as u64, e.to_string()))?;
            if end + h.total_len() > buf.len() {
                break;
            }
            // Pair check of what recovery or the writer validated before.
            h.verify(&buf[end..])
                .map_err(|e| seg.corrupt(position + end as u64, e.to_string()))?;
            end += h.total_len();
        }
        assert!(end > 0, "at least the first batch was read whole");
        let bytes = Bytes::copy_from_slice(&buf[..end]);
        Ok(Some((bytes, position + end as u64)))
    }

    /// Starts a cleaned replacement for segments beginning at `base_offset`.
    pub async fn begin_cleaned_segment(
        &self,
        base_offset: i64,
    ) -> Result<CleanedSegment, StorageError> {
        let path = segment::segment_path(&self.inner.dir, base_offset, CLEANED_SUFFIX);
        let p = path.clone();
        let file = glommio::executor()
            .spawn_blocking(move || File::create(&p))
            .await?;
        Ok(CleanedSegment {
            base_offset,
            path,
            file: Some(file),
            size_bytes: 0,
            next_offset: base_offset,
            batches: 0,
        })
    }

    /// Test hook: `replace_segments` stops with an error before `step` (1: before the
    /// commit record, 2: after it, 3: after deleting the later old segments, 4: after the
    /// rename, 5: before clearing the record), as if the process died there. The log is
    /// poisoned; reopening shows what recovery makes of it.
    #[doc(hidden)]
    pub fn inject_replace_stop(&self, step: u32) {
        self.inner.injected_replace_stop.set(Some(step));
    }

    /// Test-only pause point for kill -9 tests of a real process: `replace_segments`
    /// logs "segment replacement paused at step N" and waits (an hour) before `step`.
    #[doc(hidden)]
    pub fn set_replace_pause(&self, step: Option<u32>) {
        self.inner.replace_pause.set(step);
    }

    async fn replace_step(&self, step: u32) -> Result<(), StorageError> {
        if self.inner.replace_pause.get() == Some(step) {
            warn!(dir = %self.inner.dir.display(), step, "segment replacement paused at step {step} (test pause point)");
            glommio::timer::sleep(REPLACE_PAUSE).await;
        }
        if self.inner.injected_replace_stop.get() == Some(step) {
            self.inner.injected_replace_stop.set(None);
            return Err(StorageError::Io(io::Error::other(format!(
                "injected stop at replacement step {step}"
            ))));
        }
        Ok(())
    }

    /// Replaces the adjacent sealed segments `old_bases` (ascending; the first equal to
    /// the cleaned segment's base) by `cleaned`, and records `cleaner_offset` (offsets
    /// below it are compacted). Crash-safe: see the module docs. Returns `Ok(false)`, and
    /// leaves everything as it was, when the log changed meanwhile (a segment went, one
    /// is no longer sealed, a truncation runs). A failure after the commit record poisons
    /// the log (reopening completes the replacement).
    pub async fn replace_segments(
        &self,
        old_bases: &[i64],
        mut cleaned: CleanedSegment,
        cleaner_offset: i64,
    ) -> Result<bool, StorageError> {
        let inner = &self.inner;
        let (Some(&first), Some(&last)) = (old_bases.first(), old_bases.last()) else {
            return Ok(false);
        };
        assert_eq!(
            first, cleaned.base_offset,
            "the cleaned segment takes the first base"
        );
        assert!(old_bases.windows(2).all(|w| w[0] < w[1]), "bases ascend");
        // 1. The cleaned file, durable.
        let Some(file) = cleaned.file.take() else {
            return Err(StorageError::Closed);
        };
        let dir = inner.dir.clone();
        let path = cleaned.path.clone();
        let res = glommio::executor()
            .spawn_blocking(move || -> io::Result<()> {
                file.sync_data()?;
                drop(file);
                File::open(&dir)?.sync_all()
            })
            .await;
        if let Err(e) = res {
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        let files = match segment::open_files(&path, false).await {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let interval = inner.config.borrow().index_interval_bytes;
        let scan =
            segment::scan_and_validate(&files.dma, first, cleaned.size_bytes, interval, None).await;
        let scan = match scan {
            Ok(s) if s.valid_size == cleaned.size_bytes => s,
            Ok(s) => {
                let _ = std::fs::remove_file(&path);
                return Err(StorageError::CorruptLog {
                    file: path.display().to_string(),
                    position: s.valid_size,
                    reason: s
                        .stop_reason
                        .unwrap_or_else(|| "short cleaned segment".into()),
                });
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        // Claim the segments, if they are still what the cleaner read.
        let range_end = {
            let mut st = inner.st.borrow_mut();
            let ok = !(st.closed || st.closing || st.poisoned || st.truncating || st.replacing);
            let keys: Vec<i64> = st.segments.range(first..=last).map(|(b, _)| *b).collect();
            let next_base = st.segments.range(last + 1..).next().map(|(b, _)| *b);
            let sealed = next_base.is_some_and(|nb| nb <= st.recovery_point);
            if !ok || keys != old_bases || !sealed {
                drop(st);
                let _ = std::fs::remove_file(&path);
                return Ok(false);
            }
            let range_end = next_base.unwrap_or(i64::MAX); // ok: checked by `sealed`
                                                           // Pair assertion: the cleaned batches lie inside the replaced range.
            assert!(
                scan.next_offset <= range_end,
                "cleaned data past the replaced range"
            );
            st.replacing = true;
            range_end
        };
        let res = self
            .replace_claimed(old_bases, cleaned, files, scan, range_end, cleaner_offset)
            .await;
        {
            let mut st = inner.st.borrow_mut();
            st.replacing = false;
            if res.is_err() && st.replace_marker.is_some() && !st.poisoned {
                tracing::error!(dir = %inner.dir.display(), "segment replacement failed after its commit; partition poisoned until reopened");
                st.poisoned = true;
                st.staging.clear();
            }
        }
        inner.changed.notify_all();
        inner.writer_wake.notify_all();
        res.map(|()| true)
    }

    async fn replace_claimed(
        &self,
        old_bases: &[i64],
        cleaned: CleanedSegment,
        files: segment::SegmentFiles,
        scan: segment::ScanOutcome,
        range_end: i64,
        cleaner_offset: i64,
    ) -> Result<(), StorageError> {
        let inner = &self.inner;
        let first = cleaned.base_offset;
        let path = cleaned.path.clone();
        if let Err(e) = self.replace_step(1).await {
            drop(files);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        // 2. Commit: from here on a crash opens with the new set.
        inner.st.borrow_mut().replace_marker = Some(old_bases.to_vec());
        // On failure it is unknown whether the record reached the disk: recovery decides,
        // and this log stops writing until then (the caller poisons it).
        write_checkpoint(inner, false).await?;
        self.replace_step(2).await?;
        // The new set in memory, in one step.
        let old_bytes: u64;
        let new_seg = {
            let mut st = inner.st.borrow_mut();
            let now = super::now_ms();
            let seg = Rc::new(Segment::new(&inner.dir, first, now));
            seg.written_size.set(scan.valid_size);
            seg.staged_size.set(scan.valid_size);
            seg.next_offset.set(scan.next_offset.max(first));
            seg.max_timestamp.set(scan.max_timestamp);
            seg.offset_of_max_timestamp
                .set(scan.offset_of_max_timestamp);
            seg.allocated.set(scan.valid_size);
            *seg.index.borrow_mut() = scan.index;
            *seg.files.borrow_mut() = Some(files);
            let mut bytes = 0;
            for b in old_bases {
                if let Some(old) = st.segments.remove(b) {
                    bytes += old.written_size.get();
                    // Readers holding the Rc keep their descriptor (the file stays
                    // readable until they drop it).
                    drop(old.files.borrow_mut().take());
                }
            }
            old_bytes = bytes;
            st.segments.insert(first, seg.clone());
            st.cache.retain(|e| e.base_offset >= range_end);
            st.recount_cache();
            seg
        };
        inner.read_ahead.borrow_mut().clear();
        inner.changed.notify_all();
        // 3. Old files out, the cleaned file in.
        let dir = inner.dir.clone();
        let rest: Vec<i64> = old_bases[1..].to_vec();
        let d = dir.clone();
        glommio::executor()
            .spawn_blocking(move || -> io::Result<()> {
                for b in rest {
                    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                        super::remove_if_present(&segment::segment_path(&d, b, suffix))?;
                    }
                }
                Ok(())
            })
            .await?;
        self.replace_step(3).await?;
        let d = dir.clone();
        glommio::executor()
            .spawn_blocking(move || crate::recovery::complete_replacement(&d, &[first]))
            .await?;
        self.replace_step(4).await?;
        write_index_files(&dir, &new_seg).await;
        self.replace_step(5).await?;
        // 4. Done: clear the record, move the cleaner offset.
        {
            let mut st = inner.st.borrow_mut();
            st.replace_marker = None;
            st.cleaner_offset = st.cleaner_offset.max(cleaner_offset.min(range_end));
        }
        write_checkpoint(inner, false).await?;
        info!(
            dir = %dir.display(),
            segments = old_bases.len(),
            base_offset = first,
            bytes_before = old_bytes,
            bytes_after = new_seg.written_size.get(),
            batches = cleaned.batches,
            "replaced segments by their cleaned version"
        );
        drop(cleaned);
        Ok(())
    }
}
