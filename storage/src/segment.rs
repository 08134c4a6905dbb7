//! One segment: a log file of concatenated batches plus its sparse index.
//!
//! File names follow Kafka: `<base offset, 20 digits>.log`, `.index`, `.timeindex`.
//! The log file is written only through an O_DIRECT [`DmaFile`] by the partition's
//! writer task; readers use the same DMA file (header scans, [`crate::Chunk::load`]).
//! A segment holds exactly one file descriptor while its files are open. (It used to
//! hold a second, buffered read-only descriptor meant for `sendfile`; nothing sent
//! from it, since fetch responses are built from loaded bytes, so it is gone.)
//!
//! Offsets inside a segment strictly increase from batch to batch but need not be
//! dense: a batch starts at or after the previous batch's last offset + 1 (a follower
//! copying a compacted leader, or a compacted segment), the first one at or after the
//! segment's base offset.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::index::SegmentIndex;
use crate::StorageError;

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// A compacted replacement of segments being written (see [`crate::recovery`]).
pub(crate) const CLEANED_SUFFIX: &str = "log.cleaned";

pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// File descriptors an open segment holds: the O_DIRECT file of [`SegmentFiles`] (reads load
/// into memory; nothing sends from a second, buffered descriptor). The broker budgets
/// `RLIMIT_NOFILE` with it: keep it in step with [`open_files`].
pub const FDS_PER_SEGMENT: usize = 1;

/// Open file handles of a segment. Absent while a freshly rolled segment waits for the
/// writer to create its files.
pub(crate) struct SegmentFiles {
    pub dma: Rc<DmaFile>,
}

pub(crate) struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    pub files: RefCell<Option<SegmentFiles>>,
    /// Bytes durably handed to the file system (write completed). Readers never look
    /// beyond this.
    pub written_size: Cell<u64>,
    /// Bytes assigned by `append` (>= written_size); the next batch goes here.
    pub staged_size: Cell<u64>,
    /// Offset after the last batch assigned to this segment (its base offset while it
    /// holds none). With offset gaps this is the last batch's last offset + 1, not the
    /// next segment's base offset.
    pub next_offset: Cell<i64>,
    pub index: RefCell<SegmentIndex>,
    /// Largest batch maxTimestamp in the segment, and the last offset of that batch.
    pub max_timestamp: Cell<i64>,
    pub offset_of_max_timestamp: Cell<i64>,
    /// Wall-clock time the segment counts its age from (for `segment.ms`).
    pub roll_base_ms: Cell<i64>,
    /// File bytes known to be allocated (fallocated, inside the file size) ahead of the
    /// writer; `u64::MAX` once allocation failed and the segment gave up on it.
    pub allocated: Cell<u64>,
    /// A background allocation ahead of `allocated` is in flight (sealing waits for it:
    /// it may extend the file).
    pub allocating: Cell<bool>,
}

impl Segment {
    pub(crate) fn new(dir: &Path, base_offset: i64, roll_base_ms: i64) -> Segment {
        Segment {
            base_offset,
            log_path: segment_path(dir, base_offset, LOG_SUFFIX),
            files: RefCell::new(None),
            written_size: Cell::new(0),
            staged_size: Cell::new(0),
            next_offset: Cell::new(base_offset),
            index: RefCell::new(SegmentIndex::default()),
            max_timestamp: Cell::new(-1),
            offset_of_max_timestamp: Cell::new(-1),
            roll_base_ms: Cell::new(roll_base_ms),
            allocated: Cell::new(0),
            allocating: Cell::new(false),
        }
    }

    pub(crate) fn dma(&self) -> Option<Rc<DmaFile>> {
        self.files.borrow().as_ref().map(|f| f.dma.clone())
    }

    pub(crate) fn dma_or_err(&self) -> Result<Rc<DmaFile>, StorageError> {
        self.dma().ok_or_else(|| StorageError::CorruptLog {
            file: self.log_path.display().to_string(),
            position: 0,
            reason: "segment file not open".into(),
        })
    }

    /// Records a batch's timestamp facts (append and recovery share this).
    pub(crate) fn note_batch(&self, header: &BatchHeader, max_timestamp: i64) {
        if max_timestamp > self.max_timestamp.get() {
            self.max_timestamp.set(max_timestamp);
            self.offset_of_max_timestamp.set(header.last_offset());
        }
    }

