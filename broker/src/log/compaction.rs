//! Log compaction's decisions, without I/O: which records of a compacted partition survive,
//! which segments to clean and when, and how a cleaned batch is re-encoded.
//!
//! Owns: the key → latest-offset map ([`OffsetMap`], built over the dirty part of the log),
//! the per-batch rule ([`clean_batch`]), the cleaning plan of a partition ([`plan`]) and the
//! grouping of cleaned segments into merged ones ([`group_segments`]). The shard's cleaner
//! (`shard::cleaner`) reads segments, feeds batches through these functions, and swaps the
//! result in with `storage::PartitionLog::replace_segments`.
//!
//! Rules (Kafka's `LogCleaner`, with the deviations noted):
//! - a record survives when no later record of the dirty section has its key; records
//!   without a key are dropped (a compacted topic refuses them at produce);
//! - a tombstone (null value) that survives is kept for `delete.retention.ms` counted from
//!   the pass that first kept it (KIP-534): that pass writes the batch's *delete horizon*
//!   (now + `delete.retention.ms`) into it (attributes bit 6, base timestamp = horizon,
//!   record timestamps unchanged), and a later pass past the horizon removes the tombstone.
//!   So a tombstone with an old timestamp is still seen by consumers that read up to the
//!   log end within `delete.retention.ms` of its first cleaning;
//! - transactions (Kafka's `CleanedTransactionMetadata`): the data batches of aborted
//!   transactions are dropped and never enter the key map (so an aborted update never hides
//!   a committed one); a COMMIT/ABORT marker stays while any data batch of its transaction
//!   remains before it; once none does, it gets a delete horizon like a tombstone and goes
//!   after it. The newest marker of every producer with state is kept (its epoch fences
//!   zombies after a restart). Only offsets below the last stable offset are cleaned, so
//!   every transaction seen is decided;
//! - the last batch of every producer with state is kept, emptied of its removed records
//!   (so the producer's sequence range and offsets survive, as Kafka does); other emptied
//!   batches go;
//! - a batch keeps its base offset and last offset delta (offsets never move; compacted
//!   logs have gaps); a changed batch is written in the topic's codec (`producer`: its own);
//!   an unchanged batch is copied byte for byte;
//! - only sealed segments wholly older than `min.compaction.lag.ms` are cleanable; a
//!   partition is cleaned when its dirty ratio reaches `min.cleanable.dirty.ratio`, or its
//!   oldest dirty data is older than `max.compaction.lag.ms`, or the delete horizon of a
//!   kept tombstone or marker has passed.
//!
//! Runs on: the partition's owning shard (called from its cleaner task).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use storage::batch::{BatchHeader, ATTR_DELETE_HORIZON};
use storage::SegmentInfo;

use crate::log::compression::{Codec, TopicCompression};
use crate::log::records::{self, DecodedBatch, RecordsError};
use crate::log::txn_index::{self, AbortedTxn};

/// Bytes one [`OffsetMap`] entry costs besides its key (hash slot, `Bytes` handle, offset).
pub const OFFSET_MAP_ENTRY_OVERHEAD_BYTES: usize = 64;

/// Latest offset of every key in the dirty section, bounded in memory
/// (`log.cleaner.dedupe.buffer.size`).
#[derive(Debug, Default)]
pub struct OffsetMap {
    latest: HashMap<Bytes, i64>,
    bytes: usize,
    max_bytes: usize,
}

impl OffsetMap {
    pub fn new(max_bytes: usize) -> OffsetMap {
        OffsetMap {
            latest: HashMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Memory the map accounts for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds the keyed records of a data batch (control batches carry no keys to compact).
    /// Returns false, adding nothing, when its new keys would exceed the memory bound.
    pub fn add_batch(&mut self, batch: &DecodedBatch) -> bool {
        if batch.info.is_control() {
            return true;
        }
        let extra: usize = batch
            .records
            .iter()
            .filter_map(|r| r.key.as_ref())
            .filter(|k| !self.latest.contains_key(*k))
            .map(|k| k.len() + OFFSET_MAP_ENTRY_OVERHEAD_BYTES)
            .sum();
        if self.bytes + extra > self.max_bytes && !self.latest.is_empty() {
            return false;
        }
        self.bytes += extra;
        for (offset, _, record) in batch.iter() {
            if let Some(key) = &record.key {
                let slot = self.latest.entry(key.clone()).or_insert(offset);
                *slot = (*slot).max(offset);
            }
        }
        true
    }

    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }
}

/// What one cleaning pass applies to every batch.
#[derive(Debug, Clone, Copy)]
pub struct CleanParams {
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    pub compression: TopicCompression,
    pub max_decompressed_bytes: usize,
}

/// What becomes of one stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Copied unchanged.
    Keep,
    /// Removed entirely.
    Drop,
    /// Replaced by these bytes (same base and last offset).
    Rewrite(Bytes),
}

