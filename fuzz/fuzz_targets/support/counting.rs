//! The test kit's counting allocator ([`oemesh_testkit::counting`]) for the
//! IKE fuzz targets (issue 11): the peak bytes a call holds at once, so that a
//! target can assert an allocation bound for every input, not only that
//! nothing panics. A target includes it with
//! `#[path = "support/counting.rs"] mod counting;`.

use oemesh_testkit::counting::{Counting, measure};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f`; returns its result and the most bytes that were live at once
/// during it, above those live before it.
pub fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (out, peak, _) = measure(f);
    (out, peak)
}

/// Aborts (libFuzzer reports the input as a crash) when `peak` exceeds `bound`.
pub fn assert_within(what: &str, len: usize, peak: usize, bound: usize) {
    if peak > bound {
        eprintln!(
            "allocation bound exceeded: {what} of a {len}-byte input held {peak} bytes at once (bound {bound})"
        );
        std::process::abort();
    }
}
