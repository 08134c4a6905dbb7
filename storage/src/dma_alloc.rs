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
//! goes to a free list of its size, and chunks are kept for reuse (the process's peak of such
//! buffers, which the read-ahead and write budgets bound). Larger sizes get mappings of their
//! own, rounded up to 2 MiB; up to [`LARGE_CACHE_BYTES`] of freed ones are kept for reuse.
//!
//! Where transparent huge pages are off (`/sys/kernel/mm/transparent_hugepage/enabled` =
//! `never`) the mappings get 4 KiB pages, and I/O behaves as with the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
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

/// Free buffers of each size class (addresses).
static FREE: [Mutex<Vec<usize>>; CLASSES.len()] = [const { Mutex::new(Vec::new()) }; CLASSES.len()];
/// Freed large mappings: (rounded size, address), and their total size.
static LARGE: Mutex<(Vec<(usize, usize)>, usize)> = Mutex::new((Vec::new(), 0));

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

/// The size class of a `size` of at most [`HUGE_PAGE`].
fn class_of(size: usize) -> usize {
    CLASSES
        .iter()
        .position(|c| size <= *c)
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
    aligned as *mut u8
}

// SAFETY: every block handed out is a distinct, exclusively owned range of at least
// `layout.size()` bytes aligned to at least `layout.align()` (blocks are aligned to their
// class size, itself >= 512 KiB; mappings to 2 MiB); blocks return to the free lists only
// through `dealloc` with the layout they were allocated with, which maps to the same class.
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
            if let Some(i) = large.0.iter().position(|(s, _)| *s == rounded) {
                let (_, addr) = large.0.swap_remove(i);
                large.1 -= rounded;
                return addr as *mut u8;
            }
            drop(large);
            return map_huge(rounded);
        }
        let class = class_of(size);
        let mut free = lock(&FREE[class]);
        if let Some(addr) = free.pop() {
            return addr as *mut u8;
        }
        let chunk = map_huge(HUGE_PAGE);
        if chunk.is_null() {
            return chunk;
        }
        let block = CLASSES[class];
        free.extend((1..HUGE_PAGE / block).map(|i| chunk as usize + i * block));
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
            lock(&FREE[class_of(size)]).push(p as usize);
            return;
        }
        let rounded = size.next_multiple_of(HUGE_PAGE);
        let mut large = lock(&LARGE);
        if large.1 + rounded <= LARGE_CACHE_BYTES {
            large.0.push((rounded, p as usize));
            large.1 += rounded;
            return;
        }
        drop(large);
        // SAFETY: `p` is the start of a mapping of `rounded` bytes made by `map_huge`, no
        // longer used by the caller.
        unsafe { libc::munmap(p as *mut libc::c_void, rounded) };
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
