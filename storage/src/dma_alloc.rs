//! A global allocator that puts large page-aligned buffers on transparent huge pages.
//!
//! glommio allocates the buffers of O_DIRECT reads and writes through the global allocator
//! (4 KiB aligned). From the system allocator, a 1 MiB buffer is 256 separate 4 KiB pages
//! that are rarely physically contiguous, and a block device takes only so many separate
//! pieces of memory per request (virtio-blk here: 254). So each 1 MiB read reached the device
//! as a 1016 KiB request plus an 8 KiB one, and the small ones filled the device queue:
//! a third of the requests of a cold read were sent back and requeued. Inside one 2 MiB huge
//! page a buffer is a single piece of memory, and the same read is one request. (Measured on
//! the cold-read benchmark: see BENCHMARKS.md, change 24.)
//!
//! Writes gain too: the writer's staging buffers (64 KiB to 1 MiB) reach the device in
//! fewer pieces, and the 1 KiB x 12 partitions produce benchmark wrote about 12% more.
//!
//! [`DmaBufferAlloc`] serves allocations of at least [`MIN_SIZE`] with an alignment of
//! 4 KiB to 2 MiB from anonymous mappings aligned to 2 MiB and marked `MADV_HUGEPAGE`;
//! everything else goes to the system allocator. Sizes up to 2 MiB are rounded up to a power
//! of two and carved from 2 MiB chunks, so no buffer straddles a huge page; a freed buffer
//! goes to a free list of its size for reuse. Larger sizes get mappings of their own, rounded
//! up to 2 MiB; up to [`LARGE_CACHE_BYTES`] of freed ones are kept for reuse.
//!
//! Free buffers are kept only while they are needed: [`trim`], called periodically (the
//! broker does every 10 s), unmaps the chunks whose every buffer stayed free since the
//! previous call, and the cached large mappings that stayed unused as long. A burst (a cold
//! read filling the read-ahead budget) thus gives its memory back after it ends, while a
//! steady load, which reuses its buffers within the interval, keeps them. [`stats`] reports
//! the bytes mapped and handed out.
//!
//! Where transparent huge pages are off (`/sys/kernel/mm/transparent_hugepage/enabled` =
//! `never`) the mappings get 4 KiB pages, and I/O behaves as with the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

/// Smallest allocation served from huge pages.
pub const MIN_SIZE: usize = 64 << 10;
/// The huge page size (x86-64, aarch64 with 4 KiB pages).
pub const HUGE_PAGE: usize = 2 << 20;
/// Freed mappings larger than [`HUGE_PAGE`] kept for reuse, at most.
pub const LARGE_CACHE_BYTES: usize = 64 << 20;
/// Smallest alignment served here: the buffers of O_DIRECT I/O.
const MIN_ALIGN: usize = 4096;
/// Size classes up to a huge page: 64 KiB to 2 MiB, powers of two.
const CLASSES: [usize; 6] = [
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
    HUGE_PAGE,
];

/// Free buffers of one size class, or freed large mappings, in the order they were freed.
struct FreeList<T> {
    items: Vec<T>,
    /// The fewest items the list held since the last [`trim`]: the oldest `low` items were
    /// not used in that interval.
    low: usize,
}

impl<T> FreeList<T> {
    const fn new() -> FreeList<T> {
        FreeList {
            items: Vec::new(),
            low: 0,
        }
    }

    fn pop(&mut self) -> Option<T> {
        let last = self.items.len().checked_sub(1)?;
        Some(self.remove(last))
    }

    /// Takes item `i` out; the items below it that were idle stay counted as idle.
    fn remove(&mut self, i: usize) -> T {
        if i < self.low {
            self.low -= 1;
        }
        self.items.remove(i)
    }
}

/// The start of the 2 MiB chunk a buffer lies in.
fn chunk_of(addr: usize) -> usize {
    addr / HUGE_PAGE * HUGE_PAGE
}