/// Counters of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub records_kept: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Records of aborted transactions removed (also counted in `records_removed`).
    pub aborted_records_removed: u64,
    /// COMMIT/ABORT markers removed.
    pub markers_removed: u64,
    /// Earliest delete horizon of a kept tombstone or marker (`i64::MAX`: none kept).
    pub next_tombstone_expiry_ms: i64,
}

impl CleanStats {
    pub fn new() -> CleanStats {
        CleanStats {
            next_tombstone_expiry_ms: i64::MAX,
            ..CleanStats::default()
        }
    }
}

/// The delete horizon a cleaner wrote into a batch (KIP-534), if any.
pub fn delete_horizon_ms(header: &BatchHeader) -> Option<i64> {
    (header.attributes & ATTR_DELETE_HORIZON != 0).then_some(header.base_timestamp)
}

/// The aborted transactions of a partition, by producer: is a data batch part of one?
#[derive(Debug, Default)]
pub struct AbortedIndex {
    /// Producer id -> (first offset, ABORT marker offset), sorted by first offset (one
    /// producer's transactions never overlap).
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl AbortedIndex {
    pub fn new(aborted: &[AbortedTxn]) -> AbortedIndex {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in aborted {
            by_producer
                .entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        for v in by_producer.values_mut() {
            v.sort_unstable();
        }
        AbortedIndex { by_producer }
    }

    /// True for a transactional data batch of an aborted transaction.
    pub fn is_aborted(&self, header: &BatchHeader) -> bool {
        if !header.is_transactional() || header.is_control() || header.producer_id < 0 {
            return false;
        }
        let Some(txns) = self.by_producer.get(&header.producer_id) else {
            return false;
        };
        let after = txns.partition_point(|(first, _)| *first <= header.base_offset);
        after > 0 && header.base_offset < txns[after - 1].1
    }
}

/// What a pass keeps for the producers of a partition (their state must survive cleaning).
#[derive(Debug, Clone, Default)]
pub struct ProducerRetention {
    /// Producer id -> last offset of its last data batch, for every producer with state.
    pub last_data_offsets: HashMap<i64, i64>,
    /// Producer id -> offset of its newest COMMIT/ABORT marker.
    pub newest_marker_offsets: HashMap<i64, i64>,
}

impl ProducerRetention {
    fn is_last_data_batch(&self, header: &BatchHeader) -> bool {
        header.producer_id >= 0
            && self.last_data_offsets.get(&header.producer_id) == Some(&header.last_offset())
    }

    fn is_newest_marker(&self, header: &BatchHeader) -> bool {
        self.last_data_offsets.contains_key(&header.producer_id)
            && self.newest_marker_offsets.get(&header.producer_id) == Some(&header.base_offset)
    }
}

/// Transaction state carried through one pass, batch by batch from the log start.
#[derive(Debug, Default)]
pub struct TxnTracker {
    /// Producers with a data batch of their current transaction seen since their last marker.
    data_seen: HashSet<i64>,
    /// Offsets of ABORT markers with no data left before them, in log order: their
    /// transactions must leave the partition's aborted list once the cleaned segments are in.
    pub emptied_aborts: Vec<i64>,
}

/// Everything one pass applies to every batch.
#[derive(Debug)]
pub struct CleanContext<'a> {
    pub map: &'a OffsetMap,
    pub producers: &'a ProducerRetention,
    pub aborted: &'a AbortedIndex,
    pub params: CleanParams,
}

/// Applies the compaction rules (module docs) to one stored batch. Batches must come in log
/// order from the log start (`txns` follows the transactions through the pass).
pub fn clean_batch(
    batch: &Bytes,
    ctx: &CleanContext<'_>,
    txns: &mut TxnTracker,
    stats: &mut CleanStats,
) -> Result<BatchOutcome, RecordsError> {
    let header = BatchHeader::parse_and_verify(batch)?;
    if header.is_control() {
        return clean_marker(batch, &header, ctx, txns, stats);
    }
    let params = &ctx.params;
    let retain_empty = ctx.producers.is_last_data_batch(&header);
    if header.is_transactional() && header.producer_id >= 0 {
        txns.data_seen.insert(header.producer_id);
    }
    if ctx.aborted.is_aborted(&header) {
        let count = u64::try_from(header.records_count).unwrap_or(0);
        stats.records_removed += count;
        stats.aborted_records_removed += count;
        return Ok(match (retain_empty, count) {
            (false, _) => BatchOutcome::Drop,
            (true, 0) => BatchOutcome::Keep,
            (true, _) => {
                BatchOutcome::Rewrite(records::encode_retained(&header, &[], Codec::None, None)?)
            }
        });
    }
    let decoded = records::decode_batch(batch, params.max_decompressed_bytes)?;
    let horizon = delete_horizon_ms(&header);
    let retain_deletes = horizon.is_none_or(|h| params.now_ms < h);
    let mut kept = Vec::with_capacity(decoded.records.len());
    for (offset, _, record) in decoded.iter() {
        let Some(key) = &record.key else { continue };
        if ctx.map.latest(key).is_some_and(|latest| latest > offset) {
            continue;
        }
        if record.value.is_none() && !retain_deletes {
            stats.tombstones_removed += 1;
            continue;
        }
        kept.push(record.clone());
    }
    let removed = decoded.records.len() - kept.len();
    stats.records_kept += kept.len() as u64;
    stats.records_removed += removed as u64;
    let keeps_tombstone = kept.iter().any(|r| r.value.is_none());
    let new_horizon = (keeps_tombstone && horizon.is_none())
        .then(|| params.now_ms.saturating_add(params.delete_retention_ms));
    if keeps_tombstone {
        let due = horizon.or(new_horizon).unwrap_or(i64::MAX);
        stats.next_tombstone_expiry_ms = stats.next_tombstone_expiry_ms.min(due);
    }
    if removed == 0 && new_horizon.is_none() {
        return Ok(BatchOutcome::Keep);
    }
    if kept.is_empty() && !retain_empty {
        return Ok(BatchOutcome::Drop);
    }
    let codec = params
        .compression
        .target_codec(Codec::from_attributes(header.attributes)?);
    let out = records::encode_retained(&decoded.info, &kept, codec, new_horizon)?;
    Ok(BatchOutcome::Rewrite(out))
}

/// A COMMIT/ABORT marker: kept while data of its transaction remains before it (or it is
/// its producer's newest), else given a delete horizon, and dropped once that has passed.
fn clean_marker(
    batch: &Bytes,
    header: &BatchHeader,
    ctx: &CleanContext<'_>,
    txns: &mut TxnTracker,
    stats: &mut CleanStats,
) -> Result<BatchOutcome, RecordsError> {
    let params = &ctx.params;
    let data_seen = txns.data_seen.remove(&header.producer_id);
    let decoded = records::decode_batch(batch, params.max_decompressed_bytes)?;
    let commit = decoded
        .records
        .first()
        .and_then(|r| r.key.as_deref())
        .and_then(txn_index::parse_marker_key);
    if commit == Some(false) && !data_seen {
        txns.emptied_aborts.push(header.base_offset);
    }
    if commit.is_none() || data_seen || ctx.producers.is_newest_marker(header) {
        // Not a marker this cleaner understands, or still needed.
        return Ok(BatchOutcome::Keep);
    }
    match delete_horizon_ms(header) {
        Some(h) if h <= params.now_ms => {
            stats.markers_removed += 1;
            Ok(BatchOutcome::Drop)
        }
        Some(h) => {
            stats.next_tombstone_expiry_ms = stats.next_tombstone_expiry_ms.min(h);
            Ok(BatchOutcome::Keep)
        }
        None => {
            let h = params.now_ms.saturating_add(params.delete_retention_ms);
            stats.next_tombstone_expiry_ms = stats.next_tombstone_expiry_ms.min(h);
            let codec = Codec::from_attributes(header.attributes)?;
            let out = records::encode_retained(&decoded.info, &decoded.records, codec, Some(h))?;
            Ok(BatchOutcome::Rewrite(out))
        }
    }
}

/// A partition's topic settings that compaction reads.
#[derive(Debug, Clone, Copy)]
pub struct CompactionSettings {
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
}

/// Why and what to clean.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanPlan {
    /// Sealed segments to rewrite (from the log start), in offset order.
    pub segments: Vec<SegmentInfo>,
    /// First dirty offset: the map is built from the segments at or after it.
    pub dirty_from: i64,
    /// End of the cleanable range (the base of the first segment not cleaned).
    pub end: i64,
    pub dirty_ratio: f64,
}

