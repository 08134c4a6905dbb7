//! Read-ahead for consumers that read a partition sequentially from disk.
//!
//! Segments are written and read with O_DIRECT, so the kernel's page-cache readahead never
//! helps: without this, every fetch of cold data waits for its header scans and its data
//! read while the disk is idle during the previous response's send. After a read served
//! from a segment file, the following bytes of that segment are loaded in the background, a
//! many ranges deep ([`Stream`]); when the consumer's next fetch asks for exactly the offset
//! that follows, its batch headers are parsed from memory and its records are slices of the
//! loaded bytes, and the stream is topped up again.
//!
//! Each reader position keeps its own stream, and all loaded ranges of a shard (thread) share a
//! memory budget ([`set_shard_read_ahead_bytes`]); past it, reads simply go to disk.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use glommio::io::DmaFile;

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::event::Event;
use crate::segment::Segment;
use crate::StorageError;

/// Default memory budget of all read-aheads of one shard.
pub const DEFAULT_SHARD_READ_AHEAD_BYTES: usize = 256 << 20;
/// Bounds of one read-ahead, which is otherwise as large as the read that triggered it.
const READ_AHEAD_MIN: usize = 256 << 10;
const READ_AHEAD_MAX: usize = 8 << 20;
/// Largest single O_DIRECT read when loading a file range. Large: every read costs a
/// device notification (on a VM, an exit to the hypervisor, which dominated cold reads
/// at 1 MiB pieces), while the device splits a large read into requests by itself.
const LOAD_PIECE_BYTES: usize = 8 << 20;

thread_local! {
    /// (budget, bytes held or being loaded by this thread's read-aheads)
    static BUDGET: Cell<(usize, usize)> = const { Cell::new((DEFAULT_SHARD_READ_AHEAD_BYTES, 0)) };
    /// Reads of this thread served from read-ahead.
    static HITS: Cell<u64> = const { Cell::new(0) };
}

/// Reads of the calling thread (shard) served from read-ahead so far.
pub fn shard_read_ahead_hits() -> u64 {
    HITS.with(Cell::get)
}

/// Sets the memory budget shared by the read-aheads of every partition log of the calling
/// thread (shard). 0 disables read-ahead.
pub fn set_shard_read_ahead_bytes(bytes: usize) {
    BUDGET.with(|b| b.set((bytes, b.get().1)));
}

/// Memory currently held or being loaded by the calling thread's read-aheads.
pub fn shard_read_ahead_bytes() -> usize {
    BUDGET.with(|b| b.get().1)
}

/// Size of one read-ahead range for reads of at most `max_bytes` of batches up to
/// `batch_bytes` long (a stream must be able to hold a whole batch to serve it).
pub(crate) fn read_ahead_len(max_bytes: usize, batch_bytes: usize) -> usize {
    max_bytes
        .max(batch_bytes)
        .clamp(READ_AHEAD_MIN, READ_AHEAD_MAX)
}

/// Read-ahead streams a partition keeps (one per sequential reader position).
pub(crate) const READ_AHEAD_STREAMS: usize = 4;

/// Read-ahead a stream keeps loaded or loading past its reader: about
/// [`STREAM_DEPTH_BYTES`], in at least [`STREAM_DEPTH_MIN_RANGES`] and at most
/// [`STREAM_DEPTH_MAX_RANGES`] ranges.
///
/// Deep, because the disk's throughput grows with the reads it has in flight (a virtio
/// disk here: 4 ranges of 1.25 MiB per partition kept 24 reads in flight and read
/// 1.3 GB/s; 16 kept about twice that and read 1.8–2.0 GB/s), and because a consumer
/// takes one range per fetch while it is busy with the previous response, so a shallow
/// stream is mostly ranges that are loaded and waiting.
const STREAM_DEPTH_BYTES: u64 = 16 << 20;
const STREAM_DEPTH_MIN_RANGES: u64 = 4;
const STREAM_DEPTH_MAX_RANGES: u64 = 16;

/// Ranges beyond a stream's first [`STREAM_DEPTH_MIN_RANGES`] are loaded only while this
/// fraction (1/N) of the shard's budget stays free, so that a reader arriving later still
/// gets its first ranges when deep streams hold the rest.
const BUDGET_RESERVE_DIVISOR: usize = 4;

fn stream_depth_ranges(range_len: usize) -> u64 {
    (STREAM_DEPTH_BYTES / range_len.max(1) as u64)
        .clamp(STREAM_DEPTH_MIN_RANGES, STREAM_DEPTH_MAX_RANGES)
}

/// The block size reads are aligned to.
const BLOCK: u64 = 4096;

/// The bytes of one segment after a sequential reader's position, loaded ahead in
/// contiguous ranges (a batch may span two ranges).
pub(crate) struct Stream {
    seg: Weak<Segment>,
    /// Contiguous; the first one holds `cursor_pos` (when there is one).
    ranges: VecDeque<Rc<ReadAhead>>,
    /// Where the reader's next batch starts, and the offset it will ask for.
    cursor_pos: u64,
    cursor_offset: i64,
    range_len: usize,
}

