//! The leader-epoch file of a partition: which leader epoch started at which offset,
//! like Kafka's `leader-epoch-checkpoint`. Pure data here (no I/O but the blocking file
//! helpers); [`crate::PartitionLog`] owns one per partition, on the partition's shard.
//!
//! ## Model
//! A list of `(epoch, start_offset)` entries, both strictly increasing (an epoch that
//! never appended anything is replaced by the next one at the same start offset, as in
//! Kafka). Entries are added
//! - by [`crate::PartitionLog::assign_epoch`] when a leader starts a new epoch (at its log
//!   end offset), persisted before it returns;
//! - by appends: a batch whose `partitionLeaderEpoch` is newer than the latest entry
//!   starts that epoch at its base offset (followers learn epochs this way). These are
//!   persisted lazily, before the next checkpoint (segment roll, retention, truncation,
//!   close); recovery learns them again from the batches it scans (everything after the
//!   recovery point), so a crash never leaves the file behind the durable data.
//!
//! Entries at or above the log end are dropped by truncation (and by recovery, for
//! entries whose data did not survive); moving the log start offset forward moves the
//! first entry up to it.
//!
//! ## File format
//! Kafka's text layout: a version line (`0`), a count line, then one `epoch offset` line
//! per entry. Written with write-temp + fsync + rename + directory fsync, so after a
//! crash the file is either the old or the new version.

use std::path::{Path, PathBuf};

/// The leader-epoch file's name inside the partition directory.
pub(crate) const EPOCH_FILE: &str = "leader-epoch-checkpoint";
const VERSION: &str = "0";
/// Entries a file may hold: bounds what a corrupt count line can make us allocate.
const ENTRIES_MAX: usize = 1 << 20;

/// One leader epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Why an epoch assignment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    /// Epochs are never negative (-1 means "no epoch" in a batch header).
    #[error("leader epoch {0} is negative")]
    Negative(i32),
    /// An epoch assigned to start elsewhere than at the log end: below it, offsets were
    /// written in an older epoch; above it, the older epoch would seem to own offsets it
    /// never wrote.
    #[error(
        "leader epoch {epoch} must start at the log end {log_end_offset}, not at {start_offset}"
    )]
    NotAtLogEnd {
        epoch: i32,
        start_offset: i64,
        log_end_offset: i64,
    },
    /// The epoch is older than the latest one, or starts before it.
    #[error("leader epoch {epoch} at offset {start_offset} does not follow the latest epoch {latest_epoch} at offset {latest_start_offset}")]
    NotMonotonic {
        epoch: i32,
        start_offset: i64,
        latest_epoch: i32,
        latest_start_offset: i64,
    },
}

/// The in-memory epoch list (see the module docs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LeaderEpochs {
    entries: Vec<EpochEntry>,
    /// Changed since the file was last written.
    dirty: bool,
}

impl LeaderEpochs {
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub(crate) fn set_dirty(&mut self, dirty: bool) {
        self.dirty = dirty;
    }

    /// Whether `(epoch, start_offset)` may be assigned: `Ok(true)` if it adds (or
    /// replaces) an entry, `Ok(false)` if the latest entry already covers it.
    pub(crate) fn check(&self, epoch: i32, start_offset: i64) -> Result<bool, EpochError> {
        check_after(self.latest(), epoch, start_offset)
    }

    /// Adds `(epoch, start_offset)` if [`LeaderEpochs::check`] allows it; returns whether
    /// anything changed. An entry with the same start offset is replaced (that epoch
    /// never wrote anything).
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool, EpochError> {
        if !self.check(epoch, start_offset)? {
            return Ok(false);
        }
        if self
            .entries
            .last()
            .is_some_and(|e| e.start_offset == start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.dirty = true;
        Ok(true)
    }

    /// Kafka's OffsetForLeaderEpoch answer for `epoch` on a log ending at `log_end_offset`:
    /// `(epoch, end offset)` where the end offset is the start of the next higher epoch
    /// (the log end for the latest epoch) and the epoch is the largest known one at or
    /// below the requested one (the requested one if none is known below it). `None`
    /// when undefined (no epochs, or the requested epoch is newer than all known ones).
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        let latest = self.latest()?;
        if latest.epoch == epoch {
            return Some((epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let next = self.entries.get(higher)?;
        match higher.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(floor) => Some((floor.epoch, next.start_offset)),
            None => Some((epoch, next.start_offset)),
        }
    }

    /// Drops every entry starting at or after `end_offset` (the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        if keep == self.entries.len() {
            return false;
        }
        self.entries.truncate(keep);
        self.dirty = true;
        true
    }

