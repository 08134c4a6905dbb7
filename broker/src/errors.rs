//! The one place where internal errors become Kafka error codes.
//!
//! # What this module owns
//! The table from typed failures to Kafka's wire error codes (and the message sent with them).
//! I/O-free modules (`log/`, `coordinator/group/`, `cluster/`) return `thiserror` enums whose variants say
//! what went wrong; they never name a Kafka code. Each such enum implements [`KafkaCode`] here,
//! and only here, so remapping a code is a change to this file and fails
//! `tests::every_variant_has_its_code`.
//!
//! # Invariants
//! - A typed error's code is fixed: the table test pins every variant (a remap is a deliberate
//!   edit of the table, like Iggy's "a gap is a retired code").
//! - The message Kafka sends with a partition error is the typed error's `Display`
//!   (`PartitionError::from(err)`).
//! - `tests::io_free_modules_name_no_kafka_codes` fails when a non-test line in an I/O-free
//!   module (its `IO_FREE` list) names `ResponseError` or implements the code mapping. A module
//!   joins the list once its errors are typed.
//! - Shells and handlers (`shard/`, `kafka/`, `coordinator/mod.rs`) sit at the
//!   response boundary: they may still name codes for conditions they decide themselves
//!   (routing, unknown topic, coordinator loading) and match on codes received from other
//!   shards; they do not re-decide what a typed error means.
//!
//! Runs on: every shard (pure functions and plain data, no state).

use kafka_protocol::ResponseError as E;
use storage::StorageError;

use crate::cluster::controller::ControllerError;
use crate::coordinator::group::{GroupError, PersistError};
use crate::coordinator::txn::TxnError;
use crate::log::compression::CompressionError;
use crate::log::producer_state::ProducerError;
use crate::log::records::RecordsError;
use crate::log::topic_config::ConfigError;
use crate::log::txn_index::TxnAppendError;

/// A typed failure with a fixed Kafka error code. Implemented in this file only.
pub trait KafkaCode {
    /// The Kafka error this failure is answered with.
    fn kafka_error(&self) -> E;

    /// Its wire code.
    fn kafka_code(&self) -> i16 {
        self.kafka_error().code()
    }
}

