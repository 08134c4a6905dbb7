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
}

impl PartitionError {
    pub fn new(e: E) -> PartitionError {
        PartitionError {
            code: e.code(),
            message: None,
        }
    }

    pub fn with_message(e: E, message: impl Into<String>) -> PartitionError {
        PartitionError {
            code: e.code(),
            message: Some(message.into()),
        }
    }

    pub fn from_code(code: i16, message: Option<String>) -> PartitionError {
        PartitionError { code, message }
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

impl From<crate::log::producer_state::ProducerError> for PartitionError {
    fn from(e: crate::log::producer_state::ProducerError) -> PartitionError {
        PartitionError::from_code(e.kafka_code(), Some(e.to_string()))
    }
}

impl From<crate::log::topic_config::ConfigError> for PartitionError {
    fn from(e: crate::log::topic_config::ConfigError) -> PartitionError {
        PartitionError::from_code(e.kafka_code(), Some(e.to_string()))
    }
}

impl From<crate::log::compression::RecordsError> for PartitionError {
    fn from(e: crate::log::compression::RecordsError) -> PartitionError {
        PartitionError::from_code(e.kafka_code(), Some(e.to_string()))
    }
}

pub const NONE: i16 = 0;
