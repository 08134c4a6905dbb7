//! Idempotent-producer state of one partition, with Kafka's exact semantics, and the node-wide
//! producer id allocator used by `InitProducerId`.
//!
//! # What this module owns
//! [`ProducerStateTable`] is the per-partition map `producer id -> (epoch, last 5 batches)` that
//! Kafka keeps in `ProducerStateManager` / `ProducerStateEntry`, and the checks Kafka's
//! `UnifiedLog.analyzeAndValidateProducerState` + `ProducerAppendInfo` apply to a batch written
//! by a client. It does no I/O: the shard that owns the partition drives it, persists its
//! [`ProducerStateTable::snapshot`] bytes and replays the log tail through
//! [`ProducerStateTable::rebuild_from`] at start-up.
//!
//! # The rules (Kafka 3.x / 4.x, `AppendOrigin.CLIENT`, data batches)
//! Checked in this order for a batch with `producer_id >= 0`:
//! 1. `base_sequence < 0` is rejected (`INVALID_RECORD`, from `LogValidator.validateBatch`).
//! 2. **Duplicate**: if the producer is known, the batch's epoch equals the stored epoch and its
//!    exact `(first_seq, last_seq)` range equals one of the last [`NUM_BATCHES_TO_RETAIN`] batches
//!    recorded for that producer, the batch is not written again; the response carries the
//!    original base offset (and Kafka puts the original batch's *timestamp* into
//!    `log_append_time_ms`, even for `CreateTime` topics — reproduced here).
//! 3. **Epoch**: an epoch lower than the stored one is `INVALID_PRODUCER_EPOCH` (47). Kafka
//!    replaced `PRODUCER_FENCED` with this code for produce responses in 2.7 so that clients
//!    can abort and retry.
//! 4. **Sequence**:
//!    - unknown producer (no entry on this partition): *any* first sequence is accepted. Since
//!      KIP-360 (Kafka 2.5) the broker no longer answers `UNKNOWN_PRODUCER_ID` for produce: the
//!      state may legitimately be gone (retention, DeleteRecords, expiration) while the
//!      producer is alive, and rejecting it would force a needless epoch bump;
//!    - new (higher) epoch: the first sequence must be 0, else `OUT_OF_ORDER_SEQUENCE_NUMBER`;
//!    - same epoch: the first sequence must follow the last recorded one
//!      (`last + 1`, or `0` after `i32::MAX`), else `OUT_OF_ORDER_SEQUENCE_NUMBER` (45). That
//!      includes retries of batches older than the 5-batch window and overlapping ranges.
//!
//! Not covered here (Kafka does them elsewhere or they belong to transactions): transactional
//! state (`currentTxnFirstOffset`, `INVALID_TXN_STATE`, coordinator epochs, KIP-890 verification)
//! and control batches. Producers are *not* dropped when the log start offset moves (Kafka
//! stopped doing that with KIP-360); only [`ProducerStateTable::expire`] removes them.
//!
//! # How the broker must drive it
//! `check` and `record` for one batch must run in the same synchronous step on the owning shard
//! (no `.await` between them), with the offsets assigned at that step: a client pipelines up to 5
//! requests per partition, and checking request *n+1* against a table that does not yet contain
//! request *n* would wrongly answer `OUT_OF_ORDER_SEQUENCE_NUMBER`. Kafka does the same under the
//! log lock. A `Duplicate` answer refers to offsets that may not be durable yet: with `acks=all`
//! the response must still wait until `last_offset` is durable / below the high watermark.
//!
//! Expiration uses the batch timestamp that the broker passes to `record` (Kafka uses the
//! batch's `maxTimestamp`, i.e. client time for `CreateTime` topics), compared against
//! `producer.id.expiration.ms` (default [`DEFAULT_PRODUCER_ID_EXPIRATION_MS`]).

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
#[cfg(test)]
use std::io::Write;
use std::path::{Path, PathBuf};

/// Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`: the client's
/// `max.in.flight.requests.per.connection` may be at most 5 with idempotence, so the last 5
/// batches are enough to recognise any retry.
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `RecordBatch.NO_SEQUENCE`.
pub const NO_SEQUENCE: i32 = -1;
/// Kafka's default `producer.id.expiration.ms` (1 day).
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

/// Sequence number of the record `delta` positions after `sequence`, wrapping from `i32::MAX`
/// to 0 as Kafka's `DefaultRecordBatch.incrementSequence` does. Sequences are never negative:
/// a negative `sequence` or `delta` gives [`NO_SEQUENCE`].
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    if sequence < 0 || delta < 0 {
        return NO_SEQUENCE;
    }
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

/// Last sequence of a batch: `base_sequence + last_offset_delta`, wrapping like Kafka's
/// `RecordBatch.lastSequence()`. A batch without sequence (`base_sequence < 0`) has none.
pub fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    increment_sequence(base_sequence, last_offset_delta)
}

/// Kafka's `ProducerAppendInfo.inSequence`: `next` directly follows `last`.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// Why a produce batch is refused by the producer state. `crate::errors` maps each variant to
/// Kafka's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// A gap or overlap in sequence numbers, or a new epoch that does not start at 0.
    #[error("out of order sequence for producer {producer_id} epoch {epoch}: got {first_seq}, expected {expected_seq} (current epoch {current_epoch})")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        /// The sequence that would have been accepted (0 for a new epoch).
        expected_seq: i32,
        current_epoch: i16,
    },
    /// The batch's epoch is older than the one already seen on this partition (a zombie).
    #[error(
        "producer {producer_id} epoch {epoch} is older than the current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// A batch carries a producer id but a negative base sequence (Kafka: `INVALID_RECORD`).
    #[error("invalid sequence number {first_seq} in batch of producer {producer_id}")]
    InvalidSequence { producer_id: i64, first_seq: i32 },
    /// Kept for the error-code table only: since KIP-360 (Kafka 2.5) the produce path never
    /// returns it, and [`ProducerStateTable::check`] never does either.
    #[error("unknown producer id {producer_id}")]
    UnknownProducerId { producer_id: i64 },
}

