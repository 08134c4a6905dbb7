//! Which shard a connection should be served on: the one that owns the partitions it uses.
//!
//! A connection is accepted by whichever shard the kernel picks (SO_REUSEPORT). When its
//! produce and fetch requests then go to partitions another shard owns, every request costs a
//! cross-shard call, a wake-up on each side. The handler records the owners of each data
//! request's partitions here; once a long enough run of requests went to one other shard
//! only, the connection asks to be moved there (see `conn::Handoff`). Requests that use
//! the current shard, or several shards, reset the run, so a connection whose partitions are
//! spread over shards stays where it is. Each move doubles the run needed for the next one, so
//! a client that alternates between partitions of different shards moves a few times and
//! then settles.

use std::cell::Cell;

/// Data requests in a row that must go to one other shard before the first move.
pub const MOVE_AFTER_REQUESTS: u32 = 16;

/// Per-connection record of where its data requests went.
#[derive(Debug)]
pub struct Affinity {
    /// The shard serving the connection now.
    home: usize,
    /// The shard the current run of requests went to, and the run's length.
    run_shard: Cell<usize>,
    run: Cell<u32>,
    /// Moves (and declined move attempts) so far, over the connection's whole life.
    moves: u32,
    /// Set once the run is long enough: the shard to move to.
    target: Cell<Option<usize>>,
}

impl Affinity {
    /// A connection served by `home` that has moved `moves` times before.
    pub fn new(home: usize, moves: u32) -> Affinity {
        Affinity {
            home,
            run_shard: Cell::new(home),
            run: Cell::new(0),
            moves,
            target: Cell::new(None),
        }
    }

    /// Records one data request (Produce, Fetch) whose partitions are owned by `owners` (one
    /// entry per partition, in any order). A request without partitions changes nothing.
    pub fn note_owners(&self, owners: impl IntoIterator<Item = usize>) {
        let mut owners = owners.into_iter();
        let Some(first) = owners.next() else {
            return;
        };
        if first == self.home || owners.any(|s| s != first) {
            self.run.set(0);
            return;
        }
        let run = if self.run_shard.get() == first {
            self.run.get().saturating_add(1)
        } else {
            self.run_shard.set(first);
            1
        };
        self.run.set(run);
        if run >= self.run_needed() {
            self.target.set(Some(first));
        }
    }

    /// Requests in a row needed for the next move: doubles with every move.
    pub fn run_needed(&self) -> u32 {
        MOVE_AFTER_REQUESTS.saturating_mul(1u32 << self.moves.min(31))
    }

    /// The shard this connection should move to, once its requests have shown one.
    pub fn wanted_move(&self) -> Option<usize> {
        self.target.get()
    }

    /// Moves so far.
    pub fn moves(&self) -> u32 {
        self.moves
    }

    /// The shard serving the connection.
    pub fn home(&self) -> usize {
        self.home
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &Affinity, owners: &[usize], times: u32) {
        for _ in 0..times {
            a.note_owners(owners.iter().copied());
        }
    }

    #[test]
    fn a_run_to_one_other_shard_asks_for_a_move() {
        let a = Affinity::new(0, 0);
        run(&a, &[1, 1], MOVE_AFTER_REQUESTS - 1);
        assert_eq!(a.wanted_move(), None);
        run(&a, &[1], 1);
        assert_eq!(a.wanted_move(), Some(1));
    }

    #[test]
    fn local_or_mixed_requests_reset_the_run() {
        let a = Affinity::new(0, 0);
        run(&a, &[2], MOVE_AFTER_REQUESTS - 1);
        run(&a, &[0], 1);
        run(&a, &[2], MOVE_AFTER_REQUESTS - 1);
        run(&a, &[2, 0], 1);
        run(&a, &[2], MOVE_AFTER_REQUESTS - 1);
        run(&a, &[1], 1);
        run(&a, &[2], MOVE_AFTER_REQUESTS - 1);
        assert_eq!(a.wanted_move(), None);
        // Requests without partitions are neutral.
        run(&a, &[], 5);
        run(&a, &[2], 1);
        assert_eq!(a.wanted_move(), Some(2));
    }

    #[test]
    fn each_move_doubles_the_run_needed() {
        let a = Affinity::new(1, 2);
        run(&a, &[0], 4 * MOVE_AFTER_REQUESTS - 1);
        assert_eq!(a.wanted_move(), None);
        run(&a, &[0], 1);
        assert_eq!(a.wanted_move(), Some(0));
        assert_eq!(Affinity::new(0, 100).run_needed(), u32::MAX);
    }
}