impl Stream {
    /// A stream of `range_len`-byte ranges for a reader that will continue at `offset`,
    /// whose batch starts at `pos`.
    pub(crate) fn new(seg: &Rc<Segment>, pos: u64, offset: i64, range_len: usize) -> Stream {
        Stream {
            seg: Rc::downgrade(seg),
            ranges: VecDeque::new(),
            cursor_pos: pos,
            cursor_offset: offset,
            range_len,
        }
    }

    /// Whether a read of `offset` in `seg` continues where the reader stopped.
    pub(crate) fn continues(&self, seg: &Rc<Segment>, offset: i64) -> bool {
        self.cursor_offset == offset && std::ptr::eq(self.seg.as_ptr(), Rc::as_ptr(seg))
    }

    /// Whether any range is loaded or loading.
    pub(crate) fn loading(&self) -> bool {
        !self.ranges.is_empty()
    }

    fn end_pos(&self) -> u64 {
        self.ranges
            .back()
            .map_or(self.cursor_pos, |r| r.pos + r.len as u64)
    }

    /// Starts loading ranges until the stream reaches its depth past the reader
    /// ([`stream_depth_ranges`]), `stable_end` (bytes after it may still be rewritten) or
    /// the shard's budget (less its reserve, past the first ranges).
    pub(crate) fn top_up(&mut self, seg: &Rc<Segment>, stable_end: u64) {
        let range_len = self.range_len as u64;
        let depth = stream_depth_ranges(self.range_len) * range_len;
        loop {
            let end = self.end_pos();
            let ahead = end - self.cursor_pos;
            if end >= stable_end || ahead >= depth {
                return;
            }
            let (start, len) = plan_range(end, self.ranges.is_empty(), self.range_len, stable_end);
            let deep = ahead >= STREAM_DEPTH_MIN_RANGES * range_len;
            match ReadAhead::start(seg, start, len, deep) {
                Some(ra) => self.ranges.push_back(ra),
                None => return,
            }
        }
    }

    /// Whole batches from the reader's position, up to `max_bytes` (at least one if
    /// `min_one`) and below `limit`, as slices of the loaded ranges, with their length; the
    /// reader's position moves past them. `None` when not even one batch is loaded (or a
    /// load failed): read from disk instead.
    pub(crate) async fn read(
        &mut self,
        seg: &Segment,
        limit: u64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Option<(Vec<Bytes>, usize)>, StorageError> {
        let start = self.cursor_pos;
        let mut pos = start;
        let mut next = self.cursor_offset;
        let end_pos = self.end_pos().min(limit);
        while pos + BATCH_HEADER_LEN as u64 <= end_pos {
            let Some(header) = self.copy_out::<BATCH_HEADER_LEN>(pos).await else {
                return Ok(None);
            };
            let h = BatchHeader::parse(&header).map_err(|e| seg.corrupt(pos, e.to_string()))?;
            let total = h.total_len() as u64;
            let len = pos - start;
            if len == 0 && h.last_offset() < self.cursor_offset {
                return Ok(None);
            }
            if pos + total > end_pos || (len + total > max_bytes as u64 && !(min_one && len == 0)) {
                break;
            }
            pos += total;
            next = h.last_offset() + 1;
        }
        if pos == start {
            return Ok(None);
        }
        let Some(chunks) = self.slices(start, pos).await else {
            return Ok(None);
        };
        self.cursor_pos = pos;
        self.cursor_offset = next;
        HITS.with(|h| h.set(h.get() + 1));
        while self
            .ranges
            .front()
            .is_some_and(|r| r.pos + r.len as u64 <= pos)
        {
            self.ranges.pop_front();
        }
        Ok(Some((chunks, (pos - start) as usize)))
    }

    /// The loaded bytes `[from, to)` as slices of the ranges, waiting for their loads.
    async fn slices(&self, from: u64, to: u64) -> Option<Vec<Bytes>> {
        let mut out = Vec::new();
        for r in &self.ranges {
            let (r_start, r_end) = (r.pos, r.pos + r.len as u64);
            if r_end <= from || r_start >= to {
                continue;
            }
            let data = r.data().await?;
            let a = (from.max(r_start) - r_start) as usize;
            let b = (to.min(r_end) - r_start) as usize;
            out.push(data.get(a..b).map(|_| data.slice(a..b))?);
        }
        Some(out)
    }

    /// `N` loaded bytes at `pos` (possibly spanning two ranges).
    async fn copy_out<const N: usize>(&self, pos: u64) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        let mut filled = 0;
        for chunk in self.slices(pos, pos + N as u64).await? {
            let n = chunk.len().min(N - filled);
            out[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
        }
        (filled == N).then_some(out)
    }
}

/// The next range to load, for a stream whose loaded bytes end at `end` (the reader's
/// position when `first`), of about `range_len` bytes and not past `stable_end`.
///
/// Ranges start and end on block boundaries where they can: an O_DIRECT read of an
/// unaligned range reads the blocks around it, so unaligned neighbours would each read
/// their shared block and the device could not merge them into one request. (Measured on
/// the cold-read benchmark: about 10% more read bandwidth.)
fn plan_range(end: u64, first: bool, range_len: usize, stable_end: u64) -> (u64, usize) {
    let start = if first { end - end % BLOCK } else { end };
    let stop = (start + range_len as u64)
        .next_multiple_of(BLOCK)
        .min(stable_end);
    (start, stop.saturating_sub(start) as usize)
}

/// One range of a segment being loaded (or loaded) ahead of the reader.
pub(crate) struct ReadAhead {
    pos: u64,
    len: usize,
    /// `None` while loading; then the bytes, or `None` if the load failed.
    state: RefCell<Option<Option<Bytes>>>,
    done: Rc<Event>,
}

impl ReadAhead {
    /// Starts loading `len` bytes of `seg` at `pos`; `None` when the shard's budget is
    /// spent (for a `deep` range: all but its reserve) or the segment has no open file.
    fn start(seg: &Rc<Segment>, pos: u64, len: usize, deep: bool) -> Option<Rc<ReadAhead>> {
        if len == 0 {
            return None;
        }
        let dma = seg.dma()?;
        let reserved = BUDGET.with(|b| {
            let (max, used) = b.get();
            let limit = if deep {
                max - max / BUDGET_RESERVE_DIVISOR
            } else {
                max
            };
            let fits = used.checked_add(len).is_some_and(|n| n <= limit);
            if fits {
                b.set((max, used + len));
            }
            fits
        });
        if !reserved {
            return None;
        }
        let ra = Rc::new(ReadAhead {
            pos,
            len,
            state: RefCell::new(None),
            done: Rc::new(Event::default()),
        });
        let weak = Rc::downgrade(&ra);
        glommio::spawn_local(async move {
            let loaded = load_range(&dma, pos, len).await;
            if let Err(e) = &loaded {
                tracing::debug!(pos, len, error = %e, "read-ahead failed; the next read goes to disk");
            }
            if let Some(ra) = weak.upgrade() {
                *ra.state.borrow_mut() = Some(loaded.ok());
                ra.done.notify_all();
            }
        })
        .detach();
        Some(ra)
    }

