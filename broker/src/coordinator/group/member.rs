//! One member of a classic group (Kafka's `ClassicGroupMember`).

use bytes::Bytes;

/// A parked JoinGroup request: answered when the join phase completes (or fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JoinWaiter {
    pub request_id: u64,
    pub api_version: i16,
}

/// A parked SyncGroup request: answered when the leader's assignment is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncWaiter {
    pub request_id: u64,
    pub api_version: i16,
}

/// A protocol (assignor) a member supports, with its opaque metadata (for consumers: the
/// subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberProtocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<MemberProtocol>,
    /// Assignment of the current generation (empty until the leader's SyncGroup is durable).
    pub assignment: Bytes,
    pub awaiting_join: Option<JoinWaiter>,
    pub awaiting_sync: Option<SyncWaiter>,
    /// Added during the current join phase and not yet answered: such members expire on the
    /// (long) new-member join timeout even while their JoinGroup is parked.
    pub is_new: bool,
    /// Deadline of the heartbeat timer, if armed (also mirrored in the coordinator's timer set).
    pub heartbeat_deadline_ms: Option<i64>,
    /// Join order; the lowest is the oldest member (used for leader re-election and listing).
    pub join_seq: u64,
}

impl Member {
    /// Kafka's `hasSatisfiedHeartbeat`: members parked in a rebalance need no heartbeat,
    /// except new members, which have no member id yet on the client side.
    pub fn has_satisfied_heartbeat(&self) -> bool {
        if self.is_new {
            false
        } else {
            self.awaiting_join.is_some() || self.awaiting_sync.is_some()
        }
    }

    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }

    /// The member's metadata for `protocol` (empty if it does not support it, which the
    /// group's protocol selection rules out for current members).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// Same protocols, in the same order, with the same metadata.
    pub fn matches(&self, protocols: &[MemberProtocol]) -> bool {
        self.protocols == protocols
    }

    /// Kafka's `vote`: the member's most preferred protocol among the candidates.
    pub fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
    }
}