/// Outcome of [`ProducerStateTable::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeqCheck {
    /// Write the batch, then [`ProducerStateTable::record`] it.
    Append,
    /// Do not write: answer success with the offsets of the original write.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
        /// What Kafka puts in the response's `log_append_time_ms` for a duplicate: the timestamp
        /// recorded with the original batch (Kafka's `BatchMetadata.timestamp`).
        log_append_time_ms: i64,
    },
    /// Answer the partition with this error (`crate::errors::KafkaCode`).
    Reject(ProducerError),
}

/// Everything the producer state needs to know about one written batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The batch's base sequence.
    pub first_seq: i32,
    /// `last_sequence(first_seq, last_offset_delta)`.
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp (what Kafka records and expires by).
    pub max_timestamp_ms: i64,
}

impl ProducerBatch {
    /// Builds the record from v2 batch header fields (e.g. `storage::batch::BatchHeader`).
    pub fn from_header(
        base_offset: i64,
        last_offset_delta: i32,
        max_timestamp_ms: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Self {
        ProducerBatch {
            producer_id,
            producer_epoch,
            first_seq: base_sequence,
            last_seq: last_sequence(base_sequence, last_offset_delta),
            base_offset,
            last_offset: base_offset.saturating_add(i64::from(last_offset_delta.max(0))),
            max_timestamp_ms,
        }
    }

    /// [`ProducerBatch::from_header`] of a stored batch's header.
    pub fn of(h: &storage::batch::BatchHeader) -> Self {
        Self::from_header(
            h.base_offset,
            h.last_offset_delta,
            h.max_timestamp,
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
        )
    }
}

/// Metadata kept for each of a producer's last batches (Kafka's `BatchMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub timestamp_ms: i64,
}

/// State of one producer on one partition (Kafka's `ProducerStateEntry`, without transactions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    epoch: i16,
    /// Oldest first; at most [`NUM_BATCHES_TO_RETAIN`], all written with `epoch`.
    batches: VecDeque<BatchMetadata>,
    last_timestamp_ms: i64,
}

impl ProducerEntry {
    fn empty() -> Self {
        ProducerEntry {
            epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN),
            last_timestamp_ms: -1,
        }
    }

    /// Current epoch of the producer on this partition.
    pub fn epoch(&self) -> i16 {
        self.epoch
    }

    /// Last sequence written, or [`NO_SEQUENCE`].
    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(NO_SEQUENCE, |b| b.last_seq)
    }

    /// Offset of the last batch written, or -1.
    pub fn last_data_offset(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.last_offset)
    }

    /// Timestamp of the last batch written (drives expiration).
    pub fn last_timestamp_ms(&self) -> i64 {
        self.last_timestamp_ms
    }

    /// The retained batches, oldest first.
    pub fn batches(&self) -> impl Iterator<Item = &BatchMetadata> {
        self.batches.iter()
    }

    /// Drops the batches at or after `offset`; false when none is left.
    fn forget_from(&mut self, offset: i64) -> bool {
        while self.batches.back().is_some_and(|b| b.last_offset >= offset) {
            self.batches.pop_back();
        }
        !self.batches.is_empty()
    }

    /// Kafka's `ProducerStateEntry.addBatch`: a change of epoch forgets the older batches.
    fn add_batch(&mut self, batch: &ProducerBatch) {
        if self.epoch != batch.producer_epoch {
            self.batches.clear();
            self.epoch = batch.producer_epoch;
        }
        if self.batches.len() == NUM_BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
        self.batches.push_back(BatchMetadata {
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            base_offset: batch.base_offset,
            last_offset: batch.last_offset,
            timestamp_ms: batch.max_timestamp_ms,
        });
        self.last_timestamp_ms = batch.max_timestamp_ms;
        assert!(self.batches.len() <= NUM_BATCHES_TO_RETAIN);
    }
}

/// Errors decoding a producer state snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("producer snapshot too short ({0} bytes)")]
    Truncated(usize),
    #[error("not a producer snapshot (bad magic)")]
    BadMagic,
    #[error("unsupported producer snapshot version {0}")]
    UnsupportedVersion(u16),
    #[error(
        "producer snapshot checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Checksum { stored: u32, computed: u32 },
    #[error("malformed producer snapshot: {0}")]
    Malformed(&'static str),
}

/// Producer state of one partition. Lives on the shard that owns the partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// One past the last offset applied (Kafka's `lastMapOffset`): where a replay must resume.
    end_offset: i64,
}

const SNAPSHOT_MAGIC: [u8; 4] = *b"RTPS";
const SNAPSHOT_VERSION: u16 = 1;
/// magic + version + crc32c.
const SNAPSHOT_PREFIX_BYTES: usize = 4 + 2 + 4;
/// end_offset + producer count.
const SNAPSHOT_BODY_HEADER_BYTES: usize = 8 + 4;
/// producer id + epoch + last timestamp + batch count.
const SNAPSHOT_ENTRY_BYTES: usize = 8 + 2 + 8 + 1;
/// first_seq, last_seq, base_offset, last_offset, timestamp.
const SNAPSHOT_BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;

