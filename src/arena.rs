//! The process's allocator: small blocks from one fixed region, bumped and never reused.
//!
//! A delivery is one short process: it allocates a few hundred small blocks (the command
//! line, the configuration, SQL text, driver state), frees most of them, and exits. musl's
//! allocator, the one the installed static build has, pays for reuse it will never need:
//! 200–250 instructions per call, and `mmap`/`munmap` calls as its groups come and go
//! (measured: a fifth of a 2 KiB SQLite delivery's user-space instructions, and 35 of its
//! 48 memory-mapping calls, SQLite's blocks included: `backend::sqlite::memory` sends those
//! here too). Here a block of up to `MAX_BLOCK` bytes is carved from a static
//! region by moving an offset; freeing it only moves the offset back when it was the last
//! block carved (a temporary), and growing the last block extends it in place. Larger
//! blocks, and everything once the region is used up, go to the system allocator, so a
//! long or unusual delivery costs at most `REGION` bytes more than before. The region is
//! zero-initialised static memory: pages never touched are never resident.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size of the region. A 2 KiB delivery into SQLite uses at most 72 KiB of it, a 20 MiB one
/// 271 KiB.
pub const REGION: usize = 512 * 1024;
/// Largest block taken from the region: bigger ones are buffers that the system allocator
/// maps and unmaps on its own anyway.
pub const MAX_BLOCK: usize = 16 * 1024;

/// A bump allocator over `N` bytes of its own, falling back to the system allocator.
#[repr(C, align(64))]
pub struct Arena<const N: usize> {
    region: UnsafeCell<[u8; N]>,
    /// Offset of the first free byte.
    next: AtomicUsize,
    /// The highest `next` has been (for `--debug`).
    peak: AtomicUsize,
}

// SAFETY: the region is only handed out in disjoint blocks, whose bounds `next` (atomic)
// decides.
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    pub const fn new() -> Arena<N> {
        Arena {
            region: UnsafeCell::new([0; N]),
            next: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn base(&self) -> usize {
        self.region.get() as usize
    }

    /// The block's offset in the region, if it is from the region.
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        (ptr as usize).checked_sub(self.base()).filter(|&o| o < N)
    }

    /// Bytes in use: carved, less the temporaries given back.
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    /// The most bytes of the region ever in use at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn carve(&self, layout: Layout) -> Option<*mut u8> {
        if layout.size() > MAX_BLOCK {
            return None;
        }
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start = (self.base() + next).next_multiple_of(layout.align()) - self.base();
            let end = start.checked_add(layout.size()).filter(|&end| end <= N)?;
            match self
                .next
                .compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(end, Ordering::Relaxed);
                    // SAFETY: `start + size <= N`: inside the region.
                    return Some(unsafe { self.region.get().cast::<u8>().add(start) });
                }
                Err(now) => next = now,
            }
        }
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Arena::new()
    }
}

// SAFETY: blocks from the region never overlap (each is carved past `next`, which only moves
// back over a block being freed or resized, the last one carved); the others are the system
// allocator's.
unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.carve(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout, as the contract requires.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(start) = self.offset(ptr) else {
            // SAFETY: not from the region, so from the system allocator, with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        };
        // The last block carved: give its bytes back (if another thread carved since, the
        // exchange fails and they are simply not reused).
        let end = start + layout.size();
        let _ = self
            .next
            .compare_exchange(end, start, Ordering::Relaxed, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let Some(start) = self.offset(ptr) {
            if new_size <= layout.size() {
                // Shrinking keeps the block (its tail is given back only if it was the last).
                let _ = self.next.compare_exchange(
                    start + layout.size(),
                    start + new_size,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                return ptr;
            }
            // The last block carved grows where it is, while it fits.
            let (end, new_end) = (start + layout.size(), start + new_size);
            if new_size <= MAX_BLOCK
                && new_end <= N
                && self
                    .next
                    .compare_exchange(end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.peak.fetch_max(new_end, Ordering::Relaxed);
                return ptr;
            }
        } else if new_size > MAX_BLOCK {
            // SAFETY: a system block stays one: the caller's pointer, layout and size.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (the caller promises
        // it does not overflow); both blocks are live while the bytes are copied.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_from_the_region() {
        let arena = Box::new(Arena::<4096>::new());
        let mut blocks = Vec::new();
        for (size, align) in [(1, 1), (3, 2), (24, 8), (7, 64), (100, 16), (1, 1)] {
            // SAFETY: non-zero sizes.
            let p = unsafe { arena.alloc(layout(size, align)) };
            assert_eq!(p as usize % align, 0);
            assert!(arena.offset(p).is_some());
            // SAFETY: the block is `size` bytes.
            unsafe { std::ptr::write_bytes(p, 0xa5, size) };
            blocks.push((p as usize, size));
        }
        blocks.sort();
        for pair in blocks.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{blocks:?}");
        }
    }

    #[test]
    fn the_last_block_is_given_back_and_grows_in_place() {
        let arena = Box::new(Arena::<4096>::new());
        // SAFETY: valid layouts; each block is used within its size.
        unsafe {
            let a = arena.alloc(layout(16, 8));
            let b = arena.alloc(layout(32, 8));
            let used = arena.used();
            arena.dealloc(b, layout(32, 8));
            assert_eq!(arena.used(), used - 32);
            assert_eq!(arena.peak(), used);
            std::ptr::write_bytes(a, 7, 16);
            let grown = arena.realloc(a, layout(16, 8), 200);
            assert_eq!(grown, a, "the last block grows where it is");
            assert_eq!(arena.peak(), arena.used());
            assert_eq!(*grown.add(15), 7);
            let c = arena.alloc(layout(8, 8));
            let moved = arena.realloc(grown, layout(200, 8), 400);
            assert_ne!(moved, grown, "a block that is not the last moves");
            assert!((0..200).all(|i| i >= 16 || *moved.add(i) == 7));
            arena.dealloc(c, layout(8, 8));
            arena.dealloc(moved, layout(400, 8));
        }
    }

    #[test]
    fn large_blocks_and_overflow_go_to_the_system_allocator() {
        let arena = Box::new(Arena::<4096>::new());
        // SAFETY: valid layouts; the blocks are used within their sizes and freed once.
        unsafe {
            let big = arena.alloc(layout(MAX_BLOCK + 1, 8));
            assert!(arena.offset(big).is_none());
            let fill = arena.alloc(layout(4000, 8));
            assert!(arena.offset(fill).is_some());
            let over = arena.alloc(layout(200, 8));
            assert!(arena.offset(over).is_none(), "the region is full");
            // A region block grown past it moves to the system allocator, bytes and all.
            std::ptr::write_bytes(fill, 3, 4000);
            let grown = arena.realloc(fill, layout(4000, 8), 3 * MAX_BLOCK);
            assert!(arena.offset(grown).is_none());
            assert_eq!(*grown.add(3999), 3);
            arena.dealloc(big, layout(MAX_BLOCK + 1, 8));
            arena.dealloc(over, layout(200, 8));
            arena.dealloc(grown, layout(3 * MAX_BLOCK, 8));
        }
    }

    #[test]
    fn threads_carve_disjoint_blocks() {
        static ARENA: Arena<{ 64 * 1024 }> = Arena::new();
        let blocks: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        // SAFETY: valid layouts; the blocks are never freed here.
                        (0..200)
                            .map(|_| unsafe { ARENA.alloc(layout(48, 16)) } as usize)
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<usize> = blocks.concat();
        all.sort();
        assert!(
            all.windows(2).all(|w| w[1] - w[0] >= 48),
            "overlapping blocks"
        );
    }
}
