//! Read-ahead for consumers that read a partition sequentially from disk.
//!
//! Segments are written and read with O_DIRECT, so the kernel's page-cache readahead never
//! helps: without this, every fetch of cold data waits for its header scans and its data
//! read while the disk is idle during the previous response's send. After a read served
//! from a segment file, the next range of that segment is loaded in the background; when the
//! consumer's next fetch asks for exactly the offset that follows, its batch headers are
//! parsed from memory and its records are slices of the loaded bytes.
//!
//! Each partition keeps at most one read-ahead, and all read-aheads of a shard (thread)
//! share a memory budget ([`set_shard_read_ahead_bytes`]); past it, reads simply go to disk.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use bytes::Bytes;
use glommio::io::DmaFile;

use crate::event::Event;
use crate::segment::Segment;
use crate::StorageError;

/// Default memory budget of all read-aheads of one shard.
pub const DEFAULT_SHARD_READ_AHEAD_BYTES: usize = 64 << 20;
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

/// Size of the read-ahead after a read of at most `max_bytes`.
pub(crate) fn read_ahead_len(max_bytes: usize) -> usize {
    max_bytes.clamp(READ_AHEAD_MIN, READ_AHEAD_MAX)
}

/// One range of a segment being loaded (or loaded) ahead of the reader.
pub(crate) struct ReadAhead {
    seg: Weak<Segment>,
    /// File position of the range, a batch boundary.
    pub(crate) pos: u64,
    /// The offset a reader continuing sequentially asks for next: the batch at `pos` is
    /// the first one holding it.
    pub(crate) first_offset: i64,
    len: usize,
    /// `None` while loading; then the bytes, or `None` if the load failed.
    state: RefCell<Option<Option<Bytes>>>,
    done: Rc<Event>,
}

impl ReadAhead {
    /// Starts loading `len` bytes of `seg` at `pos`; `None` when the shard's budget is
    /// spent or the segment has no open file.
    pub(crate) fn start(
        seg: &Rc<Segment>,
        pos: u64,
        len: usize,
        first_offset: i64,
    ) -> Option<Rc<ReadAhead>> {
        if len == 0 {
            return None;
        }
        let dma = seg.dma()?;
        let reserved = BUDGET.with(|b| {
            let (max, used) = b.get();
            let fits = used.checked_add(len).is_some_and(|n| n <= max);
            if fits {
                b.set((max, used + len));
            }
            fits
        });
        if !reserved {
            return None;
        }
        let ra = Rc::new(ReadAhead {
            seg: Rc::downgrade(seg),
            pos,
            first_offset,
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

    /// Whether a read of `offset` in `seg` continues where this read-ahead starts.
    pub(crate) fn continues(&self, seg: &Rc<Segment>, offset: i64) -> bool {
        self.first_offset == offset && std::ptr::eq(self.seg.as_ptr(), Rc::as_ptr(seg))
    }

    /// The loaded bytes, waiting for the load; `None` if it failed.
    pub(crate) async fn data(&self) -> Option<Bytes> {
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