/// Free buffers of each size class (addresses).
static FREE: [Mutex<FreeList<usize>>; CLASSES.len()] =
    [const { Mutex::new(FreeList::new()) }; CLASSES.len()];
/// Freed large mappings: (rounded size, address), and their total size.
static LARGE: Mutex<(FreeList<(usize, usize)>, usize)> = Mutex::new((FreeList::new(), 0));
/// Bytes mapped by this allocator (chunks and large mappings), and bytes handed out.
static MAPPED: AtomicUsize = AtomicUsize::new(0);
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// What the allocator holds (see [`stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DmaStats {
    /// Bytes mapped: buffers in use, free buffers kept for reuse, and the unused parts of
    /// chunks.
    pub mapped_bytes: usize,
    /// Bytes of the buffers handed out and not yet freed (each rounded to its size class).
    pub in_use_bytes: usize,
}

/// The allocator's memory now (process-wide).
pub fn stats() -> DmaStats {
    DmaStats {
        mapped_bytes: MAPPED.load(Relaxed),
        in_use_bytes: IN_USE.load(Relaxed),
    }
}

/// Gives back to the system the memory that stayed free since the previous call: every
/// chunk all of whose buffers were free throughout, and every cached large mapping that was
/// not reused. Returns the bytes unmapped. Cheap when nothing is free; meant to be called
/// from one thread at a fixed interval.
pub fn trim() -> usize {
    let mut unmap: Vec<(usize, usize)> = Vec::new();
    for (class, list) in FREE.iter().enumerate() {
        let block = CLASSES[class];
        let per_chunk = HUGE_PAGE / block;
        let mut list = lock(list);
        let idle = list.low.min(list.items.len());
        if idle >= per_chunk {
            // Count the idle buffers of each chunk; a chunk whose every buffer is idle goes.
            let mut idle_blocks: Vec<usize> = list.items[..idle].to_vec();
            idle_blocks.sort_unstable();
            let mut whole: Vec<usize> = Vec::new();
            for run in idle_blocks.chunk_by(|a, b| chunk_of(*a) == chunk_of(*b)) {
                if run.len() == per_chunk {
                    whole.push(chunk_of(run[0]));
                }
            }
            if !whole.is_empty() {
                list.items
                    .retain(|b| whole.binary_search(&chunk_of(*b)).is_err());
                unmap.extend(whole.iter().map(|c| (*c, HUGE_PAGE)));
            }
        }
        list.low = list.items.len();
    }
    {
        let mut large = lock(&LARGE);
        let idle = large.0.low.min(large.0.items.len());
        let gone: Vec<(usize, usize)> = large.0.items.drain(..idle).collect();
        large.1 -= gone.iter().map(|(size, _)| size).sum::<usize>();
        large.0.low = large.0.items.len();
        unmap.extend(gone.iter().map(|(size, addr)| (*addr, *size)));
    }
    let mut released = 0;
    for (addr, size) in unmap {
        // SAFETY: `addr` starts a mapping of `size` bytes made by `map_huge` (a whole chunk,
        // or a large mapping) that no caller holds: every buffer in it was on a free list,
        // and it was taken off the lists above.
        unsafe { libc::munmap(addr as *mut libc::c_void, size) };
        MAPPED.fetch_sub(size, Relaxed);
        released += size;
    }
    released
}

/// See the module documentation. Install with
/// `#[global_allocator] static A: DmaBufferAlloc = DmaBufferAlloc;`.
pub struct DmaBufferAlloc;

/// Whether `layout` is served from huge pages.
fn ours(layout: &Layout) -> bool {
    layout.size() >= MIN_SIZE && (MIN_ALIGN..=HUGE_PAGE).contains(&layout.align())
}

/// A poisoned lock only means another thread panicked while holding it; the lists it
/// guards are always consistent (every update is a single push or pop).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The size class of a layout of at most [`HUGE_PAGE`] bytes: the smallest class at least
/// its size and its alignment (blocks are aligned to their class size).
fn class_of(layout: &Layout) -> usize {
    let need = layout.size().max(layout.align());
    CLASSES
        .iter()
        .position(|c| need <= *c)
        .unwrap_or(CLASSES.len() - 1)
}