/// Dirty bytes / cleanable bytes of a partition (0 when nothing is cleanable).
pub fn dirty_ratio(sealed: &[SegmentInfo], cleaner_offset: i64) -> f64 {
    let total: u64 = sealed.iter().map(|s| s.size_bytes).sum();
    let dirty: u64 = sealed
        .iter()
        .filter(|s| s.base_offset >= cleaner_offset)
        .map(|s| s.size_bytes)
        .sum();
    if total == 0 {
        0.0
    } else {
        dirty as f64 / total as f64
    }
}

/// Decides whether a partition needs cleaning now. `sealed`: its sealed segments (never the
/// active one); `next_base`: where the segment after the last sealed one starts;
/// `tombstone_expiry_ms`: when a kept tombstone may go.
pub fn plan(
    sealed: &[SegmentInfo],
    cleaner_offset: i64,
    settings: &CompactionSettings,
    tombstone_expiry_ms: i64,
    now_ms: i64,
) -> Option<CleanPlan> {
    // Only segments wholly older than min.compaction.lag.ms, and none after a younger one.
    let cleanable: Vec<SegmentInfo> = sealed
        .iter()
        .take_while(|s| s.max_timestamp_ms <= now_ms.saturating_sub(settings.min_compaction_lag_ms))
        .copied()
        .collect();
    let last = cleanable.last()?;
    let end = sealed
        .iter()
        .find(|s| s.base_offset > last.base_offset)
        .map_or(last.next_offset, |s| s.base_offset);
    let ratio = dirty_ratio(&cleanable, cleaner_offset);
    let first_dirty = cleanable.iter().find(|s| s.base_offset >= cleaner_offset);
    let overdue = first_dirty.is_some_and(|s| {
        s.max_timestamp_ms >= 0
            && now_ms.saturating_sub(s.max_timestamp_ms) > settings.max_compaction_lag_ms
    });
    let dirty = first_dirty.is_some() && ratio >= settings.min_cleanable_dirty_ratio;
    let tombstones_due = tombstone_expiry_ms <= now_ms;
    if !(dirty || overdue || tombstones_due) {
        return None;
    }
    Some(CleanPlan {
        segments: cleanable,
        dirty_from: cleaner_offset,
        end,
        dirty_ratio: ratio,
    })
}

