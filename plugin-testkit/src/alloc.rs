//! A counting global allocator: per-thread live and peak bytes, for the allocation bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting the bytes each thread holds.
///
/// [`conformance_tests!`](crate::conformance_tests) installs it as the `#[global_allocator]`;
/// without it the suite cannot measure the allocation bound and says so.
/// Bytes are counted on the thread that allocates or frees them, so the bound applies to
/// what a plugin allocates on the thread that calls it. An allocation the system itself
/// refuses still aborts the process, as it would without this allocator.
pub struct CountingAllocator;

impl CountingAllocator {
    /// The allocator (a `const fn`, for a `static`).
    pub const fn new() -> Self {
        CountingAllocator
    }

    /// Marks the start of a measurement: returns what the thread holds now and resets its peak.
    pub fn mark() -> isize {
        let live = LIVE.try_with(Cell::get).unwrap_or(0);
        let _ = PEAK.try_with(|peak| peak.set(live));
        live
    }

    /// The most bytes the thread has held at once since [`mark`](Self::mark) returned `base`,
    /// above `base`.
    pub fn peak_since(base: isize) -> u64 {
        let peak = PEAK.try_with(Cell::get).unwrap_or(base);
        peak.saturating_sub(base).max(0) as u64
    }
}

impl Default for CountingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

fn record(delta: isize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

/// Whether a [`CountingAllocator`] is the global allocator of this process.
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// The most bytes the current thread has held at once since it started.
pub(crate) fn thread_peak() -> u64 {
    PEAK.try_with(Cell::get).unwrap_or(0).max(0) as u64
}