/// A fresh mapping of `size` bytes (a multiple of [`HUGE_PAGE`]) aligned to [`HUGE_PAGE`] and
/// marked for huge pages; null when the system has no memory for it.
fn map_huge(size: usize) -> *mut u8 {
    let Some(span) = size.checked_add(HUGE_PAGE) else {
        return ptr::null_mut();
    };
    // SAFETY: an anonymous private mapping at an address the kernel chooses; no existing
    // memory is affected.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let start = p as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let head = aligned - start;
    let tail = HUGE_PAGE - head;
    // SAFETY: both ranges lie inside the mapping just made and outside the aligned part
    // returned; nothing refers to them.
    unsafe {
        if head > 0 {
            libc::munmap(p, head);
        }
        if tail > 0 {
            libc::munmap((aligned + size) as *mut libc::c_void, tail);
        }
        // Advice only: without it (or with huge pages off) the memory is still usable.
        libc::madvise(aligned as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
    }
    MAPPED.fetch_add(size, Relaxed);
    aligned as *mut u8
}

// SAFETY: every block handed out is a distinct, exclusively owned range of at least
// `layout.size()` bytes aligned to at least `layout.align()` (a block's class is at least
// its size and its alignment, and blocks are aligned to their class size; mappings to
// 2 MiB); blocks return to the free lists only through `dealloc` with the layout they were
// allocated with, which maps to the same class; `trim` unmaps only chunks all of whose
// blocks are on the free lists, and cached large mappings.
unsafe impl GlobalAlloc for DmaBufferAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !ours(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        let size = layout.size();
        if size > HUGE_PAGE {
            let rounded = size.next_multiple_of(HUGE_PAGE);
            let mut large = lock(&LARGE);
            let cached = &mut large.0;
            if let Some(i) = cached.items.iter().position(|(s, _)| *s == rounded) {
                let (_, addr) = cached.remove(i);
                large.1 -= rounded;
                IN_USE.fetch_add(rounded, Relaxed);
                return addr as *mut u8;
            }
            drop(large);
            let p = map_huge(rounded);
            if !p.is_null() {
                IN_USE.fetch_add(rounded, Relaxed);
            }
            return p;
        }
        let class = class_of(&layout);
        let block = CLASSES[class];
        let mut free = lock(&FREE[class]);
        if let Some(addr) = free.pop() {
            IN_USE.fetch_add(block, Relaxed);
            return addr as *mut u8;
        }
        let chunk = map_huge(HUGE_PAGE);
        if chunk.is_null() {
            return chunk;
        }
        // The chunk's other buffers are used next; they count as idle from the next interval.
        free.items
            .extend((1..HUGE_PAGE / block).map(|i| chunk as usize + i * block));
        IN_USE.fetch_add(block, Relaxed);
        chunk
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !ours(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: the caller's guarantees hold for `alloc`.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: `p` is a fresh block of at least `layout.size()` writable bytes (a
            // reused one may hold old data).
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if !ours(&layout) {
            // SAFETY: `p` came from `System.alloc*` with this layout (see `alloc`).
            return unsafe { System.dealloc(p, layout) };
        }
        let size = layout.size();
        if size <= HUGE_PAGE {
            let class = class_of(&layout);
            IN_USE.fetch_sub(CLASSES[class], Relaxed);
            lock(&FREE[class]).items.push(p as usize);
            return;
        }
        let rounded = size.next_multiple_of(HUGE_PAGE);
        IN_USE.fetch_sub(rounded, Relaxed);
        let mut large = lock(&LARGE);
        if large.1 + rounded <= LARGE_CACHE_BYTES {
            large.0.items.push((rounded, p as usize));
            large.1 += rounded;
            return;
        }
        drop(large);
        // SAFETY: `p` is the start of a mapping of `rounded` bytes made by `map_huge`, no
        // longer used by the caller.
        unsafe { libc::munmap(p as *mut libc::c_void, rounded) };
        MAPPED.fetch_sub(rounded, Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !ours(&layout) && !ours(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees; both layouts are the system's.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // SAFETY: the caller's guarantees hold for a fresh allocation of the new layout.
        let q = unsafe { self.alloc(new_layout) };
        if !q.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and distinct;
            // `p` is released with the layout it was allocated with.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    /// The free lists are process-wide: tests that check reuse must not run concurrently.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn large_aligned_buffers_are_aligned_to_their_class_and_reused() {
        let _serial = lock(&SERIAL);
        let a = DmaBufferAlloc;
        let l = layout(1 << 20, 4096);
        // SAFETY: every block is written within its size and freed with its layout.
        unsafe {
            let blocks: Vec<*mut u8> = (0..5).map(|_| a.alloc(l)).collect();
            for (i, b) in blocks.iter().enumerate() {
                assert!(!b.is_null());
                assert_eq!(
                    *b as usize % (1 << 20),
                    0,
                    "a 1 MiB block never straddles a huge page"
                );
                ptr::write_bytes(*b, i as u8, 1 << 20);
            }
            for (i, b) in blocks.iter().enumerate() {
                assert_eq!(*b.add((1 << 20) - 1), i as u8, "blocks do not overlap");
            }
            let freed = blocks[3];
            a.dealloc(freed, l);
            let again = a.alloc(l);
            assert_eq!(again, freed, "a freed block is reused");
            // Zeroed allocations are zero even when the block is reused.
            a.dealloc(again, l);
            let z = a.alloc_zeroed(l);
            assert!(std::slice::from_raw_parts(z, 1 << 20)
                .iter()
                .all(|b| *b == 0));
            a.dealloc(z, l);
            for b in blocks.iter().filter(|b| **b != freed) {
                a.dealloc(*b, l);
            }
        }
    }

    #[test]
    fn sizes_between_classes_and_beyond_a_huge_page() {
        let _serial = lock(&SERIAL);
        let a = DmaBufferAlloc;
        // SAFETY: every block is written within its size and freed with its layout.
        unsafe {
            for size in [
                MIN_SIZE,
                MIN_SIZE + 4096,
                (1 << 20) + 4096,
                HUGE_PAGE,
                HUGE_PAGE + 1,
                10 << 20,
            ] {
                let l = layout(size, 4096);
                let p = a.alloc(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % MIN_SIZE, 0, "{size}");
                ptr::write_bytes(p, 0xA5, size);
                let q = a.realloc(p, l, size * 2);
                assert!(!q.is_null());
                assert_eq!(
                    *q.add(size - 1),
                    0xA5,
                    "realloc keeps the contents ({size})"
                );
                a.dealloc(q, layout(size * 2, 4096));
            }
        }
    }

    /// Whether the page at `addr` is mapped (mincore fails with ENOMEM on unmapped memory).
    fn mapped(addr: *mut u8) -> bool {
        let mut v = [0u8; 1];
        // SAFETY: mincore only inspects the page table for one page-aligned page and writes
        // one byte into `v`.
        unsafe { libc::mincore(addr as *mut libc::c_void, 4096, v.as_mut_ptr()) == 0 }
    }

    #[test]
    fn trim_unmaps_chunks_whose_buffers_all_stayed_free_for_an_interval() {
        let _serial = lock(&SERIAL);
        let a = DmaBufferAlloc;
        // Two trims in a row: whatever earlier tests left free is gone.
        trim();
        trim();
        let base = stats();
        let huge = layout(HUGE_PAGE, 4096);
        let quarter = layout(256 << 10, 4096);
        let big = layout(5 << 20, 4096);
        // SAFETY: every block is written within its size and freed with its layout, and is
        // not touched after it is freed.
        unsafe {
            let huges: Vec<*mut u8> = (0..3).map(|_| a.alloc(huge)).collect();
            // 17 buffers of 256 KiB: two whole chunks of 8 and one of a third chunk.
            let quarters: Vec<*mut u8> = (0..17).map(|_| a.alloc(quarter)).collect();
            let large = a.alloc(big);
            for p in huges.iter().chain(&quarters).chain([&large]) {
                assert!(!p.is_null());
                ptr::write_bytes(*p, 0x5A, 4096);
            }
            let held = stats();
            assert_eq!(
                held.mapped_bytes - base.mapped_bytes,
                3 * HUGE_PAGE + 3 * HUGE_PAGE + (6 << 20)
            );
            assert_eq!(
                held.in_use_bytes - base.in_use_bytes,
                3 * HUGE_PAGE + 17 * (256 << 10) + (6 << 20)
            );
            let kept = quarters[16];
            let kept_chunk = chunk_of(kept as usize);
            assert!(quarters[..16]
                .iter()
                .all(|q| chunk_of(*q as usize) != kept_chunk));
            for p in &huges {
                a.dealloc(*p, huge);
            }
            for q in &quarters[..16] {
                a.dealloc(*q, quarter);
            }
            a.dealloc(large, big);
            assert_eq!(stats().in_use_bytes - base.in_use_bytes, 256 << 10);
            // Freed during this interval: not idle for a whole one yet, so nothing goes.
            assert_eq!(trim(), 0);
            assert!(mapped(huges[0]) && mapped(quarters[0]) && mapped(large));
            assert_eq!(stats().mapped_bytes, held.mapped_bytes);
            // Idle for a whole interval: the huge buffers, the two whole chunks of 256 KiB
            // buffers and the large mapping go; the chunk with a buffer in use stays.
            assert_eq!(trim(), 3 * HUGE_PAGE + 2 * HUGE_PAGE + (6 << 20));
            // (Whether the unmapped ranges are gone is not checked here: another test's
            // thread may map memory at the same addresses at any time.)
            assert!(mapped(kept));
            assert_eq!(*kept, 0x5A, "a buffer in use keeps its contents");
            assert_eq!(stats().mapped_bytes - base.mapped_bytes, HUGE_PAGE);
            // A buffer reused within an interval keeps its chunk: the sibling taken and
            // returned here is not idle at the next trim.
            let sibling = a.alloc(quarter);
            assert_eq!(chunk_of(sibling as usize), kept_chunk);
            a.dealloc(kept, quarter);
            a.dealloc(sibling, quarter);
            assert_eq!(trim(), 0);
            assert!(mapped(kept));
            assert_eq!(trim(), HUGE_PAGE);
            assert_eq!(stats(), base);
            // After a trim, buffers come from fresh mappings and work as before.
            let again = a.alloc(quarter);
            assert!(!again.is_null());
            ptr::write_bytes(again, 1, 256 << 10);
            a.dealloc(again, quarter);
        }
    }

    #[test]
    fn alignment_beyond_the_size_picks_a_larger_class() {
        let _serial = lock(&SERIAL);
        let a = DmaBufferAlloc;
        let l = layout(MIN_SIZE, 1 << 20);
        assert!(ours(&l));
        // SAFETY: the blocks are freed with their layout and not used.
        unsafe {
            let blocks: Vec<*mut u8> = (0..3).map(|_| a.alloc(l)).collect();
            for b in &blocks {
                assert_eq!(*b as usize % (1 << 20), 0);
            }
            for b in blocks {
                a.dealloc(b, l);
            }
        }
    }

    #[test]
    fn small_or_unaligned_requests_go_to_the_system_allocator() {
        let a = DmaBufferAlloc;
        // SAFETY: every block is written within its size and freed with its layout.
        unsafe {
            for l in [layout(4096, 4096), layout(1 << 20, 8), layout(100, 1)] {
                assert!(!ours(&l));
                let p = a.alloc(l);
                assert!(!p.is_null());
                ptr::write_bytes(p, 1, l.size());
                let q = a.realloc(p, l, l.size() * 3);
                assert_eq!(*q, 1);
                a.dealloc(q, layout(l.size() * 3, l.align()));
            }
        }
    }
}
