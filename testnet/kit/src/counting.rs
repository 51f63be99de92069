//! A counting global allocator for measuring what one call allocates: the
//! bytes live and their peak, per thread (so that tests running in parallel
//! threads each measure only their own calls). A test binary or fuzz target
//! installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: oemesh_testkit::counting::Counting = oemesh_testkit::counting::Counting;
//! ```
//!
//! and measures with [`measure`]. Without the allocator installed every
//! figure is zero. Used by `core/tests/ike_bounds.rs` and the IKE fuzz
//! targets (the allocation bound of issue 11).
#![allow(
    unsafe_code,
    reason = "GlobalAlloc is an unsafe trait; every call is forwarded unchanged to System"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator and counts, per thread, the bytes live
/// and their peak.
#[derive(Debug)]
pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: usize) {
    let bytes = isize::try_from(bytes).unwrap_or(isize::MAX);
    let _ = LIVE.try_with(|l| {
        let now = l.get().saturating_add(bytes);
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn sub(bytes: usize) {
    let bytes = isize::try_from(bytes).unwrap_or(isize::MAX);
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(bytes)));
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the contract; the counting touches only thread-locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as a move (old and new block live at once), as when the
        // allocator cannot grow in place: the worst case.
        add(new_size);
        sub(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The bytes live on this thread now (for measuring what a sequence keeps).
pub fn live() -> isize {
    LIVE.with(Cell::get)
}

/// Runs `f`; returns its result, the most bytes that were live at once during
/// it above those live before it, and the bytes still live after it above
/// those before (negative: it freed more than it kept).
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, isize) {
    let before = live();
    PEAK.with(|p| p.set(before));
    let out = f();
    let peak = PEAK.with(Cell::get) - before;
    let kept = live() - before;
    (out, usize::try_from(peak).unwrap_or(0), kept)
}