    pub(crate) fn corrupt(&self, position: u64, reason: impl Into<String>) -> StorageError {
        StorageError::CorruptLog {
            file: self.log_path.display().to_string(),
            position,
            reason: reason.into(),
        }
    }
}

thread_local! {
    /// Devices (st_dev) whose io_uring poll-ring support was probed on this thread.
    static PROBED_DEVICES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// glommio decides once per thread and device whether O_DIRECT I/O may use its
/// IOPOLL ring, by reading 512 bytes from the first DMA file opened there. If that file
/// is empty the read succeeds at EOF without reaching the device, glommio wrongly
/// concludes that polling works, and every later read fails with EOPNOTSUPP on devices
/// without poll queues (virtio here). So before the first segment is opened on a
/// device, we open a non-empty scratch file to make the probe meaningful.
pub(crate) async fn ensure_dma_probe(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir)?.dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let probe = dir.join(".ringtail-dio-probe");
    std::fs::write(&probe, [0u8; 4096])?;
    let opened = DmaFile::open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    opened?.close().await?;
    PROBED_DEVICES.with(|p| p.borrow_mut().push(dev));
    Ok(())
}

/// Opens (creating if needed) a segment's log file for O_DIRECT read+write: the one
/// descriptor a segment holds. Read+write also avoids glommio's noisy iopoll probe on
/// write-only fds.
pub(crate) async fn open_files(path: &Path, create: bool) -> Result<SegmentFiles, StorageError> {
    let dma = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .dma_open(path)
        .await?;
    Ok(SegmentFiles { dma: Rc::new(dma) })
}

/// What a validating scan of a segment found.
pub(crate) struct ScanOutcome {
    /// Bytes of valid, contiguous batches from position 0.
    pub valid_size: u64,
    pub next_offset: i64,
    pub index: SegmentIndex,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    pub first_max_timestamp: Option<i64>,
    /// Why the scan stopped before `limit` (None when it reached the end exactly).
    pub stop_reason: Option<String>,
    /// Whether the bytes right after `valid_size` are all zero (preallocated space).
    pub tail_is_zeros: bool,
    /// (leader epoch, base offset) of each valid batch whose `partitionLeaderEpoch`
    /// (>= 0) differs from the previous batch's: what the leader-epoch file must know.
    pub epochs: Vec<(i32, i64)>,
    /// The scan stopped at `stop_at_offset`, not at bad or missing data.
    pub stopped_at_offset: bool,
}

const SCAN_READ_BYTES: u64 = 4 << 20;

/// Sequential aligned reads of a file with one read always in flight ahead.
struct ReadAhead {
    dma: Rc<DmaFile>,
    next_pos: u64,
    end: u64,
    inflight: Option<glommio::task::JoinHandle<Result<glommio::io::ReadResult, StorageError>>>,
}

impl ReadAhead {
    fn new(dma: Rc<DmaFile>, limit: u64) -> ReadAhead {
        let mut r = ReadAhead {
            dma,
            next_pos: 0,
            end: (limit + 4095) & !4095,
            inflight: None,
        };
        r.issue();
        r
    }

    fn issue(&mut self) {
        if self.next_pos >= self.end {
            return;
        }
        let len = SCAN_READ_BYTES.min(self.end - self.next_pos) as usize;
        let (dma, pos) = (self.dma.clone(), self.next_pos);
        self.next_pos += len as u64;
        let task =
            glommio::spawn_local(async move { Ok(dma.read_at_aligned(pos, len).await?) }).detach();
        self.inflight = Some(task);
    }

    /// The next buffer in file order, or None at the end.
    async fn next(&mut self) -> Result<Option<glommio::io::ReadResult>, StorageError> {
        let Some(task) = self.inflight.take() else {
            return Ok(None);
        };
        self.issue();
        match task.await {
            Some(r) => r.map(Some),
            None => Err(StorageError::Io(std::io::Error::other(
                "read-ahead task cancelled",
            ))),
        }
    }
}

/// Where requested bytes are: inside the current read buffer, or stitched in `carry`.
#[derive(Clone, Copy)]
enum Span {
    InBuf(usize),
    Carry,
}