    /// The log now starts at `start_offset`: entries wholly below it go, and the one in
    /// effect there moves up to start at it.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let below = self
            .entries
            .partition_point(|e| e.start_offset < start_offset);
        if below == 0 {
            return false;
        }
        // The last entry below the new start is still in effect at it, unless the next
        // entry starts exactly there.
        let in_effect = self.entries[below - 1]; // ok: below >= 1
        self.entries.drain(..below);
        if self
            .entries
            .first()
            .is_none_or(|e| e.start_offset > start_offset)
        {
            self.entries.insert(
                0,
                EpochEntry {
                    epoch: in_effect.epoch,
                    start_offset,
                },
            );
        }
        self.dirty = true;
        true
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut s = format!("{VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            s.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        s.into_bytes()
    }

    /// Parses a file written by [`LeaderEpochs::encode`]; `None` if it is malformed or
    /// its entries are not increasing.
    pub(crate) fn decode(data: &[u8]) -> Option<LeaderEpochs> {
        let text = std::str::from_utf8(data).ok()?;
        let mut lines = text.lines();
        if lines.next()?.trim() != VERSION {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        if count > ENTRIES_MAX {
            return None;
        }
        let mut out = LeaderEpochs::default();
        for _ in 0..count {
            let (e, o) = lines.next()?.trim().split_once(' ')?;
            let (epoch, start_offset) = (e.parse().ok()?, o.trim().parse().ok()?);
            match out.latest() {
                Some(l) if epoch <= l.epoch || start_offset <= l.start_offset => return None,
                _ if epoch < 0 || start_offset < 0 => return None,
                _ => {}
            }
            out.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return None;
        }
        Some(out)
    }
}

/// [`LeaderEpochs::check`] against a given latest entry (a follower append checks its
/// batches one after the other before assigning any).
pub(crate) fn check_after(
    latest: Option<EpochEntry>,
    epoch: i32,
    start_offset: i64,
) -> Result<bool, EpochError> {
    if epoch < 0 {
        return Err(EpochError::Negative(epoch));
    }
    let Some(latest) = latest else {
        return Ok(true);
    };
    let refuse = EpochError::NotMonotonic {
        epoch,
        start_offset,
        latest_epoch: latest.epoch,
        latest_start_offset: latest.start_offset,
    };
    if epoch == latest.epoch {
        return if start_offset >= latest.start_offset {
            Ok(false)
        } else {
            Err(refuse)
        };
    }
    if epoch < latest.epoch || start_offset < latest.start_offset {
        return Err(refuse);
    }
    Ok(true)
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(EPOCH_FILE)
}

/// Reads the file: `Ok(None)` when absent, `Err` with `InvalidData` when malformed.
/// Blocking.
pub(crate) fn read(dir: &Path) -> std::io::Result<Option<LeaderEpochs>> {
    match std::fs::read(path(dir)) {
        Ok(data) => LeaderEpochs::decode(&data).map(Some).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "malformed leader-epoch file",
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `data` (an encoded list) atomically. Blocking.
pub(crate) fn write(dir: &Path, data: &[u8]) -> std::io::Result<()> {
    crate::checkpoint::write_atomically(dir, &path(dir), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(l: &LeaderEpochs) -> Vec<(i32, i64)> {
        l.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_is_monotonic() {
        let mut l = LeaderEpochs::default();
        assert!(l.assign(1, 0).unwrap());
        assert!(
            !l.assign(1, 50).unwrap(),
            "same epoch, later offset: nothing new"
        );
        assert!(l.assign(3, 100).unwrap());
        assert!(matches!(
            l.assign(2, 200),
            Err(EpochError::NotMonotonic { .. })
        ));
        assert!(matches!(
            l.assign(4, 99),
            Err(EpochError::NotMonotonic { .. })
        ));
        assert!(matches!(
            l.assign(3, 99),
            Err(EpochError::NotMonotonic { .. })
        ));
        assert_eq!(l.assign(-1, 500), Err(EpochError::Negative(-1)));
        // An epoch that wrote nothing is replaced by the next one at the same offset.
        assert!(l.assign(5, 100).unwrap());
        assert_eq!(entries(&l), vec![(1, 0), (5, 100)]);
    }

    #[test]
    fn end_offset_for_epoch_answers_like_kafka() {
        let mut l = LeaderEpochs::default();
        assert_eq!(l.end_offset_for(0, 10), None);
        l.assign(2, 10).unwrap();
        l.assign(4, 30).unwrap();
        l.assign(7, 80).unwrap();
        // The latest epoch ends at the log end.
        assert_eq!(l.end_offset_for(7, 120), Some((7, 120)));
        // A known older epoch ends where the next one starts.
        assert_eq!(l.end_offset_for(2, 120), Some((2, 30)));
        assert_eq!(l.end_offset_for(4, 120), Some((4, 80)));
        // An unknown epoch between known ones: the floor epoch, ending at the next start.
        assert_eq!(l.end_offset_for(5, 120), Some((4, 80)));
        assert_eq!(l.end_offset_for(3, 120), Some((2, 30)));
        // Below every known epoch: the requested epoch, ending at the first start.
        assert_eq!(l.end_offset_for(1, 120), Some((1, 10)));
        // Newer than all known epochs, or undefined.
        assert_eq!(l.end_offset_for(8, 120), None);
        assert_eq!(l.end_offset_for(-1, 120), None);
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut l = LeaderEpochs::default();
        for (e, o) in [(1, 0), (2, 10), (4, 30), (7, 80)] {
            l.assign(e, o).unwrap();
        }
        assert!(!l.truncate_from_end(81));
        assert!(l.truncate_from_end(80));
        assert_eq!(entries(&l), vec![(1, 0), (2, 10), (4, 30)]);
        assert!(l.truncate_from_start(15));
        assert_eq!(entries(&l), vec![(2, 15), (4, 30)]);
        assert!(l.truncate_from_start(30));
        assert_eq!(entries(&l), vec![(4, 30)]);
        assert!(!l.truncate_from_start(30));
        assert!(l.truncate_from_start(31));
        assert_eq!(entries(&l), vec![(4, 31)]);
        assert!(l.truncate_from_end(0));
        assert!(l.entries().is_empty());
    }

    #[test]
    fn file_round_trip_and_rejects() {
        let mut l = LeaderEpochs::default();
        for (e, o) in [(0, 0), (3, 17), (9, 1_000_000_000_000)] {
            l.assign(e, o).unwrap();
        }
        let data = l.encode();
        assert_eq!(
            std::str::from_utf8(&data).unwrap(),
            "0\n3\n0 0\n3 17\n9 1000000000000\n"
        );
        let back = LeaderEpochs::decode(&data).unwrap();
        assert_eq!(back.entries(), l.entries());
        for bad in [
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n2\n3 5\n2 9\n",
            "0\n2\n3 5\n4 5\n",
            "0\n1\n3 x\n",
            "0\n1\n3 5\n4 9\n",
            "",
        ] {
            assert!(LeaderEpochs::decode(bad.as_bytes()).is_none(), "{bad:?}");
        }
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path()).unwrap().is_none());
        write(d.path(), &data).unwrap();
        assert_eq!(read(d.path()).unwrap().unwrap().entries(), l.entries());
        std::fs::write(path(d.path()), "garbage").unwrap();
        assert!(read(d.path()).is_err());
    }
}
