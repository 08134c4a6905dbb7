//! Transactions as one partition sees them: the open transaction of each producer, the last
//! stable offset, the aborted transactions (for `read_committed` fetches) and the epoch
//! markers fenced.
//!
//! # What this module owns
//! [`PartitionTxns`], kept per partition beside the idempotent producer state, by the shard
//! that owns the partition. It does no I/O: the shard feeds it every transactional data batch
//! ([`PartitionTxns::on_data`]) and every COMMIT/ABORT marker ([`PartitionTxns::on_marker`])
//! in the same synchronous step that assigns their offsets, and at open replays the log
//! through the same two calls (so the index is rebuilt on recovery). [`IndexChunk`] is its
//! persisted form over a range of offsets (`shard::txn_index_files` owns the files), so
//! that replay starts where the newest chunk ends rather than at the log start.
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

    /// The index of the offsets `[from, to)` (see [`IndexChunk`]): the transactions aborted
    /// by a marker in the range, and the open transactions and marker epochs as of `to`.
    /// Call it when everything below `to` is applied and nothing at or past it.
    pub fn chunk(&self, from: i64, to: i64) -> IndexChunk {
        assert!(from <= to, "an index chunk covers a range");
        let mut open: Vec<(i64, OpenTxn)> = self.open.iter().map(|(p, t)| (*p, *t)).collect();
        open.sort_unstable_by_key(|(p, _)| *p);
        let mut marker_epochs: Vec<(i64, i16)> =
            self.marker_epochs.iter().map(|(p, e)| (*p, *e)).collect();
        marker_epochs.sort_unstable();
        IndexChunk {
            from,
            to,
            aborted: self
                .aborted
                .iter()
                .filter(|a| a.last_offset >= from && a.last_offset < to)
                .copied()
                .collect(),
            open,
            marker_epochs,
        }
    }

    /// The state as of the newest chunk's `to`: its open transactions and marker epochs, and
    /// the aborted transactions of every chunk (oldest chunk first).
    pub fn from_chunks(chunks: &[IndexChunk]) -> Self {
        let mut t = PartitionTxns::new();
        for c in chunks {
            t.aborted.extend_from_slice(&c.aborted);
        }
        if let Some(newest) = chunks.last() {
            for (pid, txn) in &newest.open {
                t.open.insert(*pid, *txn);
                t.open_by_first.insert((txn.first_offset, *pid));
            }
            t.marker_epochs.extend(newest.marker_epochs.iter().copied());
        }
        t
    }
}

/// The persisted form of a partition's transactions over the offsets `[from, to)` (Kafka's
/// `.txnindex` plus the transaction part of its producer snapshot): the transactions whose
/// ABORT marker lies in the range, and the open transactions and newest marker epochs as of
/// `to`. Chunks with contiguous ranges rebuild [`PartitionTxns`] without reading the log
/// below the newest `to` ([`PartitionTxns::from_chunks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexChunk {
    pub from: i64,
    pub to: i64,
    pub aborted: Vec<AbortedTxn>,
    pub open: Vec<(i64, OpenTxn)>,
    pub marker_epochs: Vec<(i64, i16)>,
}

/// Why a persisted [`IndexChunk`] cannot be used (the caller rebuilds from the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("not a transaction index (magic or version)")]
    Format,
    #[error("transaction index truncated")]
    Truncated,
    #[error("transaction index checksum mismatch")]
    Checksum,
    #[error("transaction index entries are inconsistent")]
    Inconsistent,
}

const CHUNK_MAGIC: [u8; 4] = *b"RTTX";
const CHUNK_VERSION: u16 = 1;
/// magic + version + crc32c.
const CHUNK_PREFIX_BYTES: usize = 4 + 2 + 4;
const ABORTED_ENTRY_BYTES: usize = 8 + 8 + 8;
const OPEN_ENTRY_BYTES: usize = 8 + 2 + 8 + 8;
const EPOCH_ENTRY_BYTES: usize = 8 + 2;

