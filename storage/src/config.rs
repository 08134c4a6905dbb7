//! Per-partition log configuration, with Kafka's names and defaults.

/// Topic-level log settings. Field names follow Kafka's topic configs
/// (`segment.bytes` -> `segment_bytes`, ...) and `Default` gives Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment when the active one would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older than this.
    pub segment_ms: i64,
    /// `retention.ms`: delete whole segments whose newest timestamp is older; -1 = never.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger; -1 = never.
    pub retention_bytes: i64,
    /// `flush.messages`: fsync after this many offsets are written without one.
    /// `None` = never by count (Kafka's default of Long.MAX_VALUE).
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fsync when written data has been waiting this long. `None` = never.
    pub flush_ms: Option<u64>,
    /// `index.interval.bytes`: bytes between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: index size cap per segment (8 bytes an entry); a full
    /// index rolls the segment.
    pub segment_index_bytes: u32,
    /// `preallocate`: fallocate `segment_bytes` when a segment is created.
    pub preallocate: bool,
    /// `max.message.bytes`: largest accepted record batch.
    pub max_message_bytes: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            flush_messages: None,
            flush_ms: None,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            preallocate: true,
            max_message_bytes: 1_048_588,
        }
    }
}

impl LogConfig {
    /// Largest number of entries the offset index of one segment may hold.
    pub(crate) fn max_index_entries(&self) -> usize {
        (self.segment_index_bytes as usize / 8).max(1)
    }

    /// Segment size with sane bounds: positions are stored as u32 in the index.
    pub(crate) fn segment_bytes_clamped(&self) -> u64 {
        self.segment_bytes.clamp(4096, i32::MAX as u64)
    }
}

/// How long [`crate::PendingAppend::wait`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// acks=0: do not wait for this append; only for room when the partition already has
    /// more than [`crate::log::QUEUED_BACKLOG_MAX`] bytes waiting for the writer.
    Queued,
    /// acks=1: the O_DIRECT write completed (the data is in the device's queue/cache).
    Written,
    /// acks=all on a single replica: fdatasync completed (coalesced across appends).
    Fsynced,
}
