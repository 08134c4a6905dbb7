//! The storage error type.

use crate::batch::BatchError;

/// Everything a [`crate::PartitionLog`] operation can fail with.
///
/// Suggested Kafka mapping (done in the broker, not here): `MessageTooLarge` ->
/// MESSAGE_TOO_LARGE, `RecordListTooLarge` -> RECORD_LIST_TOO_LARGE, `Corrupt` ->
/// CORRUPT_MESSAGE, `OffsetOutOfRange` -> OFFSET_OUT_OF_RANGE, `Io`/`Poisoned`/
/// `CorruptLog` -> KAFKA_STORAGE_ERROR, `Closed` -> NOT_LEADER_OR_FOLLOWER (the
/// partition moved or was deleted). `OffsetsNotIncreasing`, `OffsetSpanTooLarge`,
/// `Epoch` and `Truncating` come from replica-side calls (follower appends, epochs,
/// truncation), not from clients: a replication layer handles them itself (a follower
/// truncates and refetches); mapped, they are KAFKA_STORAGE_ERROR /
/// NOT_LEADER_OR_FOLLOWER-class conditions.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// One batch is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    /// The batches of one append do not fit in a segment (`segment.bytes`).
    #[error("append of {size} bytes cannot fit a segment of {segment_bytes} bytes")]
    RecordListTooLarge { size: usize, segment_bytes: u64 },
    /// The input is not a valid record batch.
    #[error("corrupt record batch: {0}")]
    Corrupt(#[from] BatchError),
    /// A read, DeleteRecords or truncation outside `[log_start_offset,
    /// written_end_offset]`.
    #[error("offset {offset} out of range [{log_start_offset}, {written_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        written_end_offset: i64,
    },
    /// A follower append whose batches do not carry strictly increasing offsets starting
    /// at or after the log end offset. Nothing of the append was stored.
    #[error(
        "follower append: batch at offset {base_offset} where at least {min_offset} was required"
    )]
    OffsetsNotIncreasing { base_offset: i64, min_offset: i64 },
    /// A follower append whose offsets span more than one segment can index (offsets are
    /// stored relative to the segment's base as i32).
    #[error("follower append spans offsets {first_offset}..={last_offset}, more than a segment can hold")]
    OffsetSpanTooLarge { first_offset: i64, last_offset: i64 },
    /// A leader epoch that does not follow the partition's latest one (assignment, or a
    /// follower batch carrying an older epoch). Nothing was changed.
    #[error("{0}")]
    Epoch(#[from] crate::epoch::EpochError),
    /// An append while [`crate::PartitionLog::truncate_to`] runs; retry after it returns.
    #[error("partition log is being truncated")]
    Truncating,
    /// The append was truncated away by [`crate::PartitionLog::truncate_to`] before it
    /// became durable (or before its waiter looked).
    #[error("append removed by a log truncation")]
    Truncated,
    /// An I/O error (full disk, failed write, ...). For appends: nothing from this
    /// append (or later ones still queued) was stored; the log stays readable.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An earlier fsync (or an unrecoverable write) failed; the partition refuses
    /// writes until it is reopened, because the kernel may have dropped dirty data.
    #[error("partition log poisoned by an earlier fsync/write failure")]
    Poisoned,
    /// The log was closed or deleted.
    #[error("partition log closed")]
    Closed,
    /// Stored bytes below the written end failed validation on read (including a batch
    /// read back that is not the one the index or an earlier scan promised).
    #[error("corrupt data in {file} at position {position}: {reason}")]
    CorruptLog {
        file: String,
        position: u64,
        reason: String,
    },
}

impl StorageError {
    /// Same error, new value (io::Error is not Clone; waiters each get a copy).
    pub(crate) fn duplicate(&self) -> StorageError {
        match self {
            StorageError::MessageTooLarge { size, max } => StorageError::MessageTooLarge {
                size: *size,
                max: *max,
            },
            StorageError::RecordListTooLarge {
                size,
                segment_bytes,
            } => StorageError::RecordListTooLarge {
                size: *size,
                segment_bytes: *segment_bytes,
            },
            StorageError::Corrupt(e) => StorageError::Corrupt(e.clone()),
            StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                written_end_offset,
            } => StorageError::OffsetOutOfRange {
                offset: *offset,
                log_start_offset: *log_start_offset,
                written_end_offset: *written_end_offset,
            },
            StorageError::OffsetsNotIncreasing {
                base_offset,
                min_offset,
            } => StorageError::OffsetsNotIncreasing {
                base_offset: *base_offset,
                min_offset: *min_offset,
            },
            StorageError::OffsetSpanTooLarge {
                first_offset,
                last_offset,
            } => StorageError::OffsetSpanTooLarge {
                first_offset: *first_offset,
                last_offset: *last_offset,
            },
            StorageError::Epoch(e) => StorageError::Epoch(*e),
            StorageError::Truncating => StorageError::Truncating,
            StorageError::Truncated => StorageError::Truncated,
            StorageError::Io(e) => StorageError::Io(std::io::Error::new(e.kind(), e.to_string())),
            StorageError::Poisoned => StorageError::Poisoned,
            StorageError::Closed => StorageError::Closed,
            StorageError::CorruptLog {
                file,
                position,
                reason,
            } => StorageError::CorruptLog {
                file: file.clone(),
                position: *position,
                reason: reason.clone(),
            },
        }
    }
}

impl<T> From<glommio::GlommioError<T>> for StorageError {
    fn from(e: glommio::GlommioError<T>) -> Self {
        StorageError::Io(e.into())
    }
}