impl IndexChunk {
    /// Layout: `"RTTX"`, version u16, crc32c u32 of the rest, from i64, to i64, then three
    /// counted (u32) lists: aborted (producer id i64, first offset i64, marker offset i64),
    /// open (producer id i64, epoch i16, first i64, last i64), marker epochs (producer id
    /// i64, epoch i16). Big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            CHUNK_PREFIX_BYTES
                + 16
                + 12
                + self.aborted.len() * ABORTED_ENTRY_BYTES
                + self.open.len() * OPEN_ENTRY_BYTES
                + self.marker_epochs.len() * EPOCH_ENTRY_BYTES,
        );
        out.extend_from_slice(&CHUNK_MAGIC);
        out.extend_from_slice(&CHUNK_VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 4]); // crc, filled below
        out.extend_from_slice(&self.from.to_be_bytes());
        out.extend_from_slice(&self.to.to_be_bytes());
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
        out.extend_from_slice(&count(self.aborted.len()));
        for a in &self.aborted {
            out.extend_from_slice(&a.producer_id.to_be_bytes());
            out.extend_from_slice(&a.first_offset.to_be_bytes());
            out.extend_from_slice(&a.last_offset.to_be_bytes());
        }
        out.extend_from_slice(&count(self.open.len()));
        for (pid, t) in &self.open {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&t.producer_epoch.to_be_bytes());
            out.extend_from_slice(&t.first_offset.to_be_bytes());
            out.extend_from_slice(&t.last_offset.to_be_bytes());
        }
        out.extend_from_slice(&count(self.marker_epochs.len()));
        for (pid, e) in &self.marker_epochs {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.to_be_bytes());
        }
        let crc = storage::batch::crc32c(&out[CHUNK_PREFIX_BYTES..]);
        out[6..10].copy_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<IndexChunk, ChunkError> {
        if bytes.len() < CHUNK_PREFIX_BYTES {
            return Err(ChunkError::Truncated);
        }
        if bytes[..4] != CHUNK_MAGIC || bytes[4..6] != CHUNK_VERSION.to_be_bytes() {
            return Err(ChunkError::Format);
        }
        let stored = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        if stored != storage::batch::crc32c(&bytes[CHUNK_PREFIX_BYTES..]) {
            return Err(ChunkError::Checksum);
        }
        let mut r = Reader(&bytes[CHUNK_PREFIX_BYTES..]);
        let (from, to) = (r.i64()?, r.i64()?);
        let mut chunk = IndexChunk {
            from,
            to,
            aborted: Vec::new(),
            open: Vec::new(),
            marker_epochs: Vec::new(),
        };
        for _ in 0..r.count(ABORTED_ENTRY_BYTES)? {
            chunk.aborted.push(AbortedTxn {
                producer_id: r.i64()?,
                first_offset: r.i64()?,
                last_offset: r.i64()?,
            });
        }
        for _ in 0..r.count(OPEN_ENTRY_BYTES)? {
            let pid = r.i64()?;
            let producer_epoch = r.i16()?;
            let (first_offset, last_offset) = (r.i64()?, r.i64()?);
            chunk.open.push((
                pid,
                OpenTxn {
                    producer_epoch,
                    first_offset,
                    last_offset,
                },
            ));
        }
        for _ in 0..r.count(EPOCH_ENTRY_BYTES)? {
            chunk.marker_epochs.push((r.i64()?, r.i16()?));
        }
        // Pair assertions with `chunk`, as checks: a chunk read back must be one it could
        // have written.
        let consistent = from <= to
            && r.0.is_empty()
            && chunk.aborted.iter().all(|a| {
                a.first_offset < a.last_offset && a.last_offset >= from && a.last_offset < to
            })
            && chunk
                .open
                .iter()
                .all(|(_, t)| t.first_offset <= t.last_offset && t.last_offset < to);
        if !consistent {
            return Err(ChunkError::Inconsistent);
        }
        Ok(chunk)
    }
}

/// A big-endian cursor over a chunk's body.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ChunkError> {
        let (head, rest) = self.0.split_at_checked(N).ok_or(ChunkError::Truncated)?;
        self.0 = rest;
        head.try_into().map_err(|_| ChunkError::Truncated)
    }
    fn i64(&mut self) -> Result<i64, ChunkError> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn i16(&mut self) -> Result<i16, ChunkError> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    /// A list length, refused when the rest cannot hold that many entries.
    fn count(&mut self, entry_bytes: usize) -> Result<usize, ChunkError> {
        let n = usize::try_from(u32::from_be_bytes(self.take::<4>()?))
            .map_err(|_| ChunkError::Truncated)?;
        if n.saturating_mul(entry_bytes) > self.0.len() {
            return Err(ChunkError::Truncated);
        }
        Ok(n)
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
    fn chunks_round_trip_and_rebuild_the_same_state() {
        let mut t = PartitionTxns::new();
        t.on_data(1, 0, 0, 4);
        t.on_marker(1, 0, false, 5); // aborted, marker in chunk 1
        t.on_data(2, 1, 6, 6);
        let c1 = t.chunk(0, 7);
        t.on_marker(2, 1, true, 7);
        t.on_data(3, 0, 8, 9);
        t.on_marker(3, 0, false, 10); // aborted, marker in chunk 2
        t.on_data(4, 2, 11, 12); // open at the end of chunk 2
        let c2 = t.chunk(7, 13);
        assert_eq!(c1.aborted.len(), 1);
        assert_eq!(c1.open.len(), 1, "producer 2's transaction is open at 7");
        for c in [&c1, &c2] {
            assert_eq!(&IndexChunk::decode(&c.encode()).unwrap(), c);
        }
        let rebuilt = PartitionTxns::from_chunks(&[c1.clone(), c2.clone()]);
        assert_eq!(rebuilt.aborted_between(0, 13), t.aborted_between(0, 13));
        assert_eq!(rebuilt.last_stable_offset(13), 11);
        assert_eq!(rebuilt.open(4), t.open(4));
        assert!(matches!(rebuilt.check(3, 0), Ok(TxnCheck::Verify)));
        assert_eq!(rebuilt.check(4, 2), Ok(TxnCheck::Open));

        // Damage of any kind is detected.
        let bytes = c2.encode();
        for cut in [0, 5, CHUNK_PREFIX_BYTES + 3, bytes.len() - 1] {
            assert!(IndexChunk::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(IndexChunk::decode(&flipped), Err(ChunkError::Checksum));
    }

    #[test]
    fn markers_round_trip() {
        assert_eq!(parse_marker_key(&marker_key(true)), Some(true));
        assert_eq!(parse_marker_key(&marker_key(false)), Some(false));
        assert_eq!(parse_marker_key(&[0, 0]), None);
    }
}
