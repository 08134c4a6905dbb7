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
    pub record_errors: Vec<crate::log::records::RecordError>,
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

    /// Kafka's `LogValidator` texts for a rejected batch name the partition, which the record
    /// validator does not know: add it, and list the first three record errors the way Kafka
    /// prints them (`RecordError(batchIndex=0, message='...')`).
    pub fn in_partition(mut self, topic: &str, partition: i32) -> PartitionError {
        const COMPACTED_NO_KEY: &str = "Compacted topic cannot accept message without key";
        if self.record_errors.is_empty() {
            return self;
        }
        for e in &mut self.record_errors {
            if e.message == COMPACTED_NO_KEY {
                e.message = format!("{COMPACTED_NO_KEY} in topic partition {topic}-{partition}");
            }
        }
        if self.code == E::InvalidRecord.code() {
            let shown: Vec<String> = self
                .record_errors
                .iter()
                .take(3)
                .map(|e| {
                    format!(
                        "RecordError(batchIndex={}, message='{}')",
                        e.batch_index, e.message
                    )
                })
                .collect();
            self.message = Some(format!(
                "One or more records have been rejected due to {} record errors in total, and \
                 only showing the first three errors at most: [{}]",
                self.record_errors.len(),
                shown.join(", ")
            ));
        }
        self
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
    /// Record-level rejections keep Kafka's partition message (the `LogValidator` exception's
    /// own text, without our prefix) and list the offending records.
    fn from(e: crate::log::compression::RecordsError) -> PartitionError {
        use crate::log::compression::RecordsError as R;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::records::RecordError;

    #[test]
    fn record_errors_name_the_partition_as_kafka_does() {
        let mut e = PartitionError::with_message(E::InvalidRecord, "x");
        e.record_errors = (0..4)
            .map(|i| RecordError {
                batch_index: i * 2,
                message: "Compacted topic cannot accept message without key".into(),
            })
            .collect();
        let e = e.in_partition("t", 3);
        let m = "Compacted topic cannot accept message without key in topic partition t-3";
        assert!(e.record_errors.iter().all(|r| r.message == m));
        assert_eq!(
            e.message.as_deref(),
            Some(
                format!(
                    "One or more records have been rejected due to 4 record errors in total, and \
                     only showing the first three errors at most: [RecordError(batchIndex=0, \
                     message='{m}'), RecordError(batchIndex=2, message='{m}'), \
                     RecordError(batchIndex=4, message='{m}')]"
                )
                .as_str()
            )
        );
        // Errors without records are left alone.
        let plain = PartitionError::with_message(E::CorruptMessage, "crc").in_partition("t", 0);
        assert_eq!(plain.message.as_deref(), Some("crc"));
    }
}
