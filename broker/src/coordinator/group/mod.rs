//! Classic consumer-group coordinator: an I/O-free state machine.
//!
//! # What this module owns
//! All groups that hash onto one partition of `__consumer_offsets` ([`group_partition`]),
//! with Kafka's classic group protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup,
//! KIP-394 member ids, KIP-345 static membership), committed offsets (OffsetCommit /
//! OffsetFetch / OffsetDelete, retention) and the admin views (DescribeGroups, ListGroups,
//! DeleteGroups). Behaviour follows Apache Kafka's `GroupMetadataManager` /
//! `ClassicGroup` / `OffsetMetadataManager` (the Java coordinator of Kafka 3.7+), which in
//! turn keeps the semantics of the Scala `GroupCoordinator`.
//!
//! # How it is driven
//! The coordinator never reads a clock and never does I/O. The shard that owns the offsets
//! partition feeds it requests ([`GroupCoordinator::step`]), timer ticks
//! ([`GroupCoordinator::tick`]) and completions of its log appends
//! ([`GroupCoordinator::persist_complete`]); it answers with [`Action`]s:
//! - `Respond`: send this response for that request id. JoinGroup and SyncGroup answers are
//!   often *delayed* (a join waits for the other members, a follower's sync waits for the
//!   leader's assignment), so they come out of a later call, possibly a `tick`.
//! - `Persist`: append these records to the offsets partition, then call
//!   `persist_complete(id, result)` once they are durable (or failed). Responses that depend
//!   on the write (offset commits, the leader's SyncGroup, DeleteGroups, ...) are released by
//!   that call. Completions must come in the order the `Persist` actions were emitted.
//! - `ScheduleTick`: call `tick` at (or after) this time. Extra ticks are harmless.
//!
//! Failures the coordinator decides are [`GroupError`]s; `crate::errors` maps each to the
//! Kafka code put in the response (no code is named in this module, see
//! `errors::tests::io_free_modules_name_no_kafka_codes`).
//!
//! # Wiring (the shard shell)
//! - One `GroupCoordinator` per `__consumer_offsets` partition, owned by the shard that owns
//!   that partition (`Rc<RefCell<..>>`, never borrowed across an `.await`). A request for
//!   group `g` goes to the coordinator of `group_partition(g, offsets.topic.num.partitions)`;
//!   FindCoordinator answers with this node ([`find_coordinator`]).
//! - JoinGroup / SyncGroup / Heartbeat / LeaveGroup / OffsetCommit / OffsetDelete: route
//!   the whole request (keyed by its group id) as the matching [`Input`]. OffsetFetch v8+,
//!   DescribeGroups and DeleteGroups may name several groups: split them by coordinator,
//!   send each coordinator its subset, and concatenate the per-group results in request
//!   order. ListGroups: ask every coordinator and concatenate.
//! - Unknown topics: pass [`unknown_commit_partitions`] (from the metadata snapshot) with
//!   OffsetCommit / OffsetDelete.
//! - `Respond` may come out of any call (including `tick` and `persist_complete`) and for a
//!   request other than the one just stepped; keep per-connection response order yourself.
//! - `Persist`: encode each record ([`records::OffsetsRecord::encode`]) as a Kafka record
//!   (key, value or null) in one batch on the offsets partition; once durable (acks=all
//!   semantics) call `persist_complete(now, id, Ok(()))`, or `Err(PersistError)` on failure,
//!   in emission order.
//! - Timers: keep one timer per coordinator, reset to each `ScheduleTick { at_ms }`, and
//!   call `tick(now)` when it fires (a coarse periodic tick also works).
//! - Start-up: replay the partition with `load_raw(key, value)` for every record, then
//!   `finish_load(now)`; only then route requests to it. On unload or shutdown call
//!   `shutdown()` and send the answers it returns.
//!
//! # Invariants (asserted in tests, several in release builds)
//! - Every request id handed to `step` gets exactly one `Respond`, eventually (requests
//!   parked in the coordinator are answered with NOT_COORDINATOR by [`GroupCoordinator::shutdown`]).
//! - A JoinGroup success for generation `g` is only sent to members of generation `g`; a
//!   SyncGroup success carries the assignment the leader of that generation sent.
//! - Committed offsets change only when their record is durable, in log order, so the
//!   in-memory offsets equal a replay ([`GroupCoordinator::load`]) of the log.

mod error;
pub mod find_coordinator;
mod member;
mod offsets;
pub mod records;
mod state;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult, describe_groups_response::DescribedGroup,
    describe_groups_response::DescribedGroupMember, join_group_response::JoinGroupResponseMember,
    leave_group_response::MemberResponse, list_groups_response::ListedGroup,
    offset_commit_response::OffsetCommitResponsePartition,
    offset_commit_response::OffsetCommitResponseTopic,
    offset_delete_response::OffsetDeleteResponsePartition,
    offset_delete_response::OffsetDeleteResponseTopic,
    offset_fetch_response::OffsetFetchResponseGroup,
    offset_fetch_response::OffsetFetchResponsePartition,
    offset_fetch_response::OffsetFetchResponsePartitions,
    offset_fetch_response::OffsetFetchResponseTopic,
    offset_fetch_response::OffsetFetchResponseTopics, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::errors::KafkaCode;
// The tests (via `use super::*`) assert the codes clients see.
#[cfg(test)]
use kafka_protocol::ResponseError;

pub use error::GroupError;
pub use member::MemberProtocol;
use member::{JoinWaiter, Member, SyncWaiter};
pub use offsets::{encode_subscription_v0, CommittedOffset};
use records::{
    GroupMetadataValue, MemberMetadataValue, OffsetCommitKey, OffsetCommitValue, OffsetsRecord,
    RecordError,
};
pub use state::GroupState;
use state::{ClassicGroup, GroupState as State, JoinTimer};

/// Protocol type of Kafka consumers (the only one whose metadata we parse).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// Name of the internal offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's default `offsets.topic.num.partitions`.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: u32 = 50;

const NONE: i16 = 0;

