//! The one place where internal errors become Kafka error codes.
//!
//! Handlers work with typed errors (`StorageError`, `BatchError`, `ProducerError`, ...) and call
//! [`code_of`] at the response boundary; nothing else in the broker invents error codes.

use kafka_protocol::ResponseError as E;
use storage::StorageError;

/// A partition-level failure, carried across shards as plain data (no `Rc` inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionError {
    pub code: i16,
    pub message: Option<String>,
    /// The records of the batch that failed record-level checks, for Produce v8+'s
    /// `record_errors` (KIP-467); empty for every other failure.
    pub record_errors: Vec<crate::records::RecordError>,
}

impl PartitionError {
    pub fn new(e: E) -> PartitionError {
        PartitionError {
            code: e.code(),
            message: None,
            record_errors: Vec::new(),
        }
    }

    pub fn with_message(e: E, message: impl Into<String>) -> PartitionError {
        PartitionError {
            code: e.code(),
            message: Some(message.into()),
            record_errors: Vec::new(),
        }
    }

    pub fn from_code(code: i16, message: Option<String>) -> PartitionError {
        PartitionError {
            code,
            message,
            record_errors: Vec::new(),
        }
    }
}

/// Kafka code for a storage failure, as Apache Kafka reports the same condition.
pub fn storage_code(e: &StorageError) -> E {
    match e {
        StorageError::MessageTooLarge { .. } => E::MessageTooLarge,
        StorageError::Corrupt(b) if b.is_invalid_record() => E::InvalidRecord,
        StorageError::Corrupt(_) => E::CorruptMessage,
        StorageError::RecordListTooLarge { .. } => E::RecordListTooLarge,
        StorageError::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
        // A poisoned or failed log is Kafka's "log dir offline" case.
        _ => E::KafkaStorageError,
    }
}

impl From<&StorageError> for PartitionError {
    fn from(e: &StorageError) -> PartitionError {
        PartitionError::with_message(storage_code(e), e.to_string())
    }
}

impl From<StorageError> for PartitionError {
    fn from(e: StorageError) -> PartitionError {
        PartitionError::from(&e)
    }
}

impl From<storage::batch::BatchError> for PartitionError {
    fn from(e: storage::batch::BatchError) -> PartitionError {
        let code = if e.is_invalid_record() {
            E::InvalidRecord
        } else {
            E::CorruptMessage
        };
        PartitionError::with_message(code, e.to_string())
    }
}

impl From<crate::producer_state::ProducerError> for PartitionError {
    fn from(e: crate::producer_state::ProducerError) -> PartitionError {
        PartitionError::from_code(e.kafka_code(), Some(e.to_string()))
    }
}

impl From<crate::topic_config::ConfigError> for PartitionError {
    fn from(e: crate::topic_config::ConfigError) -> PartitionError {
        PartitionError::from_code(e.kafka_code(), Some(e.to_string()))
    }
}

impl From<crate::compression::RecordsError> for PartitionError {
    /// Record-level rejections keep Kafka's partition message (the `LogValidator` exception's
    /// own text, without our prefix) and list the offending records.
    fn from(e: crate::compression::RecordsError) -> PartitionError {
        use crate::compression::RecordsError as R;
        let message = match &e {
            R::InvalidRecord { message, .. } | R::InvalidTimestamp { message, .. }
                if !e.record_errors().is_empty() =>
            {
                message.clone()
            }
            _ => e.to_string(),
        };
        PartitionError {
            code: e.kafka_code(),
            message: Some(message),
            record_errors: e.record_errors().to_vec(),
        }
    }
}

pub const NONE: i16 = 0;