impl ProducerStateTable {
    /// An empty table (a new partition, or a log with no producer state).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producers with state on this partition.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer has state here.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The state of one producer.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer with state here (DescribeProducers).
    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(pid, e)| (*pid, e))
    }

    /// One past the last offset applied: replay the log from here after [`Self::restore`].
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// Moves the replay point forward, e.g. to the log start offset when the log starts past
    /// everything applied (Kafka's `onLogStartOffsetIncremented`). Never moves it backwards.
    /// Forgets every batch at or after `offset` (a failed write rolled the log back there):
    /// a producer retrying one of them is not answered with an offset that now holds other
    /// records. A producer left with no batch is forgotten, so its retry is appended anew.
    pub fn forget_from(&mut self, offset: i64) {
        self.producers.retain(|_, e| e.forget_from(offset));
        self.end_offset = self.end_offset.min(offset);
    }

    pub fn advance_end_offset(&mut self, offset: i64) {
        self.end_offset = self.end_offset.max(offset);
    }

    /// Forgets everything (log truncated below the state, or deleted): Kafka's
    /// `truncateFullyAndStartAt(offset)`. Reload a snapshot at or below the new end and replay.
    pub fn clear(&mut self, start_offset: i64) {
        self.producers.clear();
        self.end_offset = start_offset;
    }

    /// Decides what to do with a client batch, without changing anything.
    /// `last_seq` is `last_sequence(first_seq, last_offset_delta)`.
    pub fn check(&self, producer_id: i64, epoch: i16, first_seq: i32, last_seq: i32) -> SeqCheck {
        if producer_id < 0 {
            // Not an idempotent batch: Kafka keeps no producer state for it.
            return SeqCheck::Append;
        }
        if first_seq < 0 {
            return SeqCheck::Reject(ProducerError::InvalidSequence {
                producer_id,
                first_seq,
            });
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            // KIP-360: unknown producers may start at any sequence.
            return SeqCheck::Append;
        };
        if epoch == entry.epoch {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            {
                return SeqCheck::Duplicate {
                    base_offset: dup.base_offset,
                    last_offset: dup.last_offset,
                    log_append_time_ms: dup.timestamp_ms,
                };
            }
        }
        if epoch < entry.epoch {
            return SeqCheck::Reject(ProducerError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current_epoch: entry.epoch,
            });
        }
        if epoch != entry.epoch {
            // A bumped epoch restarts the sequence at 0 (unless no epoch was ever known).
            if first_seq != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                return SeqCheck::Reject(ProducerError::OutOfOrderSequence {
                    producer_id,
                    epoch,
                    first_seq,
                    expected_seq: 0,
                    current_epoch: entry.epoch,
                });
            }
            return SeqCheck::Append;
        }
        let last = entry.last_seq();
        if entry.epoch == NO_PRODUCER_EPOCH || in_sequence(last, first_seq) {
            SeqCheck::Append
        } else {
            SeqCheck::Reject(ProducerError::OutOfOrderSequence {
                producer_id,
                epoch,
                first_seq,
                expected_seq: if last == i32::MAX || last < 0 {
                    0
                } else {
                    last + 1
                },
                current_epoch: entry.epoch,
            })
        }
    }

    /// Remembers a batch that was accepted by [`Self::check`] and given offsets.
    /// Batches without a producer id only move the end offset.
    pub fn record(&mut self, batch: &ProducerBatch) {
        // Offsets come from the broker's own counter, never from the wire: a violation is a
        // broker bug, not bad input.
        assert!(
            batch.base_offset >= 0 && batch.last_offset >= batch.base_offset,
            "producer state: bad offsets {batch:?}"
        );
        self.apply(batch);
    }

    fn apply(&mut self, batch: &ProducerBatch) {
        self.end_offset = self.end_offset.max(batch.last_offset.saturating_add(1));
        if batch.producer_id < 0 {
            return;
        }
        self.producers
            .entry(batch.producer_id)
            .or_insert_with(ProducerEntry::empty)
            .add_batch(batch);
    }

    /// Recovery: replays batches read from the log (in offset order) from [`Self::end_offset`]
    /// on, without validation, as Kafka does for `AppendOrigin.REPLICATION` / log loading.
    /// Batches already covered (`last_offset < end_offset`) and batches with impossible offsets
    /// are skipped. Returns how many batches were applied.
    pub fn rebuild_from<I>(&mut self, batches: I) -> usize
    where
        I: IntoIterator<Item = ProducerBatch>,
    {
        let mut applied = 0;
        for batch in batches {
            if batch.last_offset < batch.base_offset
                || batch.base_offset < 0
                || batch.last_offset < self.end_offset
            {
                continue;
            }
            self.apply(&batch);
            applied += 1;
        }
        applied
    }

    /// Drops producers idle for at least `producer_id_expiration_ms` (by the timestamp of their
    /// last batch), as Kafka's `removeExpiredProducers`. Returns how many were dropped.
    pub fn expire(&mut self, now_ms: i64, producer_id_expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            now_ms.saturating_sub(entry.last_timestamp_ms) < producer_id_expiration_ms
        });
        before - self.producers.len()
    }

    /// Serialises the table (all retained batches of every producer, and the end offset).
    /// Layout: `"RTPS"`, version u16, crc32c u32 of the rest, end_offset i64, count u32, then per
    /// producer (sorted by id): id i64, epoch i16, last timestamp i64, batch count u8, batches.
    /// Big-endian like the Kafka protocol.
    pub fn snapshot(&self) -> Vec<u8> {
        let batches: usize = self.producers.values().map(|e| e.batches.len()).sum();
        let mut out = Vec::with_capacity(
            SNAPSHOT_PREFIX_BYTES
                + SNAPSHOT_BODY_HEADER_BYTES
                + self.producers.len() * SNAPSHOT_ENTRY_BYTES
                + batches * SNAPSHOT_BATCH_BYTES,
        );
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 4]); // crc, filled below
        out.extend_from_slice(&self.end_offset.to_be_bytes());
        let count = u32::try_from(self.producers.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        let mut ids: Vec<i64> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids.iter().take(count as usize) {
            let entry = &self.producers[id]; // ok: id comes from the map's own keys
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
            out.push(entry.batches.len() as u8); // ok: at most NUM_BATCHES_TO_RETAIN
            for b in &entry.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.timestamp_ms.to_be_bytes());
            }
        }
        let crc = storage::batch::crc32c(&out[SNAPSHOT_PREFIX_BYTES..]);
        out[6..10].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Rebuilds a table from [`Self::snapshot`] bytes, verifying magic, version and checksum.
    /// Callers should then [`Self::expire`] (Kafka drops expired producers at load) and replay
    /// the log from [`Self::end_offset`].
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < SNAPSHOT_PREFIX_BYTES + SNAPSHOT_BODY_HEADER_BYTES {
            return Err(SnapshotError::Truncated(bytes.len()));
        }
        if bytes[0..4] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let mut r = Reader::new(&bytes[4..]);
        let version = r.u16()?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let stored = r.u32()?;
        let computed = storage::batch::crc32c(&bytes[SNAPSHOT_PREFIX_BYTES..]);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        let end_offset = r.i64()?;
        let count = r.u32()? as usize;
        // Bound the allocation by what the bytes can actually hold.
        if count > r.remaining() / SNAPSHOT_ENTRY_BYTES {
            return Err(SnapshotError::Malformed(
                "producer count exceeds snapshot size",
            ));
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp_ms = r.i64()?;
            let n = usize::from(r.u8()?);
            if n > NUM_BATCHES_TO_RETAIN {
                return Err(SnapshotError::Malformed("too many batches for a producer"));
            }
            if id < 0 {
                return Err(SnapshotError::Malformed("negative producer id"));
            }
            let mut batches = VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN);
            for _ in 0..n {
                let b = BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp_ms: r.i64()?,
                };
                if b.last_offset < b.base_offset {
                    return Err(SnapshotError::Malformed(
                        "batch with last offset below base",
                    ));
                }
                batches.push_back(b);
            }
            let entry = ProducerEntry {
                epoch,
                batches,
                last_timestamp_ms,
            };
            if producers.insert(id, entry).is_some() {
                return Err(SnapshotError::Malformed("duplicate producer id"));
            }
        }
        if r.remaining() != 0 {
            return Err(SnapshotError::Malformed("trailing bytes"));
        }
        Ok(ProducerStateTable {
            producers,
            end_offset,
        })
    }
}

