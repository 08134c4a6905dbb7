//! How long the log's disk writes and fsyncs take, per shard (thread): histograms that the
//! broker copies into `/metrics` once a second. Kept by storage because only it sees the
//! writes; thread-local because a shard is a thread and nothing here is shared.

use std::cell::RefCell;
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (100 µs to 10 s); the last bucket, +Inf,
/// is implicit. The broker's request-time histograms use the same bounds.
pub const TIME_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Counts per bucket of [`TIME_BUCKETS_US`] (not cumulative; the last one is +Inf) and the
/// sum of everything recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeCounts {
    pub buckets: [u64; TIME_BUCKETS_US.len() + 1],
    pub sum_us: u64,
}

impl TimeCounts {
    /// The bucket `took` falls in (the first whose bound is at least `took`).
    pub fn bucket_of(took: Duration) -> (usize, u64) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        (TIME_BUCKETS_US.partition_point(|&le| le < us), us)
    }

    pub fn record(&mut self, took: Duration) {
        let (i, us) = Self::bucket_of(took);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

thread_local! {
    static WRITES: RefCell<TimeCounts> = RefCell::new(TimeCounts::default());
    static FSYNCS: RefCell<TimeCounts> = RefCell::new(TimeCounts::default());
}

/// A write group of a partition log took `took` from submission to completion.
pub(crate) fn note_write(took: Duration) {
    WRITES.with(|w| w.borrow_mut().record(took));
}

/// An fdatasync for durability (acks=all, `flush.messages`/`flush.ms`) took `took`.
pub(crate) fn note_fsync(took: Duration) {
    FSYNCS.with(|f| f.borrow_mut().record(took));
}

/// This shard's write times so far.
pub fn shard_write_times() -> TimeCounts {
    WRITES.with(|w| *w.borrow())
}

/// This shard's durability fsync times so far.
pub fn shard_fsync_times() -> TimeCounts {
    FSYNCS.with(|f| *f.borrow())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds() {
        let mut t = TimeCounts::default();
        t.record(Duration::from_micros(0));
        t.record(Duration::from_micros(100));
        t.record(Duration::from_micros(101));
        t.record(Duration::from_secs(3600));
        assert_eq!(t.buckets[0], 2);
        assert_eq!(t.buckets[1], 1);
        assert_eq!(t.buckets[TIME_BUCKETS_US.len()], 1);
        assert_eq!(t.count(), 4);
        assert_eq!(t.sum_us, 201 + 3_600_000_000);
    }
}
