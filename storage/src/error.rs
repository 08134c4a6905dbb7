//! The storage error type.

use crate::batch::BatchError;

/// Everything a [`crate::PartitionLog`] operation can fail with.
///
/// Suggested Kafka mapping (done in the broker, not here): `MessageTooLarge` ->
/// MESSAGE_TOO_LARGE, `RecordListTooLarge` -> RECORD_LIST_TOO_LARGE, `Corrupt` ->
/// CORRUPT_MESSAGE, `OffsetOutOfRange` -> OFFSET_OUT_OF_RANGE, `Io`/`Poisoned`/
/// `CorruptLog` -> KAFKA_STORAGE_ERROR, `Closed` -> NOT_LEADER_OR_FOLLOWER (the
/// partition moved or was deleted).
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
    /// A read or DeleteRecords outside `[log_start_offset, high_watermark]`.
    #[error("offset {offset} out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        high_watermark: i64,
    },
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
    /// Stored bytes below the high watermark failed validation on read.
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
                high_watermark,
            } => StorageError::OffsetOutOfRange {
                offset: *offset,
                log_start_offset: *log_start_offset,
                high_watermark: *high_watermark,
            },
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