/// Bounds-checked big-endian reader for snapshot and allocator files.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let end = self.pos + N;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(SnapshotError::Truncated(self.bytes.len()))?;
        self.pos = end;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn i16(&mut self) -> Result<i16, SnapshotError> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, SnapshotError> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

// ---------------------------------------------------------------------------------------------
// Producer id allocation
// ---------------------------------------------------------------------------------------------

/// Default number of producer ids reserved per persisted block (Kafka's controller hands out
/// blocks of 1000 too).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// A contiguous range `[next, end)` of producer ids reserved for this node. Pure logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    next: i64,
    end: i64,
}

impl ProducerIdBlock {
    /// The block `[first, first + size)`; `None` if it would be empty, negative or overflow.
    pub fn new(first: i64, size: i64) -> Option<Self> {
        if first < 0 || size <= 0 {
            return None;
        }
        let end = first.checked_add(size)?;
        Some(ProducerIdBlock { next: first, end })
    }

    /// Takes the next id, or `None` when the block is used up.
    pub fn claim(&mut self) -> Option<i64> {
        if self.next >= self.end {
            return None;
        }
        let id = self.next;
        self.next += 1;
        Some(id)
    }

    /// Ids still available in this block.
    pub fn remaining(&self) -> i64 {
        self.end - self.next
    }

    /// First id after this block: where the next block starts.
    pub fn end(&self) -> i64 {
        self.end
    }
}

/// Errors reading the legacy producer-id file.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("producer id file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("producer id file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: &'static str },
}

const PID_FILE_MAGIC: [u8; 4] = *b"RTPI";
const PID_FILE_VERSION: u16 = 1;
/// magic + version + reserved_end i64 + crc32c u32.
const PID_FILE_BYTES: usize = 4 + 2 + 8 + 4;