/// Groups cleaned segments into runs to merge: adjacent, at most `segment_bytes` of input
/// together (the output is never larger) and spanning less than 2^31 offsets (the index's
/// relative offsets).
pub fn group_segments(segments: &[SegmentInfo], segment_bytes: u64) -> Vec<Vec<SegmentInfo>> {
    let mut groups: Vec<Vec<SegmentInfo>> = Vec::new();
    for s in segments {
        let fits = groups.last().is_some_and(|g| {
            let bytes: u64 = g.iter().map(|x| x.size_bytes).sum();
            let first = g[0].base_offset; // ok: groups are never empty
            bytes + s.size_bytes <= segment_bytes
                && s.next_offset.saturating_sub(first) < i64::from(i32::MAX)
        });
        match groups.last_mut() {
            Some(g) if fits => g.push(*s),
            _ => groups.push(vec![*s]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::records::{build_batch, BatchSpec, NewRecord};

    fn rec(key: &str, value: Option<&str>, ts: i64) -> NewRecord {
        NewRecord {
            timestamp: ts,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
        }
    }

    fn batch(base: i64, codec: Codec, records: &[NewRecord]) -> Bytes {
        build_batch(
            &BatchSpec {
                base_offset: base,
                codec,
                ..BatchSpec::default()
            },
            records,
        )
        .unwrap()
    }

    fn params(now_ms: i64) -> CleanParams {
        CleanParams {
            now_ms,
            delete_retention_ms: 1_000,
            compression: TopicCompression::Producer,
            max_decompressed_bytes: 1 << 20,
        }
    }

    fn decoded(b: &Bytes) -> DecodedBatch {
        records::decode_batch(b, 1 << 20).unwrap()
    }

    /// One batch through `clean_batch` with no aborted transactions and a fresh tracker.
    fn clean(
        b: &Bytes,
        map: &OffsetMap,
        last_data_offsets: &HashMap<i64, i64>,
        params: CleanParams,
        stats: &mut CleanStats,
    ) -> BatchOutcome {
        let producers = ProducerRetention {
            last_data_offsets: last_data_offsets.clone(),
            ..ProducerRetention::default()
        };
        let aborted = AbortedIndex::default();
        let ctx = CleanContext {
            map,
            producers: &producers,
            aborted: &aborted,
            params,
        };
        clean_batch(b, &ctx, &mut TxnTracker::default(), stats).unwrap()
    }

    #[test]
    fn newest_record_per_key_survives_in_every_codec() {
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let b1 = batch(
                0,
                codec,
                &[rec("a", Some("1"), 10), rec("b", Some("1"), 10)],
            );
            let b2 = batch(
                2,
                codec,
                &[rec("a", Some("2"), 11), rec("c", Some("1"), 11)],
            );
            let mut map = OffsetMap::new(1 << 20);
            assert!(map.add_batch(&decoded(&b1)));
            assert!(map.add_batch(&decoded(&b2)));
            assert_eq!(map.latest(b"a"), Some(2));
            let mut stats = CleanStats::new();
            let none = HashMap::new();
            let out = clean(&b1, &map, &none, params(100), &mut stats);
            let BatchOutcome::Rewrite(bytes) = out else {
                panic!("{codec:?}: {out:?}")
            };
            let d = decoded(&bytes);
            // Offsets stay: base 0, last offset delta 1, only "b" at offset 1 left.
            assert_eq!((d.info.base_offset, d.info.last_offset()), (0, 1));
            assert_eq!(Codec::from_attributes(d.info.attributes).unwrap(), codec);
            let kept: Vec<(i64, &[u8])> = d
                .iter()
                .map(|(o, _, r)| (o, r.key.as_deref().unwrap()))
                .collect();
            assert_eq!(kept, vec![(1, &b"b"[..])]);
            let out = clean(&b2, &map, &none, params(100), &mut stats);
            assert_eq!(out, BatchOutcome::Keep);
            assert_eq!((stats.records_kept, stats.records_removed), (3, 1));
        }
    }

    #[test]
    fn tombstones_go_after_delete_retention_and_emptied_batches_go_unless_a_producers_last() {
        let b1 = batch(0, Codec::None, &[rec("a", Some("1"), 10)]);
        let b2 = batch(1, Codec::None, &[rec("a", None, 500)]);
        let mut map = OffsetMap::new(1 << 20);
        map.add_batch(&decoded(&b1));
        map.add_batch(&decoded(&b2));
        let none = HashMap::new();
        let mut stats = CleanStats::new();
        assert_eq!(
            clean(&b1, &map, &none, params(600), &mut stats),
            BatchOutcome::Drop
        );
        // First seen: kept whatever its own timestamp, and the delete horizon (now +
        // delete.retention.ms) written into the batch; the record's timestamp is unchanged.
        let BatchOutcome::Rewrite(marked) = clean(&b2, &map, &none, params(600), &mut stats) else {
            panic!("expected the horizon to be written")
        };
        assert_eq!(stats.next_tombstone_expiry_ms, 1_600);
        let h = BatchHeader::parse_and_verify(&marked).unwrap();
        assert_eq!(delete_horizon_ms(&h), Some(1_600));
        let d = decoded(&marked);
        let seen: Vec<(i64, i64, bool)> = d
            .iter()
            .map(|(o, ts, r)| (o, ts, r.value.is_none()))
            .collect();
        assert_eq!(seen, vec![(1, 500, true)]);
        // The horizon counts, not the record's timestamp (500 + 1 000 is long past).
        let mut stats = CleanStats::new();
        assert_eq!(
            clean(&marked, &map, &none, params(1_599), &mut stats),
            BatchOutcome::Keep
        );
        assert_eq!(stats.next_tombstone_expiry_ms, 1_600);
        assert_eq!(
            clean(&marked, &map, &none, params(1_600), &mut stats),
            BatchOutcome::Drop
        );
        assert_eq!(stats.tombstones_removed, 1);
        // A producer's last batch stays, empty, with its offsets and sequence.
        let pb = build_batch(
            &BatchSpec {
                base_offset: 0,
                producer_id: 7,
                producer_epoch: 1,
                base_sequence: 4,
                ..BatchSpec::default()
            },
            &[rec("a", Some("1"), 10)],
        )
        .unwrap();
        let last = HashMap::from([(7, 0)]);
        let BatchOutcome::Rewrite(empty) = clean(&pb, &map, &last, params(600), &mut stats) else {
            panic!("expected an empty batch")
        };
        let h = BatchHeader::parse_and_verify(&empty).unwrap();
        assert_eq!((h.records_count, h.producer_id, h.base_sequence), (0, 7, 4));
        assert_eq!(h.last_offset(), 0);
    }

    #[test]
    fn keyless_records_are_dropped_and_control_batches_kept() {
        let mut r = rec("x", Some("v"), 1);
        r.key = None;
        let b = batch(0, Codec::None, &[r]);
        let map = OffsetMap::new(1 << 20);
        let mut stats = CleanStats::new();
        let none = HashMap::new();
        assert_eq!(
            clean(&b, &map, &none, params(5), &mut stats),
            BatchOutcome::Drop
        );
        let control = build_batch(
            &BatchSpec {
                base_offset: 3,
                control: true,
                transactional: true,
                producer_id: 1,
                producer_epoch: 0,
                ..BatchSpec::default()
            },
            &[rec("\0\0\0\0", Some("\0\0\0\0\0\0"), 1)],
        )
        .unwrap();
        // The newest marker of a producer with state stays as it is.
        let producers = ProducerRetention {
            last_data_offsets: HashMap::from([(1, 2)]),
            newest_marker_offsets: HashMap::from([(1, 3)]),
        };
        let aborted = AbortedIndex::default();
        let ctx = CleanContext {
            map: &map,
            producers: &producers,
            aborted: &aborted,
            params: params(5),
        };
        let mut txns = TxnTracker::default();
        assert_eq!(
            clean_batch(&control, &ctx, &mut txns, &mut stats).unwrap(),
            BatchOutcome::Keep
        );
        // An ABORT marker with no data before it is noted as emptied.
        assert_eq!(txns.emptied_aborts, vec![3]);
    }

    fn txn_batch(base: i64, pid: i64, seq: i32, records: &[NewRecord]) -> Bytes {
        build_batch(
            &BatchSpec {
                base_offset: base,
                transactional: true,
                producer_id: pid,
                producer_epoch: 0,
                base_sequence: seq,
                ..BatchSpec::default()
            },
            records,
        )
        .unwrap()
    }

    fn marker(base: i64, pid: i64, commit: bool) -> Bytes {
        let r = NewRecord {
            timestamp: 1,
            key: Some(Bytes::copy_from_slice(&txn_index::marker_key(commit))),
            value: Some(Bytes::copy_from_slice(&txn_index::marker_value(0))),
            headers: Vec::new(),
        };
        build_batch(
            &BatchSpec {
                base_offset: base,
                transactional: true,
                control: true,
                producer_id: pid,
                producer_epoch: 0,
                ..BatchSpec::default()
            },
            &[r],
        )
        .unwrap()
    }

    /// One pass over a whole log (map built as the cleaner does: aborted data left out).
    fn pass(
        log: &[Bytes],
        aborted: &[AbortedTxn],
        producers: &ProducerRetention,
        now_ms: i64,
    ) -> (Vec<Bytes>, TxnTracker, CleanStats) {
        let aborted = AbortedIndex::new(aborted);
        let mut map = OffsetMap::new(1 << 20);
        for b in log {
            let h = BatchHeader::parse_and_verify(b).unwrap();
            if !h.is_control() && !aborted.is_aborted(&h) {
                assert!(map.add_batch(&decoded(b)));
            }
        }
        let ctx = CleanContext {
            map: &map,
            producers,
            aborted: &aborted,
            params: params(now_ms),
        };
        let (mut txns, mut stats) = (TxnTracker::default(), CleanStats::new());
        let mut out = Vec::new();
        for b in log {
            match clean_batch(b, &ctx, &mut txns, &mut stats).unwrap() {
                BatchOutcome::Keep => out.push(b.clone()),
                BatchOutcome::Drop => {}
                BatchOutcome::Rewrite(n) => out.push(n),
            }
        }
        (out, txns, stats)
    }

    fn view(log: &[Bytes]) -> Vec<(i64, bool, usize)> {
        log.iter()
            .map(|b| {
                let h = BatchHeader::parse_and_verify(b).unwrap();
                (h.base_offset, h.is_control(), h.records_count as usize)
            })
            .collect()
    }

    #[test]
    fn aborted_data_goes_then_its_marker_after_the_delete_horizon() {
        // pid 5 commits a=1, b=1 (0-1, marker 2) and d=1 (5, marker 7); pid 6 writes a=X
        // (3) and c=X (4) and aborts (marker 6), interleaved; e is not transactional (8).
        let log = vec![
            txn_batch(0, 5, 0, &[rec("a", Some("1"), 1), rec("b", Some("1"), 1)]),
            marker(2, 5, true),
            txn_batch(3, 6, 0, &[rec("a", Some("X"), 1)]),
            txn_batch(4, 6, 1, &[rec("c", Some("X"), 1)]),
            txn_batch(5, 5, 2, &[rec("d", Some("1"), 1)]),
            marker(6, 6, false),
            marker(7, 5, true),
            batch(8, Codec::None, &[rec("e", Some("1"), 1)]),
        ];
        let aborted = [AbortedTxn {
            producer_id: 6,
            first_offset: 3,
            last_offset: 6,
        }];
        // pid 6 has no state any more (expired): nothing of it needs keeping.
        let producers = ProducerRetention {
            last_data_offsets: HashMap::from([(5, 5)]),
            newest_marker_offsets: HashMap::from([(5, 7), (6, 6)]),
        };
        let (log1, txns, stats) = pass(&log, &aborted, &producers, 100);
        // The aborted update of "a" hid nothing: a=1 stays; the aborted batches go; every
        // marker stays this pass (pid 6's had data before it, pid 5's are needed).
        assert_eq!(
            view(&log1),
            vec![
                (0, false, 2),
                (2, true, 1),
                (5, false, 1),
                (6, true, 1),
                (7, true, 1),
                (8, false, 1)
            ]
        );
        assert_eq!(
            (stats.aborted_records_removed, stats.markers_removed),
            (2, 0)
        );
        assert!(txns.emptied_aborts.is_empty());
        // Next pass: pid 6's marker has no data left: it gets a delete horizon (and its
        // transaction leaves the aborted list) ...
        let (log2, txns, stats) = pass(&log1, &aborted, &producers, 200);
        assert_eq!(txns.emptied_aborts, vec![6]);
        assert_eq!(stats.next_tombstone_expiry_ms, 1_200);
        let h = BatchHeader::parse_and_verify(&log2[3]).unwrap();
        assert_eq!((h.base_offset, delete_horizon_ms(&h)), (6, Some(1_200)));
        // ... stays until the horizon, then goes; pid 5's markers stay (data before them,
        // and the newest one of a producer with state).
        let (log3, _, _) = pass(&log2, &[], &producers, 1_199);
        assert_eq!(view(&log3), view(&log2));
        let (log4, _, stats) = pass(&log3, &[], &producers, 1_200);
        assert_eq!(stats.markers_removed, 1);
        assert_eq!(
            view(&log4),
            vec![
                (0, false, 2),
                (2, true, 1),
                (5, false, 1),
                (7, true, 1),
                (8, false, 1)
            ]
        );
    }

    #[test]
    fn an_aborted_batch_that_is_its_producers_last_stays_empty() {
        let log = vec![
            txn_batch(0, 6, 0, &[rec("a", Some("X"), 1)]),
            marker(1, 6, false),
        ];
        let aborted = [AbortedTxn {
            producer_id: 6,
            first_offset: 0,
            last_offset: 1,
        }];
        let producers = ProducerRetention {
            last_data_offsets: HashMap::from([(6, 0)]),
            newest_marker_offsets: HashMap::from([(6, 1)]),
        };
        let (out, _, stats) = pass(&log, &aborted, &producers, 100);
        assert_eq!(view(&out), vec![(0, false, 0), (1, true, 1)]);
        let h = BatchHeader::parse_and_verify(&out[0]).unwrap();
        assert_eq!((h.producer_id, h.base_sequence, h.last_offset()), (6, 0, 0));
        assert_eq!(stats.aborted_records_removed, 1);
        // Stable from then on.
        let (again, _, _) = pass(&out, &aborted, &producers, 5_000);
        assert_eq!(again, out);
    }

    #[test]
    fn aborted_index_matches_batches_inside_a_transaction_only() {
        let idx = AbortedIndex::new(&[
            AbortedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 20,
            },
            AbortedTxn {
                producer_id: 1,
                first_offset: 30,
                last_offset: 40,
            },
        ]);
        let at = |base: i64, pid: i64| {
            let b = txn_batch(base, pid, 0, &[rec("k", Some("v"), 1)]);
            idx.is_aborted(&BatchHeader::parse_and_verify(&b).unwrap())
        };
        assert!(at(10, 1) && at(19, 1) && at(35, 1));
        assert!(!at(9, 1) && !at(21, 1) && !at(41, 1) && !at(15, 2));
        // Not transactional: never aborted.
        let plain = batch(15, Codec::None, &[rec("k", Some("v"), 1)]);
        assert!(!idx.is_aborted(&BatchHeader::parse_and_verify(&plain).unwrap()));
    }

    #[test]
    fn offset_map_is_bounded() {
        let b = batch(0, Codec::None, &[rec("k1", Some("v"), 1)]);
        let b2 = batch(1, Codec::None, &[rec("k2", Some("v"), 1)]);
        let mut map = OffsetMap::new(OFFSET_MAP_ENTRY_OVERHEAD_BYTES + 2);
        assert!(map.add_batch(&decoded(&b)));
        assert!(!map.add_batch(&decoded(&b2)));
        assert_eq!(map.len(), 1);
        // A known key costs nothing more.
        assert!(map.add_batch(&decoded(&b)));
    }

    fn seg(base: i64, next: i64, size: u64, ts: i64) -> SegmentInfo {
        SegmentInfo {
            base_offset: base,
            next_offset: next,
            size_bytes: size,
            max_timestamp_ms: ts,
        }
    }

    #[test]
    fn plan_honours_ratio_and_lags() {
        let sealed = [
            seg(0, 10, 100, 10),
            seg(10, 20, 100, 20),
            seg(20, 30, 100, 900),
        ];
        let s = CompactionSettings {
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        };
        let p = plan(&sealed, 0, &s, i64::MAX, 1_000).unwrap();
        assert_eq!((p.segments.len(), p.end, p.dirty_ratio), (3, 30, 1.0));
        // Two thirds clean: ratio 1/3 below 0.5.
        assert!(plan(&sealed, 20, &s, i64::MAX, 1_000).is_none());
        // ... unless overdue or a tombstone expires.
        let overdue = CompactionSettings {
            max_compaction_lag_ms: 50,
            ..s
        };
        assert!(plan(&sealed, 20, &overdue, i64::MAX, 1_000).is_some());
        assert!(plan(&sealed, 20, &s, 999, 1_000).is_some());
        // min.compaction.lag.ms keeps young segments (and what follows) out.
        let lag = CompactionSettings {
            min_compaction_lag_ms: 500,
            ..s
        };
        let p = plan(&sealed, 0, &lag, i64::MAX, 1_000).unwrap();
        assert_eq!((p.segments.len(), p.end), (2, 20));
        assert!(plan(&[], 0, &s, 0, 1_000).is_none());
    }

    #[test]
    fn groups_merge_small_segments_up_to_segment_bytes() {
        let segs = [
            seg(0, 10, 40, 1),
            seg(10, 20, 40, 1),
            seg(20, 30, 40, 1),
            seg(30, 40, 90, 1),
            seg(40, 50, 5, 1),
        ];
        let g = group_segments(&segs, 100);
        let bases: Vec<Vec<i64>> = g
            .iter()
            .map(|g| g.iter().map(|s| s.base_offset).collect())
            .collect();
        assert_eq!(bases, vec![vec![0, 10], vec![20], vec![30, 40]]);
    }
}
