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
//! - a tombstone (null value) that survives is removed once its timestamp is
//!   `delete.retention.ms` old (Kafka measures from when the cleaner first saw it; here the
//!   record's timestamp, which is never later for producers with sane clocks);
//! - control batches (transaction markers) are kept as they are; the last batch of every
//!   producer with state is kept, emptied of its removed records (so the producer's
//!   sequence range and offsets survive, as Kafka does); other emptied batches go;
//! - a batch keeps its base offset and last offset delta (offsets never move; compacted
//!   logs have gaps); a changed batch is written in the topic's codec (`producer`: its own);
//!   an unchanged batch is copied byte for byte;
//! - only sealed segments wholly older than `min.compaction.lag.ms` are cleanable; a
//!   partition is cleaned when its dirty ratio reaches `min.cleanable.dirty.ratio`, or its
//!   oldest dirty data is older than `max.compaction.lag.ms`, or a kept tombstone has
//!   passed `delete.retention.ms`.
//!
//! Runs on: the partition's owning shard (called from its cleaner task).

use std::collections::HashMap;

use bytes::Bytes;
use storage::batch::BatchHeader;
use storage::SegmentInfo;

use crate::log::compression::{Codec, TopicCompression};
use crate::log::records::{self, DecodedBatch, RecordsError};

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
    /// Earliest time a kept tombstone may be removed (`i64::MAX`: none kept).
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

/// Applies the compaction rules (module docs) to one stored batch. `producer_last_offsets`:
/// producer id → last offset of its last batch, for every producer with state.
pub fn clean_batch(
    batch: &Bytes,
    map: &OffsetMap,
    producer_last_offsets: &HashMap<i64, i64>,
    params: &CleanParams,
    stats: &mut CleanStats,
) -> Result<BatchOutcome, RecordsError> {
    let header = BatchHeader::parse_and_verify(batch)?;
    if header.is_control() {
        return Ok(BatchOutcome::Keep);
    }
    let decoded = records::decode_batch(batch, params.max_decompressed_bytes)?;
    let mut kept = Vec::with_capacity(decoded.records.len());
    for (offset, timestamp, record) in decoded.iter() {
        let keep = match &record.key {
            None => false,
            Some(key) => {
                let newest = map.latest(key).is_none_or(|latest| latest <= offset);
                let expired_tombstone = record.value.is_none()
                    && timestamp.saturating_add(params.delete_retention_ms) <= params.now_ms;
                if newest && record.value.is_none() && !expired_tombstone {
                    let expiry = timestamp.saturating_add(params.delete_retention_ms);
                    stats.next_tombstone_expiry_ms = stats.next_tombstone_expiry_ms.min(expiry);
                }
                if newest && expired_tombstone {
                    stats.tombstones_removed += 1;
                }
                newest && !expired_tombstone
            }
        };
        if keep {
            kept.push(record.clone());
        }
    }
    let removed = decoded.records.len() - kept.len();
    stats.records_kept += kept.len() as u64;
    stats.records_removed += removed as u64;
    if removed == 0 {
        return Ok(BatchOutcome::Keep);
    }
    let producers_last = header.producer_id >= 0
        && producer_last_offsets.get(&header.producer_id) == Some(&header.last_offset());
    if kept.is_empty() && !producers_last {
        return Ok(BatchOutcome::Drop);
    }
    let codec = params
        .compression
        .target_codec(Codec::from_attributes(header.attributes)?);
    let out = records::encode_retained(&decoded.info, &kept, codec)?;
    Ok(BatchOutcome::Rewrite(out))
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
            let out = clean_batch(&b1, &map, &none, &params(100), &mut stats).unwrap();
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
            let out = clean_batch(&b2, &map, &none, &params(100), &mut stats).unwrap();
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
            clean_batch(&b1, &map, &none, &params(600), &mut stats).unwrap(),
            BatchOutcome::Drop
        );
        // Young tombstone: kept, and its expiry noted.
        assert_eq!(
            clean_batch(&b2, &map, &none, &params(600), &mut stats).unwrap(),
            BatchOutcome::Keep
        );
        assert_eq!(stats.next_tombstone_expiry_ms, 1_500);
        // Old enough: removed.
        assert_eq!(
            clean_batch(&b2, &map, &none, &params(1_500), &mut stats).unwrap(),
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
        let BatchOutcome::Rewrite(empty) =
            clean_batch(&pb, &map, &last, &params(600), &mut stats).unwrap()
        else {
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
            clean_batch(&b, &map, &none, &params(5), &mut stats).unwrap(),
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
        assert_eq!(
            clean_batch(&control, &map, &none, &params(5), &mut stats).unwrap(),
            BatchOutcome::Keep
        );
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
