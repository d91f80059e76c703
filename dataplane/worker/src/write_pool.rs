//! Segments allocated ahead of writes, so a write does not wait for the
//! kernel to find it pages.
//!
//! A fresh memfd page costs a write more than the copy into it (about
//! 1.5 us per 4 KiB page on the reference host, bench/RESULTS.md
//! "Writes"): the allocation, and for a mapping the fault and the zeroing.
//! The pool keeps a few block-size memfds whose pages `fallocate(2)` has
//! allocated ahead (unmapped: see [`SegmentWriter::preallocated`]),
//! refilled on a thread of its own at the lowest priority within a byte
//! budget (`[worker] write_pool_bytes`), and a write session takes one per
//! block, which the worker (TCP) or the client (short-circuit) fills with
//! `pwrite(2)`; it falls back to a fresh memfd when
//! the pool is empty or holds another size. A pooled memfd is used for
//! one block only: once sealed it is that block's, and it is freed with
//! it, never refilled (a sealed memfd cannot be unsealed).
//!
//! At most 16 segments are kept, whatever the budget.
//!
//! The pool holds memory outside the memory tier's capacity (up to the
//! budget), so it never evicts cached blocks to fill itself; a session
//! that takes a segment reserves its bytes in the tier as before. It starts
//! filling at the first write that asks, so a worker that only reads
//! allocates nothing.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};

use crate::segment::SegmentWriter;

const PAGE: u64 = 4096;
/// Segments in stock at most, whatever the budget: with small blocks a
/// large budget would otherwise hold thousands of descriptors.
const MAX_SEGMENTS: usize = 16;