/// A cursor over the read-ahead stream that hands out contiguous byte ranges.
struct Cursor {
    stream: ReadAhead,
    cur: Option<glommio::io::ReadResult>,
    cur_start: u64,
    carry: Vec<u8>,
}

impl Cursor {
    fn cur_len(&self) -> u64 {
        self.cur.as_ref().map_or(0, |b| b.len() as u64)
    }

    async fn advance(&mut self) -> Result<bool, StorageError> {
        match self.stream.next().await? {
            Some(b) if !b.is_empty() => {
                self.cur_start += self.cur_len();
                self.cur = Some(b);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Makes `[pos, pos + n)` available contiguously; None if the file ends first.
    /// `pos` never goes backwards between calls, and a call with `pos` before the
    /// current buffer continues the stitch started by the previous call at `pos`.
    async fn get(&mut self, pos: u64, n: usize) -> Result<Option<Span>, StorageError> {
        if pos >= self.cur_start {
            while pos >= self.cur_start + self.cur_len() {
                if !self.advance().await? {
                    return Ok(None);
                }
            }
            let rel = (pos - self.cur_start) as usize;
            let Some(cur) = self.cur.as_ref() else {
                return Ok(None);
            };
            if rel + n <= cur.len() {
                return Ok(Some(Span::InBuf(rel)));
            }
            self.carry.clear();
            self.carry.extend_from_slice(&cur[rel..]);
        } else {
            // Continue the previous stitch: carry holds [pos, pos + carry.len()).
            let have_end = pos + self.carry.len() as u64;
            if let Some(cur) = self.cur.as_ref() {
                if have_end >= self.cur_start && have_end < self.cur_start + cur.len() as u64 {
                    let from = (have_end - self.cur_start) as usize;
                    let take = n.saturating_sub(self.carry.len()).min(cur.len() - from);
                    self.carry.extend_from_slice(&cur[from..from + take]);
                }
            }
        }
        while self.carry.len() < n {
            if !self.advance().await? {
                return Ok(None);
            }
            let Some(cur) = self.cur.as_ref() else {
                return Ok(None);
            };
            let take = (n - self.carry.len()).min(cur.len());
            self.carry.extend_from_slice(&cur[..take]);
        }
        Ok(Some(Span::Carry))
    }

    fn slice(&self, span: Span, n: usize) -> &[u8] {
        match (span, self.cur.as_ref()) {
            (Span::InBuf(rel), Some(cur)) => &cur[rel..rel + n],
            (Span::Carry, _) => &self.carry[..n],
            (Span::InBuf(_), None) => &[],
        }
    }
}

/// Reads and validates every batch of a segment from position 0 up to `limit` bytes:
/// length, magic, CRC32C and increasing offsets (each batch must start after the
/// previous batch's last offset, the first one at or after `base_offset`; gaps are
/// allowed). Stops at the first bad batch, or at the first batch holding an offset at or
/// above `stop_at_offset` (a pending truncation). Rebuilds the sparse index as it goes.
/// Reads stream sequentially with one read in flight ahead; a batch spanning two reads is
/// stitched in a buffer.
pub(crate) async fn scan_and_validate(
    dma: &Rc<DmaFile>,
    base_offset: i64,
    limit: u64,
    index_interval: u32,
    stop_at_offset: Option<i64>,
) -> Result<ScanOutcome, StorageError> {
    let mut out = ScanOutcome {
        valid_size: 0,
        next_offset: base_offset,
        index: SegmentIndex::default(),
        max_timestamp: -1,
        offset_of_max_timestamp: -1,
        first_max_timestamp: None,
        stop_reason: None,
        tail_is_zeros: true,
        epochs: Vec::new(),
        stopped_at_offset: false,
    };
    let mut cursor = Cursor {
        stream: ReadAhead::new(dma.clone(), limit),
        cur: None,
        cur_start: 0,
        carry: Vec::new(),
    };
    let mut pos: u64 = 0;
    while pos < limit {
        let hn = (BATCH_HEADER_LEN as u64).min(limit - pos) as usize;
        let Some(span) = cursor.get(pos, hn).await? else {
            out.stop_reason = Some(format!("file shorter than its size at {pos}"));
            out.tail_is_zeros = false;
            break;
        };
        let header_bytes = cursor.slice(span, hn);
        let header = match BatchHeader::parse(header_bytes) {
            Ok(h) => h,
            Err(e) => {
                out.tail_is_zeros = header_bytes.iter().all(|b| *b == 0);
                out.stop_reason = Some(e.to_string());
                break;
            }
        };
        let total = header.total_len() as u64;
        if pos + total > limit {
            out.stop_reason = Some(format!(
                "batch at offset {} claims {} bytes, only {} left",
                header.base_offset,
                total,
                limit - pos
            ));
            out.tail_is_zeros = false;
            break;
        }
        if header.base_offset < out.next_offset || header.last_offset_delta < 0 {
            out.stop_reason = Some(format!(
                "batch base offset {} (delta {}) where at least {} was expected",
                header.base_offset, header.last_offset_delta, out.next_offset
            ));
            out.tail_is_zeros = false;
            break;
        }
        if let Some(o) = stop_at_offset.filter(|o| header.last_offset() >= *o) {
            out.stop_reason = Some(format!("pending truncation below offset {o}"));
            out.tail_is_zeros = false;
            out.stopped_at_offset = true;
            break;
        }
        if header.last_offset() - base_offset >= i32::MAX as i64 {
            // The index stores offsets relative to the segment's base as i32.
            out.stop_reason = Some(format!(
                "batch last offset {} too far from the segment base {base_offset}",
                header.last_offset()
            ));
            out.tail_is_zeros = false;
            break;
        }
        let Some(span) = cursor.get(pos, total as usize).await? else {
            out.stop_reason = Some("file ended inside a batch".into());
            out.tail_is_zeros = false;
            break;
        };
        if let Err(e) = header.verify(cursor.slice(span, total as usize)) {
            out.stop_reason = Some(format!("batch at offset {}: {e}", header.base_offset));
            out.tail_is_zeros = false;
            break;
        }
        out.index.on_batch(
            header.base_offset,
            pos as u32,
            out.max_timestamp,
            index_interval,
        );
        if header.max_timestamp > out.max_timestamp {
            out.max_timestamp = header.max_timestamp;
            out.offset_of_max_timestamp = header.last_offset();
        }
        if out.first_max_timestamp.is_none() {
            out.first_max_timestamp = Some(header.max_timestamp);
        }
        let epoch = header.partition_leader_epoch;
        if epoch >= 0 && out.epochs.last().is_none_or(|&(e, _)| e != epoch) {
            out.epochs.push((epoch, header.base_offset));
        }
        out.next_offset = header.last_offset() + 1;
        pos += total;
        out.valid_size = pos;
    }
    Ok(out)
}

/// Reads batch headers from `from` (a batch boundary) up to `limit`, calling `f(header,
/// position)` for each; `f` returns false to stop. Bodies are skipped without reading
/// them when a batch is larger than the read size. Returns the position reached.
pub(crate) async fn scan_headers(
    seg: &Segment,
    from: u64,
    limit: u64,
    read_bytes: usize,
    mut f: impl FnMut(&BatchHeader, u64) -> bool,
) -> Result<u64, StorageError> {
    let dma = seg.dma_or_err()?;
    let mut pos = from;
    while pos < limit {
        let len = (read_bytes as u64).min(limit - pos) as usize;
        let buf = dma.read_at(pos, len).await?;
        if buf.len() < BATCH_HEADER_LEN.min(len) {
            return Err(seg.corrupt(pos, "short read"));
        }
        let mut rel = 0usize;
        loop {
            let at = pos + rel as u64;
            if at >= limit {
                return Ok(at);
            }
            if rel + BATCH_HEADER_LEN > buf.len() {
                break;
            }
            let header =
                BatchHeader::parse(&buf[rel..]).map_err(|e| seg.corrupt(at, e.to_string()))?;
            let total = header.total_len();
            if at + total as u64 > limit {
                return Err(seg.corrupt(at, "batch crosses the end of written data"));
            }
            if !f(&header, at) {
                return Ok(at);
            }
            rel += total;
        }
        pos += rel as u64;
    }
    Ok(pos)
}