    /// The loaded bytes, waiting for the load; `None` if it failed.
    async fn data(&self) -> Option<Bytes> {
        loop {
            let listener = self.done.listen();
            if let Some(loaded) = self.state.borrow().as_ref() {
                return loaded.clone();
            }
            listener.await;
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        let len = self.len;
        // try_with: the thread-local may already be gone while a thread exits.
        let _ = BUDGET.try_with(|b| {
            let (max, used) = b.get();
            b.set((max, used.saturating_sub(len)));
        });
    }
}

/// `len` bytes of `dma` at `offset`, read with O_DIRECT in bounded pieces, all in flight at
/// once.
pub(crate) async fn load_range(
    dma: &DmaFile,
    offset: u64,
    len: usize,
) -> Result<Bytes, StorageError> {
    let mut out = Vec::with_capacity(len);
    let end = offset + len as u64;
    let mut reads = Vec::new();
    let mut pos = offset;
    while pos < end {
        let n = (end - pos).min(LOAD_PIECE_BYTES as u64) as usize;
        reads.push((pos, n, dma.read_at(pos, n)));
        pos += n as u64;
    }
    let results = crate::event::join_all(
        reads
            .into_iter()
            .map(|(p, n, f)| async move { (p, n, f.await) })
            .collect(),
    )
    .await;
    for (p, n, r) in results {
        let buf = r?;
        if buf.len() < n {
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("short read at {p}: {} of {n} bytes", buf.len()),
            )));
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From any reader position, the ranges cover the bytes after it contiguously, each
    /// boundary below the stable end is block-aligned, and no range is shorter than asked
    /// unless the stable end cuts it.
    #[test]
    fn ranges_are_contiguous_and_block_aligned() {
        for (cursor, range_len, stable_end) in [
            (0u64, 1usize << 20, 10u64 << 20),
            (12_345, 1 << 20, (10 << 20) + 77),
            (4096 * 3 + 1, 300_001, 5_000_000),
            (999_999, 256 << 10, 1_000_500),
        ] {
            let (mut end, mut first, mut ranges) = (cursor, true, Vec::new());
            while end < stable_end {
                let (start, len) = plan_range(end, first, range_len, stable_end);
                assert!(len > 0);
                if first {
                    assert!(start <= cursor && cursor - start < BLOCK);
                } else {
                    assert_eq!(start, end, "ranges must be contiguous");
                }
                assert_eq!(start % BLOCK, 0, "range at {start} not aligned");
                let stop = start + len as u64;
                assert!(
                    stop == stable_end || stop.is_multiple_of(BLOCK),
                    "range end {stop}"
                );
                assert!(stop == stable_end || len >= range_len, "short range {len}");
                ranges.push((start, len));
                end = stop;
                first = false;
            }
            assert_eq!(end, stable_end);
            assert!(ranges.len() >= ((stable_end - cursor) / (8 << 20)) as usize);
        }
    }
}