/// The pool a [`crate::store::BlockStore`] owns; dropping it stops the
/// refill thread and frees what it holds.
pub struct WritePool {
    inner: Arc<Inner>,
    /// The refill thread, once started (detached at drop).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes the refill thread (a segment taken, a size asked, stop) and
    /// whoever waits for stock ([`WritePool::wait_stocked`]).
    changed: Condvar,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

#[derive(Default)]
struct State {
    budget: u64,
    /// Page-rounded size of the segments in stock; 0 before any write.
    size: u64,
    stock: Vec<SegmentWriter>,
    stop: bool,
}

impl State {
    fn wants_more(&self) -> bool {
        self.size > 0
            && self.stock.len() < MAX_SEGMENTS
            && (self.stock.len() as u64 + 1) * self.size <= self.budget
    }
}

impl Default for WritePool {
    fn default() -> Self {
        Self::new(0)
    }
}

impl WritePool {
    /// A pool that keeps up to `budget` bytes of segments (0: none).
    pub fn new(budget: u64) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                budget,
                ..Default::default()
            }),
            changed: Condvar::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        });
        Self {
            inner,
            thread: Mutex::new(None),
        }
    }

    /// Changes the budget (worker start); stock above it is freed.
    pub fn set_budget(&self, budget: u64) {
        let mut st = self.lock();
        st.budget = budget;
        while st.size > 0 && st.stock.len() as u64 * st.size > budget {
            st.stock.pop();
        }
        self.inner.changed.notify_all();
    }

    /// A segment of `capacity` bytes (page-rounded) whose pages are
    /// allocated, or `None` (no budget, none in stock, or stock
    /// of another size: the pool then refills at this size).
    pub fn take(&self, capacity: u64) -> Option<SegmentWriter> {
        let size = capacity.max(1).div_ceil(PAGE) * PAGE;
        let mut st = self.lock();
        if st.budget < size {
            return None;
        }
        let got = if st.size == size {
            st.stock.pop()
        } else {
            None
        };
        if st.size != size {
            // The sizes asked for changed (another block size): the old
            // stock goes, the new size is filled from now on.
            st.size = size;
            st.stock.clear();
        }
        let counter = if got.is_some() {
            &self.inner.hits
        } else {
            &self.inner.misses
        };
        counter.fetch_add(1, Relaxed);
        drop(st);
        self.start();
        self.inner.changed.notify_all();
        got.map(|w| w.with_capacity(capacity))
    }

    /// Bytes of segments in stock.
    pub fn stocked_bytes(&self) -> u64 {
        let st = self.lock();
        st.stock.len() as u64 * st.size
    }

    /// Takes served from stock, and takes that found none.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.inner.hits.load(Relaxed),
            self.inner.misses.load(Relaxed),
        )
    }

    /// Blocks until the stock is as full as the budget allows (tests and
    /// benchmarks: a write measured after this finds the pool full).
    pub fn wait_stocked(&self) {
        let started = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if started.is_none() {
            return; // Nothing would ever fill it.
        }
        drop(started);
        let mut st = self.lock();
        while st.wants_more() && !st.stop {
            st = self
                .inner
                .changed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the refill thread once.
    fn start(&self) {
        let mut t = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_some() {
            return;
        }
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("eddy-write-pool".into())
            .spawn(move || refill(&inner));
        match spawned {
            Ok(h) => *t = Some(h),
            // Writes still work, each allocating its own pages.
            Err(e) => tracing::warn!("write pool: no refill thread: {e}"),
        }
    }
}

impl Drop for WritePool {
    /// Stops the refill thread without waiting for it (at nice 19 on a busy
    /// host its last allocation can take a while): it ends after that one,
    /// and the stock is freed with it.
    fn drop(&mut self) {
        self.lock().stop = true;
        self.inner.changed.notify_all();
    }
}

/// The refill thread: allocates one segment at a time, outside the lock,
/// while the stock is below the budget.
fn refill(inner: &Inner) {
    // The lowest priority: the pool fills from idle CPU and yields it to
    // the writes it serves (on a busy host it refills slower, never
    // slowing them).
    let me = rustix::process::Pid::from_raw(rustix::thread::gettid().as_raw_nonzero().get());
    if let Err(e) = rustix::process::setpriority_process(me, 19) {
        tracing::debug!("write pool: cannot lower the refill thread's priority: {e}");
    }
    let lock = || inner.state.lock().unwrap_or_else(|p| p.into_inner());
    let mut st = lock();
    loop {
        while !st.stop && !st.wants_more() {
            st = inner.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.stop {
            return;
        }
        let size = st.size;
        drop(st);
        let made = SegmentWriter::preallocated("eddy-write-pooled", size);
        st = lock();
        match made {
            // A size change meanwhile makes this one useless: dropped.
            Ok(f) if st.size == size => st.stock.push(f),
            Ok(_) => {}
            Err(e) => {
                // Out of memory or memfd limits: the pool stops (writes
                // allocate their own pages) until the budget is set again.
                tracing::warn!("write pool: cannot allocate a {size}-byte segment: {e}");
                st.budget = 0;
            }
        }
        inner.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_take_misses_and_starts_the_stock_within_the_budget() {
        let pool = WritePool::new(3 << 20);
        assert!(pool.take(1 << 20).is_none(), "nothing before a write asks");
        pool.wait_stocked();
        assert_eq!(pool.stocked_bytes(), 3 << 20, "as many as the budget holds");
        let w = pool.take(1 << 20).expect("served from stock");
        assert!(!w.is_mapped());
        // Its pages are allocated already.
        let st = rustix::fs::fstat(w.fd()).unwrap();
        assert_eq!((st.st_size, st.st_blocks as u64 * 512), (1 << 20, 1 << 20));
        assert_eq!(pool.hits_and_misses(), (1, 1));
        pool.wait_stocked();
        assert_eq!(pool.stocked_bytes(), 3 << 20, "refilled");
    }

    #[test]
    fn another_size_drops_the_stock_and_fills_at_the_new_size() {
        let pool = WritePool::new(4 << 20);
        pool.take(1 << 20);
        pool.wait_stocked();
        assert!(
            pool.take(2 << 20).is_none(),
            "no segment of the new size yet"
        );
        pool.wait_stocked();
        assert_eq!(pool.stocked_bytes(), 4 << 20);
        let w = pool
            .take((2 << 20) - 100)
            .expect("page-rounded to the same size");
        assert_eq!(rustix::fs::fstat(w.fd()).unwrap().st_size, 2 << 20);
    }

    #[test]
    fn no_budget_no_segments_and_a_lower_budget_frees_stock() {
        let off = WritePool::new(0);
        assert!(off.take(4096).is_none());
        assert_eq!(
            off.hits_and_misses(),
            (0, 0),
            "a pool that is off counts nothing"
        );
        assert!(off.thread.lock().unwrap().is_none(), "and starts no thread");
        let small = WritePool::new(1 << 20);
        assert!(small.take(2 << 20).is_none(), "a segment above the budget");

        let pool = WritePool::new(4 << 20);
        pool.take(1 << 20);
        pool.wait_stocked();
        pool.set_budget(1 << 20);
        assert_eq!(pool.stocked_bytes(), 1 << 20);
    }

    #[test]
    fn a_pooled_segment_seals_like_a_fresh_one() {
        let pool = WritePool::new(1 << 20);
        pool.take(1 << 20);
        pool.wait_stocked();
        // A last block, shorter than the block size.
        let mut w = pool.take(1 << 20).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        w.write_at(0, &data).unwrap();
        let seg = w.seal(10_000).unwrap();
        assert_eq!(seg.as_slice(), &data[..]);
        // Cut to the page-rounded length: the rest of the pages are freed.
        let st = rustix::fs::fstat(seg.fd()).unwrap();
        assert_eq!(st.st_size, 12_288);
    }
}
