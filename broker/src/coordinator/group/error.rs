//! What the group coordinator refuses, as typed errors.
//!
//! The state machine decides these failures and puts them in Kafka response structs; the wire
//! code of each variant is fixed in `crate::errors` (`KafkaCode for GroupError`), the one
//! place that maps errors to Kafka codes. Nothing in `coordinator/group/` names a code.

/// A failure the group coordinator answers a request (or one of its partitions) with.
///
/// Names follow the Kafka error a client sees, except where the Kafka name hides the cause
/// (`GroupMetadataTooLarge`, `WriteFailed` are both UNKNOWN_SERVER_ERROR on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// This node no longer coordinates the group (partition unloaded, log poisoned).
    #[error("not the coordinator of this group")]
    NotCoordinator,
    /// The group is being deleted or migrated, or its write hit a transient failure.
    #[error("group coordinator not available")]
    CoordinatorNotAvailable,
    /// The offsets partition is still being replayed.
    #[error("group coordinator is loading")]
    CoordinatorLoadInProgress,
    /// An empty group id where the membership APIs need one.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The group does not exist (or is dead).
    #[error("group not found")]
    GroupIdNotFound,
    /// The member id is not (or no longer) a member of the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// KIP-394: a new dynamic member must rejoin with the member id it was given.
    #[error("member id required")]
    MemberIdRequired,
    /// The request names another generation than the group's current one.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing; the member must rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// The member's protocol type or protocols do not match the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// `session.timeout.ms` outside `group.{min,max}.session.timeout.ms`.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// The group already has `group.max.size` members.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// KIP-345: another member now holds this `group.instance.id`.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The group still has members (DeleteGroups, OffsetDelete of a non-consumer group).
    #[error("group is not empty")]
    NonEmptyGroup,
    /// OffsetDelete of a topic the group is subscribed to.
    #[error("group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// OffsetCommit / OffsetDelete of a topic or partition the cluster does not have.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// Commit metadata longer than `offset.metadata.max.bytes`.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// The offsets batch exceeds the offsets partition's max message size.
    #[error("offset commit batch too large")]
    InvalidCommitOffsetSize,
    /// OffsetFetch with `require_stable` while a commit for the partition is pending.
    #[error("unstable offset commit")]
    UnstableOffsetCommit,
    /// The group's metadata record exceeds `group.record.bytes.max` (Kafka's append would
    /// fail with RECORD_LIST_TOO_LARGE and the coordinator rebalance).
    #[error("group metadata record too large")]
    GroupMetadataTooLarge,
    /// An append to the offsets partition failed for another reason.
    #[error("offsets partition write failed")]
    WriteFailed,
    /// FindCoordinator with a key type other than group (0) or transaction (1).
    #[error("unknown coordinator key type")]
    UnknownCoordinatorKeyType,
}

impl From<super::state::MemberError> for GroupError {
    fn from(e: super::state::MemberError) -> GroupError {
        match e {
            super::state::MemberError::UnknownMemberId => GroupError::UnknownMemberId,
            super::state::MemberError::FencedInstanceId => GroupError::FencedInstanceId,
        }
    }
}