/// A partition-level failure, carried across shards as plain data (no `Rc` inside).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    /// The code of `e`, with its `Display` as the message Kafka sends.
    fn typed(e: &(impl KafkaCode + std::fmt::Display)) -> PartitionError {
        PartitionError::with_message(e.kafka_error(), e.to_string())
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

impl KafkaCode for StorageError {
    fn kafka_error(&self) -> E {
        storage_code(self)
    }
}

impl KafkaCode for storage::batch::BatchError {
    fn kafka_error(&self) -> E {
        if self.is_invalid_record() {
            E::InvalidRecord
        } else {
            E::CorruptMessage
        }
    }
}

impl From<&StorageError> for PartitionError {
    fn from(e: &StorageError) -> PartitionError {
        PartitionError::typed(e)
    }
}

impl From<StorageError> for PartitionError {
    fn from(e: StorageError) -> PartitionError {
        PartitionError::typed(&e)
    }
}

impl From<storage::batch::BatchError> for PartitionError {
    fn from(e: storage::batch::BatchError) -> PartitionError {
        PartitionError::typed(&e)
    }
}

impl From<ProducerError> for PartitionError {
    fn from(e: ProducerError) -> PartitionError {
        PartitionError::typed(&e)
    }
}

impl From<ConfigError> for PartitionError {
    fn from(e: ConfigError) -> PartitionError {
        PartitionError::typed(&e)
    }
}

impl From<ControllerError> for PartitionError {
    fn from(e: ControllerError) -> PartitionError {
        PartitionError::typed(&e)
    }
}

impl From<crate::cluster::quorum::QuorumError> for PartitionError {
    fn from(e: crate::cluster::quorum::QuorumError) -> PartitionError {
        PartitionError::typed(&e)
    }
}

impl KafkaCode for crate::cluster::quorum::QuorumError {
    fn kafka_error(&self) -> E {
        use crate::cluster::quorum::QuorumError as Q;
        match self {
            // Retriable: the client tries again (and reaches a controller once there is one).
            Q::Timeout(_) => E::RequestTimedOut,
            Q::NotLeader => E::NotController,
            Q::Failed(_) => E::UnknownServerError,
        }
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

// ---------------------------------------------------------------------------------------------
// log/
// ---------------------------------------------------------------------------------------------

impl KafkaCode for RecordsError {
    fn kafka_error(&self) -> E {
        match self {
            RecordsError::Corrupt(_) | RecordsError::CrcMismatch { .. } => E::CorruptMessage,
            // Produce v3+ must carry v2 batches.
            RecordsError::UnsupportedMagic(_) | RecordsError::InvalidRecord { .. } => {
                E::InvalidRecord
            }
            RecordsError::InvalidTimestamp { .. } => E::InvalidTimestamp,
            RecordsError::Compression(e) => e.kafka_error(),
        }
    }
}

impl KafkaCode for CompressionError {
    fn kafka_error(&self) -> E {
        match self {
            CompressionError::UnknownCodec(_) | CompressionError::UnknownTopicCompression(_) => {
                E::UnsupportedCompressionType
            }
            CompressionError::Corrupt { .. } => E::CorruptMessage,
            CompressionError::TooLarge { .. } => E::MessageTooLarge,
            CompressionError::Compress { .. } => E::UnknownServerError,
        }
    }
}

impl KafkaCode for ProducerError {
    fn kafka_error(&self) -> E {
        match self {
            ProducerError::OutOfOrderSequence { .. } => E::OutOfOrderSequenceNumber,
            ProducerError::InvalidProducerEpoch { .. } => E::InvalidProducerEpoch,
            ProducerError::InvalidSequence { .. } => E::InvalidRecord,
            ProducerError::UnknownProducerId { .. } => E::UnknownProducerId,
        }
    }
}

impl KafkaCode for ConfigError {
    fn kafka_error(&self) -> E {
        match self {
            ConfigError::InvalidRequest(_) => E::InvalidRequest,
            ConfigError::Unknown(_)
            | ConfigError::UnknownBroker(_)
            | ConfigError::InvalidValue { .. }
            | ConfigError::Invalid(_) => E::InvalidConfig,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cluster/
// ---------------------------------------------------------------------------------------------

impl KafkaCode for ControllerError {
    fn kafka_error(&self) -> E {
        match self {
            // Retriable: the change is stored and reaches the shard with the next image.
            ControllerError::NotAcknowledged { .. } => E::RequestTimedOut,
            ControllerError::PartitionsNotOpened { .. } => E::KafkaStorageError,
            // What Redpanda answers for its per-shard partition limit.
            ControllerError::OverPartitionLimit(_)
            | ControllerError::PartitionCountOutOfRange(_)
            | ControllerError::PartitionCountNotIncreased { .. }
            | ControllerError::PartitionCountAboveMax => E::InvalidPartitions,
            ControllerError::ProducerIdsExhausted => E::UnknownServerError,
            ControllerError::InvalidTopicName(_) => E::InvalidTopicException,
            ControllerError::TopicAlreadyExists(_) => E::TopicAlreadyExists,
            ControllerError::ReplicationFactorNotPositive
            | ControllerError::ReplicationFactorTooLarge { .. } => E::InvalidReplicationFactor,
            ControllerError::NotLeaderAtEpoch { .. } => E::FencedLeaderEpoch,
            ControllerError::StalePartitionEpoch { .. } => E::InvalidUpdateVersion,
            ControllerError::IneligibleIsr { .. } => E::IneligibleReplica,
            ControllerError::ElectionNotNeeded => E::ElectionNotNeeded,
            ControllerError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
            ControllerError::NoReassignmentInProgress => E::NoReassignmentInProgress,
            ControllerError::PreferredLeaderNotAvailable => E::PreferredLeaderNotAvailable,
            ControllerError::EligibleLeadersNotAvailable => E::EligibleLeadersNotAvailable,
            ControllerError::NoLiveBrokers => E::BrokerNotAvailable,
            // KAFKA-13609: every rejected broker config change is INVALID_REQUEST.
            ControllerError::DuplicateTopic(_)
            | ControllerError::InternalTopicDeletion(_)
            | ControllerError::BrokerConfigRejected(_)
            | ControllerError::TopicConfigUnresolvable { .. } => E::InvalidRequest,
            ControllerError::TopicNotHosted | ControllerError::UnknownTopic(_) => {
                E::UnknownTopicOrPartition
            }
        }
    }
}

impl KafkaCode for TxnAppendError {
    fn kafka_error(&self) -> E {
        match self {
            // Since Kafka 2.7 produce answers a fenced epoch with INVALID_PRODUCER_EPOCH.
            TxnAppendError::Fenced { .. } => E::InvalidProducerEpoch,
            TxnAppendError::NotInTransaction { .. } => E::InvalidTxnState,
            TxnAppendError::Invalid => E::InvalidRecord,
        }
    }
}

impl From<TxnAppendError> for PartitionError {
    fn from(e: TxnAppendError) -> PartitionError {
        PartitionError::typed(&e)
    }
}

// ---------------------------------------------------------------------------------------------
// coordinator/txn/
// ---------------------------------------------------------------------------------------------

impl KafkaCode for TxnError {
    fn kafka_error(&self) -> E {
        match self {
            TxnError::NotCoordinator => E::NotCoordinator,
            TxnError::CoordinatorNotAvailable => E::CoordinatorNotAvailable,
            TxnError::ConcurrentTransactions => E::ConcurrentTransactions,
            TxnError::ProducerFenced => E::ProducerFenced,
            TxnError::InvalidProducerIdMapping => E::InvalidProducerIdMapping,
            TxnError::InvalidTxnState => E::InvalidTxnState,
            TxnError::InvalidTransactionTimeout => E::InvalidTransactionTimeout,
            TxnError::InvalidProducerEpoch => E::InvalidProducerEpoch,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// coordinator/group/
// ---------------------------------------------------------------------------------------------

impl KafkaCode for GroupError {
    fn kafka_error(&self) -> E {
        match self {
            GroupError::NotCoordinator => E::NotCoordinator,
            GroupError::CoordinatorNotAvailable => E::CoordinatorNotAvailable,
            GroupError::CoordinatorLoadInProgress => E::CoordinatorLoadInProgress,
            GroupError::InvalidGroupId => E::InvalidGroupId,
            GroupError::GroupIdNotFound => E::GroupIdNotFound,
            GroupError::UnknownMemberId => E::UnknownMemberId,
            GroupError::MemberIdRequired => E::MemberIdRequired,
            GroupError::IllegalGeneration => E::IllegalGeneration,
            GroupError::RebalanceInProgress => E::RebalanceInProgress,
            GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol,
            GroupError::InvalidSessionTimeout => E::InvalidSessionTimeout,
            GroupError::GroupMaxSizeReached => E::GroupMaxSizeReached,
            GroupError::FencedInstanceId => E::FencedInstanceId,
            GroupError::NonEmptyGroup => E::NonEmptyGroup,
            GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic,
            GroupError::UnknownTopicOrPartition => E::UnknownTopicOrPartition,
            GroupError::OffsetMetadataTooLarge => E::OffsetMetadataTooLarge,
            GroupError::InvalidCommitOffsetSize => E::InvalidCommitOffsetSize,
            GroupError::UnstableOffsetCommit => E::UnstableOffsetCommit,
            // Kafka's coordinator answers RECORD_LIST_TOO_LARGE and other append failures
            // with UNKNOWN_SERVER_ERROR (`appendGroupMetadataErrorToResponseError`).
            GroupError::GroupMetadataTooLarge | GroupError::WriteFailed => E::UnknownServerError,
            GroupError::UnknownCoordinatorKeyType => E::InvalidRequest,
        }
    }
}

impl PersistError {
    /// Classifies the Kafka error code of a failed append to the offsets partition (from
    /// [`storage_code`] or a cross-shard reply) the way Kafka's coordinator does before
    /// answering clients.
    pub fn from_append_error(code: i16) -> PersistError {
        match E::try_from_code(code) {
            Some(
                E::UnknownTopicOrPartition
                | E::NotEnoughReplicas
                | E::NotEnoughReplicasAfterAppend
                | E::RequestTimedOut,
            ) => PersistError::CoordinatorNotAvailable,
            Some(E::NotLeaderOrFollower | E::KafkaStorageError) => PersistError::NotCoordinator,
            Some(E::MessageTooLarge | E::RecordListTooLarge | E::InvalidFetchSize) => {
                PersistError::RecordTooLarge
            }
            _ => PersistError::Other,
        }
    }
}

/// The message sent with a bare code where a response has a message field but the failure
/// none of its own (FindCoordinator v1-v3, Kafka's `Errors.message()`): kafka-protocol's name
/// of the error, or "NONE" for success.
pub fn kafka_message(code: i16) -> String {
    match E::try_from_code(code) {
        Some(e) => e.to_string(),
        None => "NONE".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::compression::Codec;
    use storage::batch::BatchError;

    /// Fails to compile when a variant is added, so that it gets a row in the table below.
    fn listed(
        r: &RecordsError,
        c: &CompressionError,
        p: &ProducerError,
        k: &ConfigError,
        ctl: &ControllerError,
    ) {
        match r {
            RecordsError::Corrupt(_)
            | RecordsError::CrcMismatch { .. }
            | RecordsError::UnsupportedMagic(_)
            | RecordsError::InvalidRecord { .. }
            | RecordsError::InvalidTimestamp { .. }
            | RecordsError::Compression(_) => {}
        }
        match c {
            CompressionError::UnknownCodec(_)
            | CompressionError::UnknownTopicCompression(_)
            | CompressionError::Corrupt { .. }
            | CompressionError::TooLarge { .. }
            | CompressionError::Compress { .. } => {}
        }
        match p {
            ProducerError::OutOfOrderSequence { .. }
            | ProducerError::InvalidProducerEpoch { .. }
            | ProducerError::InvalidSequence { .. }
            | ProducerError::UnknownProducerId { .. } => {}
        }
        match k {
            ConfigError::Unknown(_)
            | ConfigError::UnknownBroker(_)
            | ConfigError::InvalidValue { .. }
            | ConfigError::Invalid(_)
            | ConfigError::InvalidRequest(_) => {}
        }
        match ctl {
            ControllerError::NotAcknowledged { .. }
            | ControllerError::PartitionsNotOpened { .. }
            | ControllerError::OverPartitionLimit(_)
            | ControllerError::ProducerIdsExhausted
            | ControllerError::InvalidTopicName(_)
            | ControllerError::DuplicateTopic(_)
            | ControllerError::TopicAlreadyExists(_)
            | ControllerError::PartitionCountOutOfRange(_)
            | ControllerError::ReplicationFactorNotPositive
            | ControllerError::ReplicationFactorTooLarge { .. }
            | ControllerError::NotLeaderAtEpoch { .. }
            | ControllerError::StalePartitionEpoch { .. }
            | ControllerError::IneligibleIsr { .. }
            | ControllerError::ElectionNotNeeded
            | ControllerError::InvalidReplicaAssignment(_)
            | ControllerError::NoReassignmentInProgress
            | ControllerError::PreferredLeaderNotAvailable
            | ControllerError::EligibleLeadersNotAvailable
            | ControllerError::NoLiveBrokers
            | ControllerError::InternalTopicDeletion(_)
            | ControllerError::TopicNotHosted
            | ControllerError::PartitionCountNotIncreased { .. }
            | ControllerError::PartitionCountAboveMax
            | ControllerError::BrokerConfigRejected(_)
            | ControllerError::TopicConfigUnresolvable { .. }
            | ControllerError::UnknownTopic(_) => {}
        }
    }

    type Row = (Box<dyn KafkaCode>, i16, &'static str);

    /// The code clients see for each `GroupError`; exhaustive, so a new variant must be
    /// pinned here (and listed in `ALL_GROUP_ERRORS`).
    fn group_code_pinned(e: GroupError) -> (i16, &'static str) {
        match e {
            GroupError::NotCoordinator => (16, "NOT_COORDINATOR"),
            GroupError::CoordinatorNotAvailable => (15, "COORDINATOR_NOT_AVAILABLE"),
            GroupError::CoordinatorLoadInProgress => (14, "COORDINATOR_LOAD_IN_PROGRESS"),
            GroupError::InvalidGroupId => (24, "INVALID_GROUP_ID"),
            GroupError::GroupIdNotFound => (69, "GROUP_ID_NOT_FOUND"),
            GroupError::UnknownMemberId => (25, "UNKNOWN_MEMBER_ID"),
            GroupError::MemberIdRequired => (79, "MEMBER_ID_REQUIRED"),
            GroupError::IllegalGeneration => (22, "ILLEGAL_GENERATION"),
            GroupError::RebalanceInProgress => (27, "REBALANCE_IN_PROGRESS"),
            GroupError::InconsistentGroupProtocol => (23, "INCONSISTENT_GROUP_PROTOCOL"),
            GroupError::InvalidSessionTimeout => (26, "INVALID_SESSION_TIMEOUT"),
            GroupError::GroupMaxSizeReached => (81, "GROUP_MAX_SIZE_REACHED"),
            GroupError::FencedInstanceId => (82, "FENCED_INSTANCE_ID"),
            GroupError::NonEmptyGroup => (68, "NON_EMPTY_GROUP"),
            GroupError::GroupSubscribedToTopic => (86, "GROUP_SUBSCRIBED_TO_TOPIC"),
            GroupError::UnknownTopicOrPartition => (3, "UNKNOWN_TOPIC_OR_PARTITION"),
            GroupError::OffsetMetadataTooLarge => (12, "OFFSET_METADATA_TOO_LARGE"),
            GroupError::InvalidCommitOffsetSize => (28, "INVALID_COMMIT_OFFSET_SIZE"),
            GroupError::UnstableOffsetCommit => (88, "UNSTABLE_OFFSET_COMMIT"),
            GroupError::GroupMetadataTooLarge => (-1, "UNKNOWN_SERVER_ERROR"),
            GroupError::WriteFailed => (-1, "UNKNOWN_SERVER_ERROR"),
            GroupError::UnknownCoordinatorKeyType => (42, "INVALID_REQUEST"),
        }
    }

    const ALL_GROUP_ERRORS: [GroupError; 22] = [
        GroupError::NotCoordinator,
        GroupError::CoordinatorNotAvailable,
        GroupError::CoordinatorLoadInProgress,
        GroupError::InvalidGroupId,
        GroupError::GroupIdNotFound,
        GroupError::UnknownMemberId,
        GroupError::MemberIdRequired,
        GroupError::IllegalGeneration,
        GroupError::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout,
        GroupError::GroupMaxSizeReached,
        GroupError::FencedInstanceId,
        GroupError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic,
        GroupError::UnknownTopicOrPartition,
        GroupError::OffsetMetadataTooLarge,
        GroupError::InvalidCommitOffsetSize,
        GroupError::UnstableOffsetCommit,
        GroupError::GroupMetadataTooLarge,
        GroupError::WriteFailed,
        GroupError::UnknownCoordinatorKeyType,
    ];

    /// Every typed error and the code clients see for it. A remap must edit this table.
    #[test]
    fn every_variant_has_its_code() {
        let s = String::new;
        let gzip = Codec::Gzip;
        let storage_io = || StorageError::Io(std::io::Error::other("disk"));
        let table: Vec<Row> = vec![
            // log/records.rs
            (Box::new(RecordsError::Corrupt(s())), 2, "CORRUPT_MESSAGE"),
            (
                Box::new(RecordsError::CrcMismatch {
                    stored: 0,
                    computed: 1,
                }),
                2,
                "CORRUPT_MESSAGE",
            ),
            (
                Box::new(RecordsError::UnsupportedMagic(1)),
                87,
                "INVALID_RECORD",
            ),
            (
                Box::new(RecordsError::InvalidRecord {
                    message: s(),
                    record_errors: Vec::new(),
                }),
                87,
                "INVALID_RECORD",
            ),
            (
                Box::new(RecordsError::InvalidTimestamp {
                    message: s(),
                    record_errors: Vec::new(),
                }),
                32,
                "INVALID_TIMESTAMP",
            ),
            (
                Box::new(RecordsError::Compression(CompressionError::UnknownCodec(7))),
                76,
                "UNSUPPORTED_COMPRESSION_TYPE",
            ),
            // log/compression.rs
            (
                Box::new(CompressionError::UnknownCodec(5)),
                76,
                "UNSUPPORTED_COMPRESSION_TYPE",
            ),
            (
                Box::new(CompressionError::UnknownTopicCompression(s())),
                76,
                "UNSUPPORTED_COMPRESSION_TYPE",
            ),
            (
                Box::new(CompressionError::Corrupt {
                    codec: gzip,
                    reason: s(),
                }),
                2,
                "CORRUPT_MESSAGE",
            ),
            (
                Box::new(CompressionError::TooLarge {
                    codec: gzip,
                    limit_bytes: 1,
                }),
                10,
                "MESSAGE_TOO_LARGE",
            ),
            (
                Box::new(CompressionError::Compress {
                    codec: gzip,
                    reason: s(),
                }),
                -1,
                "UNKNOWN_SERVER_ERROR",
            ),
            // log/producer_state.rs
            (
                Box::new(ProducerError::OutOfOrderSequence {
                    producer_id: 1,
                    epoch: 0,
                    first_seq: 5,
                    expected_seq: 1,
                    current_epoch: 0,
                }),
                45,
                "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ),
            (
                Box::new(ProducerError::InvalidProducerEpoch {
                    producer_id: 1,
                    epoch: 0,
                    current_epoch: 1,
                }),
                47,
                "INVALID_PRODUCER_EPOCH",
            ),
            (
                Box::new(ProducerError::InvalidSequence {
                    producer_id: 1,
                    first_seq: -1,
                }),
                87,
                "INVALID_RECORD",
            ),
            (
                Box::new(ProducerError::UnknownProducerId { producer_id: 1 }),
                59,
                "UNKNOWN_PRODUCER_ID",
            ),
            // log/topic_config.rs
            (Box::new(ConfigError::Unknown(s())), 40, "INVALID_CONFIG"),
            (
                Box::new(ConfigError::UnknownBroker(s())),
                40,
                "INVALID_CONFIG",
            ),
            (
                Box::new(ConfigError::InvalidValue {
                    name: s(),
                    value: s(),
                    reason: s(),
                }),
                40,
                "INVALID_CONFIG",
            ),
            (Box::new(ConfigError::Invalid(s())), 40, "INVALID_CONFIG"),
            (
                Box::new(ConfigError::InvalidRequest(s())),
                42,
                "INVALID_REQUEST",
            ),
            // storage
            (
                Box::new(StorageError::MessageTooLarge { size: 2, max: 1 }),
                10,
                "MESSAGE_TOO_LARGE",
            ),
            (
                Box::new(StorageError::RecordListTooLarge {
                    size: 2,
                    segment_bytes: 1,
                }),
                18,
                "RECORD_LIST_TOO_LARGE",
            ),
            (
                Box::new(StorageError::Corrupt(BatchError::BadMagic(1))),
                2,
                "CORRUPT_MESSAGE",
            ),
            (
                Box::new(StorageError::Corrupt(BatchError::BadRecordCount {
                    count: 0,
                })),
                87,
                "INVALID_RECORD",
            ),
            (
                Box::new(StorageError::OffsetOutOfRange {
                    offset: 9,
                    log_start_offset: 0,
                    written_end_offset: 1,
                }),
                1,
                "OFFSET_OUT_OF_RANGE",
            ),
            (Box::new(storage_io()), 56, "KAFKA_STORAGE_ERROR"),
            (Box::new(StorageError::Poisoned), 56, "KAFKA_STORAGE_ERROR"),
            (Box::new(StorageError::Closed), 56, "KAFKA_STORAGE_ERROR"),
            (Box::new(BatchError::Empty), 2, "CORRUPT_MESSAGE"),
            // cluster/controller.rs
            (
                Box::new(ControllerError::NotAcknowledged {
                    shards: vec![1],
                    version: 2,
                }),
                7,
                "REQUEST_TIMED_OUT",
            ),
            (
                Box::new(ControllerError::PartitionsNotOpened {
                    topic: s(),
                    partitions: vec![0],
                }),
                56,
                "KAFKA_STORAGE_ERROR",
            ),
            (
                Box::new(ControllerError::OverPartitionLimit(s())),
                37,
                "INVALID_PARTITIONS",
            ),
            (
                Box::new(ControllerError::ProducerIdsExhausted),
                -1,
                "UNKNOWN_SERVER_ERROR",
            ),
            (
                Box::new(ControllerError::InvalidTopicName(s())),
                17,
                "INVALID_TOPIC_EXCEPTION",
            ),
            (
                Box::new(ControllerError::DuplicateTopic(s())),
                42,
                "INVALID_REQUEST",
            ),
            (
                Box::new(ControllerError::TopicAlreadyExists(s())),
                36,
                "TOPIC_ALREADY_EXISTS",
            ),
            (
                Box::new(ControllerError::PartitionCountOutOfRange(0)),
                37,
                "INVALID_PARTITIONS",
            ),
            (
                Box::new(ControllerError::ReplicationFactorNotPositive),
                38,
                "INVALID_REPLICATION_FACTOR",
            ),
            (
                Box::new(ControllerError::ReplicationFactorTooLarge { rf: 3, live: 1 }),
                38,
                "INVALID_REPLICATION_FACTOR",
            ),
            (
                Box::new(ControllerError::InternalTopicDeletion(s())),
                42,
                "INVALID_REQUEST",
            ),
            (
                Box::new(ControllerError::TopicNotHosted),
                3,
                "UNKNOWN_TOPIC_OR_PARTITION",
            ),
            (
                Box::new(ControllerError::PartitionCountNotIncreased {
                    current: 2,
                    requested: 1,
                }),
                37,
                "INVALID_PARTITIONS",
            ),
            (
                Box::new(ControllerError::PartitionCountAboveMax),
                37,
                "INVALID_PARTITIONS",
            ),
            (
                Box::new(ControllerError::BrokerConfigRejected(ConfigError::Unknown(
                    s(),
                ))),
                42,
                "INVALID_REQUEST",
            ),
            (
                Box::new(ControllerError::TopicConfigUnresolvable {
                    topic: s(),
                    error: ConfigError::Unknown(s()),
                }),
                42,
                "INVALID_REQUEST",
            ),
            (
                Box::new(ControllerError::UnknownTopic(s())),
                3,
                "UNKNOWN_TOPIC_OR_PARTITION",
            ),
            (
                Box::new(BatchError::BadLastOffsetDelta {
                    last_offset_delta: 1,
                    count: 1,
                }),
                87,
                "INVALID_RECORD",
            ),
            // coordinator/txn/
            (Box::new(TxnError::NotCoordinator), 16, "NOT_COORDINATOR"),
            (
                Box::new(TxnError::CoordinatorNotAvailable),
                15,
                "COORDINATOR_NOT_AVAILABLE",
            ),
            (
                Box::new(TxnError::ConcurrentTransactions),
                51,
                "CONCURRENT_TRANSACTIONS",
            ),
            (Box::new(TxnError::ProducerFenced), 90, "PRODUCER_FENCED"),
            (
                Box::new(TxnError::InvalidProducerIdMapping),
                49,
                "INVALID_PRODUCER_ID_MAPPING",
            ),
            (Box::new(TxnError::InvalidTxnState), 48, "INVALID_TXN_STATE"),
            (
                Box::new(TxnError::InvalidTransactionTimeout),
                50,
                "INVALID_TRANSACTION_TIMEOUT",
            ),
            (
                Box::new(TxnError::InvalidProducerEpoch),
                47,
                "INVALID_PRODUCER_EPOCH",
            ),
            // log/txn_index.rs
            (
                Box::new(TxnAppendError::Fenced {
                    producer_id: 1,
                    epoch: 0,
                    fenced_by: 1,
                }),
                47,
                "INVALID_PRODUCER_EPOCH",
            ),
            (
                Box::new(TxnAppendError::NotInTransaction { producer_id: 1 }),
                48,
                "INVALID_TXN_STATE",
            ),
            (Box::new(TxnAppendError::Invalid), 87, "INVALID_RECORD"),
        ];
        listed(
            &RecordsError::Corrupt(s()),
            &CompressionError::UnknownCodec(5),
            &ProducerError::UnknownProducerId { producer_id: 1 },
            &ConfigError::Unknown(s()),
            &ControllerError::TopicNotHosted,
        );
        for (error, code, name) in &table {
            assert_eq!(error.kafka_code(), *code, "{name}");
            assert_eq!(
                kafka_message(*code),
                error.kafka_error().to_string(),
                "{name}"
            );
        }
        for e in ALL_GROUP_ERRORS {
            let (code, name) = group_code_pinned(e);
            assert_eq!(e.kafka_code(), code, "{e:?} should be {name}");
        }
    }

    #[test]
    fn partition_error_carries_code_and_display() {
        let e = ProducerError::InvalidProducerEpoch {
            producer_id: 7,
            epoch: 1,
            current_epoch: 2,
        };
        let message = e.to_string();
        let p = PartitionError::from(e);
        assert_eq!(p.code, 47);
        assert_eq!(p.message, Some(message));
        let p = PartitionError::from(StorageError::Poisoned);
        assert_eq!(p.code, 56);
        assert_eq!(
            p.message.as_deref(),
            Some("partition log poisoned by an earlier fsync/write failure")
        );
    }

    #[test]
    fn kafka_message_is_errors_message() {
        assert_eq!(kafka_message(0), "NONE");
        // kafka-protocol's `Display` is the variant name (Kafka's own `Errors.message()` is
        // the exception text, "The coordinator is not available."); pinned as sent today.
        assert_eq!(kafka_message(15), "CoordinatorNotAvailable");
    }

    /// I/O-free modules: they return typed errors and never name a Kafka code. Add a module
    /// here once its errors are typed.
    const IO_FREE: &[&str] = &["log", "coordinator/group", "coordinator/txn", "cluster"];

    /// What an I/O-free module must not contain outside its tests: the protocol's error type
    /// (constructing or matching codes) or an implementation of the code mapping.
    const FORBIDDEN: &[&str] = &[
        "ResponseError",
        "ParseResponseErrorCode",
        "fn kafka_code",
        "fn kafka_error",
    ];

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("readable dir entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }

    /// The guard that keeps this file the only place codes are chosen (a `tidy` check).
    #[test]
    fn io_free_modules_name_no_kafka_codes() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        for dir in IO_FREE {
            rust_files(&src.join(dir), &mut files);
        }
        assert!(files.len() >= 10, "found {files:?}");
        let mut offences = Vec::new();
        for path in &files {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Test files assert the codes clients see; that is their job.
            if name == "tests.rs" || name == "proptests.rs" {
                continue;
            }
            let text = std::fs::read_to_string(path).expect("source file readable");
            let code = match text.find("\n#[cfg(test)]\nmod tests {") {
                Some(end) => &text[..end],
                None => &text[..],
            };
            let mut after_cfg_test = false;
            for (i, line) in code.lines().enumerate() {
                // Comments, and an item gated to tests (e.g. a `use` the tests rely on).
                let skip = line.trim_start().starts_with("//") || after_cfg_test;
                after_cfg_test = line.trim() == "#[cfg(test)]";
                if skip {
                    continue;
                }
                if let Some(word) = FORBIDDEN.iter().find(|w| line.contains(*w)) {
                    offences.push(format!("{}:{}: {word}: {line}", path.display(), i + 1));
                }
            }
        }
        assert!(
            offences.is_empty(),
            "I/O-free modules return typed errors; map them to Kafka codes in errors.rs:\n{}",
            offences.join("\n")
        );
    }

    #[test]
    fn record_errors_name_the_partition_as_kafka_does() {
        let mut e = PartitionError::with_message(E::InvalidRecord, "x");
        e.record_errors = (0..4)
            .map(|i| crate::log::records::RecordError {
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