/// The end of the producer-id range reserved by the file `path` that brokers before the
/// metadata image held producer-id blocks wrote (`meta/producer_ids`), or `None` if there is
/// no such file. The controller folds it into the image once at start-up so ids never go
/// backwards after an upgrade. A corrupt file is an error, never a reset to 0.
pub fn read_legacy_reserved_end(path: &Path) -> Result<Option<i64>, ProducerIdError> {
    match fs::read(path) {
        Ok(bytes) => decode_pid_file(path, &bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ProducerIdError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn decode_pid_file(path: &Path, bytes: &[u8]) -> Result<i64, ProducerIdError> {
    let corrupt = |reason| ProducerIdError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() != PID_FILE_BYTES {
        return Err(corrupt("wrong length"));
    }
    if bytes[0..4] != PID_FILE_MAGIC {
        return Err(corrupt("bad magic"));
    }
    let mut r = Reader::new(&bytes[4..]);
    let version = r.u16().map_err(|_| corrupt("truncated"))?;
    if version != PID_FILE_VERSION {
        return Err(corrupt("unsupported version"));
    }
    let reserved_end = r.i64().map_err(|_| corrupt("truncated"))?;
    let stored = r.u32().map_err(|_| corrupt("truncated"))?;
    if stored != storage::batch::crc32c(&bytes[..PID_FILE_BYTES - 4]) {
        return Err(corrupt("checksum mismatch"));
    }
    if reserved_end < 0 {
        return Err(corrupt("negative reserved end"));
    }
    Ok(reserved_end)
}

/// Writes the legacy file format (tests of the upgrade path only).
#[cfg(test)]
pub fn write_pid_file(path: &Path, reserved_end: i64) -> Result<(), ProducerIdError> {
    let io_err = |source| ProducerIdError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::with_capacity(PID_FILE_BYTES);
    bytes.extend_from_slice(&PID_FILE_MAGIC);
    bytes.extend_from_slice(&PID_FILE_VERSION.to_be_bytes());
    bytes.extend_from_slice(&reserved_end.to_be_bytes());
    let crc = storage::batch::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(bytes.len(), PID_FILE_BYTES);

    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp).map_err(io_err)?;
        f.write_all(&bytes).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
    }
    fs::rename(&tmp, path).map_err(io_err)?;
    // The rename is only durable once the directory entry is.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err)?;
    // Pair assertion: what is on disk now decodes to what we meant to write.
    let back = fs::read(path).map_err(io_err)?;
    let decoded = decode_pid_file(path, &back)?;
    assert_eq!(decoded, reserved_end, "producer id file read-back mismatch");
    Ok(())
}

impl ProducerStateTable {
    /// Producer id → last offset of its last batch, for every producer with state: the
    /// batches compaction must keep (emptied if need be), as Kafka's cleaner does.
    pub fn last_batch_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .map(|(id, entry)| (*id, entry.last_data_offset()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::KafkaCode;

    fn batch(pid: i64, epoch: i16, first: i32, count: i32, base: i64, ts: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: pid,
            producer_epoch: epoch,
            first_seq: first,
            last_seq: increment_sequence(first, count - 1),
            base_offset: base,
            last_offset: base + i64::from(count) - 1,
            max_timestamp_ms: ts,
        }
    }

    fn check_batch(t: &ProducerStateTable, b: &ProducerBatch) -> SeqCheck {
        t.check(b.producer_id, b.producer_epoch, b.first_seq, b.last_seq)
    }

    /// check + record, as the broker does; returns the check outcome.
    fn produce(t: &mut ProducerStateTable, b: &ProducerBatch) -> SeqCheck {
        let r = check_batch(t, b);
        if r == SeqCheck::Append {
            t.record(b);
        }
        r
    }

    fn code(r: SeqCheck) -> i16 {
        match r {
            SeqCheck::Reject(e) => e.kafka_code(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_rollback_forgets_the_lost_batches() {
        let mut t = ProducerStateTable::new();
        assert_eq!(produce(&mut t, &batch(1, 0, 0, 5, 0, 1)), SeqCheck::Append);
        assert_eq!(produce(&mut t, &batch(1, 0, 5, 5, 5, 2)), SeqCheck::Append);
        assert_eq!(produce(&mut t, &batch(2, 0, 0, 5, 10, 3)), SeqCheck::Append);
        // The write of offsets 5.. failed: the retry of seq 5-9 is new again, not a duplicate.
        t.forget_from(5);
        assert_eq!(check_batch(&t, &batch(1, 0, 5, 5, 5, 2)), SeqCheck::Append);
        assert!(t.entry(2).is_none());
        assert_eq!(t.end_offset(), 5);
        assert!(matches!(
            check_batch(&t, &batch(1, 0, 0, 5, 0, 1)),
            SeqCheck::Duplicate { base_offset: 0, .. }
        ));
    }

    #[test]
    fn sequence_helpers_wrap_like_kafka() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(last_sequence(i32::MAX - 2, 4), 1);
        assert_eq!(last_sequence(-1, 4), NO_SEQUENCE);
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(-1, 0));
        assert!(!in_sequence(i32::MAX, i32::MIN));
        assert!(!in_sequence(3, 5));
    }

    #[test]
    fn non_idempotent_batches_bypass_state() {
        let mut t = ProducerStateTable::new();
        assert_eq!(t.check(-1, -1, -1, -1), SeqCheck::Append);
        t.record(&batch(-1, -1, 0, 3, 0, 10));
        assert!(t.is_empty());
        assert_eq!(t.end_offset(), 3);
    }

    #[test]
    fn negative_sequence_with_producer_id_is_invalid_record() {
        let t = ProducerStateTable::new();
        assert_eq!(code(t.check(7, 0, -1, -1)), 87);
    }

    #[test]
    fn unknown_producer_accepts_any_first_sequence() {
        let mut t = ProducerStateTable::new();
        assert_eq!(produce(&mut t, &batch(1, 0, 0, 1, 0, 1)), SeqCheck::Append);
        // KIP-360: a producer whose state is gone may continue at its current sequence.
        assert_eq!(produce(&mut t, &batch(2, 3, 42, 2, 1, 1)), SeqCheck::Append);
        assert_eq!(t.entry(2).map(|e| e.last_seq()), Some(43));
        assert_eq!(produce(&mut t, &batch(2, 3, 44, 1, 3, 1)), SeqCheck::Append);
        assert_eq!(code(produce(&mut t, &batch(2, 3, 46, 1, 4, 1))), 45);
    }

    #[test]
    fn in_order_batches_append_and_gaps_are_out_of_order() {
        let mut t = ProducerStateTable::new();
        assert_eq!(produce(&mut t, &batch(1, 0, 0, 5, 0, 1)), SeqCheck::Append);
        assert_eq!(produce(&mut t, &batch(1, 0, 5, 5, 5, 1)), SeqCheck::Append);
        // gap
        match produce(&mut t, &batch(1, 0, 11, 1, 10, 1)) {
            SeqCheck::Reject(ProducerError::OutOfOrderSequence { expected_seq, .. }) => {
                assert_eq!(expected_seq, 10)
            }
            other => panic!("{other:?}"),
        }
        // overlap that is not an exact duplicate
        assert_eq!(code(produce(&mut t, &batch(1, 0, 7, 5, 10, 1))), 45);
        assert_eq!(code(produce(&mut t, &batch(1, 0, 5, 4, 10, 1))), 45);
        assert_eq!(
            produce(&mut t, &batch(1, 0, 10, 1, 10, 1)),
            SeqCheck::Append
        );
    }

    #[test]
    fn duplicates_within_the_last_five_batches_return_original_offsets() {
        let mut t = ProducerStateTable::new();
        for i in 0..7 {
            let b = batch(9, 2, i * 2, 2, 100 + i64::from(i) * 2, 1000 + i64::from(i));
            assert_eq!(produce(&mut t, &b), SeqCheck::Append);
        }
        // Batches 2..=6 are retained (the last 5), batches 0 and 1 are not.
        for i in 2..7 {
            let b = batch(9, 2, i * 2, 2, 999, 0);
            assert_eq!(
                check_batch(&t, &b),
                SeqCheck::Duplicate {
                    base_offset: 100 + i64::from(i) * 2,
                    last_offset: 101 + i64::from(i) * 2,
                    log_append_time_ms: 1000 + i64::from(i),
                },
                "batch {i}"
            );
        }
        for i in 0..2 {
            assert_eq!(code(check_batch(&t, &batch(9, 2, i * 2, 2, 999, 0))), 45);
        }
        // Same range with another epoch is not a duplicate: older epoch is fenced...
        assert_eq!(code(check_batch(&t, &batch(9, 1, 12, 2, 999, 0))), 47);
        // ...and a newer epoch must restart at 0.
        assert_eq!(code(check_batch(&t, &batch(9, 3, 12, 2, 999, 0))), 45);
        assert_eq!(
            check_batch(&t, &batch(9, 3, 0, 2, 999, 0)),
            SeqCheck::Append
        );
    }

    #[test]
    fn duplicate_check_precedes_epoch_and_sequence_checks() {
        let mut t = ProducerStateTable::new();
        produce(&mut t, &batch(4, 0, 0, 1, 0, 5));
        produce(&mut t, &batch(4, 0, 1, 1, 1, 6));
        // A retry of the first batch (not the last one) is still a duplicate.
        assert_eq!(
            check_batch(&t, &batch(4, 0, 0, 1, 50, 0)),
            SeqCheck::Duplicate {
                base_offset: 0,
                last_offset: 0,
                log_append_time_ms: 5
            }
        );
    }

    #[test]
    fn epoch_rules() {
        let mut t = ProducerStateTable::new();
        produce(&mut t, &batch(1, 5, 0, 3, 0, 1));
        assert_eq!(code(produce(&mut t, &batch(1, 4, 3, 1, 3, 1))), 47);
        assert_eq!(code(produce(&mut t, &batch(1, 6, 3, 1, 3, 1))), 45);
        assert_eq!(produce(&mut t, &batch(1, 6, 0, 1, 3, 1)), SeqCheck::Append);
        // The epoch bump dropped the old epoch's batches.
        assert_eq!(t.entry(1).map(|e| e.batches().count()), Some(1));
        assert_eq!(code(produce(&mut t, &batch(1, 5, 0, 3, 4, 1))), 47);
        // Epochs may jump by more than one (e.g. InitProducerId after a timeout).
        assert_eq!(produce(&mut t, &batch(1, 9, 0, 1, 4, 1)), SeqCheck::Append);
        // The epoch is a signed short; Kafka bumps it up to Short.MAX_VALUE.
        assert_eq!(
            produce(&mut t, &batch(1, i16::MAX, 0, 1, 5, 1)),
            SeqCheck::Append
        );
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut t = ProducerStateTable::new();
        let b = batch(3, 0, i32::MAX - 4, 5, 0, 1);
        assert_eq!(b.last_seq, i32::MAX);
        assert_eq!(produce(&mut t, &b), SeqCheck::Append);
        assert_eq!(code(check_batch(&t, &batch(3, 0, i32::MIN, 1, 5, 1))), 87);
        // A batch can straddle the wrap.
        let straddle = batch(3, 0, 0, 3, 5, 1);
        assert_eq!(produce(&mut t, &straddle), SeqCheck::Append);
        let straddle2 = batch(3, 1, 0, 1, 8, 1);
        assert_eq!(produce(&mut t, &straddle2), SeqCheck::Append);
        let mut t = ProducerStateTable::new();
        let b = batch(3, 0, i32::MAX - 1, 4, 0, 1);
        assert_eq!(b.last_seq, 1);
        assert_eq!(produce(&mut t, &b), SeqCheck::Append);
        assert_eq!(
            check_batch(&t, &batch(3, 0, i32::MAX - 1, 4, 9, 1)),
            SeqCheck::Duplicate {
                base_offset: 0,
                last_offset: 3,
                log_append_time_ms: 1
            }
        );
        assert_eq!(produce(&mut t, &batch(3, 0, 2, 1, 4, 1)), SeqCheck::Append);
    }

    #[test]
    fn same_epoch_entry_without_batches_requires_zero() {
        // Kafka: a known epoch with no batch metadata compares against NO_SEQUENCE.
        let mut t = ProducerStateTable::new();
        produce(&mut t, &batch(1, 0, 0, 1, 0, 1));
        let snap = {
            let mut s = t.clone();
            if let Some(e) = s.producers.get_mut(&1) {
                e.batches.clear();
            }
            s
        };
        assert_eq!(code(check_batch(&snap, &batch(1, 0, 5, 1, 1, 1))), 45);
        assert_eq!(
            check_batch(&snap, &batch(1, 0, 0, 1, 1, 1)),
            SeqCheck::Append
        );
    }

    #[test]
    fn expire_by_last_timestamp() {
        let mut t = ProducerStateTable::new();
        produce(&mut t, &batch(1, 0, 0, 1, 0, 1_000));
        produce(&mut t, &batch(2, 0, 0, 1, 1, 5_000));
        assert_eq!(t.expire(10_999, 10_000), 0);
        assert_eq!(t.expire(11_000, 10_000), 1);
        assert!(t.entry(1).is_none() && t.entry(2).is_some());
        // An expired producer is unknown again: any sequence is accepted.
        assert_eq!(check_batch(&t, &batch(1, 0, 77, 1, 2, 1)), SeqCheck::Append);
        assert_eq!(t.expire(i64::MAX, DEFAULT_PRODUCER_ID_EXPIRATION_MS), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn rebuild_matches_live_state_and_skips_applied_batches() {
        let mut live = ProducerStateTable::new();
        let mut log = Vec::new();
        let mut offset = 0;
        for i in 0..20 {
            let pid = i64::from(i % 3);
            let epoch = if i > 12 && pid == 1 { 1 } else { 0 };
            let seq = live
                .entry(pid)
                .filter(|e| e.epoch() == epoch)
                .map_or(0, |e| e.last_seq() + 1);
            let b = batch(pid, epoch, seq, 2, offset, i64::from(i));
            assert_eq!(produce(&mut live, &b), SeqCheck::Append);
            log.push(b);
            offset += 2;
        }
        let mut rebuilt = ProducerStateTable::new();
        assert_eq!(rebuilt.rebuild_from(log.iter().copied()), 20);
        assert_eq!(rebuilt, live);
        // Replaying again applies nothing (all below end_offset).
        assert_eq!(rebuilt.rebuild_from(log.iter().copied()), 0);
        assert_eq!(rebuilt, live);
        // Restoring a snapshot taken half way and replaying the rest gives the same state.
        let mut half = ProducerStateTable::new();
        half.rebuild_from(log[..10].iter().copied());
        let mut restored = ProducerStateTable::restore(&half.snapshot()).unwrap();
        assert_eq!(restored.end_offset(), 20);
        assert_eq!(restored.rebuild_from(log.iter().copied()), 10);
        assert_eq!(restored, live);
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let mut t = ProducerStateTable::new();
        for pid in 0..50 {
            for i in 0..(pid % 8) {
                produce(&mut t, &batch(pid, 1, i as i32, 1, pid * 100 + i, pid));
            }
        }
        let bytes = t.snapshot();
        let back = ProducerStateTable::restore(&bytes).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.snapshot(), bytes, "snapshot is deterministic");

        let empty = ProducerStateTable::new();
        assert_eq!(
            ProducerStateTable::restore(&empty.snapshot()).unwrap(),
            empty
        );

        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(ProducerStateTable::restore(&bad).is_err(), "flip at {i}");
        }
        for len in 0..bytes.len() {
            assert!(ProducerStateTable::restore(&bytes[..len]).is_err());
        }
        let mut v2 = bytes.clone();
        v2[5] = 2;
        assert_eq!(
            ProducerStateTable::restore(&v2),
            Err(SnapshotError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn snapshot_rejects_huge_counts_without_allocating() {
        let mut bytes = ProducerStateTable::new().snapshot();
        bytes[18..22].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = storage::batch::crc32c(&bytes[SNAPSHOT_PREFIX_BYTES..]);
        bytes[6..10].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            ProducerStateTable::restore(&bytes),
            Err(SnapshotError::Malformed(_))
        ));
    }

    #[test]
    fn clear_and_advance() {
        let mut t = ProducerStateTable::new();
        produce(&mut t, &batch(1, 0, 0, 1, 0, 1));
        t.advance_end_offset(100);
        assert_eq!(t.end_offset(), 100);
        t.advance_end_offset(50);
        assert_eq!(t.end_offset(), 100);
        t.clear(40);
        assert!(t.is_empty());
        assert_eq!(t.end_offset(), 40);
    }

    #[test]
    fn from_header_computes_last_sequence_and_offset() {
        let b = ProducerBatch::from_header(100, 4, 77, 5, 1, i32::MAX - 1);
        assert_eq!(b.last_seq, 2);
        assert_eq!(b.last_offset, 104);
        let n = ProducerBatch::from_header(100, 0, 77, -1, -1, -1);
        assert_eq!(n.last_seq, NO_SEQUENCE);
    }

    #[test]
    fn producer_id_block_logic() {
        assert!(ProducerIdBlock::new(-1, 10).is_none());
        assert!(ProducerIdBlock::new(0, 0).is_none());
        assert!(ProducerIdBlock::new(i64::MAX - 1, 2).is_none());
        let mut b = ProducerIdBlock::new(10, 3).unwrap();
        assert_eq!(b.remaining(), 3);
        assert_eq!(b.claim(), Some(10));
        assert_eq!(b.claim(), Some(11));
        assert_eq!(b.claim(), Some(12));
        assert_eq!(b.claim(), None);
        assert_eq!(b.end(), 13);
    }

    #[test]
    fn legacy_producer_id_file_is_read_and_corruption_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producer_ids");
        assert_eq!(read_legacy_reserved_end(&path).unwrap(), None);
        write_pid_file(&path, 8000).unwrap();
        assert_eq!(read_legacy_reserved_end(&path).unwrap(), Some(8000));
        // Corruption is reported, never silently reset.
        let mut bytes = fs::read(&path).unwrap();
        bytes[8] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read_legacy_reserved_end(&path),
            Err(ProducerIdError::Corrupt { .. })
        ));
        fs::write(&path, b"RTPI").unwrap();
        assert!(matches!(
            read_legacy_reserved_end(&path),
            Err(ProducerIdError::Corrupt {
                reason: "wrong length",
                ..
            })
        ));
    }

    mod model {
        //! Property test against a deliberately different model: the full history of accepted
        //! batches per producer, with Kafka's rules phrased directly.
        use super::super::*;
        use crate::errors::KafkaCode;
        use proptest::prelude::*;

        #[derive(Default)]
        struct Model {
            /// pid -> (epoch, accepted batches of that epoch, all of them)
            producers: HashMap<i64, (i16, Vec<ProducerBatch>)>,
        }

        impl Model {
            fn expect(&self, b: &ProducerBatch) -> SeqCheck {
                let Some((epoch, history)) = self.producers.get(&b.producer_id) else {
                    return SeqCheck::Append;
                };
                let window = &history[history.len().saturating_sub(5)..];
                if b.producer_epoch == *epoch {
                    if let Some(d) = window
                        .iter()
                        .find(|d| d.first_seq == b.first_seq && d.last_seq == b.last_seq)
                    {
                        return SeqCheck::Duplicate {
                            base_offset: d.base_offset,
                            last_offset: d.last_offset,
                            log_append_time_ms: d.max_timestamp_ms,
                        };
                    }
                }
                let reject = |code: i16| -> SeqCheck {
                    // Only the code is compared below.
                    if code == 47 {
                        SeqCheck::Reject(ProducerError::InvalidProducerEpoch {
                            producer_id: 0,
                            epoch: 0,
                            current_epoch: 0,
                        })
                    } else {
                        SeqCheck::Reject(ProducerError::OutOfOrderSequence {
                            producer_id: 0,
                            epoch: 0,
                            first_seq: 0,
                            expected_seq: 0,
                            current_epoch: 0,
                        })
                    }
                };
                if b.producer_epoch < *epoch {
                    return reject(47);
                }
                if b.producer_epoch > *epoch {
                    return if b.first_seq == 0 {
                        SeqCheck::Append
                    } else {
                        reject(45)
                    };
                }
                let expected = match history.last() {
                    None => 0,
                    Some(last) if last.last_seq == i32::MAX => 0,
                    Some(last) => last.last_seq + 1,
                };
                if b.first_seq == expected {
                    SeqCheck::Append
                } else {
                    reject(45)
                }
            }

            fn accept(&mut self, b: ProducerBatch) {
                let e = self
                    .producers
                    .entry(b.producer_id)
                    .or_insert((b.producer_epoch, Vec::new()));
                if e.0 != b.producer_epoch {
                    *e = (b.producer_epoch, Vec::new());
                }
                e.1.push(b);
            }

            fn next_seq(&self, pid: i64) -> (i16, i32) {
                match self.producers.get(&pid) {
                    None => (0, 0),
                    Some((epoch, h)) => (
                        *epoch,
                        h.last().map_or(0, |b| increment_sequence(b.last_seq, 1)),
                    ),
                }
            }
        }

        #[derive(Debug, Clone)]
        enum Op {
            /// The well-behaved next batch of a producer, `count` records.
            Next {
                pid: i64,
                count: i32,
            },
            /// A retry of one of the producer's last `back` batches (may be outside the window).
            Retry {
                pid: i64,
                back: usize,
            },
            /// Arbitrary sequence / epoch.
            Random {
                pid: i64,
                epoch: i16,
                seq: i32,
                count: i32,
            },
            /// Epoch bump to `epoch + delta` starting at `seq`.
            Bump {
                pid: i64,
                delta: i16,
                seq: i32,
            },
            /// Jump this producer's sequence close to the wrap (via an unknown-producer start).
            NearWrap {
                pid: i64,
                below_max: i32,
                count: i32,
            },
            SnapshotRestore,
        }

        fn op() -> impl Strategy<Value = Op> {
            let pid = 0i64..4;
            prop_oneof![
                6 => (pid.clone(), 1i32..6).prop_map(|(pid, count)| Op::Next { pid, count }),
                3 => (pid.clone(), 0usize..8).prop_map(|(pid, back)| Op::Retry { pid, back }),
                2 => (pid.clone(), 0i16..4, prop_oneof![0i32..20, Just(i32::MAX), any::<i32>()], 1i32..4)
                    .prop_map(|(pid, epoch, seq, count)| Op::Random { pid, epoch, seq, count }),
                1 => (pid.clone(), 0i16..3, prop_oneof![Just(0), 0i32..5])
                    .prop_map(|(pid, delta, seq)| Op::Bump { pid, delta, seq }),
                1 => (4i64..6, 0i32..6, 1i32..5)
                    .prop_map(|(pid, below_max, count)| Op::NearWrap { pid, below_max, count }),
                1 => Just(Op::SnapshotRestore),
            ]
        }

        fn same_outcome(a: &SeqCheck, b: &SeqCheck) -> bool {
            match (a, b) {
                (SeqCheck::Reject(x), SeqCheck::Reject(y)) => x.kafka_code() == y.kafka_code(),
                _ => a == b,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]
            #[test]
            fn table_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
                let mut table = ProducerStateTable::new();
                let mut model = Model::default();
                let mut log: Vec<ProducerBatch> = Vec::new();
                let mut next_offset = 0i64;
                let mut ts = 0i64;
                for op in ops {
                    let candidate = match op {
                        Op::SnapshotRestore => {
                            table = ProducerStateTable::restore(&table.snapshot()).unwrap();
                            continue;
                        }
                        Op::Next { pid, count } => {
                            let (epoch, seq) = model.next_seq(pid);
                            (pid, epoch, seq, count)
                        }
                        Op::Retry { pid, back } => {
                            let hist: Vec<&ProducerBatch> =
                                log.iter().filter(|b| b.producer_id == pid).collect();
                            let Some(b) = hist.iter().rev().nth(back) else { continue };
                            (pid, b.producer_epoch, b.first_seq,
                             (b.last_offset - b.base_offset) as i32 + 1)
                        }
                        Op::Random { pid, epoch, seq, count } => (pid, epoch, seq, count),
                        Op::Bump { pid, delta, seq } => {
                            let (epoch, _) = model.next_seq(pid);
                            (pid, epoch.saturating_add(delta), seq, 1)
                        }
                        Op::NearWrap { pid, below_max, count } => {
                            let (epoch, seq) = model.next_seq(pid);
                            if model.producers.contains_key(&pid) {
                                (pid, epoch, seq, count)
                            } else {
                                (pid, 0, i32::MAX - below_max, count)
                            }
                        }
                    };
                    let (pid, epoch, first_seq, count) = candidate;
                    ts += 1;
                    let b = ProducerBatch {
                        producer_id: pid,
                        producer_epoch: epoch,
                        first_seq,
                        last_seq: if first_seq < 0 { NO_SEQUENCE } else { increment_sequence(first_seq, count - 1) },
                        base_offset: next_offset,
                        last_offset: next_offset + i64::from(count) - 1,
                        max_timestamp_ms: ts,
                    };
                    let got = table.check(pid, epoch, b.first_seq, b.last_seq);
                    if first_seq < 0 {
                        prop_assert_eq!(got.clone(), SeqCheck::Reject(ProducerError::InvalidSequence { producer_id: pid, first_seq }));
                        continue;
                    }
                    let want = model.expect(&b);
                    prop_assert!(same_outcome(&got, &want), "batch {:?}: table {:?}, model {:?}", b, got, want);
                    if got == SeqCheck::Append {
                        table.record(&b);
                        model.accept(b);
                        log.push(b);
                        next_offset = b.last_offset + 1;
                    }
                }
                // Recovery from the log reproduces the live table exactly.
                let mut rebuilt = ProducerStateTable::new();
                rebuilt.rebuild_from(log.iter().copied());
                prop_assert_eq!(&rebuilt, &table);
                prop_assert_eq!(ProducerStateTable::restore(&table.snapshot()).unwrap(), table);
            }
        }
    }
}
