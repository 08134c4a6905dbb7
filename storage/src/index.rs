//! The sparse per-segment index: offset -> file position, and timestamp -> position.
//!
//! One in-memory list serves both lookups. An entry `(offset, position,
//! max_ts_before)` says "the batch with base offset `offset` starts at `position`,
//! and every batch before it in this segment has `maxTimestamp <= max_ts_before`".
//! Entries are added every `index.interval.bytes` and always point at a batch start,
//! so any range between two entries is made of whole batches. Offsets need not be dense
//! (see [`crate::segment`]): [`SegmentIndex::lookup`] gives the last entry at or below an
//! offset, and the batch holding the offset, or the first one after it when the offset
//! falls in a gap, starts at or after that entry.
//!
//! On disk (written when a segment is sealed or the log is closed cleanly):
//! - `.index`: entries of (relative offset i32, position i32), big-endian (Kafka's layout);
//! - `.timeindex`: entries of (max_ts_before i64, relative offset i32), big-endian. Note
//!   the timestamp is the running maximum *before* the entry's batch, unlike Kafka's.
//!
//! Each file ends with one footer record describing the sealed segment: in `.index`
//! (relative next offset, log size), in `.timeindex` (segment max timestamp, relative
//! offset of the batch holding it). Sealed segments thus reopen without a scan.
//!
//! Both are written to a temporary name, fsynced and renamed, so after a crash an index
//! file is either complete or missing; loading still checks every entry's shape and the
//! footer against the log file's size.

/// Facts about a sealed segment stored in the index files' footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentFooter {
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
}

/// One sparse index entry (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: i64,
    pub position: u32,
    pub max_ts_before: i64,
}

/// Public only for the criterion benchmarks (`benches/hot.rs`); not part of the API.
#[derive(Debug, Default, Clone)]
pub struct SegmentIndex {
    entries: Vec<IndexEntry>,
    /// Position of the end of the last batch seen, to know when an entry is due.
    last_entry_position: u32,
}

impl SegmentIndex {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Called for every batch appended at `position`; adds an entry when at least
    /// `interval` bytes were appended since the previous entry.
    pub fn on_batch(&mut self, offset: i64, position: u32, max_ts_before: i64, interval: u32) {
        let due = if self.entries.is_empty() {
            position >= interval
        } else {
            position - self.last_entry_position >= interval
        };
        if due {
            debug_assert!(self
                .entries
                .last()
                .is_none_or(|e| e.offset < offset && e.position < position));
            self.entries.push(IndexEntry {
                offset,
                position,
                max_ts_before,
            });
            self.last_entry_position = position;
        }
    }

    /// The last entry at or before `offset`, as (offset, position); (base, 0) if none.
    pub fn lookup(&self, base_offset: i64, offset: i64) -> (i64, u32) {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        if i == 0 {
            (base_offset, 0)
        } else {
            let e = self.entries[i - 1];
            (e.offset, e.position)
        }
    }

    /// The last entry whose position is at most `position` (a known batch boundary).
    pub(crate) fn floor_position(&self, position: u64) -> Option<IndexEntry> {
        let i = self
            .entries
            .partition_point(|e| (e.position as u64) <= position);
        if i == 0 {
            None
        } else {
            Some(self.entries[i - 1])
        }
    }

    /// Where to start scanning for the first batch with `maxTimestamp >= ts`: the last
    /// entry whose preceding batches all have smaller timestamps.
    pub fn lookup_time(&self, base_offset: i64, ts: i64) -> (i64, u32) {
        let i = self.entries.partition_point(|e| e.max_ts_before < ts);
        if i == 0 {
            (base_offset, 0)
        } else {
            let e = self.entries[i - 1];
            (e.offset, e.position)
        }
    }

    /// Drops entries for batches starting at or after byte `position` (a truncation cut
    /// the segment there).
    pub(crate) fn truncate_from_position(&mut self, position: u64) {
        let i = self
            .entries
            .partition_point(|e| (e.position as u64) < position);
        self.entries.truncate(i);
        self.last_entry_position = self.entries.last().map_or(0, |e| e.position);
    }

    /// Where a truncation at `offset` starts scanning: the entry before the last one at
    /// or below `offset`, so that the batch before the cut is among the scanned ones (the
    /// cut is at or after that last entry); None when there is none (scan from 0).
    pub(crate) fn truncation_scan_start(&self, offset: i64) -> Option<IndexEntry> {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        i.checked_sub(2).and_then(|j| self.entries.get(j)).copied()
    }

    /// Drops entries for offsets at or after `offset` (rollback of unwritten appends).
    pub(crate) fn truncate_from_offset(&mut self, offset: i64) {
        let i = self.entries.partition_point(|e| e.offset < offset);
        self.entries.truncate(i);
        self.last_entry_position = self.entries.last().map_or(0, |e| e.position);
    }

