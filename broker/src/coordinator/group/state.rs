//! Group states and the membership bookkeeping of one classic group (Kafka's
//! `ClassicGroup`). No timers and no responses here: the coordinator (`mod.rs`) owns those.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::member::{Member, MemberProtocol};
use super::offsets::CommittedOffset;

/// Kafka's `ClassicGroupState`. The names are part of the protocol (DescribeGroups,
/// ListGroups) and must match Kafka's exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    /// The wire name, as in Kafka (`ClassicGroupState.toString()`).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Kafka's valid previous states for each state.
    fn valid_previous(self) -> &'static [GroupState] {
        use GroupState::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        }
    }
}

/// The timer of the join phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinTimer {
    /// Initial rebalance of an empty group: wait `delay_ms`, extended while new members keep
    /// arriving, up to the rebalance timeout (`group.initial.rebalance.delay.ms`).
    Initial { delay_ms: i64, remaining_ms: i64 },
    /// Normal rebalance: complete when everyone rejoined or at the rebalance timeout.
    Rebalance,
}

#[derive(Debug, Clone)]
pub(crate) struct ClassicGroup {
    pub group_id: String,
    pub state: GroupState,
    pub previous_state: GroupState,
    pub state_timestamp_ms: Option<i64>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    /// KIP-394 members that got MEMBER_ID_REQUIRED and must rejoin: member id -> deadline.
    pub pending_join_members: BTreeMap<String, i64>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub pending_sync_members: BTreeSet<String>,
    pub new_member_added: bool,
    pub join_timer: Option<(i64, JoinTimer)>,
    pub sync_deadline_ms: Option<i64>,
    /// Topics the members subscribe to, parsed from the consumer protocol metadata when the
    /// protocol type is "consumer"; `None` when unknown.
    pub subscribed_topics: Option<BTreeSet<String>>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Offset commits appended but not yet durable, per partition (for require_stable).
    pub pending_offset_commits: HashMap<(String, i32), u32>,
    pub next_join_seq: u64,
}

impl ClassicGroup {
    pub fn new(group_id: String, now_ms: i64) -> Self {
        ClassicGroup {
            group_id,
            state: GroupState::Empty,
            previous_state: GroupState::Dead,
            state_timestamp_ms: Some(now_ms),
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_join_members: BTreeMap::new(),
            pending_sync_members: BTreeSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_deadline_ms: None,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            pending_offset_commits: HashMap::new(),
            next_join_seq: 0,
        }
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub fn transition_to(&mut self, state: GroupState, now_ms: i64) {
        // Invariant checked in release builds too: an invalid transition is a coordinator bug
        // that would corrupt group state for every member.
        assert!(
            state.valid_previous().contains(&self.state),
            "group {}: invalid transition {:?} -> {:?}",
            self.group_id,
            self.state,
            state
        );
        self.previous_state = self.state;
        self.state = state;
        self.state_timestamp_ms = Some(now_ms);
    }

    pub fn can_rebalance(&self) -> bool {
        GroupState::PreparingRebalance
            .valid_previous()
            .contains(&self.state)
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn num_awaiting_join(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    pub fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.num_awaiting_join() && self.pending_join_members.is_empty()
    }

    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Kafka's `supportsProtocols`: an empty group accepts any non-empty protocol type and
    /// protocol list; otherwise the type must match and one protocol must be supported by
    /// every current member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[MemberProtocol]) -> bool {
        if self.is(GroupState::Empty) {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|p| {
                    self.members
                        .values()
                        .all(|m| m.protocols.iter().any(|mp| mp.name == p.name))
                })
        }
    }

    /// Protocols supported by every member.
    fn candidate_protocols(&self) -> Vec<&str> {
        let mut candidates: Vec<&str> = Vec::new();
        if let Some(first) = self.members.values().next() {
            for p in &first.protocols {
                let everywhere = self
                    .members
                    .values()
                    .all(|m| m.protocols.iter().any(|mp| mp.name == p.name));
                if everywhere && !candidates.contains(&p.name.as_str()) {
                    candidates.push(p.name.as_str());
                }
            }
        }
        candidates
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred candidate; the
    /// most voted wins. Ties go to the lexicographically smallest name (Kafka leaves ties to
    /// hash order; any deterministic choice is compatible).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(v) = m.vote(&candidates) {
                *votes.entry(v).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, n)| *n == best)
            .map(|(name, _)| name.to_owned())
    }

    /// Adds a member (Kafka's `add`). The caller checked `supports_protocols`.
    pub fn add(&mut self, mut member: Member) {
        // A duplicate id would silently drop the existing member and its parked requests.
        assert!(
            !self.members.contains_key(&member.member_id),
            "member {} added twice to group {}",
            member.member_id,
            self.group_id
        );
        if let Some(instance) = &member.group_instance_id {
            assert!(
                !self.static_members.contains_key(instance),
                "static member {instance} added twice to group {}",
                self.group_id
            );
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        member.join_seq = self.next_join_seq;
        self.next_join_seq += 1;
        self.pending_join_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member (Kafka's `remove`); the caller answers its parked requests first.
    /// A removed leader is replaced by the oldest remaining member.
    pub fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.remove(member_id);
        if let Some(m) = &removed {
            if let Some(instance) = &m.group_instance_id {
                self.static_members.remove(instance);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self
                .members
                .values()
                .min_by_key(|m| m.join_seq)
                .map(|m| m.member_id.clone());
        }
        self.pending_join_members.remove(member_id);
        self.pending_sync_members.remove(member_id);
        removed
    }

    /// Kafka's `maybeElectNewJoinedLeader`: keep the leader if it rejoined, else pick a member
    /// that rejoined; false if nobody rejoined (or the group has no leader).
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        let leader_joined = self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some());
        if leader_joined {
            return true;
        }
        let next = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .min_by_key(|m| m.join_seq)
            .map(|m| m.member_id.clone());
        match next {
            Some(id) => {
                self.leader_id = Some(id);
                true
            }
            None => false,
        }
    }

    /// Members in join order (oldest first).
    pub fn members_in_join_order(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.values().collect();
        v.sort_by_key(|m| m.join_seq);
        v
    }

    /// Kafka's `validateMember`: the instance id (if any) must map to this member id, and
    /// the member must exist.
    pub fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), MemberError> {
        if let Some(instance) = group_instance_id {
            match self.static_members.get(instance) {
                None => return Err(MemberError::UnknownMemberId),
                Some(existing) if existing != member_id => {
                    return Err(MemberError::FencedInstanceId)
                }
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(MemberError::UnknownMemberId);
        }
        Ok(())
    }

    /// Re-parses the subscribed topics (Kafka's `computeSubscribedTopics`).
    pub fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(super::CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let md = m.metadata(protocol);
            topics.extend(super::offsets::parse_subscription_topics(&md)?);
        }
        Some(topics)
    }

    /// Kafka's `isSubscribedToTopic`.
    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => self.protocol_type.as_deref() == Some(super::CONSUMER_PROTOCOL_TYPE),
        }
    }
}

/// Member validation failures shared by Heartbeat, SyncGroup, LeaveGroup, OffsetCommit
/// (a subset of [`super::GroupError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberError {
    UnknownMemberId,
    FencedInstanceId,
}
