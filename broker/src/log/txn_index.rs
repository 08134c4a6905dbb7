//! Transactions as one partition sees them: the open transaction of each producer, the last
//! stable offset, the aborted transactions (for `read_committed` fetches) and the epoch
//! markers fenced.
//!
//! # What this module owns
//! [`PartitionTxns`], kept per partition beside the idempotent producer state, by the shard
//! that owns the partition. It does no I/O: the shard feeds it every transactional data batch
//! ([`PartitionTxns::on_data`]) and every COMMIT/ABORT marker ([`PartitionTxns::on_marker`])
//! in the same synchronous step that assigns their offsets, and at open replays the log
//! through the same two calls (so the index is rebuilt on recovery).
//!
//! # Invariants
//! - The last stable offset is the first offset of the oldest open transaction, or the high
//!   watermark when none is open; it never exceeds the high watermark.
//! - An aborted transaction is listed with its first offset and the offset of its ABORT
//!   marker, in marker order, so a fetch can answer the aborted transactions of its range.
//! - A transactional batch with an epoch older than the newest marker of its producer is a
//!   zombie's ([`TxnAppendError::Fenced`]).

use std::collections::{BTreeSet, HashMap};

/// One producer's open transaction on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTxn {
    pub producer_epoch: i16,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// An aborted transaction: what `read_committed` fetches return (producer id, first offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
}

/// Why a transactional batch is refused here; `crate::errors` maps each to its Kafka code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnAppendError {
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {fenced_by}")]
    Fenced {
        producer_id: i64,
        epoch: i16,
        fenced_by: i16,
    },
    #[error("the partition was not added to the transaction of producer {producer_id}")]
    NotInTransaction { producer_id: i64 },
    #[error("transactional batch without a transactional id, or a client control batch")]
    Invalid,
}

/// What a transactional batch needs before it may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnCheck {
    /// Part of the producer's open transaction here: write it.
    Open,
    /// The first batch of a transaction here: ask the coordinator whether the partition
    /// was added (the old protocol's rule), then write it.
    Verify,
}

/// Transactions of one partition (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct PartitionTxns {
    open: HashMap<i64, OpenTxn>,
    /// (first offset, producer id) of every open transaction: the smallest gives the LSO.
    open_by_first: BTreeSet<(i64, i64)>,
    aborted: Vec<AbortedTxn>,
    /// Producer id -> epoch of its newest marker.
    marker_epochs: HashMap<i64, i16>,
    /// Producer id -> offset of its newest marker (the cleaner keeps it: it holds the epoch
    /// that fences zombies after a restart).
    marker_offsets: HashMap<i64, i64>,
}

impl PartitionTxns {
    pub fn new() -> Self {
        Self::default()
    }

    /// The open transactions (DescribeProducers shows their first offsets).
    pub fn open(&self, producer_id: i64) -> Option<&OpenTxn> {
        self.open.get(&producer_id)
    }

    /// Whether a transactional batch of `producer_id`/`epoch` may be written, or must be
    /// verified first.
    pub fn check(&self, producer_id: i64, epoch: i16) -> Result<TxnCheck, TxnAppendError> {
        if let Some(&fenced_by) = self.marker_epochs.get(&producer_id) {
            if epoch < fenced_by {
                return Err(TxnAppendError::Fenced {
                    producer_id,
                    epoch,
                    fenced_by,
                });
            }
        }
        match self.open.get(&producer_id) {
            Some(t) if t.producer_epoch == epoch => Ok(TxnCheck::Open),
            Some(t) if epoch < t.producer_epoch => Err(TxnAppendError::Fenced {
                producer_id,
                epoch,
                fenced_by: t.producer_epoch,
            }),
            _ => Ok(TxnCheck::Verify),
        }
    }

    /// A transactional data batch was written at `base_offset..=last_offset`.
    pub fn on_data(&mut self, producer_id: i64, epoch: i16, base_offset: i64, last_offset: i64) {
        assert!(
            base_offset <= last_offset,
            "a batch holds at least one offset"
        );
        match self.open.get_mut(&producer_id) {
            Some(t) => {
                t.producer_epoch = t.producer_epoch.max(epoch);
                t.last_offset = t.last_offset.max(last_offset);
            }
            None => {
                self.open.insert(
                    producer_id,
                    OpenTxn {
                        producer_epoch: epoch,
                        first_offset: base_offset,
                        last_offset,
                    },
                );
                self.open_by_first.insert((base_offset, producer_id));
            }
        }
    }