/// Coordinator settings; names and defaults are Kafka's broker configs.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`
    pub session_timeout_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`
    pub group_size_max: usize,
    /// How long a new member's parked JoinGroup may wait (Kafka's fixed 5 minutes).
    pub new_member_join_timeout_ms: i64,
    /// `offset.metadata.max.bytes` (counted in UTF-16 units, like Java's `String.length`).
    pub offset_metadata_bytes_max: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: i64,
    /// Largest group-metadata record value we append (the offsets topic's
    /// `max.message.bytes`); bigger assignments fail the SyncGroup as Kafka's append would.
    pub group_record_bytes_max: usize,
    /// Seed of the member-id generator. Give every coordinator a different random seed.
    pub member_id_seed: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            group_size_max: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
            offset_metadata_bytes_max: 4096,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            group_record_bytes_max: 1_048_588,
            member_id_seed: 0x5eed_0fc0_ffee,
        }
    }
}

/// Who sent a JoinGroup (Kafka records them in the member and shows them in DescribeGroups).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The request header's client id.
    pub client_id: String,
    /// Kafka shows `/<ip>` (InetAddress.toString()).
    pub client_host: String,
}

/// A request for this coordinator, with the API version it was decoded with.
#[derive(Debug, Clone)]
pub enum Input {
    Join {
        api_version: i16,
        client: ClientInfo,
        request: JoinGroupRequest,
    },
    Sync {
        api_version: i16,
        request: SyncGroupRequest,
    },
    Heartbeat {
        api_version: i16,
        request: HeartbeatRequest,
    },
    Leave {
        api_version: i16,
        request: LeaveGroupRequest,
    },
    /// `unknown_partitions`: the (topic, partition) pairs of the request that do not exist in
    /// the cluster metadata; they get UNKNOWN_TOPIC_OR_PARTITION (Kafka filters them before the
    /// coordinator too). See [`unknown_commit_partitions`].
    OffsetCommit {
        api_version: i16,
        request: OffsetCommitRequest,
        unknown_partitions: Vec<(String, i32)>,
    },
    /// The offsets of a committed transaction (from the transaction coordinator's marker
    /// job): written like an OffsetCommit, without member or generation checks, since the
    /// transaction already committed them (Kafka materialises them from the COMMIT marker).
    TxnOffsetsCommitted { request: OffsetCommitRequest },
    /// TxnOffsetCommit (v3+ carries the member): may this member commit offsets in its
    /// transaction? Kafka's group coordinator checks it before storing the pending offsets
    /// (`validateOffsetCommit` with `isTransactional`), so a zombie whose generation is stale
    /// cannot commit. Answered [`Response::TxnOffsetCommitChecked`]; nothing is written.
    CheckTxnOffsetCommit {
        group_id: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation: i32,
    },
    /// The lead passes only the groups this coordinator owns (v8+ may name many groups).
    OffsetFetch {
        api_version: i16,
        request: OffsetFetchRequest,
    },
    OffsetDelete {
        api_version: i16,
        request: OffsetDeleteRequest,
        unknown_partitions: Vec<(String, i32)>,
    },
    /// Only the groups this coordinator owns; the lead merges the per-coordinator answers.
    DescribeGroups {
        api_version: i16,
        request: DescribeGroupsRequest,
    },
    /// Answered with this coordinator's groups; the lead concatenates all coordinators'.
    ListGroups {
        api_version: i16,
        request: ListGroupsRequest,
    },
    /// Only the groups this coordinator owns.
    DeleteGroups {
        api_version: i16,
        request: DeleteGroupsRequest,
    },
    /// These topics were deleted: every group forgets its committed offsets for them and
    /// tombstones are written, so the compacted offsets log drops them (Kafka's
    /// `GroupCoordinator.onPartitionsDeleted`). Sent by the shard, not by a client.
    TopicsDeleted { topics: Vec<String> },
}

/// A response, to be encoded with the version of the request it answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    OffsetDelete(OffsetDeleteResponse),
    DescribeGroups(DescribeGroupsResponse),
    ListGroups(ListGroupsResponse),
    DeleteGroups(DeleteGroupsResponse),
    /// To [`Input::CheckTxnOffsetCommit`].
    TxnOffsetCommitChecked(Result<(), GroupError>),
    /// To [`Input::TopicsDeleted`]: how many committed offsets were removed.
    TopicsDeleted {
        offsets_removed: usize,
    },
}

/// What the shard must do on behalf of the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Respond {
        request_id: u64,
        response: Response,
    },
    /// Append `records` (in order, as one batch if possible) to this coordinator's offsets
    /// partition; then call [`GroupCoordinator::persist_complete`] with `persist_id`.
    Persist {
        persist_id: u64,
        records: Vec<OffsetsRecord>,
    },
    ScheduleTick {
        at_ms: i64,
    },
}

/// Why an append to the offsets partition failed (mapped to Kafka's coordinator errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// This shard no longer leads the partition / the log is poisoned (KAFKA_STORAGE_ERROR).
    #[error("not the coordinator any more")]
    NotCoordinator,
    /// Transient: not enough replicas, timeout.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// The batch exceeds the partition's max message size.
    #[error("record too large")]
    RecordTooLarge,
    #[error("unexpected storage error")]
    Other,
}

/// Misuse of the coordinator API by its driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    #[error("persist completion {got} out of order (expected {expected:?})")]
    PersistOutOfOrder { got: u64, expected: Option<u64> },
}

impl PersistError {
    /// Kafka's `appendGroupMetadataErrorToResponseError`.
    fn group_error(self) -> GroupError {
        match self {
            PersistError::NotCoordinator => GroupError::NotCoordinator,
            PersistError::CoordinatorNotAvailable => GroupError::CoordinatorNotAvailable,
            PersistError::RecordTooLarge => GroupError::GroupMetadataTooLarge,
            PersistError::Other => GroupError::WriteFailed,
        }
    }

    /// Kafka's mapping of append errors for offset commits.
    fn offset_error(self) -> GroupError {
        match self {
            PersistError::NotCoordinator => GroupError::NotCoordinator,
            PersistError::CoordinatorNotAvailable => GroupError::CoordinatorNotAvailable,
            PersistError::RecordTooLarge => GroupError::InvalidCommitOffsetSize,
            PersistError::Other => GroupError::WriteFailed,
        }
    }
}

/// Kafka's `partitionFor`: `Utils.abs(groupId.hashCode()) % partitions`, with Java's
/// `String.hashCode` over UTF-16 code units.
pub fn group_partition(group_id: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "offsets topic needs at least one partition");
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps Integer.MIN_VALUE to 0.
    let abs = if h == i32::MIN { 0 } else { h.unsigned_abs() };
    abs % partitions
}

/// The (topic, partition) pairs of an OffsetCommit for which `exists` is false.
pub fn unknown_commit_partitions(
    request: &OffsetCommitRequest,
    exists: impl Fn(&str, i32) -> bool,
) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            if !exists(t.name.0.as_str(), p.partition_index) {
                out.push((t.name.0.as_str().to_owned(), p.partition_index));
            }
        }
    }
    out
}

/// The (topic, partition) pairs of an OffsetDelete for which `exists` is false.
pub fn unknown_delete_partitions(
    request: &OffsetDeleteRequest,
    exists: impl Fn(&str, i32) -> bool,
) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            if !exists(t.name.0.as_str(), p.partition_index) {
                out.push((t.name.0.as_str().to_owned(), p.partition_index));
            }
        }
    }
    out
}

/// Timers, ordered by deadline in a set; each key is armed at most once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Heartbeat { group: String, member: String },
    PendingJoin { group: String, member: String },
    Join { group: String },
    Sync { group: String },
    OffsetExpiry,
}

/// What to do when an append completes.
#[derive(Debug)]
enum PendingPersist {
    /// Nothing waits (empty-group metadata, expiry tombstones); failures are ignored as in
    /// Kafka.
    Fire,
    /// The leader's SyncGroup: propagate the assignment on success.
    SyncAssignment {
        group_id: String,
        generation_id: i32,
        assignment: BTreeMap<String, Bytes>,
    },
    /// A static member replaced its old member id in a Stable group.
    StaticReplace {
        group_id: String,
        instance_id: String,
        old_member_id: String,
        new_member_id: String,
        old_protocols: Vec<MemberProtocol>,
        old_rebalance_timeout_ms: i32,
        old_session_timeout_ms: i32,
        old_leader: Option<String>,
        waiter: JoinWaiter,
    },
    OffsetCommit {
        request_id: u64,
        group_id: String,
        records: Vec<OffsetsRecord>,
        response: OffsetCommitResponse,
    },
    OffsetDelete {
        request_id: u64,
        records: Vec<OffsetsRecord>,
        response: OffsetDeleteResponse,
    },
    DeleteGroups {
        request_id: u64,
        /// Indexes into `response.results` of the groups whose deletion is being written.
        written: Vec<usize>,
        response: DeleteGroupsResponse,
    },
}

/// Everything but the groups, so handlers can borrow a group and the core at once.
struct Core {
    cfg: GroupConfig,
    timers: BTreeSet<(i64, TimerKey)>,
    pending: VecDeque<(u64, PendingPersist)>,
    next_persist_id: u64,
    rng_state: u64,
    out: Vec<Action>,
    scheduled_tick_ms: Option<i64>,
    expiry_armed_ms: Option<i64>,
}

/// All classic groups of one offsets-topic partition. Pure: no clocks, no I/O.
pub struct GroupCoordinator {
    groups: BTreeMap<String, ClassicGroup>,
    core: Core,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Java's `String.length()` (UTF-16 units), which Kafka compares to offset.metadata.max.bytes.
fn java_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn join_error(api_version: i16, member_id: &str, error: GroupError) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = error.kafka_code();
    r.member_id = sb(member_id);
    r.generation_id = -1;
    if api_version < 7 {
        // Non-nullable before v7; Kafka sends "".
        r.protocol_name = Some(StrBytes::new());
    }
    r
}

fn sync_error(error: GroupError) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = error.kafka_code();
    r
}

fn heartbeat_response(error: i16) -> HeartbeatResponse {
    let mut r = HeartbeatResponse::default();
    r.error_code = error;
    r
}

impl Core {
    fn respond(&mut self, request_id: u64, response: Response) {
        self.out.push(Action::Respond {
            request_id,
            response,
        });
    }

    fn persist(&mut self, records: Vec<OffsetsRecord>, then: PendingPersist) {
        let persist_id = self.next_persist_id;
        self.next_persist_id += 1;
        self.pending.push_back((persist_id, then));
        self.out.push(Action::Persist {
            persist_id,
            records,
        });
    }

    fn arm(&mut self, key: TimerKey, old_ms: Option<i64>, new_ms: Option<i64>) {
        if let Some(old) = old_ms {
            let removed = self.timers.remove(&(old, key.clone()));
            debug_assert!(removed, "timer {key:?} at {old} was not armed");
        }
        if let Some(new) = new_ms {
            self.timers.insert((new, key));
        }
    }

    /// splitmix64; deterministic per seed so tests can predict member ids' shape.
    fn next_u64(&mut self) -> u64 {
        self.rng_state = self.rng_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Kafka's `generateMemberId`: `<client.id or group.instance.id>-<random UUID>`, unique
    /// within the group even if the driver reuses a seed across restarts (the clock is mixed
    /// in, and collisions with current or pending members are retried).
    fn generate_unique_member_id(
        &mut self,
        g: &ClassicGroup,
        client_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> String {
        self.rng_state ^= now_ms as u64;
        loop {
            let id = self.generate_member_id(client_id, instance_id);
            if !g.members.contains_key(&id) && !g.pending_join_members.contains_key(&id) {
                return id;
            }
        }
    }

    fn generate_member_id(&mut self, client_id: &str, instance_id: Option<&str>) -> String {
        let hi = (self.next_u64() & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let lo = (self.next_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        let prefix = instance_id.unwrap_or(client_id);
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }

    // ---- timers on group state -------------------------------------------------------

    fn reschedule_heartbeat(
        &mut self,
        g: &mut ClassicGroup,
        member_id: &str,
        timeout_ms: i64,
        now_ms: i64,
    ) {
        if let Some(m) = g.members.get_mut(member_id) {
            let old = m.heartbeat_deadline_ms;
            let new = now_ms.saturating_add(timeout_ms);
            m.heartbeat_deadline_ms = Some(new);
            self.arm(
                TimerKey::Heartbeat {
                    group: g.group_id.clone(),
                    member: member_id.to_owned(),
                },
                old,
                Some(new),
            );
        }
    }

    fn cancel_heartbeat(&mut self, g: &mut ClassicGroup, member_id: &str) {
        if let Some(m) = g.members.get_mut(member_id) {
            if let Some(old) = m.heartbeat_deadline_ms.take() {
                self.arm(
                    TimerKey::Heartbeat {
                        group: g.group_id.clone(),
                        member: member_id.to_owned(),
                    },
                    Some(old),
                    None,
                );
            }
        }
    }

    fn set_join_timer(&mut self, g: &mut ClassicGroup, timer: Option<(i64, JoinTimer)>) {
        let old = g.join_timer.map(|(at, _)| at);
        g.join_timer = timer;
        self.arm(
            TimerKey::Join {
                group: g.group_id.clone(),
            },
            old,
            timer.map(|(at, _)| at),
        );
    }

    fn set_sync_timer(&mut self, g: &mut ClassicGroup, at_ms: Option<i64>) {
        let old = g.sync_deadline_ms;
        g.sync_deadline_ms = at_ms;
        self.arm(
            TimerKey::Sync {
                group: g.group_id.clone(),
            },
            old,
            at_ms,
        );
    }

    fn remove_pending_join_member(&mut self, g: &mut ClassicGroup, member_id: &str) {
        if let Some(at) = g.pending_join_members.remove(member_id) {
            self.arm(
                TimerKey::PendingJoin {
                    group: g.group_id.clone(),
                    member: member_id.to_owned(),
                },
                Some(at),
                None,
            );
        }
    }

    /// Cancels every timer a group holds (before the group is dropped).
    fn drop_group_timers(&mut self, g: &mut ClassicGroup) {
        let members: Vec<String> = g.members.keys().cloned().collect();
        for m in members {
            self.cancel_heartbeat(g, &m);
        }
        let pending: Vec<String> = g.pending_join_members.keys().cloned().collect();
        for m in pending {
            self.remove_pending_join_member(g, &m);
        }
        self.set_join_timer(g, None);
        self.set_sync_timer(g, None);
    }

    // ---- membership --------------------------------------------------------------------

    /// Removes a member, answering its parked JoinGroup/SyncGroup with UNKNOWN_MEMBER_ID so
    /// that the client rejoins (Kafka answers the join; we also answer a parked sync so that
    /// no request is left without a response).
    fn remove_member(&mut self, g: &mut ClassicGroup, member_id: &str) {
        self.cancel_heartbeat(g, member_id);
        if let Some(m) = g.remove(member_id) {
            if let Some(w) = m.awaiting_join {
                self.respond(
                    w.request_id,
                    Response::Join(join_error(w.api_version, "", GroupError::UnknownMemberId)),
                );
            }
            if let Some(w) = m.awaiting_sync {
                self.respond(
                    w.request_id,
                    Response::Sync(sync_error(GroupError::UnknownMemberId)),
                );
            }
        }
    }

    /// Kafka's `removeMemberAndUpdateClassicGroup`.
    fn remove_member_and_update_group(
        &mut self,
        g: &mut ClassicGroup,
        member_id: &str,
        now_ms: i64,
    ) {
        self.remove_member(g, member_id);
        match g.state {
            State::Stable | State::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(g, now_ms)
            }
            State::PreparingRebalance if g.has_all_members_joined() => {
                self.complete_join(g, now_ms)
            }
            _ => {}
        }
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, g: &mut ClassicGroup, now_ms: i64) {
        if g.can_rebalance() {
            self.prepare_rebalance(g, now_ms);
        } else {
            self.maybe_complete_join_phase(g, now_ms);
        }
    }

    fn maybe_complete_join_phase(&mut self, g: &mut ClassicGroup, now_ms: i64) {
        // The initial rebalance of an empty group always waits for its delay timer.
        if g.is(State::PreparingRebalance)
            && g.previous_state != State::Empty
            && g.has_all_members_joined()
        {
            self.complete_join(g, now_ms);
        }
    }

    fn prepare_rebalance(&mut self, g: &mut ClassicGroup, now_ms: i64) {
        if g.is(State::CompletingRebalance) {
            self.reset_and_propagate_assignment_error(g, GroupError::RebalanceInProgress, now_ms);
        }
        g.pending_sync_members.clear();
        self.set_sync_timer(g, None);
        let initial = g.is(State::Empty);
        if initial {
            let delay_ms = i64::from(self.cfg.initial_rebalance_delay_ms);
            let remaining_ms = (g.rebalance_timeout_ms() - delay_ms).max(0);
            self.set_join_timer(
                g,
                Some((
                    now_ms.saturating_add(delay_ms),
                    JoinTimer::Initial {
                        delay_ms,
                        remaining_ms,
                    },
                )),
            );
        }
        g.transition_to(State::PreparingRebalance, now_ms);
        if !initial {
            if g.has_all_members_joined() {
                self.complete_join(g, now_ms);
            } else {
                let at = now_ms.saturating_add(g.rebalance_timeout_ms());
                self.set_join_timer(g, Some((at, JoinTimer::Rebalance)));
            }
        }
    }

    /// Kafka's `completeClassicGroupJoin`.
    fn complete_join(&mut self, g: &mut ClassicGroup, now_ms: i64) {
        self.set_join_timer(g, None);
        let not_rejoined: Vec<String> = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && !m.is_static())
            .map(|m| m.member_id.clone())
            .collect();
        for m in not_rejoined {
            self.remove_member(g, &m);
        }
        if g.is(State::Dead) {
            return;
        }
        if !g.maybe_elect_new_joined_leader() && !g.members.is_empty() {
            // Nobody rejoined (only static members that did not come back): wait another
            // rebalance timeout; their session timeouts will eventually remove them.
            let at = now_ms.saturating_add(g.rebalance_timeout_ms());
            self.set_join_timer(g, Some((at, JoinTimer::Rebalance)));
            return;
        }
        // initNextGeneration
        g.generation_id = g.generation_id.wrapping_add(1);
        if g.members.is_empty() {
            g.protocol_name = None;
            g.subscribed_topics = g.compute_subscribed_topics();
            g.transition_to(State::Empty, now_ms);
        } else {
            g.protocol_name = g.select_protocol();
            assert!(
                g.protocol_name.is_some(),
                "group {}: members without a common protocol",
                g.group_id
            );
            g.subscribed_topics = g.compute_subscribed_topics();
            g.transition_to(State::CompletingRebalance, now_ms);
        }
        g.pending_sync_members.clear();

        if g.is(State::Empty) {
            let record = group_metadata_record(g, &BTreeMap::new());
            self.persist(vec![record], PendingPersist::Fire);
            return;
        }
        let protocol = g.protocol_name.clone().unwrap_or_default();
        let leader = g.leader_id.clone().unwrap_or_default();
        let member_list: Vec<JoinGroupResponseMember> = g
            .members_in_join_order()
            .into_iter()
            .map(|m| {
                let mut jm = JoinGroupResponseMember::default();
                jm.member_id = sb(&m.member_id);
                jm.group_instance_id = m.group_instance_id.as_deref().map(sb);
                jm.metadata = m.metadata(&protocol);
                jm
            })
            .collect();
        let ids: Vec<String> = g
            .members_in_join_order()
            .iter()
            .map(|m| m.member_id.clone())
            .collect();
        for id in ids {
            let Some(m) = g.members.get_mut(&id) else {
                continue;
            };
            if let Some(w) = m.awaiting_join.take() {
                let mut r = JoinGroupResponse::default();
                r.member_id = sb(&id);
                r.generation_id = g.generation_id;
                r.protocol_type = g.protocol_type.as_deref().map(sb);
                r.protocol_name = Some(sb(&protocol));
                r.leader = sb(&leader);
                if id == leader {
                    r.members = member_list.clone();
                }
                self.respond(w.request_id, Response::Join(r));
            }
            m.is_new = false;
            let session = i64::from(m.session_timeout_ms);
            self.reschedule_heartbeat(g, &id, session, now_ms);
            g.pending_sync_members.insert(id);
        }
        let at = now_ms.saturating_add(g.rebalance_timeout_ms());
        self.set_sync_timer(g, Some(at));
    }

    fn reset_and_propagate_assignment_error(
        &mut self,
        g: &mut ClassicGroup,
        error: GroupError,
        now_ms: i64,
    ) {
        assert!(g.is(State::CompletingRebalance));
        for m in g.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(g, Some(error), now_ms);
    }

    fn propagate_assignment(
        &mut self,
        g: &mut ClassicGroup,
        error: Option<GroupError>,
        now_ms: i64,
    ) {
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let Some(m) = g.members.get_mut(&id) else {
                continue;
            };
            let Some(w) = m.awaiting_sync.take() else {
                continue;
            };
            let mut r = SyncGroupResponse::default();
            r.error_code = error.map_or(NONE, |e| e.kafka_code());
            if error.is_none() {
                r.protocol_type = g.protocol_type.as_deref().map(sb);
                r.protocol_name = g.protocol_name.as_deref().map(sb);
                r.assignment = m.assignment.clone();
            }
            let session = i64::from(m.session_timeout_ms);
            self.respond(w.request_id, Response::Sync(r));
            // A session that expired while the member was parked was ignored; re-arm it.
            self.reschedule_heartbeat(g, &id, session, now_ms);
        }
    }

    fn remove_pending_sync_member(&mut self, g: &mut ClassicGroup, member_id: &str) {
        g.pending_sync_members.remove(member_id);
        let cancel = match g.state {
            State::Dead | State::Empty | State::PreparingRebalance => true,
            State::CompletingRebalance | State::Stable => g.pending_sync_members.is_empty(),
        };
        if cancel {
            self.set_sync_timer(g, None);
        }
    }
}

/// The group-metadata record for `g` with `assignment` (Kafka's `newGroupMetadataRecord`).
fn group_metadata_record(g: &ClassicGroup, assignment: &BTreeMap<String, Bytes>) -> OffsetsRecord {
    let protocol = g.protocol_name.clone();
    let members = g
        .members_in_join_order()
        .into_iter()
        .map(|m| MemberMetadataValue {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            session_timeout_ms: m.session_timeout_ms,
            subscription: protocol
                .as_deref()
                .map(|p| m.metadata(p))
                .unwrap_or_default(),
            assignment: assignment.get(&m.member_id).cloned().unwrap_or_default(),
        })
        .collect();
    OffsetsRecord::GroupMetadata {
        group: g.group_id.clone(),
        value: Some(GroupMetadataValue {
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation_id,
            protocol,
            leader: g.leader_id.clone(),
            current_state_timestamp_ms: g.state_timestamp_ms.unwrap_or(-1),
            members,
        }),
    }
}

/// Approximate encoded size of a group record value (exact enough for the size limit).
fn group_record_bytes(record: &OffsetsRecord) -> usize {
    match record.encode() {
        Ok((k, v)) => k.len() + v.map_or(0, |v| v.len()),
        Err(_) => usize::MAX,
    }
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Self {
        let seed = config.member_id_seed;
        GroupCoordinator {
            groups: BTreeMap::new(),
            core: Core {
                cfg: config,
                timers: BTreeSet::new(),
                pending: VecDeque::new(),
                next_persist_id: 0,
                rng_state: seed,
                out: Vec::new(),
                scheduled_tick_ms: None,
                expiry_armed_ms: None,
            },
        }
    }

    /// Kafka's partition of `__consumer_offsets` for a group.
    pub fn group_partition(group_id: &str, partitions: u32) -> u32 {
        group_partition(group_id, partitions)
    }

    pub fn config(&self) -> &GroupConfig {
        &self.core.cfg
    }

    /// Handles one request. `request_id` is the driver's handle for the response.
    pub fn step(&mut self, now_ms: i64, request_id: u64, input: Input) -> Vec<Action> {
        self.arm_expiry(now_ms);
        match input {
            Input::Join {
                api_version,
                client,
                request,
            } => self.handle_join(now_ms, request_id, api_version, client, request),
            Input::Sync {
                api_version,
                request,
            } => self.handle_sync(now_ms, request_id, api_version, request),
            Input::Heartbeat {
                api_version,
                request,
            } => self.handle_heartbeat(now_ms, request_id, api_version, request),
            Input::Leave {
                api_version,
                request,
            } => self.handle_leave(now_ms, request_id, api_version, request),
            Input::OffsetCommit {
                api_version,
                request,
                unknown_partitions,
            } => self.handle_offset_commit(
                now_ms,
                request_id,
                api_version,
                request,
                unknown_partitions,
                true,
            ),
            Input::TxnOffsetsCommitted { request } => {
                self.handle_offset_commit(now_ms, request_id, 8, request, Vec::new(), false)
            }
            Input::CheckTxnOffsetCommit {
                group_id,
                member_id,
                group_instance_id,
                generation,
            } => {
                let result = self.check_txn_offset_commit(
                    &group_id,
                    &member_id,
                    group_instance_id.as_deref(),
                    generation,
                );
                self.core
                    .respond(request_id, Response::TxnOffsetCommitChecked(result));
            }
            Input::OffsetFetch {
                api_version,
                request,
            } => self.handle_offset_fetch(request_id, api_version, request),
            Input::OffsetDelete {
                api_version,
                request,
                unknown_partitions,
            } => self.handle_offset_delete(request_id, api_version, request, unknown_partitions),
            Input::DescribeGroups {
                api_version,
                request,
            } => {
                let mut r = DescribeGroupsResponse::default();
                r.groups = request
                    .groups
                    .iter()
                    .map(|id| self.describe_group(id.0.as_str(), api_version))
                    .collect();
                self.core.respond(request_id, Response::DescribeGroups(r));
            }
            Input::ListGroups {
                api_version: _,
                request,
            } => {
                let states: Vec<String> = request
                    .states_filter
                    .iter()
                    .map(|s| s.as_str().trim().to_lowercase())
                    .collect();
                let types: Vec<String> = request
                    .types_filter
                    .iter()
                    .map(|s| s.as_str().trim().to_lowercase())
                    .collect();
                let mut r = ListGroupsResponse::default();
                r.groups = self.list_groups(&states, &types);
                self.core.respond(request_id, Response::ListGroups(r));
            }
            Input::DeleteGroups {
                api_version: _,
                request,
            } => self.handle_delete_groups(request_id, request),
            Input::TopicsDeleted { topics } => self.handle_topics_deleted(request_id, &topics),
        }
        self.finish(now_ms)
    }

    /// Fires due timers (session timeouts, join/sync deadlines, offsets expiry).
    pub fn tick(&mut self, now_ms: i64) -> Vec<Action> {
        if self.core.scheduled_tick_ms.is_some_and(|at| at <= now_ms) {
            self.core.scheduled_tick_ms = None;
        }
        self.arm_expiry(now_ms);
        while let Some((at, key)) = self.core.timers.first().cloned() {
            if at > now_ms {
                break;
            }
            self.core.timers.remove(&(at, key.clone()));
            self.fire_timer(now_ms, at, key);
        }
        self.finish(now_ms)
    }

    /// The earliest pending timer.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.core.timers.first().map(|(at, _)| *at)
    }

    /// Reports that the append of `Action::Persist { persist_id }` is durable (`Ok`) or
    /// failed. Completions must arrive in emission order.
    pub fn persist_complete(
        &mut self,
        now_ms: i64,
        persist_id: u64,
        result: Result<(), PersistError>,
    ) -> Result<Vec<Action>, CoordinatorError> {
        let expected = self.core.pending.front().map(|(id, _)| *id);
        if expected != Some(persist_id) {
            return Err(CoordinatorError::PersistOutOfOrder {
                got: persist_id,
                expected,
            });
        }
        let Some((_, then)) = self.core.pending.pop_front() else {
            return Err(CoordinatorError::PersistOutOfOrder {
                got: persist_id,
                expected,
            });
        };
        self.on_persisted(now_ms, then, result);
        Ok(self.finish(now_ms))
    }

    /// Replays one record of the offsets partition (restart). Call for every record in log
    /// order before serving requests, then call [`GroupCoordinator::finish_load`].
    pub fn load(&mut self, record: OffsetsRecord) {
        self.apply_record(&record);
    }

    /// Decodes and replays a raw record; records of other group types (KIP-848) are skipped.
    pub fn load_raw(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        match OffsetsRecord::decode(key, value) {
            Ok(r) => {
                self.apply_record(&r);
                Ok(())
            }
            Err(RecordError::UnknownKeyType(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts the members' session timers after a load (Kafka's `onLoaded`); groups above
    /// `group.max.size` rebalance.
    pub fn finish_load(&mut self, now_ms: i64) -> Vec<Action> {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        let max = self.core.cfg.group_size_max;
        for id in ids {
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            let members: Vec<(String, i64)> = g
                .members
                .values()
                .map(|m| (m.member_id.clone(), i64::from(m.session_timeout_ms)))
                .collect();
            for (m, session) in members {
                self.core.reschedule_heartbeat(g, &m, session, now_ms);
            }
            if g.members.len() > max && g.can_rebalance() {
                self.core.prepare_rebalance(g, now_ms);
            }
        }
        self.arm_expiry(now_ms);
        self.finish(now_ms)
    }

    /// Answers every parked request with NOT_COORDINATOR and forgets all state (partition
    /// unloaded or broker stopping). Pending appends are abandoned.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let not_coord = GroupError::NotCoordinator;
        let groups = std::mem::take(&mut self.groups);
        for g in groups.into_values() {
            for m in g.members.into_values() {
                if let Some(w) = m.awaiting_join {
                    self.core.respond(
                        w.request_id,
                        Response::Join(join_error(w.api_version, &m.member_id, not_coord)),
                    );
                }
                if let Some(w) = m.awaiting_sync {
                    self.core
                        .respond(w.request_id, Response::Sync(sync_error(not_coord)));
                }
            }
        }
        let pending = std::mem::take(&mut self.core.pending);
        for (_, p) in pending {
            self.fail_pending_waiter(p, not_coord);
        }
        self.core.timers.clear();
        self.core.scheduled_tick_ms = None;
        self.core.expiry_armed_ms = None;
        std::mem::take(&mut self.core.out)
    }

    // ---- read-only views (metrics, admin, lag) ---------------------------------------

    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    pub fn group_generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation_id)
    }

    /// Member ids of a group, oldest first.
    pub fn group_members(&self, group_id: &str) -> Vec<String> {
        self.groups
            .get(group_id)
            .map(|g| {
                g.members_in_join_order()
                    .into_iter()
                    .map(|m| m.member_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn group_leader(&self, group_id: &str) -> Option<String> {
        self.groups.get(group_id).and_then(|g| g.leader_id.clone())
    }

    /// Committed offsets of a group, for lag: (topic, partition, offset).
    pub fn committed_offsets(&self, group_id: &str) -> Vec<(String, i32, CommittedOffset)> {
        self.groups
            .get(group_id)
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|((t, p), o)| (t.clone(), *p, o.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Calls `f(group, topic, partition, offset)` for every committed offset (no copies).
    pub fn for_each_committed(&self, f: &mut impl FnMut(&str, &str, i32, i64)) {
        for (group_id, g) in &self.groups {
            for ((topic, partition), o) in &g.offsets {
                f(group_id, topic, *partition, o.offset);
            }
        }
    }

    pub fn group_ids(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// ListGroups for this coordinator; filters are lower-case (empty = all).
    pub fn list_groups(&self, states_lower: &[String], types_lower: &[String]) -> Vec<ListedGroup> {
        if !types_lower.is_empty() && !types_lower.iter().any(|t| t == "classic") {
            return Vec::new();
        }
        self.groups
            .values()
            .filter(|g| {
                states_lower.is_empty()
                    || states_lower
                        .iter()
                        .any(|s| *s == g.state.name().to_lowercase())
            })
            .map(|g| {
                let mut l = ListedGroup::default();
                l.group_id = GroupId(sb(&g.group_id));
                l.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
                l.group_state = sb(g.state.name());
                l.group_type = StrBytes::from_static_str("classic");
                l
            })
            .collect()
    }

    /// DescribeGroups for one group of this coordinator.
    pub fn describe_group(&self, group_id: &str, api_version: i16) -> DescribedGroup {
        let mut d = DescribedGroup::default();
        d.group_id = GroupId(sb(group_id));
        // Like Kafka, the empty group id is a valid (legacy) group for the admin and offset
        // APIs; only the membership APIs refuse it.
        let Some(g) = self.groups.get(group_id) else {
            d.group_state = sb(State::Dead.name());
            if api_version >= 6 {
                d.error_code = GroupError::GroupIdNotFound.kafka_code();
                d.error_message = Some(sb(&format!("Group {group_id} not found.")));
            }
            return d;
        };
        d.group_state = sb(g.state.name());
        d.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
        let stable_protocol = if g.is(State::Stable) {
            g.protocol_name.clone()
        } else {
            None
        };
        d.protocol_data = sb(stable_protocol.as_deref().unwrap_or(""));
        d.members = g
            .members_in_join_order()
            .into_iter()
            .map(|m| {
                let mut dm = DescribedGroupMember::default();
                dm.member_id = sb(&m.member_id);
                dm.group_instance_id = m.group_instance_id.as_deref().map(sb);
                dm.client_id = sb(&m.client_id);
                dm.client_host = sb(&m.client_host);
                if let Some(p) = &stable_protocol {
                    dm.member_metadata = m.metadata(p);
                    dm.member_assignment = m.assignment.clone();
                }
                dm
            })
            .collect();
        d
    }

    // ---- internals ---------------------------------------------------------------------

    fn arm_expiry(&mut self, now_ms: i64) {
        if self.core.expiry_armed_ms.is_none() {
            let at = now_ms.saturating_add(self.core.cfg.offsets_retention_check_interval_ms);
            self.core.expiry_armed_ms = Some(at);
            self.core.arm(TimerKey::OffsetExpiry, None, Some(at));
        }
    }

    /// Drains the actions and asks for a tick if the earliest timer moved earlier.
    fn finish(&mut self, now_ms: i64) -> Vec<Action> {
        if let Some(at) = self.next_deadline_ms() {
            let need = match self.core.scheduled_tick_ms {
                None => true,
                Some(s) => at < s || s <= now_ms,
            };
            if need {
                self.core.scheduled_tick_ms = Some(at);
                self.core.out.push(Action::ScheduleTick { at_ms: at });
            }
        }
        std::mem::take(&mut self.core.out)
    }

    fn fire_timer(&mut self, now_ms: i64, _at_ms: i64, key: TimerKey) {
        if key == TimerKey::OffsetExpiry {
            self.core.expiry_armed_ms = None;
            self.cleanup_expired_offsets(now_ms);
            self.arm_expiry(now_ms);
            return;
        }
        let core = &mut self.core;
        match key {
            TimerKey::OffsetExpiry => {}
            TimerKey::Heartbeat { group, member } => {
                let Some(g) = self.groups.get_mut(&group) else {
                    return;
                };
                let Some(m) = g.members.get_mut(&member) else {
                    return;
                };
                m.heartbeat_deadline_ms = None;
                if !m.has_satisfied_heartbeat() {
                    core.remove_member_and_update_group(g, &member, now_ms);
                }
            }
            TimerKey::PendingJoin { group, member } => {
                let Some(g) = self.groups.get_mut(&group) else {
                    return;
                };
                g.pending_join_members.remove(&member);
                g.remove(&member);
                if g.is(State::PreparingRebalance) && g.has_all_members_joined() {
                    core.complete_join(g, now_ms);
                }
            }
            TimerKey::Join { group } => {
                let Some(g) = self.groups.get_mut(&group) else {
                    return;
                };
                let Some((_, kind)) = g.join_timer.take() else {
                    return;
                };
                match kind {
                    JoinTimer::Initial {
                        delay_ms,
                        remaining_ms,
                    } if g.new_member_added && remaining_ms != 0 => {
                        g.new_member_added = false;
                        let new_delay =
                            i64::from(core.cfg.initial_rebalance_delay_ms).min(remaining_ms);
                        let new_remaining = (remaining_ms - delay_ms).max(0);
                        core.set_join_timer(
                            g,
                            Some((
                                now_ms.saturating_add(new_delay),
                                JoinTimer::Initial {
                                    delay_ms: new_delay,
                                    remaining_ms: new_remaining,
                                },
                            )),
                        );
                    }
                    _ => core.complete_join(g, now_ms),
                }
            }
            TimerKey::Sync { group } => {
                let Some(g) = self.groups.get_mut(&group) else {
                    return;
                };
                g.sync_deadline_ms = None;
                if (g.is(State::CompletingRebalance) || g.is(State::Stable))
                    && !g.pending_sync_members.is_empty()
                {
                    let laggards: Vec<String> = g.pending_sync_members.iter().cloned().collect();
                    for m in laggards {
                        core.remove_member(g, &m);
                    }
                    core.prepare_rebalance(g, now_ms);
                }
            }
        }
    }

    fn handle_join(
        &mut self,
        now_ms: i64,
        request_id: u64,
        api_version: i16,
        client: ClientInfo,
        req: JoinGroupRequest,
    ) {
        let core = &mut self.core;
        let group_id = req.group_id.0.as_str().to_owned();
        let member_id = req.member_id.as_str().to_owned();
        let reply = |core: &mut Core, member_id: &str, error: GroupError| {
            core.respond(
                request_id,
                Response::Join(join_error(api_version, member_id, error)),
            )
        };
        if group_id.is_empty() {
            return reply(core, &member_id, GroupError::InvalidGroupId);
        }
        if req.session_timeout_ms < core.cfg.session_timeout_ms_min
            || req.session_timeout_ms > core.cfg.session_timeout_ms_max
        {
            return reply(core, &member_id, GroupError::InvalidSessionTimeout);
        }
        let is_unknown = member_id.is_empty();
        let created = !self.groups.contains_key(&group_id);
        if created {
            if !is_unknown {
                return reply(core, &member_id, GroupError::UnknownMemberId);
            }
            self.groups.insert(
                group_id.clone(),
                ClassicGroup::new(group_id.clone(), now_ms),
            );
        }
        let Some(g) = self.groups.get_mut(&group_id) else {
            return; // ok: inserted just above
        };
        let join = JoinArgs {
            request_id,
            api_version,
            client,
            session_timeout_ms: req.session_timeout_ms,
            // v0 has no rebalance timeout; Kafka uses the session timeout.
            rebalance_timeout_ms: if api_version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            instance_id: if api_version >= 5 {
                req.group_instance_id
                    .as_ref()
                    .map(|s| s.as_str().to_owned())
            } else {
                None
            },
            protocol_type: req.protocol_type.as_str().to_owned(),
            protocols: req
                .protocols
                .iter()
                .map(|p| MemberProtocol {
                    name: p.name.as_str().to_owned(),
                    metadata: p.metadata.clone(),
                })
                .collect(),
        };

        if !accept_joining_member(g, &member_id, core.cfg.group_size_max) {
            if g.members.contains_key(&member_id) {
                core.remove_member(g, &member_id);
                core.maybe_complete_join_phase(g, now_ms);
            }
            return reply(core, "", GroupError::GroupMaxSizeReached);
        }
        if is_unknown {
            join_new_member(core, g, join, now_ms);
        } else {
            join_existing_member(core, g, &member_id, join, now_ms);
        }
        // A join that was refused (e.g. no protocols) must not leave an empty group behind.
        let untouched = g.is(State::Empty)
            && g.members.is_empty()
            && g.pending_join_members.is_empty()
            && g.offsets.is_empty()
            && g.pending_offset_commits.is_empty();
        if created && untouched {
            self.groups.remove(&group_id);
        }
    }

    fn handle_sync(
        &mut self,
        now_ms: i64,
        request_id: u64,
        api_version: i16,
        req: SyncGroupRequest,
    ) {
        let core = &mut self.core;
        let reply = |core: &mut Core, error: GroupError| {
            core.respond(request_id, Response::Sync(sync_error(error)))
        };
        let group_id = req.group_id.0.as_str();
        if group_id.is_empty() {
            return reply(core, GroupError::InvalidGroupId);
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            return reply(core, GroupError::UnknownMemberId);
        };
        if g.is(State::Empty) {
            return reply(core, GroupError::UnknownMemberId);
        }
        let member_id = req.member_id.as_str();
        let instance_id = if api_version >= 3 {
            req.group_instance_id.as_ref().map(|s| s.as_str())
        } else {
            None
        };
        if g.is(State::Dead) {
            return reply(core, GroupError::CoordinatorNotAvailable);
        }
        if let Err(e) = g.validate_member(member_id, instance_id) {
            return reply(core, e.into());
        }
        if req.generation_id != g.generation_id {
            return reply(core, GroupError::IllegalGeneration);
        }
        let inconsistent = |asked: &Option<StrBytes>, have: &Option<String>| match (asked, have) {
            (Some(a), Some(h)) => a.as_str() != h,
            _ => false,
        };
        if inconsistent(&req.protocol_type, &g.protocol_type)
            || inconsistent(&req.protocol_name, &g.protocol_name)
        {
            return reply(core, GroupError::InconsistentGroupProtocol);
        }
        match g.state {
            State::PreparingRebalance => reply(core, GroupError::RebalanceInProgress),
            State::CompletingRebalance => {
                let waiter = SyncWaiter {
                    request_id,
                    api_version,
                };
                if let Some(m) = g.members.get_mut(member_id) {
                    if let Some(old) = m.awaiting_sync.replace(waiter) {
                        core.respond(
                            old.request_id,
                            Response::Sync(sync_error(GroupError::RebalanceInProgress)),
                        );
                    }
                }
                core.remove_pending_sync_member(g, member_id);
                if g.is_leader(member_id) {
                    let mut assignment: BTreeMap<String, Bytes> = BTreeMap::new();
                    for a in &req.assignments {
                        assignment.insert(a.member_id.as_str().to_owned(), a.assignment.clone());
                    }
                    // Assignments for non-members are dropped; missing members get empty ones.
                    assignment.retain(|id, _| g.members.contains_key(id));
                    for id in g.members.keys() {
                        assignment.entry(id.clone()).or_default();
                    }
                    let record = group_metadata_record(g, &assignment);
                    if group_record_bytes(&record) > core.cfg.group_record_bytes_max {
                        // Kafka's append would fail with RECORD_LIST_TOO_LARGE, which the
                        // coordinator reports as UNKNOWN_SERVER_ERROR and rebalances.
                        core.reset_and_propagate_assignment_error(
                            g,
                            GroupError::GroupMetadataTooLarge,
                            now_ms,
                        );
                        core.maybe_prepare_rebalance_or_complete_join(g, now_ms);
                        return;
                    }
                    core.persist(
                        vec![record],
                        PendingPersist::SyncAssignment {
                            group_id: g.group_id.clone(),
                            generation_id: g.generation_id,
                            assignment,
                        },
                    );
                }
            }
            State::Stable => {
                core.remove_pending_sync_member(g, member_id);
                let mut r = SyncGroupResponse::default();
                r.protocol_type = g.protocol_type.as_deref().map(sb);
                r.protocol_name = g.protocol_name.as_deref().map(sb);
                let session = match g.members.get(member_id) {
                    Some(m) => {
                        r.assignment = m.assignment.clone();
                        i64::from(m.session_timeout_ms)
                    }
                    None => 0,
                };
                core.respond(request_id, Response::Sync(r));
                core.reschedule_heartbeat(g, member_id, session, now_ms);
            }
            State::Empty | State::Dead => reply(core, GroupError::UnknownMemberId),
        }
    }

    fn handle_heartbeat(
        &mut self,
        now_ms: i64,
        request_id: u64,
        api_version: i16,
        req: HeartbeatRequest,
    ) {
        let core = &mut self.core;
        let reply = |core: &mut Core, error: GroupError| {
            core.respond(
                request_id,
                Response::Heartbeat(heartbeat_response(error.kafka_code())),
            )
        };
        let group_id = req.group_id.0.as_str();
        if group_id.is_empty() {
            return reply(core, GroupError::InvalidGroupId);
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            return reply(core, GroupError::UnknownMemberId);
        };
        if g.is(State::Dead) {
            return reply(core, GroupError::CoordinatorNotAvailable);
        }
        let member_id = req.member_id.as_str();
        let instance_id = if api_version >= 3 {
            req.group_instance_id.as_ref().map(|s| s.as_str())
        } else {
            None
        };
        if let Err(e) = g.validate_member(member_id, instance_id) {
            return reply(core, e.into());
        }
        if req.generation_id != g.generation_id {
            return reply(core, GroupError::IllegalGeneration);
        }
        let session = g
            .members
            .get(member_id)
            .map_or(0, |m| i64::from(m.session_timeout_ms));
        match g.state {
            State::Empty | State::Dead => reply(core, GroupError::UnknownMemberId),
            State::PreparingRebalance => {
                core.reschedule_heartbeat(g, member_id, session, now_ms);
                reply(core, GroupError::RebalanceInProgress)
            }
            State::CompletingRebalance | State::Stable => {
                core.reschedule_heartbeat(g, member_id, session, now_ms);
                core.respond(request_id, Response::Heartbeat(heartbeat_response(NONE)))
            }
        }
    }

    fn handle_leave(
        &mut self,
        now_ms: i64,
        request_id: u64,
        api_version: i16,
        req: LeaveGroupRequest,
    ) {
        let core = &mut self.core;
        let finish = |core: &mut Core, top: Option<GroupError>, members: Vec<MemberResponse>| {
            let top = top.map_or(NONE, |e| e.kafka_code());
            let mut r = LeaveGroupResponse::default();
            if api_version >= 3 {
                r.error_code = top;
                r.members = members;
            } else {
                // v0-2 carry a single member; its error is the top-level error.
                r.error_code = if top != NONE {
                    top
                } else {
                    members
                        .iter()
                        .map(|m| m.error_code)
                        .find(|c| *c != NONE)
                        .unwrap_or(NONE)
                };
            }
            core.respond(request_id, Response::Leave(r));
        };
        let group_id = req.group_id.0.as_str();
        if group_id.is_empty() {
            return finish(core, Some(GroupError::InvalidGroupId), Vec::new());
        }
        let identities: Vec<(String, Option<String>)> = if api_version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.as_str().to_owned(),
                        m.group_instance_id.as_ref().map(|s| s.as_str().to_owned()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.as_str().to_owned(), None)]
        };
        let Some(g) = self.groups.get_mut(group_id) else {
            return finish(core, Some(GroupError::UnknownMemberId), Vec::new());
        };
        if g.is(State::Dead) {
            return finish(core, Some(GroupError::CoordinatorNotAvailable), Vec::new());
        }
        let mut responses = Vec::with_capacity(identities.len());
        let mut removed_any = false;
        for (member_id, instance_id) in identities {
            let mut mr = MemberResponse::default();
            mr.member_id = sb(&member_id);
            mr.group_instance_id = instance_id.as_deref().map(sb);
            if member_id.is_empty() {
                // Administrative removal by group.instance.id.
                let current = instance_id
                    .as_ref()
                    .and_then(|i| g.static_members.get(i).cloned());
                match current {
                    Some(current) => {
                        core.remove_member(g, &current);
                        removed_any = true;
                    }
                    None => mr.error_code = GroupError::UnknownMemberId.kafka_code(),
                }
            } else if g.pending_join_members.contains_key(&member_id) {
                core.remove_pending_join_member(g, &member_id);
                removed_any = true;
            } else {
                match g.validate_member(&member_id, instance_id.as_deref()) {
                    Ok(()) => {
                        core.remove_member(g, &member_id);
                        removed_any = true;
                    }
                    Err(e) => mr.error_code = GroupError::from(e).kafka_code(),
                }
            }
            responses.push(mr);
        }
        if removed_any {
            match g.state {
                State::Stable | State::CompletingRebalance => {
                    core.maybe_prepare_rebalance_or_complete_join(g, now_ms)
                }
                State::PreparingRebalance => core.maybe_complete_join_phase(g, now_ms),
                _ => {}
            }
        }
        finish(core, None, responses);
    }

    fn handle_offset_commit(
        &mut self,
        now_ms: i64,
        request_id: u64,
        api_version: i16,
        req: OffsetCommitRequest,
        unknown: Vec<(String, i32)>,
        validate: bool,
    ) {
        let core = &mut self.core;
        let group_id = req.group_id.0.as_str().to_owned();
        let unknown: BTreeSet<(String, i32)> = unknown.into_iter().collect();
        // The response mirrors the request; errors are filled per partition below.
        let mut response = OffsetCommitResponse::default();
        let mut known = 0usize;
        for t in &req.topics {
            let mut rt = OffsetCommitResponseTopic::default();
            rt.name = t.name.clone();
            rt.topic_id = t.topic_id;
            for p in &t.partitions {
                let mut rp = OffsetCommitResponsePartition::default();
                rp.partition_index = p.partition_index;
                if unknown.contains(&(t.name.0.as_str().to_owned(), p.partition_index)) {
                    rp.error_code = GroupError::UnknownTopicOrPartition.kafka_code();
                } else {
                    known += 1;
                }
                rt.partitions.push(rp);
            }
            response.topics.push(rt);
        }
        let fail_known = |response: &mut OffsetCommitResponse, error: GroupError| {
            let code = error.kafka_code();
            for t in &mut response.topics {
                for p in &mut t.partitions {
                    if p.error_code == NONE {
                        p.error_code = code;
                    }
                }
            }
        };
        if known == 0 {
            return core.respond(request_id, Response::OffsetCommit(response));
        }
        let generation = req.generation_id_or_member_epoch;
        if !self.groups.contains_key(&group_id) {
            if generation < 0 || !validate {
                // A "simple" group: standalone consumers and admin tools commit without
                // membership.
                self.groups.insert(
                    group_id.clone(),
                    ClassicGroup::new(group_id.clone(), now_ms),
                );
            } else {
                let error = if api_version >= 9 {
                    GroupError::GroupIdNotFound
                } else {
                    GroupError::IllegalGeneration
                };
                fail_known(&mut response, error);
                return core.respond(request_id, Response::OffsetCommit(response));
            }
        }
        let Some(g) = self.groups.get_mut(&group_id) else {
            return; // ok: inserted just above
        };
        let member_id = req.member_id.as_str();
        let instance_id = if api_version >= 7 {
            req.group_instance_id.as_ref().map(|s| s.as_str())
        } else {
            None
        };
        if validate {
            if let Err(error) = validate_offset_commit(g, member_id, instance_id, generation, false)
            {
                fail_known(&mut response, error);
                return core.respond(request_id, Response::OffsetCommit(response));
            }
        }
        if g.is(State::Stable) || g.is(State::PreparingRebalance) {
            // Commits keep a classic member's session alive.
            if let Some(m) = g.members.get(member_id) {
                let session = i64::from(m.session_timeout_ms);
                core.reschedule_heartbeat(g, member_id, session, now_ms);
            }
        }
        let expire_ms =
            (req.retention_time_ms != -1).then(|| now_ms.saturating_add(req.retention_time_ms));
        let mut records = Vec::new();
        for (t, rt) in req.topics.iter().zip(response.topics.iter_mut()) {
            for (p, rp) in t.partitions.iter().zip(rt.partitions.iter_mut()) {
                if rp.error_code != NONE {
                    continue;
                }
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.as_str())
                    .unwrap_or("");
                if java_len(metadata) > core.cfg.offset_metadata_bytes_max {
                    rp.error_code = GroupError::OffsetMetadataTooLarge.kafka_code();
                    continue;
                }
                let key = (t.name.0.as_str().to_owned(), p.partition_index);
                *g.pending_offset_commits.entry(key).or_default() += 1;
                records.push(OffsetsRecord::OffsetCommit {
                    key: OffsetCommitKey {
                        group: group_id.clone(),
                        topic: t.name.0.as_str().to_owned(),
                        partition: p.partition_index,
                    },
                    value: Some(OffsetCommitValue {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: metadata.to_owned(),
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms: expire_ms.unwrap_or(-1),
                    }),
                });
            }
        }
        if records.is_empty() {
            return core.respond(request_id, Response::OffsetCommit(response));
        }
        core.persist(
            records.clone(),
            PendingPersist::OffsetCommit {
                request_id,
                group_id,
                records,
                response,
            },
        );
    }

    /// Kafka's `validateTransactionalOffsetCommit`: an unknown group accepts a commit without
    /// a generation (a "simple" group, created when the transaction's offsets are applied)
    /// and refuses one with a generation (ILLEGAL_GENERATION); a known group checks the
    /// member, its instance id and the generation.
    fn check_txn_offset_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        match self.groups.get(group_id) {
            None if generation < 0 => Ok(()),
            None => Err(GroupError::IllegalGeneration),
            Some(g) => validate_offset_commit(g, member_id, instance_id, generation, true),
        }
    }

    fn handle_offset_fetch(&mut self, request_id: u64, api_version: i16, req: OffsetFetchRequest) {
        let require_stable = api_version >= 7 && req.require_stable;
        let mut r = OffsetFetchResponse::default();
        if api_version >= 8 {
            for rg in &req.groups {
                let topics: Option<Vec<(String, Vec<i32>)>> = rg.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
                        .collect()
                });
                let (code, result) =
                    self.fetch_offsets(rg.group_id.0.as_str(), topics, require_stable);
                let mut og = OffsetFetchResponseGroup::default();
                og.group_id = rg.group_id.clone();
                og.error_code = code;
                og.topics = result
                    .into_iter()
                    .map(|(topic, parts)| {
                        let mut t = OffsetFetchResponseTopics::default();
                        t.name = TopicName(sb(&topic));
                        t.partitions = parts
                            .into_iter()
                            .map(|(p, o, e, md, err)| {
                                let mut rp = OffsetFetchResponsePartitions::default();
                                rp.partition_index = p;
                                rp.committed_offset = o;
                                rp.committed_leader_epoch = e;
                                rp.metadata = Some(sb(&md));
                                rp.error_code = err;
                                rp
                            })
                            .collect();
                        t
                    })
                    .collect();
                r.groups.push(og);
            }
        } else {
            let topics: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
                    .collect()
            });
            let (code, result) =
                self.fetch_offsets(req.group_id.0.as_str(), topics, require_stable);
            r.error_code = code;
            r.topics = result
                .into_iter()
                .map(|(topic, parts)| {
                    let mut t = OffsetFetchResponseTopic::default();
                    t.name = TopicName(sb(&topic));
                    t.partitions = parts
                        .into_iter()
                        .map(|(p, o, e, md, err)| {
                            let mut rp = OffsetFetchResponsePartition::default();
                            rp.partition_index = p;
                            rp.committed_offset = o;
                            rp.committed_leader_epoch = e;
                            rp.metadata = Some(sb(&md));
                            rp.error_code = if code != NONE { code } else { err };
                            rp
                        })
                        .collect();
                    t
                })
                .collect();
        }
        self.core.respond(request_id, Response::OffsetFetch(r));
    }

    /// Offsets of one group: (group error, [(topic, [(partition, offset, epoch, metadata,
    /// error)])]). Unknown groups answer -1 for the asked partitions, like Kafka.
    #[allow(clippy::type_complexity)]
    fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> (i16, Vec<(String, Vec<(i32, i64, i32, String, i16)>)>) {
        let group = self.groups.get(group_id).filter(|g| !g.is(State::Dead));
        let lookup = |topic: &str, p: i32| -> (i32, i64, i32, String, i16) {
            let Some(g) = group else {
                return (p, -1, -1, String::new(), NONE);
            };
            let key = (topic.to_owned(), p);
            if require_stable && g.pending_offset_commits.contains_key(&key) {
                return (
                    p,
                    -1,
                    -1,
                    String::new(),
                    GroupError::UnstableOffsetCommit.kafka_code(),
                );
            }
            match g.offsets.get(&key) {
                Some(o) => (p, o.offset, o.leader_epoch, o.metadata.clone(), NONE),
                None => (p, -1, -1, String::new(), NONE),
            }
        };
        let out = match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let rows = parts.iter().map(|p| lookup(&t, *p)).collect();
                    (t, rows)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, i64, i32, String, i16)>> =
                    BTreeMap::new();
                if let Some(g) = group {
                    for (t, p) in g.offsets.keys() {
                        by_topic.entry(t.clone()).or_default().push(lookup(t, *p));
                    }
                }
                by_topic.into_iter().collect()
            }
        };
        (NONE, out)
    }

    fn handle_offset_delete(
        &mut self,
        request_id: u64,
        _api_version: i16,
        req: OffsetDeleteRequest,
        unknown: Vec<(String, i32)>,
    ) {
        let core = &mut self.core;
        let mut r = OffsetDeleteResponse::default();
        let group_id = req.group_id.0.as_str();
        if group_id.is_empty() {
            r.error_code = GroupError::InvalidGroupId.kafka_code();
            return core.respond(request_id, Response::OffsetDelete(r));
        }
        let Some(g) = self.groups.get(group_id).filter(|g| !g.is(State::Dead)) else {
            r.error_code = GroupError::GroupIdNotFound.kafka_code();
            return core.respond(request_id, Response::OffsetDelete(r));
        };
        let active = matches!(
            g.state,
            State::Stable | State::PreparingRebalance | State::CompletingRebalance
        );
        if active && g.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            r.error_code = GroupError::NonEmptyGroup.kafka_code();
            return core.respond(request_id, Response::OffsetDelete(r));
        }
        let unknown: BTreeSet<(String, i32)> = unknown.into_iter().collect();
        let mut records = Vec::new();
        for t in &req.topics {
            let topic = t.name.0.as_str();
            let subscribed = g.is_subscribed_to_topic(topic);
            let mut rt = OffsetDeleteResponseTopic::default();
            rt.name = t.name.clone();
            for p in &t.partitions {
                let mut rp = OffsetDeleteResponsePartition::default();
                rp.partition_index = p.partition_index;
                let key = (topic.to_owned(), p.partition_index);
                if unknown.contains(&key) {
                    rp.error_code = GroupError::UnknownTopicOrPartition.kafka_code();
                } else if subscribed {
                    rp.error_code = GroupError::GroupSubscribedToTopic.kafka_code();
                } else if g.offsets.contains_key(&key) {
                    records.push(OffsetsRecord::OffsetCommit {
                        key: OffsetCommitKey {
                            group: group_id.to_owned(),
                            topic: key.0,
                            partition: key.1,
                        },
                        value: None,
                    });
                }
                rt.partitions.push(rp);
            }
            r.topics.push(rt);
        }
        if records.is_empty() {
            return core.respond(request_id, Response::OffsetDelete(r));
        }
        core.persist(
            records.clone(),
            PendingPersist::OffsetDelete {
                request_id,
                records,
                response: r,
            },
        );
    }

    /// [`Input::TopicsDeleted`]: offsets of deleted topics go now, their tombstones are
    /// written without anyone waiting (like expired offsets).
    fn handle_topics_deleted(&mut self, request_id: u64, topics: &[String]) {
        let deleted: BTreeSet<&str> = topics.iter().map(String::as_str).collect();
        let mut records = Vec::new();
        for g in self.groups.values_mut() {
            let gone: Vec<(String, i32)> = g
                .offsets
                .keys()
                .filter(|(t, _)| deleted.contains(t.as_str()))
                .cloned()
                .collect();
            for (topic, partition) in gone {
                g.offsets.remove(&(topic.clone(), partition));
                records.push(OffsetsRecord::OffsetCommit {
                    key: OffsetCommitKey {
                        group: g.group_id.clone(),
                        topic,
                        partition,
                    },
                    value: None,
                });
            }
        }
        let offsets_removed = records.len();
        if !records.is_empty() {
            self.core.persist(records, PendingPersist::Fire);
        }
        self.core
            .respond(request_id, Response::TopicsDeleted { offsets_removed });
    }

    fn handle_delete_groups(&mut self, request_id: u64, req: DeleteGroupsRequest) {
        let mut response = DeleteGroupsResponse::default();
        let mut records = Vec::new();
        let mut written = Vec::new();
        for id in &req.groups_names {
            let group_id = id.0.as_str();
            let mut res = DeletableGroupResult::default();
            res.group_id = id.clone();
            res.error_code = match self.groups.get(group_id).map(|g| g.state) {
                None | Some(State::Dead) => GroupError::GroupIdNotFound.kafka_code(),
                Some(State::Stable | State::PreparingRebalance | State::CompletingRebalance) => {
                    GroupError::NonEmptyGroup.kafka_code()
                }
                Some(State::Empty) => NONE,
            };
            if res.error_code == NONE {
                if let Some(mut g) = self.groups.remove(group_id) {
                    records.extend(tombstones_for_group(&g));
                    self.core.drop_group_timers(&mut g);
                    written.push(response.results.len());
                }
            }
            response.results.push(res);
        }
        if records.is_empty() {
            return self
                .core
                .respond(request_id, Response::DeleteGroups(response));
        }
        self.core.persist(
            records,
            PendingPersist::DeleteGroups {
                request_id,
                written,
                response,
            },
        );
    }

    /// Kafka's periodic `cleanupGroupMetadata`: expire offsets, delete empty groups without
    /// offsets.
    fn cleanup_expired_offsets(&mut self, now_ms: i64) {
        let retention_ms = self.core.cfg.offsets_retention_ms;
        let mut records = Vec::new();
        let mut dead = Vec::new();
        for g in self.groups.values_mut() {
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|(k, o)| {
                    !g.pending_offset_commits.contains_key(*k)
                        && offsets::is_offset_expired(g, &k.0, o, now_ms, retention_ms)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (topic, partition) in expired {
                g.offsets.remove(&(topic.clone(), partition));
                records.push(OffsetsRecord::OffsetCommit {
                    key: OffsetCommitKey {
                        group: g.group_id.clone(),
                        topic,
                        partition,
                    },
                    value: None,
                });
            }
            if g.offsets.is_empty()
                && g.is(State::Empty)
                && g.pending_offset_commits.is_empty()
                && g.pending_join_members.is_empty()
            {
                dead.push(g.group_id.clone());
            }
        }
        for id in dead {
            if let Some(mut g) = self.groups.remove(&id) {
                self.core.drop_group_timers(&mut g);
                records.push(OffsetsRecord::GroupMetadata {
                    group: id,
                    value: None,
                });
            }
        }
        if !records.is_empty() {
            self.core.persist(records, PendingPersist::Fire);
        }
    }

    /// Applies a durable record to the state (replay, and completion of offset writes).
    fn apply_record(&mut self, record: &OffsetsRecord) {
        match record {
            OffsetsRecord::OffsetCommit { key, value } => match value {
                Some(v) => {
                    let g = self.groups.entry(key.group.clone()).or_insert_with(|| {
                        let mut g = ClassicGroup::new(key.group.clone(), 0);
                        g.state_timestamp_ms = None;
                        g
                    });
                    g.offsets.insert(
                        (key.topic.clone(), key.partition),
                        CommittedOffset::from_value(v),
                    );
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&key.group) {
                        g.offsets.remove(&(key.topic.clone(), key.partition));
                    }
                }
            },
            OffsetsRecord::GroupMetadata { group, value } => {
                let old = self.groups.remove(group);
                let mut offsets = BTreeMap::new();
                if let Some(mut old) = old {
                    self.core.drop_group_timers(&mut old);
                    offsets = old.offsets;
                }
                let g = match value {
                    None => {
                        if offsets.is_empty() {
                            return;
                        }
                        // Offsets outlive their group's tombstone only if their own
                        // tombstones are missing; keep them in a simple group.
                        let mut g = ClassicGroup::new(group.clone(), 0);
                        g.state_timestamp_ms = None;
                        g
                    }
                    Some(v) => group_from_value(group, v),
                };
                let mut g = g;
                g.offsets = offsets;
                self.groups.insert(group.clone(), g);
            }
        }
    }

    fn on_persisted(
        &mut self,
        now_ms: i64,
        then: PendingPersist,
        result: Result<(), PersistError>,
    ) {
        match then {
            PendingPersist::Fire => {}
            PendingPersist::SyncAssignment {
                group_id,
                generation_id,
                assignment,
            } => {
                let core = &mut self.core;
                let Some(g) = self.groups.get_mut(&group_id) else {
                    return;
                };
                // Another member may have joined meanwhile: act only if still current.
                if !(g.is(State::CompletingRebalance) && g.generation_id == generation_id) {
                    return;
                }
                match result {
                    Ok(()) => {
                        for (id, m) in g.members.iter_mut() {
                            m.assignment = assignment.get(id).cloned().unwrap_or_default();
                        }
                        core.propagate_assignment(g, None, now_ms);
                        g.transition_to(State::Stable, now_ms);
                    }
                    Err(e) => {
                        core.reset_and_propagate_assignment_error(g, e.group_error(), now_ms);
                        core.maybe_prepare_rebalance_or_complete_join(g, now_ms);
                    }
                }
            }
            PendingPersist::StaticReplace {
                group_id,
                instance_id,
                old_member_id,
                new_member_id,
                old_protocols,
                old_rebalance_timeout_ms,
                old_session_timeout_ms,
                old_leader,
                waiter,
            } => {
                let core = &mut self.core;
                let Some(g) = self.groups.get_mut(&group_id) else {
                    return;
                };
                // Still parked? (A rebalance may have answered the join meanwhile.)
                let parked = g
                    .members
                    .get(&new_member_id)
                    .is_some_and(|m| m.awaiting_join == Some(waiter));
                if !parked {
                    return;
                }
                match result {
                    Ok(()) => {
                        let is_leader = g.is_leader(&new_member_id);
                        let skip = waiter.api_version >= 9 && is_leader;
                        let mut r = JoinGroupResponse::default();
                        r.member_id = sb(&new_member_id);
                        r.generation_id = g.generation_id;
                        r.protocol_type = g.protocol_type.as_deref().map(sb);
                        r.protocol_name = Some(sb(g.protocol_name.as_deref().unwrap_or("")));
                        if waiter.api_version >= 9 {
                            r.leader = sb(g.leader_id.as_deref().unwrap_or(""));
                            r.skip_assignment = skip;
                            if is_leader {
                                r.members = current_members(g);
                            }
                        } else {
                            // Before v9, hide leadership so that a restarted static leader does
                            // not compute an assignment a Stable group would ignore.
                            r.leader = sb(old_leader.as_deref().unwrap_or(""));
                        }
                        if let Some(m) = g.members.get_mut(&new_member_id) {
                            m.awaiting_join = None;
                        }
                        core.respond(waiter.request_id, Response::Join(r));
                    }
                    Err(e) => {
                        // Revert to the old member id, as Kafka does.
                        if let Some(m) = g.members.get_mut(&new_member_id) {
                            m.awaiting_join = None;
                            m.protocols = old_protocols;
                            m.rebalance_timeout_ms = old_rebalance_timeout_ms;
                            m.session_timeout_ms = old_session_timeout_ms;
                        }
                        replace_static_member(
                            core,
                            g,
                            &instance_id,
                            &new_member_id,
                            &old_member_id,
                            now_ms,
                        );
                        let mut r = join_error(waiter.api_version, "", e.group_error());
                        r.generation_id = g.generation_id;
                        r.protocol_type = g.protocol_type.as_deref().map(sb);
                        r.protocol_name = Some(sb(g.protocol_name.as_deref().unwrap_or("")));
                        r.leader = sb(old_leader.as_deref().unwrap_or(""));
                        core.respond(waiter.request_id, Response::Join(r));
                    }
                }
            }
            PendingPersist::OffsetCommit {
                request_id,
                group_id,
                records,
                mut response,
            } => {
                if let Some(g) = self.groups.get_mut(&group_id) {
                    for r in &records {
                        if let OffsetsRecord::OffsetCommit { key, .. } = r {
                            let k = (key.topic.clone(), key.partition);
                            if let Some(n) = g.pending_offset_commits.get_mut(&k) {
                                *n -= 1;
                                if *n == 0 {
                                    g.pending_offset_commits.remove(&k);
                                }
                            }
                        }
                    }
                }
                match result {
                    Ok(()) => {
                        for r in &records {
                            self.apply_record(r);
                        }
                    }
                    Err(e) => {
                        let written: BTreeSet<(String, i32)> = records
                            .iter()
                            .filter_map(|r| match r {
                                OffsetsRecord::OffsetCommit { key, .. } => {
                                    Some((key.topic.clone(), key.partition))
                                }
                                _ => None,
                            })
                            .collect();
                        for t in &mut response.topics {
                            for p in &mut t.partitions {
                                let k = (t.name.0.as_str().to_owned(), p.partition_index);
                                if p.error_code == NONE && written.contains(&k) {
                                    p.error_code = e.offset_error().kafka_code();
                                }
                            }
                        }
                    }
                }
                self.core
                    .respond(request_id, Response::OffsetCommit(response));
            }
            PendingPersist::OffsetDelete {
                request_id,
                records,
                mut response,
            } => {
                match result {
                    Ok(()) => {
                        for r in &records {
                            self.apply_record(r);
                        }
                    }
                    Err(e) => response.error_code = e.group_error().kafka_code(),
                }
                self.core
                    .respond(request_id, Response::OffsetDelete(response));
            }
            PendingPersist::DeleteGroups {
                request_id,
                written,
                mut response,
            } => {
                if let Err(e) = result {
                    for i in written {
                        if let Some(r) = response.results.get_mut(i) {
                            r.error_code = e.group_error().kafka_code();
                        }
                    }
                }
                self.core
                    .respond(request_id, Response::DeleteGroups(response));
            }
        }
    }

    /// Answers the request waiting on an abandoned append (shutdown).
    fn fail_pending_waiter(&mut self, p: PendingPersist, error: GroupError) {
        let code = error.kafka_code();
        match p {
            PendingPersist::Fire | PendingPersist::SyncAssignment { .. } => {}
            PendingPersist::StaticReplace { .. } => {} // the member's join was answered above
            PendingPersist::OffsetCommit {
                request_id,
                mut response,
                ..
            } => {
                for t in &mut response.topics {
                    for p in &mut t.partitions {
                        if p.error_code == NONE {
                            p.error_code = code;
                        }
                    }
                }
                self.core
                    .respond(request_id, Response::OffsetCommit(response));
            }
            PendingPersist::OffsetDelete {
                request_id,
                mut response,
                ..
            } => {
                response.error_code = code;
                self.core
                    .respond(request_id, Response::OffsetDelete(response));
            }
            PendingPersist::DeleteGroups {
                request_id,
                written,
                mut response,
            } => {
                for i in written {
                    if let Some(r) = response.results.get_mut(i) {
                        r.error_code = code;
                    }
                }
                self.core
                    .respond(request_id, Response::DeleteGroups(response));
            }
        }
    }

    /// Checks internal invariants; used by tests (cheap enough for debug assertions).
    #[cfg(test)]
    fn check_invariants(&self) {
        for g in self.groups.values() {
            assert!(!g.is(State::Dead), "dead groups are dropped");
            if g.is(State::Empty) {
                assert!(g.members.is_empty(), "{}: Empty with members", g.group_id);
            } else if !g.is(State::PreparingRebalance) {
                // PreparingRebalance may be memberless until its join timer fires (an
                // initial rebalance is never completed early).
                assert!(
                    !g.members.is_empty(),
                    "{}: {:?} without members",
                    g.group_id,
                    g.state
                );
            }
            if !g.members.is_empty() {
                let leader = g.leader_id.as_deref().unwrap_or("");
                assert!(
                    g.members.contains_key(leader),
                    "{}: leader not a member",
                    g.group_id
                );
            } else {
                assert!(
                    g.leader_id.is_none(),
                    "{}: leader without members",
                    g.group_id
                );
            }
            if g.is(State::PreparingRebalance) {
                assert!(
                    g.join_timer.is_some(),
                    "{}: rebalance without a join deadline",
                    g.group_id
                );
            }
            for (instance, id) in &g.static_members {
                let m = &g.members[id];
                assert_eq!(m.group_instance_id.as_deref(), Some(instance.as_str()));
            }
            for m in g.members.values() {
                if m.awaiting_join.is_some() {
                    assert!(
                        g.is(State::PreparingRebalance) || g.is(State::Stable),
                        "{}: join parked in {:?}",
                        g.group_id,
                        g.state
                    );
                }
                if m.awaiting_sync.is_some() {
                    assert!(
                        g.is(State::CompletingRebalance),
                        "{}: sync parked in {:?}",
                        g.group_id,
                        g.state
                    );
                }
                if let Some(at) = m.heartbeat_deadline_ms {
                    assert!(self.core.timers.contains(&(
                        at,
                        TimerKey::Heartbeat {
                            group: g.group_id.clone(),
                            member: m.member_id.clone()
                        }
                    )));
                }
            }
            for id in &g.pending_sync_members {
                assert!(g.members.contains_key(id));
            }
        }
    }
}

/// The parameters of a JoinGroup that matter after validation.
struct JoinArgs {
    request_id: u64,
    api_version: i16,
    client: ClientInfo,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    instance_id: Option<String>,
    protocol_type: String,
    protocols: Vec<MemberProtocol>,
}

impl JoinArgs {
    fn waiter(&self) -> JoinWaiter {
        JoinWaiter {
            request_id: self.request_id,
            api_version: self.api_version,
        }
    }
}

/// Kafka's `acceptJoiningMember` (group.max.size).
fn accept_joining_member(g: &ClassicGroup, member_id: &str, max: usize) -> bool {
    match g.state {
        State::Empty | State::Dead => true,
        State::PreparingRebalance => {
            g.members
                .get(member_id)
                .is_some_and(|m| m.awaiting_join.is_some())
                || g.num_awaiting_join() < max
        }
        State::CompletingRebalance | State::Stable => {
            g.members.contains_key(member_id) || g.members.len() < max
        }
    }
}

fn current_members(g: &ClassicGroup) -> Vec<JoinGroupResponseMember> {
    let protocol = g.protocol_name.clone().unwrap_or_default();
    g.members_in_join_order()
        .into_iter()
        .map(|m| {
            let mut jm = JoinGroupResponseMember::default();
            jm.member_id = sb(&m.member_id);
            jm.group_instance_id = m.group_instance_id.as_deref().map(sb);
            jm.metadata = m.metadata(&protocol);
            jm
        })
        .collect()
}

/// Answer for a member rejoining a generation it is already in (no rebalance).
fn current_generation_response(
    g: &ClassicGroup,
    member_id: &str,
    with_members: bool,
) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.member_id = sb(member_id);
    r.generation_id = g.generation_id;
    r.protocol_type = g.protocol_type.as_deref().map(sb);
    r.protocol_name = Some(sb(g.protocol_name.as_deref().unwrap_or("")));
    r.leader = sb(g.leader_id.as_deref().unwrap_or(""));
    if with_members {
        r.members = current_members(g);
    }
    r
}

fn join_new_member(core: &mut Core, g: &mut ClassicGroup, join: JoinArgs, now_ms: i64) {
    if g.is(State::Dead) {
        return core.respond(
            join.request_id,
            Response::Join(join_error(
                join.api_version,
                "",
                GroupError::CoordinatorNotAvailable,
            )),
        );
    }
    if !g.supports_protocols(&join.protocol_type, &join.protocols) {
        return core.respond(
            join.request_id,
            Response::Join(join_error(
                join.api_version,
                "",
                GroupError::InconsistentGroupProtocol,
            )),
        );
    }
    let new_member_id = core.generate_unique_member_id(
        g,
        &join.client.client_id,
        join.instance_id.as_deref(),
        now_ms,
    );
    if let Some(instance) = join.instance_id.clone() {
        match g.static_members.get(&instance).cloned() {
            Some(old) => update_static_member_and_rebalance(
                core,
                g,
                &instance,
                &old,
                &new_member_id,
                join,
                now_ms,
            ),
            None => add_member_and_rebalance(core, g, new_member_id, join, now_ms),
        }
    } else if join.api_version >= 4 {
        // KIP-394: hand out the id and make the client come back with it, so that a client
        // that times out and retries does not leave a ghost member behind.
        let at = now_ms.saturating_add(i64::from(join.session_timeout_ms));
        g.pending_join_members.insert(new_member_id.clone(), at);
        core.arm(
            TimerKey::PendingJoin {
                group: g.group_id.clone(),
                member: new_member_id.clone(),
            },
            None,
            Some(at),
        );
        core.respond(
            join.request_id,
            Response::Join(join_error(
                join.api_version,
                &new_member_id,
                GroupError::MemberIdRequired,
            )),
        );
    } else {
        add_member_and_rebalance(core, g, new_member_id, join, now_ms);
    }
}

fn join_existing_member(
    core: &mut Core,
    g: &mut ClassicGroup,
    member_id: &str,
    join: JoinArgs,
    now_ms: i64,
) {
    let reply = |core: &mut Core, error: GroupError| {
        core.respond(
            join.request_id,
            Response::Join(join_error(join.api_version, member_id, error)),
        )
    };
    if g.is(State::Dead) {
        return reply(core, GroupError::CoordinatorNotAvailable);
    }
    if !g.supports_protocols(&join.protocol_type, &join.protocols) {
        return reply(core, GroupError::InconsistentGroupProtocol);
    }
    if g.pending_join_members.contains_key(member_id) {
        if join.instance_id.is_some() {
            // Pending members are dynamic by construction; a static id here is a client bug.
            return reply(core, GroupError::UnknownMemberId);
        }
        core.remove_pending_join_member(g, member_id);
        return add_member_and_rebalance(core, g, member_id.to_owned(), join, now_ms);
    }
    if let Err(e) = g.validate_member(member_id, join.instance_id.as_deref()) {
        return reply(core, e.into());
    }
    let matches = g
        .members
        .get(member_id)
        .is_some_and(|m| m.matches(&join.protocols));
    match g.state {
        State::PreparingRebalance => update_member_and_rebalance(core, g, member_id, join, now_ms),
        State::CompletingRebalance => {
            if matches {
                // Lost its JoinGroup response: resend the current generation.
                let r = current_generation_response(g, member_id, g.is_leader(member_id));
                core.respond(join.request_id, Response::Join(r));
            } else {
                update_member_and_rebalance(core, g, member_id, join, now_ms);
            }
        }
        State::Stable => {
            if g.is_leader(member_id) || !matches {
                // A rejoining leader forces a rebalance (it may have seen metadata changes).
                update_member_and_rebalance(core, g, member_id, join, now_ms);
            } else {
                let r = current_generation_response(g, member_id, false);
                core.respond(join.request_id, Response::Join(r));
            }
        }
        State::Empty | State::Dead => reply(core, GroupError::UnknownMemberId),
    }
}

fn add_member_and_rebalance(
    core: &mut Core,
    g: &mut ClassicGroup,
    member_id: String,
    join: JoinArgs,
    now_ms: i64,
) {
    let member = Member {
        member_id: member_id.clone(),
        group_instance_id: join.instance_id.clone(),
        client_id: join.client.client_id.clone(),
        client_host: join.client.client_host.clone(),
        rebalance_timeout_ms: join.rebalance_timeout_ms,
        session_timeout_ms: join.session_timeout_ms,
        protocol_type: join.protocol_type.clone(),
        protocols: join.protocols.clone(),
        assignment: Bytes::new(),
        awaiting_join: Some(join.waiter()),
        awaiting_sync: None,
        is_new: true,
        heartbeat_deadline_ms: None,
        join_seq: 0,
    };
    if g.is(State::PreparingRebalance) && g.previous_state == State::Empty {
        g.new_member_added = true;
    }
    g.add(member);
    // New members cannot heartbeat yet; bound how long their parked join may live.
    let timeout = core.cfg.new_member_join_timeout_ms;
    core.reschedule_heartbeat(g, &member_id, timeout, now_ms);
    core.maybe_prepare_rebalance_or_complete_join(g, now_ms);
}

fn update_member_and_rebalance(
    core: &mut Core,
    g: &mut ClassicGroup,
    member_id: &str,
    join: JoinArgs,
    now_ms: i64,
) {
    let waiter = join.waiter();
    if let Some(m) = g.members.get_mut(member_id) {
        m.protocols = join.protocols;
        m.rebalance_timeout_ms = join.rebalance_timeout_ms;
        m.session_timeout_ms = join.session_timeout_ms;
        if let Some(old) = m.awaiting_join.replace(waiter) {
            // A retried JoinGroup supersedes the parked one; answer the old one so that no
            // request is left without a response.
            core.respond(
                old.request_id,
                Response::Join(join_error(
                    old.api_version,
                    member_id,
                    GroupError::RebalanceInProgress,
                )),
            );
        }
    }
    core.maybe_prepare_rebalance_or_complete_join(g, now_ms);
}

/// Kafka's `replaceStaticMember`: the new id takes over the old member (assignment
/// included); parked requests of the old id are fenced.
fn replace_static_member(
    core: &mut Core,
    g: &mut ClassicGroup,
    instance_id: &str,
    old_member_id: &str,
    new_member_id: &str,
    now_ms: i64,
) {
    core.cancel_heartbeat(g, old_member_id);
    let Some(mut m) = g.members.remove(old_member_id) else {
        return;
    };
    let fenced = GroupError::FencedInstanceId;
    if let Some(w) = m.awaiting_join.take() {
        core.respond(
            w.request_id,
            Response::Join(join_error(w.api_version, old_member_id, fenced)),
        );
    }
    if let Some(w) = m.awaiting_sync.take() {
        core.respond(w.request_id, Response::Sync(sync_error(fenced)));
    }
    m.member_id = new_member_id.to_owned();
    let session = i64::from(m.session_timeout_ms);
    g.members.insert(new_member_id.to_owned(), m);
    if g.is_leader(old_member_id) {
        g.leader_id = Some(new_member_id.to_owned());
    }
    if g.pending_sync_members.remove(old_member_id) {
        g.pending_sync_members.insert(new_member_id.to_owned());
    }
    g.static_members
        .insert(instance_id.to_owned(), new_member_id.to_owned());
    core.reschedule_heartbeat(g, new_member_id, session, now_ms);
}

/// Kafka's `updateStaticMemberThenRebalanceOrCompleteJoin`: a restarted static member
/// (unknown member id, known group.instance.id) takes over its old identity.
fn update_static_member_and_rebalance(
    core: &mut Core,
    g: &mut ClassicGroup,
    instance_id: &str,
    old_member_id: &str,
    new_member_id: &str,
    join: JoinArgs,
    now_ms: i64,
) {
    let old_leader = g.leader_id.clone();
    replace_static_member(core, g, instance_id, old_member_id, new_member_id, now_ms);
    let waiter = join.waiter();
    let Some(m) = g.members.get_mut(new_member_id) else {
        return;
    };
    let old_protocols = std::mem::replace(&mut m.protocols, join.protocols);
    let old_rebalance_timeout_ms =
        std::mem::replace(&mut m.rebalance_timeout_ms, join.rebalance_timeout_ms);
    let old_session_timeout_ms =
        std::mem::replace(&mut m.session_timeout_ms, join.session_timeout_ms);
    m.awaiting_join = Some(waiter);
    match g.state {
        State::Stable => {
            let next = g.select_protocol();
            if next.is_some() && next == g.protocol_name {
                // Same selected protocol: no rebalance, just persist the new member id.
                let assignment: BTreeMap<String, Bytes> = g
                    .members
                    .values()
                    .map(|m| (m.member_id.clone(), m.assignment.clone()))
                    .collect();
                let record = group_metadata_record(g, &assignment);
                core.persist(
                    vec![record],
                    PendingPersist::StaticReplace {
                        group_id: g.group_id.clone(),
                        instance_id: instance_id.to_owned(),
                        old_member_id: old_member_id.to_owned(),
                        new_member_id: new_member_id.to_owned(),
                        old_protocols,
                        old_rebalance_timeout_ms,
                        old_session_timeout_ms,
                        old_leader,
                        waiter,
                    },
                );
            } else {
                core.maybe_prepare_rebalance_or_complete_join(g, now_ms);
            }
        }
        State::CompletingRebalance => {
            // The leader may already be assigning with the old id: rebalance.
            core.prepare_rebalance(g, now_ms);
        }
        State::PreparingRebalance => core.maybe_complete_join_phase(g, now_ms),
        State::Empty | State::Dead => {
            // Unreachable: static members exist only in non-empty groups.
            if let Some(m) = g.members.get_mut(new_member_id) {
                m.awaiting_join = None;
            }
            core.respond(
                waiter.request_id,
                Response::Join(join_error(
                    waiter.api_version,
                    "",
                    GroupError::UnknownMemberId,
                )),
            );
        }
    }
}

/// Kafka's `ClassicGroup.validateOffsetCommit`. A transactional commit (TxnOffsetCommit)
/// without member or generation is accepted even in a non-empty group (TxnOffsetCommit v0-2
/// carry neither), and is not refused while the group completes a rebalance.
fn validate_offset_commit(
    g: &ClassicGroup,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    transactional: bool,
) -> Result<(), GroupError> {
    if g.is(State::Dead) {
        return Err(GroupError::CoordinatorNotAvailable);
    }
    if generation < 0 && g.is(State::Empty) {
        return Ok(());
    }
    if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
        g.validate_member(member_id, instance_id)
            .map_err(GroupError::from)?;
        if generation != g.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
    } else if !transactional && !g.is(State::Empty) {
        return Err(GroupError::UnknownMemberId);
    }
    if !transactional && g.is(State::CompletingRebalance) {
        return Err(GroupError::RebalanceInProgress);
    }
    Ok(())
}

/// Tombstones for every offset of a group, then for the group itself (DeleteGroups).
fn tombstones_for_group(g: &ClassicGroup) -> Vec<OffsetsRecord> {
    let mut records: Vec<OffsetsRecord> = g
        .offsets
        .keys()
        .map(|(topic, partition)| OffsetsRecord::OffsetCommit {
            key: OffsetCommitKey {
                group: g.group_id.clone(),
                topic: topic.clone(),
                partition: *partition,
            },
            value: None,
        })
        .collect();
    records.push(OffsetsRecord::GroupMetadata {
        group: g.group_id.clone(),
        value: None,
    });
    records
}

/// Rebuilds a group from its metadata record (Kafka's `ClassicGroup.fromRecord`): Empty
/// without members, else Stable with the stored generation and assignments.
fn group_from_value(group_id: &str, v: &GroupMetadataValue) -> ClassicGroup {
    let mut g = ClassicGroup::new(group_id.to_owned(), 0);
    g.state_timestamp_ms =
        (v.current_state_timestamp_ms >= 0).then_some(v.current_state_timestamp_ms);
    g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
    g.protocol_name = v.protocol.clone();
    g.generation_id = v.generation;
    g.state = if v.members.is_empty() {
        State::Empty
    } else {
        State::Stable
    };
    for (seq, mv) in v.members.iter().enumerate() {
        let protocols = match &v.protocol {
            Some(p) => vec![MemberProtocol {
                name: p.clone(),
                metadata: mv.subscription.clone(),
            }],
            None => Vec::new(),
        };
        if let Some(i) = &mv.group_instance_id {
            g.static_members.insert(i.clone(), mv.member_id.clone());
        }
        g.members.insert(
            mv.member_id.clone(),
            Member {
                member_id: mv.member_id.clone(),
                group_instance_id: mv.group_instance_id.clone(),
                client_id: mv.client_id.clone(),
                client_host: mv.client_host.clone(),
                rebalance_timeout_ms: mv.rebalance_timeout_ms,
                session_timeout_ms: mv.session_timeout_ms,
                protocol_type: v.protocol_type.clone(),
                protocols,
                assignment: mv.assignment.clone(),
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                heartbeat_deadline_ms: None,
                join_seq: seq as u64,
            },
        );
    }
    g.next_join_seq = v.members.len() as u64;
    g.leader_id = v
        .leader
        .clone()
        .filter(|l| g.members.contains_key(l))
        .or_else(|| {
            g.members_in_join_order()
                .first()
                .map(|m| m.member_id.clone())
        });
    g.subscribed_topics = g.compute_subscribed_topics();
    g
}
