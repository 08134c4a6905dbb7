//! The leader side of one partition's replication, as an I/O-free state machine: the
//! followers' progress, the high watermark, and the ISR changes the leader asks the
//! controller for. [`LeaderState::step`] takes an [`Event`] and returns [`Actions`]; the
//! shard shell (`shard::Shard`) feeds it fetches, writes, ticks and metadata, wakes waiters
//! when the high watermark moves, and sends the proposed ISR to the controller.
//!
//! Invariants:
//! - The high watermark never goes back while this leadership lasts, and never passes the
//!   leader's own log end, nor the log end of any member of the *maximal* ISR (the committed
//!   ISR plus a pending expansion: Kafka's rule, so an expansion in flight cannot let the
//!   high watermark run ahead of the new member).
//! - With fewer committed ISR members than `min.insync.replicas`, the high watermark does not
//!   move (KIP-966).
//! - At most one ISR change is in flight; it carries the partition epoch it was decided on,
//!   so the controller refuses it when anything changed meanwhile (a stale leader's change).
//! - A follower joins the ISR only once its log end reaches both the high watermark and the
//!   start of this leader's epoch; it leaves it when it has not caught up with the leader's
//!   log end for `replica.lag.time.max.ms`.

use std::collections::BTreeMap;

/// One follower's progress as its fetches report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follower {
    /// Its log end offset: the offset it fetched from last (-1 until it fetched in this
    /// leadership).
    pub log_end: i64,
    /// When it last had everything the leader had (ms).
    pub caught_up_ms: i64,
    /// The leader's log end and the time at its previous fetch (Kafka's rule: a fetch
    /// reaching what the leader had at the previous fetch means caught up as of then).
    prev_fetch_leader_end: i64,
    prev_fetch_ms: i64,
}

/// What happened to the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Follower `replica` fetched from `fetch_offset` (so it holds everything before it).
    FollowerFetch {
        replica: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    },
    /// The leader's own log end moved (its appends were written).
    LeaderWrite { leader_end: i64 },
    /// Time passed: check for followers that fell behind.
    Tick { leader_end: i64, now_ms: i64 },
    /// The metadata now says: this ISR, at this partition epoch (same leader epoch).
    IsrChanged {
        isr: Vec<i32>,
        partition_epoch: i32,
        leader_end: i64,
        now_ms: i64,
    },
    /// The controller refused (or never answered) the pending ISR change.
    IsrChangeFailed,
}

/// What the shell must do after a step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Actions {
    /// The high watermark moved to this offset: wake waiters, checkpoint later.
    pub high_watermark: Option<i64>,
    /// Ask the controller for this ISR (AlterPartition), at `partition_epoch`.
    pub propose_isr: Option<Vec<i32>>,
}

/// The leader's replication state (see the module docs).
#[derive(Debug, Clone)]
pub struct LeaderState {
    me: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    pending: Option<Vec<i32>>,
    followers: BTreeMap<i32, Follower>,
    high_watermark: i64,
    /// The leader's log end when this epoch started.
    epoch_start_offset: i64,
    min_isr: usize,
    lag_max_ms: i64,
}