    pub(crate) fn encode(&self, base_offset: i64, footer: &SegmentFooter) -> (Vec<u8>, Vec<u8>) {
        let mut index = Vec::with_capacity(self.entries.len() * 8 + 8);
        let mut time = Vec::with_capacity(self.entries.len() * 12 + 12);
        for e in &self.entries {
            let rel = (e.offset - base_offset) as i32;
            index.extend_from_slice(&rel.to_be_bytes());
            index.extend_from_slice(&(e.position as i32).to_be_bytes());
            time.extend_from_slice(&e.max_ts_before.to_be_bytes());
            time.extend_from_slice(&rel.to_be_bytes());
        }
        let rel_next = (footer.next_offset - base_offset) as i32;
        index.extend_from_slice(&rel_next.to_be_bytes());
        index.extend_from_slice(&(footer.size as i32).to_be_bytes());
        let rel_max = (footer.offset_of_max_timestamp - base_offset) as i32;
        time.extend_from_slice(&footer.max_timestamp.to_be_bytes());
        time.extend_from_slice(&rel_max.to_be_bytes());
        (index, time)
    }

    /// Decodes index files written by [`SegmentIndex::encode`]; `None` if they are
    /// inconsistent with each other, not monotonic, or disagree with `log_size`.
    pub(crate) fn decode(
        base_offset: i64,
        index: &[u8],
        time: &[u8],
        log_size: u64,
    ) -> Option<(SegmentIndex, SegmentFooter)> {
        if !index.len().is_multiple_of(8)
            || !time.len().is_multiple_of(12)
            || index.len() / 8 != time.len() / 12
            || index.is_empty()
        {
            return None;
        }
        let n = index.len() / 8 - 1;
        let (index, index_footer) = index.split_at(n * 8);
        let (time, time_footer) = time.split_at(n * 12);
        let rel_next = i32::from_be_bytes(index_footer[0..4].try_into().ok()?);
        let size = i32::from_be_bytes(index_footer[4..8].try_into().ok()?);
        let max_timestamp = i64::from_be_bytes(time_footer[0..8].try_into().ok()?);
        let rel_max = i32::from_be_bytes(time_footer[8..12].try_into().ok()?);
        if rel_next < 0 || size < 0 || size as u64 != log_size || (size == 0) != (rel_next == 0) {
            return None;
        }
        let footer = SegmentFooter {
            next_offset: base_offset + rel_next as i64,
            size: size as u64,
            max_timestamp,
            offset_of_max_timestamp: base_offset + rel_max as i64,
        };
        let mut entries = Vec::with_capacity(n);
        let mut prev: Option<IndexEntry> = None;
        for (i, t) in index.chunks_exact(8).zip(time.chunks_exact(12)) {
            let rel = i32::from_be_bytes([i[0], i[1], i[2], i[3]]);
            let position = i32::from_be_bytes([i[4], i[5], i[6], i[7]]);
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&t[..8]);
            let max_ts_before = i64::from_be_bytes(ts);
            let rel_t = i32::from_be_bytes([t[8], t[9], t[10], t[11]]);
            if rel < 0 || position < 0 || rel != rel_t || position as u64 >= log_size {
                return None;
            }
            let e = IndexEntry {
                offset: base_offset + rel as i64,
                position: position as u32,
                max_ts_before,
            };
            if let Some(p) = prev {
                if e.offset <= p.offset
                    || e.position <= p.position
                    || e.max_ts_before < p.max_ts_before
                {
                    return None;
                }
            }
            if e.offset >= footer.next_offset || e.max_ts_before > footer.max_timestamp {
                return None;
            }
            entries.push(e);
            prev = Some(e);
        }
        let last_entry_position = entries.last().map_or(0, |e| e.position);
        Some((
            SegmentIndex {
                entries,
                last_entry_position,
            },
            footer,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_lookup_and_round_trip() {
        let mut idx = SegmentIndex::default();
        let mut pos = 0u32;
        for i in 0..100i64 {
            idx.on_batch(100 + i * 3, pos, i * 10, 1000);
            pos += 300;
        }
        assert!(idx.len() > 10);
        // Every lookup returns an entry at or before the target.
        for off in 100..400 {
            let (o, p) = idx.lookup(100, off);
            assert!(o <= off);
            assert_eq!((p / 300) as i64 * 3 + 100, o);
        }
        let footer = SegmentFooter {
            next_offset: 400,
            size: pos as u64,
            max_timestamp: 990,
            offset_of_max_timestamp: 399,
        };
        let (i, t) = idx.encode(100, &footer);
        let (back, f) = SegmentIndex::decode(100, &i, &t, pos as u64).unwrap();
        assert_eq!(back.entries, idx.entries);
        assert_eq!(f, footer);
        assert!(SegmentIndex::decode(100, &i, &t, 10).is_none());
        assert!(SegmentIndex::decode(100, &i[..i.len() - 1], &t, pos as u64).is_none());
        assert!(
            SegmentIndex::decode(100, &i[..i.len() - 8], &t[..t.len() - 12], pos as u64).is_none()
        );
        // A truncation scans from the entry before the last one at or below its offset,
        // and cutting at a position drops the entries from there.
        let (before, _) = idx.lookup(100, 250);
        let start = idx.truncation_scan_start(250).unwrap();
        assert!(start.offset < before);
        assert!(idx.truncation_scan_start(100).is_none());
        let mut cut = idx.clone();
        cut.truncate_from_position(start.position as u64 + 1);
        assert_eq!(cut.entries.last().map(|e| e.offset), Some(start.offset));
        idx.truncate_from_offset(200);
        assert!(idx.entries.iter().all(|e| e.offset < 200));
        let (o, _) = idx.lookup_time(100, 500);
        assert!(o <= 200);
    }
}