    /// A COMMIT (`commit`) or ABORT marker of `producer_id` was written at `offset`.
    pub fn on_marker(&mut self, producer_id: i64, epoch: i16, commit: bool, offset: i64) {
        let fenced = self.marker_epochs.entry(producer_id).or_insert(epoch);
        *fenced = (*fenced).max(epoch);
        let newest = self.marker_offsets.entry(producer_id).or_insert(offset);
        *newest = (*newest).max(offset);
        if let Some(t) = self.open.remove(&producer_id) {
            assert!(
                self.open_by_first.remove(&(t.first_offset, producer_id)),
                "open transactions are indexed by first offset"
            );
            assert!(t.first_offset < offset, "a marker follows its data");
            if !commit {
                self.aborted.push(AbortedTxn {
                    producer_id,
                    first_offset: t.first_offset,
                    last_offset: offset,
                });
            }
        }
    }

    /// The last stable offset given the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.open_by_first
            .first()
            .map_or(high_watermark, |(first, _)| (*first).min(high_watermark))
    }

    /// The aborted transactions a fetch of `[from, to)` must be told about.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below `log_start_offset` (retention).
    pub fn trim_before(&mut self, log_start_offset: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
    }

    /// Forgets the aborted transactions whose markers are at `marker_offsets`: the cleaner
    /// removed all their data (a fetch must not be told about a transaction whose marker may
    /// be gone, or a consumer would skip that producer's later batches).
    pub fn forget_aborted(&mut self, marker_offsets: &[i64]) {
        if marker_offsets.is_empty() {
            return;
        }
        assert!(
            marker_offsets.windows(2).all(|w| w[0] < w[1]),
            "marker offsets come in log order"
        );
        self.aborted
            .retain(|a| marker_offsets.binary_search(&a.last_offset).is_err());
    }

    /// Producer id -> offset of its newest COMMIT/ABORT marker.
    pub fn newest_marker_offsets(&self) -> HashMap<i64, i64> {
        self.marker_offsets.clone()
    }

    /// Open transactions: (producer id, transaction).
    pub fn open_transactions(&self) -> impl Iterator<Item = (i64, &OpenTxn)> {
        self.open.iter().map(|(pid, t)| (*pid, t))
    }
}

/// The control record key of a marker: (version 0, type: 0 abort, 1 commit).
pub fn marker_key(commit: bool) -> [u8; 4] {
    [0, 0, 0, u8::from(commit)]
}

/// The control record value of a marker: (version 0, coordinator epoch).
pub fn marker_value(coordinator_epoch: i32) -> [u8; 6] {
    let e = coordinator_epoch.to_be_bytes();
    [0, 0, e[0], e[1], e[2], e[3]]
}

/// Whether a control record key is a COMMIT (`Some(true)`) or ABORT (`Some(false)`) marker.
pub fn parse_marker_key(key: &[u8]) -> Option<bool> {
    let ty = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
    match ty {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lso_follows_the_oldest_open_transaction_and_aborts_are_listed() {
        let mut t = PartitionTxns::new();
        assert_eq!(t.last_stable_offset(10), 10);
        assert_eq!(t.check(1, 0), Ok(TxnCheck::Verify));
        t.on_data(1, 0, 10, 12);
        assert_eq!(t.check(1, 0), Ok(TxnCheck::Open));
        t.on_data(2, 0, 13, 13);
        t.on_data(1, 0, 14, 15);
        assert_eq!(t.last_stable_offset(16), 10);
        t.on_marker(1, 0, false, 16);
        assert_eq!(t.last_stable_offset(17), 13);
        t.on_marker(2, 0, true, 17);
        assert_eq!(t.last_stable_offset(18), 18);
        assert_eq!(
            t.aborted_between(0, 18),
            vec![AbortedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 16
            }]
        );
        assert!(t.aborted_between(17, 18).is_empty());
        assert!(t.aborted_between(0, 10).is_empty());
        // The marker fenced epoch 0 only against older epochs.
        assert_eq!(t.check(1, 0), Ok(TxnCheck::Verify));
        t.on_marker(1, 3, false, 18);
        assert!(matches!(t.check(1, 2), Err(TxnAppendError::Fenced { .. })));
        t.trim_before(17);
        assert!(t.aborted_between(0, 100).is_empty());
    }

    #[test]
    fn the_cleaner_can_forget_emptied_aborts_and_sees_newest_markers() {
        let mut t = PartitionTxns::new();
        t.on_data(1, 0, 0, 1);
        t.on_marker(1, 0, false, 2);
        t.on_data(2, 0, 3, 3);
        t.on_marker(2, 0, false, 4);
        t.on_data(1, 0, 5, 5);
        t.on_marker(1, 0, true, 6);
        assert_eq!(t.newest_marker_offsets(), HashMap::from([(1, 6), (2, 4)]));
        t.forget_aborted(&[2]);
        let left: Vec<i64> = t
            .aborted_between(0, 10)
            .iter()
            .map(|a| a.last_offset)
            .collect();
        assert_eq!(left, vec![4]);
    }

    #[test]
    fn markers_round_trip() {
        assert_eq!(parse_marker_key(&marker_key(true)), Some(true));
        assert_eq!(parse_marker_key(&marker_key(false)), Some(false));
        assert_eq!(parse_marker_key(&[0, 0]), None);
    }
}