impl LeaderState {
    /// A new leadership: `isr` and epochs from the metadata, the high watermark carried over
    /// (a checkpoint, or what this replica learned as a follower), capped at the log end.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        high_watermark: i64,
        leader_end: i64,
        min_isr: usize,
        lag_max_ms: i64,
        now_ms: i64,
    ) -> LeaderState {
        let followers = replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                (
                    *r,
                    Follower {
                        log_end: -1,
                        // ISR members get the full lag allowance from the start (Kafka does the
                        // same when a leader is elected).
                        caught_up_ms: now_ms,
                        prev_fetch_leader_end: -1,
                        prev_fetch_ms: now_ms,
                    },
                )
            })
            .collect();
        let mut state = LeaderState {
            me,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            pending: None,
            followers,
            high_watermark: high_watermark.clamp(0, leader_end.max(0)),
            epoch_start_offset: leader_end,
            min_isr: min_isr.max(1),
            lag_max_ms,
        };
        state.advance(leader_end);
        state
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    /// Whether an acks=all produce may append now (Kafka checks the committed ISR against
    /// `min.insync.replicas` before appending).
    pub fn enough_replicas(&self) -> bool {
        self.isr.len() >= self.min_isr
    }

    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }

    /// How far each follower is behind `leader_end` (records), for `/metrics`.
    pub fn follower_lags(&self, leader_end: i64) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.followers
            .iter()
            .map(move |(id, f)| (*id, (leader_end - f.log_end.max(0)).max(0)))
    }

    /// The replica set changed (a reassignment): new replicas start with no progress and the
    /// full lag allowance; removed ones are forgotten.
    pub fn set_replicas(&mut self, replicas: Vec<i32>, now_ms: i64) {
        self.followers.retain(|r, _| replicas.contains(r));
        for r in &replicas {
            if *r != self.me && !self.followers.contains_key(r) {
                self.followers.insert(
                    *r,
                    Follower {
                        log_end: -1,
                        caught_up_ms: now_ms,
                        prev_fetch_leader_end: -1,
                        prev_fetch_ms: now_ms,
                    },
                );
            }
        }
        self.replicas = replicas;
    }

    pub fn set_limits(&mut self, min_isr: usize, lag_max_ms: i64) {
        self.min_isr = min_isr.max(1);
        self.lag_max_ms = lag_max_ms;
    }

    pub fn step(&mut self, event: Event) -> Actions {
        let before = self.high_watermark;
        let mut actions = Actions::default();
        match event {
            Event::FollowerFetch {
                replica,
                fetch_offset,
                leader_end,
                now_ms,
            } => {
                if let Some(f) = self.followers.get_mut(&replica) {
                    let offset = fetch_offset.min(leader_end);
                    if offset >= leader_end {
                        f.caught_up_ms = now_ms;
                    } else if offset >= f.prev_fetch_leader_end && f.prev_fetch_leader_end >= 0 {
                        f.caught_up_ms = f.caught_up_ms.max(f.prev_fetch_ms);
                    }
                    f.log_end = offset;
                    f.prev_fetch_leader_end = leader_end;
                    f.prev_fetch_ms = now_ms;
                    actions.propose_isr = self.expansion(replica);
                }
                self.advance(leader_end);
            }
            Event::LeaderWrite { leader_end } => self.advance(leader_end),
            Event::Tick { leader_end, now_ms } => {
                actions.propose_isr = self.shrink(now_ms);
                self.advance(leader_end);
            }
            Event::IsrChanged {
                isr,
                partition_epoch,
                leader_end,
                now_ms,
            } => {
                for r in &isr {
                    if !self.isr.contains(r) {
                        if let Some(f) = self.followers.get_mut(r) {
                            f.caught_up_ms = f.caught_up_ms.max(now_ms);
                        }
                    }
                }
                self.isr = isr;
                self.partition_epoch = partition_epoch;
                self.pending = None;
                self.advance(leader_end);
            }
            Event::IsrChangeFailed => self.pending = None,
        }
        if actions.propose_isr.is_some() {
            self.pending = actions.propose_isr.clone();
        }
        if self.high_watermark != before {
            actions.high_watermark = Some(self.high_watermark);
        }
        actions
    }

    /// The ISR plus a pending expansion: everyone the high watermark must wait for.
    fn maximal_isr(&self) -> impl Iterator<Item = i32> + '_ {
        let extra = self
            .pending
            .iter()
            .flatten()
            .filter(|r| !self.isr.contains(r));
        self.isr.iter().chain(extra).copied()
    }

    fn advance(&mut self, leader_end: i64) {
        if self.isr.len() < self.min_isr {
            return;
        }
        let mut candidate = leader_end;
        for r in self.maximal_isr() {
            if r == self.me {
                continue;
            }
            match self.followers.get(&r) {
                Some(f) => candidate = candidate.min(f.log_end),
                // An ISR member we hold no replica state for: never past what we know.
                None => return,
            }
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
        }
    }

    /// Add `replica` to the ISR once it reached the high watermark and this epoch's start.
    fn expansion(&self, replica: i32) -> Option<Vec<i32>> {
        if self.pending.is_some() || self.isr.contains(&replica) {
            return None;
        }
        let f = self.followers.get(&replica)?;
        if f.log_end < self.high_watermark || f.log_end < self.epoch_start_offset {
            return None;
        }
        let mut isr = self.isr.clone();
        isr.push(replica);
        // Keep the replicas' order (the preferred leader first), as the metadata shows it.
        isr.sort_by_key(|r| self.replicas.iter().position(|x| x == r));
        Some(isr)
    }

    /// Drop the ISR members that have not caught up for the lag allowance.
    fn shrink(&self, now_ms: i64) -> Option<Vec<i32>> {
        if self.pending.is_some() {
            return None;
        }
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.me)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_some_and(|f| now_ms - f.caught_up_ms > self.lag_max_ms)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        Some(
            self.isr
                .iter()
                .copied()
                .filter(|r| !lagging.contains(r))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(isr: Vec<i32>, min_isr: usize) -> LeaderState {
        LeaderState::new(1, 5, 7, vec![1, 2, 3], isr, 0, 0, min_isr, 1000, 0)
    }

    fn fetch(s: &mut LeaderState, replica: i32, offset: i64, end: i64, now: i64) -> Actions {
        s.step(Event::FollowerFetch {
            replica,
            fetch_offset: offset,
            leader_end: end,
            now_ms: now,
        })
    }

    #[test]
    fn high_watermark_is_the_smallest_log_end_in_the_isr() {
        let mut s = leader(vec![1, 2, 3], 2);
        assert_eq!(
            s.step(Event::LeaderWrite { leader_end: 10 }).high_watermark,
            None
        );
        assert_eq!(fetch(&mut s, 2, 10, 10, 1).high_watermark, None);
        let a = fetch(&mut s, 3, 6, 10, 1);
        assert_eq!(a.high_watermark, Some(6));
        assert_eq!(fetch(&mut s, 3, 10, 10, 2).high_watermark, Some(10));
        // Never back, never past the leader.
        assert_eq!(fetch(&mut s, 3, 4, 10, 3).high_watermark, None);
        assert_eq!(s.high_watermark(), 10);
        assert_eq!(fetch(&mut s, 2, 50, 12, 3).high_watermark, None);
        assert_eq!(fetch(&mut s, 3, 12, 12, 3).high_watermark, Some(12));
    }

    #[test]
    fn below_min_insync_replicas_the_high_watermark_stays() {
        let mut s = leader(vec![1], 2);
        assert!(!s.enough_replicas());
        s.step(Event::LeaderWrite { leader_end: 10 });
        assert_eq!(s.high_watermark(), 0);
        let mut alone = leader(vec![1], 1);
        assert_eq!(
            alone
                .step(Event::LeaderWrite { leader_end: 10 })
                .high_watermark,
            Some(10)
        );
    }

    #[test]
    fn a_lagging_follower_is_dropped_and_a_caught_up_one_added() {
        let mut s = leader(vec![1, 2, 3], 2);
        fetch(&mut s, 2, 0, 0, 0);
        fetch(&mut s, 3, 0, 0, 0);
        s.step(Event::LeaderWrite { leader_end: 100 });
        // 2 keeps up, 3 stops fetching.
        fetch(&mut s, 2, 100, 100, 500);
        assert_eq!(
            s.step(Event::Tick {
                leader_end: 100,
                now_ms: 900
            })
            .propose_isr,
            None
        );
        let a = s.step(Event::Tick {
            leader_end: 100,
            now_ms: 1500,
        });
        assert_eq!(a.propose_isr, Some(vec![1, 2]));
        // One change at a time.
        assert_eq!(
            s.step(Event::Tick {
                leader_end: 100,
                now_ms: 1600
            })
            .propose_isr,
            None
        );
        s.step(Event::IsrChanged {
            isr: vec![1, 2],
            partition_epoch: 8,
            leader_end: 100,
            now_ms: 1600,
        });
        assert_eq!(s.high_watermark(), 100);
        // 3 comes back: not before it reaches the high watermark.
        s.step(Event::LeaderWrite { leader_end: 120 });
        assert_eq!(fetch(&mut s, 3, 80, 120, 1700).propose_isr, None);
        let a = fetch(&mut s, 3, 100, 120, 1800);
        assert_eq!(a.propose_isr, Some(vec![1, 2, 3]));
        // While the expansion is pending, the high watermark waits for 3 as well.
        assert_eq!(fetch(&mut s, 2, 120, 120, 1900).high_watermark, None);
        assert_eq!(fetch(&mut s, 3, 120, 120, 1900).high_watermark, Some(120));
    }

    #[test]
    fn a_refused_change_can_be_proposed_again() {
        let mut s = leader(vec![1, 2, 3], 1);
        let a = s.step(Event::Tick {
            leader_end: 0,
            now_ms: 5000,
        });
        assert_eq!(a.propose_isr, Some(vec![1]));
        s.step(Event::IsrChangeFailed);
        let a = s.step(Event::Tick {
            leader_end: 0,
            now_ms: 5001,
        });
        assert_eq!(a.propose_isr, Some(vec![1]));
    }

    #[test]
    fn a_follower_must_reach_the_epoch_start_to_join() {
        // Leader elected with log end 50 and high watermark 40 (a checkpoint).
        let mut s = LeaderState::new(1, 2, 3, vec![1, 2], vec![1], 40, 50, 1, 1000, 0);
        assert_eq!(s.high_watermark(), 50);
        let mut s2 = LeaderState::new(1, 2, 3, vec![1, 2], vec![1], 40, 50, 2, 1000, 0);
        assert_eq!(s2.high_watermark(), 40);
        assert_eq!(fetch(&mut s2, 2, 45, 50, 1).propose_isr, None);
        assert_eq!(fetch(&mut s2, 2, 50, 50, 2).propose_isr, Some(vec![1, 2]));
        assert_eq!(fetch(&mut s, 2, 50, 50, 2).propose_isr, Some(vec![1, 2]));
    }
}
