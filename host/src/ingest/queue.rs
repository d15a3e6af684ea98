//! Admission to the bounded pipeline queue.
//!
//! The queue is bounded by events, not batches: a batch reserves its slots
//! before it is journaled and releases them once its worker has handed it
//! to every store, so the events in memory between the journal and the
//! stores never exceed the capacity (plus one batch admitted into an empty
//! queue); each store bounds what it holds after that. Above
//! the shedding threshold (90 % by default) HTTP callers get 429 at once;
//! MQTT and replay wait instead, which pushes back on the broker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::metrics::metrics;

pub struct Admission {
    capacity: usize,
    shed_at: usize,
    depth: AtomicUsize,
}

impl Admission {
    pub fn new(capacity: usize) -> Admission {
        let capacity = capacity.max(1);
        Admission {
            capacity,
            shed_at: (capacity * 9 / 10).max(1),
            depth: AtomicUsize::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }

    /// Reserves `n` slots unless that would cross the shedding threshold.
    /// An empty queue always admits, so a batch larger than the threshold
    /// cannot be refused forever.
    pub fn try_reserve(&self, n: usize) -> bool {
        let mut cur = self.depth.load(Ordering::Acquire);
        loop {
            if cur > 0 && cur + n > self.shed_at {
                return false;
            }
            match self.depth.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    metrics().queue_depth.set((cur + n) as i64);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Reserves `n` slots, waiting (asynchronously) for room.
    pub async fn reserve(&self, n: usize) {
        let mut wait = Duration::from_millis(1);
        while !self.try_reserve(n) {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    }

    /// Reserves `n` slots, blocking the thread for room.
    pub fn reserve_blocking(&self, n: usize) {
        let mut wait = Duration::from_millis(1);
        while !self.try_reserve(n) {
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    }

    /// Returns `n` slots.
    pub fn release(&self, n: usize) {
        let prev = self.depth.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(prev >= n);
        metrics().queue_depth.set(prev.saturating_sub(n) as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_above_ninety_percent() {
        let a = Admission::new(100);
        assert!(a.try_reserve(95), "an empty queue admits any batch");
        assert!(!a.try_reserve(1));
        a.release(95);
        assert!(a.try_reserve(90));
        assert!(!a.try_reserve(1));
        a.release(10);
        assert!(a.try_reserve(10));
        assert_eq!(a.depth(), 90);
    }
}
