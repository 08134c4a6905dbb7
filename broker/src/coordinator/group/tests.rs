//! Scenario tests of the coordinator, driven like the shard will drive it: requests with
//! ids, a fake clock, and a fake log that completes appends.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use kafka_protocol::messages::{
    join_group_request::JoinGroupRequestProtocol, leave_group_request::MemberIdentity,
    offset_commit_request::OffsetCommitRequestPartition,
    offset_commit_request::OffsetCommitRequestTopic,
    offset_delete_request::OffsetDeleteRequestPartition,
    offset_delete_request::OffsetDeleteRequestTopic, offset_fetch_request::OffsetFetchRequestGroup,
    offset_fetch_request::OffsetFetchRequestTopic, offset_fetch_request::OffsetFetchRequestTopics,
    sync_group_request::SyncGroupRequestAssignment, DeleteGroupsRequest, DescribeGroupsRequest,
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    ListGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as E;

use super::*;

/// Encodes a response as the shard would; panics if the version cannot carry it.
pub(super) fn encode_response(response: &Response, version: i16) {
    use kafka_protocol::protocol::Encodable;
    let mut buf = bytes::BytesMut::new();
    let result = match response {
        Response::Join(r) => r.encode(&mut buf, version),
        Response::Sync(r) => r.encode(&mut buf, version),
        Response::Heartbeat(r) => r.encode(&mut buf, version),
        Response::Leave(r) => r.encode(&mut buf, version),
        Response::OffsetCommit(r) => r.encode(&mut buf, version),
        Response::OffsetFetch(r) => r.encode(&mut buf, version),
        Response::OffsetDelete(r) => r.encode(&mut buf, version),
        Response::DescribeGroups(r) => r.encode(&mut buf, version),
        Response::ListGroups(r) => r.encode(&mut buf, version),
        Response::DeleteGroups(r) => r.encode(&mut buf, version),
        // internal: never sent to a client
        Response::TopicsDeleted { .. } | Response::TxnOffsetCommitChecked(_) => Ok(()),
    };
    if let Err(e) = result {
        panic!("response does not encode at v{version}: {e}: {response:?}");
    }
}

pub(super) fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

pub(super) fn gid(x: &str) -> GroupId {
    GroupId(s(x))
}

/// A fake shard: clock, request ids, an offsets log, and the answers received.
pub(super) struct Harness {
    pub c: GroupCoordinator,
    pub now: i64,
    next_request: u64,
    pub answers: BTreeMap<u64, Response>,
    pub inflight: VecDeque<(u64, Vec<OffsetsRecord>)>,
    /// Every record appended and acknowledged, in order.
    pub log: Vec<OffsetsRecord>,
    /// Complete appends as soon as they are emitted.
    pub auto_persist: bool,
    pub sent: Vec<u64>,
    /// API version of each request, to encode its answer with.
    pub versions: BTreeMap<u64, i16>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(GroupConfig::default())
    }

    pub fn with_config(cfg: GroupConfig) -> Self {
        Harness {
            c: GroupCoordinator::new(cfg),
            now: 1_000_000,
            next_request: 1,
            answers: BTreeMap::new(),
            inflight: VecDeque::new(),
            log: Vec::new(),
            auto_persist: true,
            sent: Vec::new(),
            versions: BTreeMap::new(),
        }
    }

    pub fn absorb(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Respond {
                    request_id,
                    response,
                } => {
                    assert!(
                        self.sent.contains(&request_id),
                        "answer for unknown request {request_id}"
                    );
                    // The answer must encode at the request's version (kafka-protocol refuses
                    // fields a version does not have).
                    let version = self.versions[&request_id];
                    encode_response(&response, version);
                    let dup = self.answers.insert(request_id, response);
                    assert!(dup.is_none(), "request {request_id} answered twice");
                }
                Action::Persist {
                    persist_id,
                    records,
                } => {
                    // Pair check: what we append must decode back to the same record.
                    for r in &records {
                        let (k, v) = r.encode().expect("encodable");
                        assert_eq!(&OffsetsRecord::decode(&k, v.as_deref()).unwrap(), r);
                    }
                    self.inflight.push_back((persist_id, records));
                }
                Action::ScheduleTick { at_ms } => {
                    assert!(at_ms >= self.now - 1, "tick scheduled in the past");
                }
            }
        }
        if self.auto_persist {
            self.complete_all(Ok(()));
        }
        self.c.check_invariants();
    }

    pub fn complete_one(&mut self, result: Result<(), PersistError>) -> bool {
        let Some((id, records)) = self.inflight.pop_front() else {
            return false;
        };
        if result.is_ok() {
            self.log.extend(records);
        }
        let actions = self
            .c
            .persist_complete(self.now, id, result)
            .expect("in order");
        let auto = self.auto_persist;
        self.auto_persist = false;
        self.absorb(actions);
        self.auto_persist = auto;
        true
    }

    pub fn complete_all(&mut self, result: Result<(), PersistError>) {
        while self.complete_one(result) {}
    }

    pub fn send(&mut self, input: Input) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.sent.push(id);
        let version = match &input {
            Input::Join { api_version, .. }
            | Input::Sync { api_version, .. }
            | Input::Heartbeat { api_version, .. }
            | Input::Leave { api_version, .. }
            | Input::OffsetCommit { api_version, .. }
            | Input::OffsetFetch { api_version, .. }
            | Input::OffsetDelete { api_version, .. }
            | Input::DescribeGroups { api_version, .. }
            | Input::ListGroups { api_version, .. }
            | Input::DeleteGroups { api_version, .. } => *api_version,
            Input::TxnOffsetsCommitted { .. } => 8,
            Input::CheckTxnOffsetCommit { .. } => 3,
            Input::TopicsDeleted { .. } => 0,
        };
        self.versions.insert(id, version);
        let actions = self.c.step(self.now, id, input);
        self.absorb(actions);
        id
    }

    pub fn advance(&mut self, ms: i64) {
        // Tick in small steps, as a shard timer would.
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + 500).min(end);
            let actions = self.c.tick(self.now);
            self.absorb(actions);
        }
    }

    pub fn join_resp(&self, id: u64) -> Option<&JoinGroupResponse> {
        match self.answers.get(&id) {
            Some(Response::Join(r)) => Some(r),
            Some(other) => panic!("not a join response: {other:?}"),
            None => None,
        }
    }

    pub fn sync_resp(&self, id: u64) -> Option<&SyncGroupResponse> {
        match self.answers.get(&id) {
            Some(Response::Sync(r)) => Some(r),
            Some(other) => panic!("not a sync response: {other:?}"),
            None => None,
        }
    }

    pub fn code(&self, id: u64) -> i16 {
        match self.answers.get(&id).expect("answered") {
            Response::Join(r) => r.error_code,
            Response::Sync(r) => r.error_code,
            Response::Heartbeat(r) => r.error_code,
            Response::Leave(r) => r.error_code,
            Response::OffsetDelete(r) => r.error_code,
            Response::TxnOffsetCommitChecked(r) => r.map_or_else(|e| e.kafka_code(), |()| 0),
            other => panic!("no single error code in {other:?}"),
        }
    }

    // ---- request builders --------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub fn join_full(
        &mut self,
        version: i16,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        protocols: &[(&str, Bytes)],
        session_ms: i32,
        rebalance_ms: i32,
    ) -> u64 {
        let mut r = JoinGroupRequest::default();
        r.group_id = gid(group);
        r.member_id = s(member_id);
        r.group_instance_id = instance.map(s);
        r.session_timeout_ms = session_ms;
        r.rebalance_timeout_ms = rebalance_ms;
        r.protocol_type = s(CONSUMER_PROTOCOL_TYPE);
        r.protocols = protocols
            .iter()
            .map(|(n, m)| {
                let mut p = JoinGroupRequestProtocol::default();
                p.name = s(n);
                p.metadata = m.clone();
                p
            })
            .collect();
        self.send(Input::Join {
            api_version: version,
            client: ClientInfo {
                client_id: "client".into(),
                client_host: "/127.0.0.1".into(),
            },
            request: r,
        })
    }

    pub fn join(&mut self, group: &str, member_id: &str, instance: Option<&str>) -> u64 {
        let sub = encode_subscription_v0(&["orders"]);
        self.join_full(
            5,
            group,
            member_id,
            instance,
            &[("range", sub)],
            10_000,
            60_000,
        )
    }

    /// KIP-394 round trip for a dynamic member; returns the join request id (parked).
    pub fn join_new(&mut self, group: &str) -> (String, u64) {
        let first = self.join(group, "", None);
        let r = self.join_resp(first).expect("answered at once").clone();
        assert_eq!(r.error_code, E::MemberIdRequired.code());
        assert!(r.member_id.as_str().starts_with("client-"));
        let id = r.member_id.as_str().to_owned();
        let second = self.join(group, &id, None);
        (id, second)
    }

    pub fn sync(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: &[(&str, &[u8])],
    ) -> u64 {
        let mut r = SyncGroupRequest::default();
        r.group_id = gid(group);
        r.member_id = s(member_id);
        r.generation_id = generation;
        r.assignments = assignments
            .iter()
            .map(|(m, a)| {
                let mut x = SyncGroupRequestAssignment::default();
                x.member_id = s(m);
                x.assignment = Bytes::copy_from_slice(a);
                x
            })
            .collect();
        self.send(Input::Sync {
            api_version: 5,
            request: r,
        })
    }

    pub fn heartbeat(&mut self, group: &str, member_id: &str, generation: i32) -> i16 {
        self.heartbeat_static(group, member_id, None, generation)
    }

    pub fn heartbeat_static(
        &mut self,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> i16 {
        let mut r = HeartbeatRequest::default();
        r.group_id = gid(group);
        r.member_id = s(member_id);
        r.group_instance_id = instance.map(s);
        r.generation_id = generation;
        let id = self.send(Input::Heartbeat {
            api_version: 4,
            request: r,
        });
        self.code(id)
    }

    pub fn leave(&mut self, group: &str, members: &[(&str, Option<&str>)]) -> u64 {
        let mut r = LeaveGroupRequest::default();
        r.group_id = gid(group);
        r.members = members
            .iter()
            .map(|(m, i)| {
                let mut x = MemberIdentity::default();
                x.member_id = s(m);
                x.group_instance_id = i.map(s);
                x
            })
            .collect();
        self.send(Input::Leave {
            api_version: 5,
            request: r,
        })
    }

    pub fn commit_v(
        &mut self,
        version: i16,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: &[(&str, i32, i64)],
        unknown: &[(&str, i32)],
    ) -> Vec<(String, i32, i16)> {
        let mut r = OffsetCommitRequest::default();
        r.group_id = gid(group);
        r.member_id = s(member_id);
        r.generation_id_or_member_epoch = generation;
        for (t, p, o) in offsets {
            let mut part = OffsetCommitRequestPartition::default();
            part.partition_index = *p;
            part.committed_offset = *o;
            part.committed_leader_epoch = 3;
            part.committed_metadata = Some(s("m"));
            match r.topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
                Some(topic) => topic.partitions.push(part),
                None => {
                    let mut topic = OffsetCommitRequestTopic::default();
                    topic.name = TopicName(s(t));
                    topic.partitions.push(part);
                    r.topics.push(topic);
                }
            }
        }
        let id = self.send(Input::OffsetCommit {
            api_version: version,
            request: r,
            unknown_partitions: unknown.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        });
        self.commit_result(id)
    }

    pub fn commit_result(&self, id: u64) -> Vec<(String, i32, i16)> {
        match self.answers.get(&id) {
            Some(Response::OffsetCommit(r)) => r
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        (
                            t.name.0.as_str().to_owned(),
                            p.partition_index,
                            p.error_code,
                        )
                    })
                })
                .collect(),
            other => panic!("not an offset commit answer: {other:?}"),
        }
    }

    pub fn commit(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: &[(&str, i32, i64)],
    ) -> Vec<i16> {
        self.commit_v(8, group, member_id, generation, offsets, &[])
            .into_iter()
            .map(|(_, _, c)| c)
            .collect()
    }

    /// OffsetFetch v8 for one group; `None` topics = all.
    pub fn fetch(
        &mut self,
        group: &str,
        topics: Option<&[(&str, &[i32])]>,
    ) -> Vec<(String, i32, i64, i16)> {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = gid(group);
        g.topics = topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    let mut x = OffsetFetchRequestTopics::default();
                    x.name = TopicName(s(t));
                    x.partition_indexes = ps.to_vec();
                    x
                })
                .collect()
        });
        let mut r = OffsetFetchRequest::default();
        r.groups = vec![g];
        let id = self.send(Input::OffsetFetch {
            api_version: 8,
            request: r,
        });
        match self.answers.get(&id) {
            Some(Response::OffsetFetch(r)) => {
                assert_eq!(r.groups.len(), 1);
                r.groups[0]
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| {
                            (
                                t.name.0.as_str().to_owned(),
                                p.partition_index,
                                p.committed_offset,
                                p.error_code,
                            )
                        })
                    })
                    .collect()
            }
            other => panic!("not an offset fetch answer: {other:?}"),
        }
    }

    pub fn describe(
        &mut self,
        group: &str,
    ) -> kafka_protocol::messages::describe_groups_response::DescribedGroup {
        let mut r = DescribeGroupsRequest::default();
        r.groups = vec![gid(group)];
        let id = self.send(Input::DescribeGroups {
            api_version: 5,
            request: r,
        });
        match self.answers.get(&id) {
            Some(Response::DescribeGroups(r)) => r.groups[0].clone(),
            other => panic!("not describe: {other:?}"),
        }
    }

    /// Brings `n` dynamic members into a Stable group; returns (member ids, generation).
    pub fn stable_group(&mut self, group: &str, n: usize) -> (Vec<String>, i32) {
        let mut joins = Vec::new();
        for _ in 0..n {
            joins.push(self.join_new(group));
        }
        // group.initial.rebalance.delay.ms, extended once more when several members joined.
        self.advance(6_000);
        let mut leader = String::new();
        let mut generation = -1;
        for (id, req) in &joins {
            let r = self.join_resp(*req).expect("join completed").clone();
            assert_eq!(r.error_code, 0);
            assert_eq!(r.member_id.as_str(), id);
            generation = r.generation_id;
            leader = r.leader.as_str().to_owned();
        }
        let ids: Vec<String> = joins.iter().map(|(id, _)| id.clone()).collect();
        let followers: Vec<u64> = ids
            .iter()
            .filter(|id| **id != leader)
            .map(|id| self.sync(group, id, generation, &[]))
            .collect();
        let assignment: Vec<(String, Vec<u8>)> = ids
            .iter()
            .map(|id| (id.clone(), id.as_bytes().to_vec()))
            .collect();
        let refs: Vec<(&str, &[u8])> = assignment
            .iter()
            .map(|(m, a)| (m.as_str(), a.as_slice()))
            .collect();
        let lsync = self.sync(group, &leader, generation, &refs);
        for req in followers.iter().chain(std::iter::once(&lsync)) {
            let r = self.sync_resp(*req).expect("sync answered");
            assert_eq!(r.error_code, 0);
        }
        assert_eq!(self.c.group_state(group), Some(GroupState::Stable));
        (ids, generation)
    }
}

fn protocols(sub: &[&str]) -> Vec<(&'static str, Bytes)> {
    vec![("range", encode_subscription_v0(sub))]
}

#[test]
fn group_partition_matches_java_hashcode() {
    assert_eq!(group_partition("a", 50), 47);
    assert_eq!(group_partition("my-group", 50), 12);
    assert_eq!(group_partition("console-consumer-12345", 50), 6);
    assert_eq!(group_partition("test-consumer-group", 50), 31);
    // hashCode == Integer.MIN_VALUE: Kafka's Utils.abs gives 0.
    assert_eq!(group_partition("polygenelubricants", 50), 0);
    assert_eq!(GroupCoordinator::group_partition("my-group", 1), 0);
}

#[test]
fn three_consumers_six_partitions_graceful_leave() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new("g");
    let (b, jb) = h.join_new("g");
    let (c, jc) = h.join_new("g");
    // The initial rebalance waits group.initial.rebalance.delay.ms.
    assert!(h.join_resp(ja).is_none());
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
    h.advance(2_500);
    assert!(
        h.join_resp(ja).is_none(),
        "completed before the initial delay"
    );
    // Members kept arriving during the first delay: Kafka waits one more delay.
    h.advance(600);
    assert!(h.join_resp(ja).is_none(), "initial delay not extended");
    h.advance(3_000);
    let ra = h.join_resp(ja).unwrap().clone();
    let rb = h.join_resp(jb).unwrap().clone();
    let rc = h.join_resp(jc).unwrap().clone();
    for r in [&ra, &rb, &rc] {
        assert_eq!(r.error_code, 0);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.protocol_name.as_ref().unwrap().as_str(), "range");
        assert_eq!(r.leader.as_str(), a, "first member leads");
    }
    assert_eq!(ra.members.len(), 3);
    assert!(rb.members.is_empty() && rc.members.is_empty());
    assert_eq!(h.c.group_state("g"), Some(GroupState::CompletingRebalance));

    // Followers sync first and wait for the leader.
    let sb_ = h.sync("g", &b, 1, &[]);
    let sc = h.sync("g", &c, 1, &[]);
    assert!(h.sync_resp(sb_).is_none());
    assert_eq!(
        h.heartbeat("g", &b, 1),
        0,
        "heartbeats during CompletingRebalance are fine"
    );
    h.auto_persist = false;
    let sa = h.sync(
        "g",
        &a,
        1,
        &[(&a, b"p0,p1"), (&b, b"p2,p3"), (&c, b"p4,p5")],
    );
    // Nothing is released until the group record is durable.
    assert!(h.sync_resp(sa).is_none() && h.sync_resp(sb_).is_none());
    assert_eq!(h.inflight.len(), 1);
    h.complete_all(Ok(()));
    h.auto_persist = true;
    assert_eq!(&h.sync_resp(sa).unwrap().assignment[..], b"p0,p1");
    assert_eq!(&h.sync_resp(sb_).unwrap().assignment[..], b"p2,p3");
    assert_eq!(&h.sync_resp(sc).unwrap().assignment[..], b"p4,p5");
    assert_eq!(h.c.group_state("g"), Some(GroupState::Stable));

    // c leaves gracefully: rebalance, others learn it from their heartbeats.
    let l = h.leave("g", &[(&c, None)]);
    match &h.answers[&l] {
        Response::Leave(r) => {
            assert_eq!(r.error_code, 0);
            assert_eq!(r.members.len(), 1);
            assert_eq!(r.members[0].error_code, 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(h.heartbeat("g", &a, 1), E::RebalanceInProgress.code());
    assert_eq!(h.heartbeat("g", &c, 1), E::UnknownMemberId.code());
    let ja2 = h.join("g", &a, None);
    assert!(h.join_resp(ja2).is_none(), "waits for b");
    let jb2 = h.join("g", &b, None);
    // Everybody rejoined: completes without waiting for the rebalance timeout.
    let ra2 = h.join_resp(ja2).unwrap();
    assert_eq!(
        (ra2.error_code, ra2.generation_id, ra2.members.len()),
        (0, 2, 2)
    );
    assert_eq!(h.join_resp(jb2).unwrap().generation_id, 2);
    let sa2 = h.sync("g", &a, 2, &[(&a, b"p0,p1,p2"), (&b, b"p3,p4,p5")]);
    let sb2 = h.sync("g", &b, 2, &[]);
    assert_eq!(&h.sync_resp(sa2).unwrap().assignment[..], b"p0,p1,p2");
    assert_eq!(&h.sync_resp(sb2).unwrap().assignment[..], b"p3,p4,p5");
    let d = h.describe("g");
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.protocol_data.as_str(), "range");
    assert_eq!(d.members.len(), 2);
    assert_eq!(&d.members[1].member_assignment[..], b"p3,p4,p5");
}

#[test]
fn session_timeout_removes_silent_member_and_rebalances() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group("g", 3);
    // a and b heartbeat every 3 s; c is silent (session timeout 10 s).
    for _ in 0..3 {
        h.advance(3_000);
        assert_eq!(h.heartbeat("g", &ids[0], generation), 0);
        assert_eq!(h.heartbeat("g", &ids[1], generation), 0);
    }
    assert_eq!(h.c.group_state("g"), Some(GroupState::Stable));
    h.advance(1_500);
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(h.c.group_members("g").len(), 2);
    assert_eq!(
        h.heartbeat("g", &ids[2], generation),
        E::UnknownMemberId.code()
    );
    assert_eq!(
        h.heartbeat("g", &ids[1], generation),
        E::RebalanceInProgress.code()
    );
    let j0 = h.join("g", &ids[0], None);
    // b keeps heartbeating but never rejoins: at the rebalance timeout (60 s after the
    // rebalance started) it is dropped and the join completes without it.
    for _ in 0..19 {
        h.advance(3_000);
        assert_eq!(
            h.heartbeat("g", &ids[1], generation),
            E::RebalanceInProgress.code()
        );
    }
    assert!(h.join_resp(j0).is_none());
    h.advance(4_000);
    let r = h.join_resp(j0).expect("completed at the rebalance timeout");
    assert_eq!(
        (r.error_code, r.generation_id, r.members.len()),
        (0, generation + 1, 1)
    );
    assert_eq!(h.c.group_members("g"), vec![ids[0].clone()]);
}

#[test]
fn member_without_sync_is_removed_after_rebalance_timeout() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new("g");
    let (b, jb) = h.join_new("g");
    h.advance(6_000);
    let generation = h.join_resp(ja).unwrap().generation_id;
    assert!(h.join_resp(jb).is_some());
    // Only a syncs (a leads); b never sends SyncGroup.
    let sa = h.sync("g", &a, generation, &[(&a, b"x"), (&b, b"y")]);
    assert_eq!(h.sync_resp(sa).unwrap().error_code, 0);
    // b heartbeats (so its session lives) but never syncs: the pending-sync deadline
    // (rebalance timeout, 60 s) removes it.
    for _ in 0..19 {
        h.advance(3_000);
        assert_eq!(h.heartbeat("g", &a, generation), 0);
        assert_eq!(h.heartbeat("g", &b, generation), 0);
    }
    h.advance(3_000);
    assert!(
        !h.c.group_members("g").contains(&b),
        "pending-sync member expired"
    );
    assert_eq!(
        h.heartbeat("g", &a, generation),
        E::RebalanceInProgress.code()
    );
}

#[test]
fn static_member_restart_keeps_assignment_without_rebalance() {
    let mut h = Harness::new();
    let j1 = h.join("g", "", Some("i1"));
    let j2 = h.join("g", "", Some("i2"));
    h.advance(6_000);
    let r1 = h.join_resp(j1).unwrap().clone();
    let r2 = h.join_resp(j2).unwrap().clone();
    let (m1, m2) = (
        r1.member_id.as_str().to_owned(),
        r2.member_id.as_str().to_owned(),
    );
    assert!(
        m1.starts_with("i1-"),
        "static ids use the instance id as prefix"
    );
    let leader = r1.leader.as_str().to_owned();
    assert_eq!(leader, m1);
    h.sync("g", &m2, 1, &[]);
    h.sync("g", &m1, 1, &[(&m1, b"A"), (&m2, b"B")]);
    assert_eq!(h.c.group_state("g"), Some(GroupState::Stable));

    // i2 restarts: unknown member id, same instance id and metadata.
    let j2b = h.join("g", "", Some("i2"));
    let r = h
        .join_resp(j2b)
        .expect("answered after the group record is durable")
        .clone();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1, "no new generation");
    let m2b = r.member_id.as_str().to_owned();
    assert_ne!(m2b, m2);
    assert_eq!(r.leader.as_str(), m1);
    assert_eq!(h.c.group_state("g"), Some(GroupState::Stable));
    // The old incarnation is fenced; the new one gets the old assignment.
    assert_eq!(
        h.heartbeat_static("g", &m2, Some("i2"), 1),
        E::FencedInstanceId.code()
    );
    assert_eq!(h.heartbeat("g", &m2, 1), E::UnknownMemberId.code());
    let s2 = h.sync("g", &m2b, 1, &[]);
    assert_eq!(&h.sync_resp(s2).unwrap().assignment[..], b"B");
    assert_eq!(h.heartbeat_static("g", &m2b, Some("i2"), 1), 0);

    // A static member that stops heartbeating is removed at its session timeout, and a
    // static member that leaves by instance id (admin) triggers a rebalance.
    let l = h.leave("g", &[("", Some("i2"))]);
    assert_eq!(h.code(l), 0);
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
}

/// TxnOffsetCommit's member check (Kafka's `validateTransactionalOffsetCommit`).
#[test]
fn txn_offset_commit_check_fences_stale_members() {
    fn check(h: &mut Harness, group: &str, member: &str, instance: Option<&str>, g: i32) -> i16 {
        let id = h.send(Input::CheckTxnOffsetCommit {
            group_id: group.to_owned(),
            member_id: member.to_owned(),
            group_instance_id: instance.map(str::to_owned),
            generation: g,
        });
        h.code(id)
    }
    let mut h = Harness::new();
    // Unknown group: a commit without a generation creates a simple group later; with one,
    // the member is a zombie of a group that no longer exists.
    assert_eq!(check(&mut h, "nogroup", "", None, -1), 0);
    assert_eq!(
        check(&mut h, "nogroup", "m", None, 3),
        E::IllegalGeneration.code()
    );
    let (ids, generation) = h.stable_group("g", 2);
    assert_eq!(check(&mut h, "g", &ids[0], None, generation), 0);
    assert_eq!(
        check(&mut h, "g", &ids[0], None, generation - 1),
        E::IllegalGeneration.code()
    );
    assert_eq!(
        check(&mut h, "g", "gone", None, generation),
        E::UnknownMemberId.code()
    );
    // v0-2 name no member: accepted even though the group has members (unlike OffsetCommit).
    assert_eq!(check(&mut h, "g", "", None, -1), 0);
    // Static members: a replaced incarnation is fenced, an unknown instance is unknown.
    let j = h.join("s", "", Some("i1"));
    h.advance(6_000);
    let m1 = h.join_resp(j).unwrap().member_id.as_str().to_owned();
    h.sync("s", &m1, 1, &[(&m1, b"A")]);
    assert_eq!(check(&mut h, "s", &m1, Some("i1"), 1), 0);
    let j = h.join("s", "", Some("i1"));
    let m1b = h.join_resp(j).unwrap().member_id.as_str().to_owned();
    assert_ne!(m1b, m1);
    assert_eq!(
        check(&mut h, "s", &m1, Some("i1"), 1),
        E::FencedInstanceId.code()
    );
    assert_eq!(
        check(&mut h, "s", &m1b, Some("i9"), 1),
        E::UnknownMemberId.code()
    );
    assert_eq!(check(&mut h, "s", &m1b, Some("i1"), 1), 0);
}

#[test]
fn static_leader_restart_v9_skips_assignment() {
    let mut h = Harness::new();
    let sub = encode_subscription_v0(&["t"]);
    let j1 = h.join_full(
        9,
        "g",
        "",
        Some("i1"),
        &[("range", sub.clone())],
        10_000,
        60_000,
    );
    h.advance(3_000);
    let m1 = h.join_resp(j1).unwrap().member_id.as_str().to_owned();
    h.sync("g", &m1, 1, &[(&m1, b"A")]);
    let j1b = h.join_full(9, "g", "", Some("i1"), &[("range", sub)], 10_000, 60_000);
    let r = h.join_resp(j1b).unwrap();
    assert!(r.skip_assignment, "v9 static leader skips the assignor");
    assert_eq!(r.leader.as_str(), r.member_id.as_str());
    assert_eq!(r.members.len(), 1);
}

#[test]
fn static_member_replace_fails_when_record_is_not_durable() {
    let mut h = Harness::new();
    let j1 = h.join("g", "", Some("i1"));
    h.advance(3_000);
    let m1 = h.join_resp(j1).unwrap().member_id.as_str().to_owned();
    h.sync("g", &m1, 1, &[(&m1, b"A")]);
    h.auto_persist = false;
    let j1b = h.join("g", "", Some("i1"));
    h.complete_all(Err(PersistError::NotCoordinator));
    let r = h.join_resp(j1b).unwrap();
    assert_eq!(r.error_code, E::NotCoordinator.code());
    // Reverted: the old member id is still the static member.
    assert_eq!(h.heartbeat_static("g", &m1, Some("i1"), 1), 0);
}

#[test]
fn cooperative_two_phase_rebalance() {
    // The broker side of cooperative-sticky is the classic protocol; what matters is that
    // members can rejoin right after a generation completes (revocation round).
    let mut h = Harness::new();
    let sub = encode_subscription_v0(&["t"]);
    let coop = vec![("cooperative-sticky", sub.clone()), ("range", sub.clone())];
    let mut joins = Vec::new();
    for _ in 0..2 {
        let first = h.join_full(7, "g", "", None, &coop, 10_000, 60_000);
        let id = h.join_resp(first).unwrap().member_id.as_str().to_owned();
        joins.push((
            id.clone(),
            h.join_full(7, "g", &id, None, &coop, 10_000, 60_000),
        ));
    }
    h.advance(6_000);
    let (a, b) = (joins[0].0.clone(), joins[1].0.clone());
    let r = h.join_resp(joins[0].1).unwrap();
    assert_eq!(
        r.protocol_name.as_ref().unwrap().as_str(),
        "cooperative-sticky"
    );
    h.sync("g", &b, 1, &[]);
    h.sync("g", &a, 1, &[(&a, b"t0,t1,t2"), (&b, b"t3,t4,t5")]);

    // c joins: generation 2, the leader revokes t2 and t5 (gives them to nobody yet).
    let first = h.join_full(7, "g", "", None, &coop, 10_000, 60_000);
    let c = h.join_resp(first).unwrap().member_id.as_str().to_owned();
    let jc = h.join_full(7, "g", &c, None, &coop, 10_000, 60_000);
    assert_eq!(h.heartbeat("g", &a, 1), E::RebalanceInProgress.code());
    let ja = h.join_full(7, "g", &a, None, &coop, 10_000, 60_000);
    let jb = h.join_full(7, "g", &b, None, &coop, 10_000, 60_000);
    for j in [ja, jb, jc] {
        assert_eq!(h.join_resp(j).unwrap().generation_id, 2);
    }
    let sc = h.sync("g", &c, 2, &[]);
    let sb2 = h.sync("g", &b, 2, &[]);
    h.sync("g", &a, 2, &[(&a, b"t0,t1"), (&b, b"t3,t4"), (&c, b"")]);
    assert_eq!(&h.sync_resp(sb2).unwrap().assignment[..], b"t3,t4");
    assert_eq!(h.sync_resp(sc).unwrap().assignment.len(), 0);

    // Members that revoked partitions rejoin immediately: generation 3 hands them out.
    let ja = h.join_full(7, "g", &a, None, &coop, 10_000, 60_000);
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
    let jb = h.join_full(7, "g", &b, None, &coop, 10_000, 60_000);
    let jc = h.join_full(7, "g", &c, None, &coop, 10_000, 60_000);
    for j in [ja, jb, jc] {
        assert_eq!(h.join_resp(j).unwrap().generation_id, 3);
    }
    let sc = h.sync("g", &c, 3, &[]);
    h.sync("g", &b, 3, &[]);
    h.sync(
        "g",
        &a,
        3,
        &[(&a, b"t0,t1"), (&b, b"t3,t4"), (&c, b"t2,t5")],
    );
    assert_eq!(&h.sync_resp(sc).unwrap().assignment[..], b"t2,t5");
    assert_eq!(h.c.group_state("g"), Some(GroupState::Stable));
    // A stale generation-2 sync is fenced.
    let stale = h.sync("g", &c, 2, &[]);
    assert_eq!(h.code(stale), E::IllegalGeneration.code());
}

#[test]
fn fencing_errors() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group("g", 2);
    assert_eq!(
        h.heartbeat("g", &ids[0], generation + 1),
        E::IllegalGeneration.code()
    );
    assert_eq!(
        h.heartbeat("g", "nobody", generation),
        E::UnknownMemberId.code()
    );
    assert_eq!(
        h.heartbeat("nogroup", &ids[0], generation),
        E::UnknownMemberId.code()
    );
    assert_eq!(
        h.heartbeat("", &ids[0], generation),
        E::InvalidGroupId.code()
    );
    // Commit with a stale generation.
    assert_eq!(
        h.commit("g", &ids[0], generation - 1, &[("t", 0, 5)]),
        vec![E::IllegalGeneration.code()]
    );
    // Rejoin of the leader starts a rebalance; syncs are refused meanwhile.
    let leader = h.c.group_leader("g").unwrap();
    let follower = ids.iter().find(|m| **m != leader).unwrap().clone();
    let jl = h.join("g", &leader, None);
    let s = h.sync("g", &follower, generation, &[]);
    assert_eq!(h.code(s), E::RebalanceInProgress.code());
    // Commits are still accepted in PreparingRebalance ...
    assert_eq!(
        h.commit("g", &follower, generation, &[("t", 0, 5)]),
        vec![0]
    );
    let jf = h.join("g", &follower, None);
    assert_eq!(h.join_resp(jl).unwrap().generation_id, generation + 1);
    assert!(h.join_resp(jf).is_some());
    // ... but refused in CompletingRebalance.
    assert_eq!(
        h.commit("g", &follower, generation + 1, &[("t", 0, 6)]),
        vec![E::RebalanceInProgress.code()]
    );
    // Unknown member joining with an id.
    let j = h.join("g", "ghost", None);
    assert_eq!(h.code(j), E::UnknownMemberId.code());
    // Static instance id mapped to another member: fenced.
    let j = h.join("g", &follower, Some("other"));
    assert_eq!(h.code(j), E::UnknownMemberId.code());
}

#[test]
fn join_validation_errors() {
    let mut h = Harness::with_config(GroupConfig {
        group_size_max: 2,
        ..GroupConfig::default()
    });
    let sub = encode_subscription_v0(&["t"]);
    let j = h.join_full(5, "g", "", None, &[("range", sub.clone())], 5_999, 60_000);
    assert_eq!(h.code(j), E::InvalidSessionTimeout.code());
    let j = h.join_full(
        5,
        "g",
        "",
        None,
        &[("range", sub.clone())],
        1_800_001,
        60_000,
    );
    assert_eq!(h.code(j), E::InvalidSessionTimeout.code());
    let j = h.join_full(5, "", "", None, &[("range", sub.clone())], 10_000, 60_000);
    assert_eq!(h.code(j), E::InvalidGroupId.code());
    let (ids, _) = h.stable_group("g", 2);
    // A full group answers GROUP_MAX_SIZE_REACHED before looking at protocols.
    let j = h.join_full(
        3,
        "g",
        "",
        None,
        &[("roundrobin", sub.clone())],
        10_000,
        60_000,
    );
    assert_eq!(h.code(j), E::GroupMaxSizeReached.code());
    // Protocol with nothing in common.
    h.stable_group("h", 1);
    let j = h.join_full(
        3,
        "h",
        "",
        None,
        &[("roundrobin", sub.clone())],
        10_000,
        60_000,
    );
    assert_eq!(h.code(j), E::InconsistentGroupProtocol.code());
    // A third member exceeds group.max.size = 2.
    let j = h.join_full(3, "g", "", None, &[("range", sub.clone())], 10_000, 60_000);
    assert_eq!(h.code(j), E::GroupMaxSizeReached.code());
    assert_eq!(h.c.group_members("g").len(), 2);
    // v3 joins get an id without the KIP-394 round trip, but this one is over the limit.
    let _ = ids;
    // An empty protocol list is refused even for an empty group.
    let j = h.join_full(5, "g2", "", None, &[], 10_000, 60_000);
    assert_eq!(h.code(j), E::InconsistentGroupProtocol.code());
    assert_eq!(
        h.c.group_state("g2"),
        None,
        "refused join leaves no group behind"
    );
}

#[test]
fn pending_member_that_never_rejoins_expires() {
    let mut h = Harness::new();
    let first = h.join("g", "", None);
    let id = h.join_resp(first).unwrap().member_id.as_str().to_owned();
    h.advance(11_000); // session timeout of the pending member
    let j = h.join("g", &id, None);
    assert_eq!(h.code(j), E::UnknownMemberId.code());
}

#[test]
fn standalone_commits_and_fetch() {
    let mut h = Harness::new();
    // No group: generation -1 commits create a simple group.
    let res = h.commit_v(
        8,
        "solo",
        "",
        -1,
        &[("t", 0, 10), ("t", 1, 20), ("gone", 0, 1)],
        &[("gone", 0)],
    );
    assert_eq!(
        res,
        vec![
            ("t".into(), 0, 0),
            ("t".into(), 1, 0),
            ("gone".into(), 0, E::UnknownTopicOrPartition.code())
        ]
    );
    assert_eq!(h.c.group_state("solo"), Some(GroupState::Empty));
    let f = h.fetch("solo", Some(&[("t", &[0, 1, 2])]));
    assert_eq!(
        f,
        vec![
            ("t".into(), 0, 10, 0),
            ("t".into(), 1, 20, 0),
            ("t".into(), 2, -1, 0)
        ]
    );
    let all = h.fetch("solo", None);
    assert_eq!(all.len(), 2);
    assert_eq!(
        h.fetch("nope", Some(&[("t", &[0])])),
        vec![("t".into(), 0, -1, 0)]
    );
    assert!(h.fetch("nope", None).is_empty());
    // Unknown group with a generation: ILLEGAL_GENERATION before v9, GROUP_ID_NOT_FOUND after.
    assert_eq!(
        h.commit_v(8, "nogroup", "m", 3, &[("t", 0, 1)], &[])[0].2,
        E::IllegalGeneration.code()
    );
    assert_eq!(
        h.commit_v(9, "nogroup", "m", 3, &[("t", 0, 1)], &[])[0].2,
        E::GroupIdNotFound.code()
    );
    // Metadata over offset.metadata.max.bytes.
    let mut r = OffsetCommitRequest::default();
    r.group_id = gid("solo");
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s("t"));
    let mut p = OffsetCommitRequestPartition::default();
    p.committed_offset = 99;
    p.committed_metadata = Some(s(&"x".repeat(4097)));
    t.partitions.push(p);
    r.topics.push(t);
    let id = h.send(Input::OffsetCommit {
        api_version: 8,
        request: r,
        unknown_partitions: vec![],
    });
    assert_eq!(h.commit_result(id)[0].2, E::OffsetMetadataTooLarge.code());
    assert_eq!(h.fetch("solo", Some(&[("t", &[0])]))[0].2, 10);

    // The empty group id is a legal (legacy) group for offsets, as in Kafka.
    assert_eq!(h.commit("", "", -1, &[("t", 0, 3)]), vec![0]);
    assert_eq!(h.fetch("", Some(&[("t", &[0])]))[0].2, 3);
    // A group with members refuses anonymous commits.
    let (ids, generation) = h.stable_group("g", 1);
    assert_eq!(
        h.commit("g", "", -1, &[("t", 0, 1)]),
        vec![E::UnknownMemberId.code()]
    );
    assert_eq!(h.commit("g", &ids[0], generation, &[("t", 0, 7)]), vec![0]);
    assert_eq!(h.c.committed_offsets("g")[0].2.offset, 7);
    assert_eq!(h.c.committed_offsets("g")[0].2.leader_epoch, 3);
}

#[test]
fn offset_commit_waits_for_durability_and_maps_failures() {
    let mut h = Harness::new();
    h.auto_persist = false;
    let mut r = OffsetCommitRequest::default();
    r.group_id = gid("solo");
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s("t"));
    let mut p = OffsetCommitRequestPartition::default();
    p.committed_offset = 5;
    t.partitions.push(p);
    r.topics.push(t);
    let id = h.send(Input::OffsetCommit {
        api_version: 8,
        request: r.clone(),
        unknown_partitions: vec![],
    });
    assert!(!h.answers.contains_key(&id));
    // Not visible yet; require_stable sees the pending commit.
    let mut fr = OffsetFetchRequest::default();
    fr.group_id = gid("solo");
    let mut ft = OffsetFetchRequestTopic::default();
    ft.name = TopicName(s("t"));
    ft.partition_indexes = vec![0];
    fr.topics = Some(vec![ft]);
    fr.require_stable = true;
    let f = h.send(Input::OffsetFetch {
        api_version: 7,
        request: fr,
    });
    match &h.answers[&f] {
        Response::OffsetFetch(r) => {
            assert_eq!(
                r.topics[0].partitions[0].error_code,
                E::UnstableOffsetCommit.code()
            );
        }
        other => panic!("{other:?}"),
    }
    h.complete_all(Err(PersistError::NotCoordinator));
    assert_eq!(h.commit_result(id)[0].2, E::NotCoordinator.code());
    assert!(h.c.committed_offsets("solo").is_empty());
    let id2 = h.send(Input::OffsetCommit {
        api_version: 8,
        request: r,
        unknown_partitions: vec![],
    });
    h.complete_all(Err(PersistError::RecordTooLarge));
    assert_eq!(h.commit_result(id2)[0].2, E::InvalidCommitOffsetSize.code());
    // Out-of-order completion is a driver bug, reported as an error.
    assert!(h.c.persist_complete(h.now, 999, Ok(())).is_err());
}

#[test]
fn leader_sync_failure_resets_and_rebalances() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new("g");
    let (b, _jb) = h.join_new("g");
    h.advance(6_000);
    let generation = h.join_resp(ja).unwrap().generation_id;
    let sb_ = h.sync("g", &b, generation, &[]);
    h.auto_persist = false;
    let sa = h.sync("g", &a, generation, &[(&a, b"1"), (&b, b"2")]);
    h.complete_all(Err(PersistError::CoordinatorNotAvailable));
    assert_eq!(h.code(sa), E::CoordinatorNotAvailable.code());
    assert_eq!(h.code(sb_), E::CoordinatorNotAvailable.code());
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
}

#[test]
fn late_sync_completion_after_new_member_is_ignored() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new("g");
    h.advance(3_000);
    assert_eq!(h.join_resp(ja).unwrap().generation_id, 1);
    h.auto_persist = false;
    let sa = h.sync("g", &a, 1, &[(&a, b"1")]);
    // A new member arrives before the group record is durable.
    let first = h.join("g", "", None);
    let bid = h.join_resp(first).unwrap().member_id.as_str().to_owned();
    let jb = h.join("g", &bid, None);
    // The leader's sync was reset by the rebalance.
    assert_eq!(h.code(sa), E::RebalanceInProgress.code());
    h.complete_all(Ok(()));
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
    let ja2 = h.join("g", &a, None);
    assert_eq!(h.join_resp(ja2).unwrap().generation_id, 2);
    assert_eq!(h.join_resp(jb).unwrap().generation_id, 2);
}

#[test]
fn restart_replay_rebuilds_offsets_and_groups() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group("g", 3);
    assert_eq!(
        h.commit("g", &ids[0], generation, &[("t", 0, 100), ("t", 1, 200)]),
        vec![0, 0]
    );
    h.commit("solo", "", -1, &[("u", 3, 7)]);
    h.commit("solo", "", -1, &[("u", 3, 8)]);
    let before_desc = h.describe("g");
    let mut fresh = GroupCoordinator::new(GroupConfig::default());
    for r in &h.log {
        // Through the byte format, as a real restart would.
        let (k, v) = r.encode().unwrap();
        fresh.load_raw(&k, v.as_deref()).unwrap();
    }
    let actions = fresh.finish_load(h.now);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::ScheduleTick { .. })));
    assert_eq!(fresh.committed_offsets("g"), h.c.committed_offsets("g"));
    assert_eq!(
        fresh.committed_offsets("solo"),
        h.c.committed_offsets("solo")
    );
    assert_eq!(fresh.committed_offsets("solo")[0].2.offset, 8);
    assert_eq!(fresh.group_state("g"), Some(GroupState::Stable));
    assert_eq!(fresh.group_generation("g"), Some(generation));
    assert_eq!(fresh.group_leader("g"), h.c.group_leader("g"));
    let after_desc = fresh.describe_group("g", 5);
    assert_eq!(after_desc.members.len(), before_desc.members.len());
    for (x, y) in after_desc.members.iter().zip(before_desc.members.iter()) {
        assert_eq!(x.member_id, y.member_id);
        assert_eq!(x.member_assignment, y.member_assignment);
        assert_eq!(x.member_metadata, y.member_metadata);
    }
    // Members keep their generation across the restart: heartbeats and syncs work.
    let mut h2 = Harness::new();
    h2.c = fresh;
    h2.now = h.now;
    assert_eq!(h2.heartbeat("g", &ids[1], generation), 0);
    let s = h2.sync("g", &ids[1], generation, &[]);
    assert_eq!(&h2.sync_resp(s).unwrap().assignment[..], ids[1].as_bytes());
    // Members that do not come back expire and the group rebalances.
    for _ in 0..4 {
        h2.advance(3_000);
        h2.heartbeat("g", &ids[1], generation);
    }
    assert_eq!(h2.c.group_state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(h2.c.group_members("g"), vec![ids[1].clone()]);
    assert_eq!(
        h2.heartbeat("g", &ids[1], generation),
        E::RebalanceInProgress.code()
    );
}

#[test]
fn offsets_of_empty_groups_expire() {
    let cfg = GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 10_000,
        ..GroupConfig::default()
    };
    let mut h = Harness::with_config(cfg);
    h.commit("solo", "", -1, &[("t", 0, 1)]);
    let (ids, generation) = h.stable_group("g", 1);
    h.commit("g", &ids[0], generation, &[("orders", 0, 5), ("t", 0, 5)]);
    // The member keeps heartbeating for 2 minutes: offsets of its subscribed topic stay,
    // those of a topic it no longer subscribes to expire (KIP-496).
    for _ in 0..40 {
        h.advance(3_000);
        assert_eq!(h.heartbeat("g", &ids[0], generation), 0);
    }
    let left: Vec<String> =
        h.c.committed_offsets("g")
            .into_iter()
            .map(|x| x.0)
            .collect();
    assert_eq!(left, vec!["orders".to_string()]);
    // The standalone group's offsets expired one retention after the commit.
    assert_eq!(h.c.group_state("solo"), None);
    assert!(h.log.iter().any(|r| matches!(r,
        OffsetsRecord::OffsetCommit { key, value: None } if key.group == "solo")));
    assert!(h.log.iter().any(|r| matches!(r,
        OffsetsRecord::GroupMetadata { group, value: None } if group == "solo")));
    // Once the group is empty, retention counts from then.
    let l = h.leave("g", &[(&ids[0], None)]);
    assert_eq!(h.code(l), 0);
    // The last member leaving completes the join phase at once: Empty.
    assert_eq!(h.c.group_state("g"), Some(GroupState::Empty));
    h.advance(50_000);
    assert_eq!(h.c.committed_offsets("g").len(), 1);
    h.advance(25_000);
    assert!(h.c.committed_offsets("g").is_empty());
    assert_eq!(h.c.group_state("g"), None);
}

#[test]
fn deleted_topics_offsets_become_tombstones() {
    let mut h = Harness::new();
    h.commit(
        "a",
        "",
        -1,
        &[("gone", 0, 1), ("gone", 1, 2), ("kept", 0, 3)],
    );
    h.commit("b", "", -1, &[("gone", 0, 4)]);
    let id = h.send(Input::TopicsDeleted {
        topics: vec!["gone".into()],
    });
    assert!(matches!(
        h.answers[&id],
        Response::TopicsDeleted { offsets_removed: 3 }
    ));
    let left: Vec<(String, i32)> =
        h.c.committed_offsets("a")
            .into_iter()
            .map(|x| (x.0, x.1))
            .collect();
    assert_eq!(left, vec![("kept".to_string(), 0)]);
    assert!(h.c.committed_offsets("b").is_empty());
    let tombstones = h
        .log
        .iter()
        .filter(|r| matches!(r, OffsetsRecord::OffsetCommit { key, value: None } if key.topic == "gone"))
        .count();
    assert_eq!(tombstones, 3);
}

#[test]
fn delete_groups_list_and_describe() {
    let mut h = Harness::new();
    let (_ids, _) = h.stable_group("busy", 1);
    h.commit("idle", "", -1, &[("t", 0, 1)]);
    let mut r = ListGroupsRequest::default();
    r.states_filter = vec![s("stable")];
    let id = h.send(Input::ListGroups {
        api_version: 4,
        request: r,
    });
    match &h.answers[&id] {
        Response::ListGroups(r) => {
            assert_eq!(r.groups.len(), 1);
            assert_eq!(r.groups[0].group_id.0.as_str(), "busy");
            assert_eq!(r.groups[0].group_state.as_str(), "Stable");
            assert_eq!(r.groups[0].protocol_type.as_str(), "consumer");
        }
        other => panic!("{other:?}"),
    }
    let id = h.send(Input::ListGroups {
        api_version: 4,
        request: ListGroupsRequest::default(),
    });
    match &h.answers[&id] {
        Response::ListGroups(r) => assert_eq!(r.groups.len(), 2),
        other => panic!("{other:?}"),
    }
    let d = h.describe("idle");
    assert_eq!(
        (d.group_state.as_str(), d.protocol_type.as_str()),
        ("Empty", "")
    );
    let d = h.describe("missing");
    assert_eq!((d.error_code, d.group_state.as_str()), (0, "Dead"));

    let mut r = DeleteGroupsRequest::default();
    r.groups_names = vec![gid("busy"), gid("idle"), gid("missing")];
    let id = h.send(Input::DeleteGroups {
        api_version: 2,
        request: r,
    });
    match &h.answers[&id] {
        Response::DeleteGroups(r) => {
            let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
            assert_eq!(
                codes,
                vec![E::NonEmptyGroup.code(), 0, E::GroupIdNotFound.code()]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.c.group_state("idle"), None);
    assert!(h.log.iter().any(|r| matches!(r,
        OffsetsRecord::OffsetCommit { key, value: None } if key.group == "idle")));
}

#[test]
fn offset_delete_rules() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group("g", 1);
    h.commit("g", &ids[0], generation, &[("orders", 0, 5), ("old", 0, 3)]);
    let mut r = OffsetDeleteRequest::default();
    r.group_id = gid("g");
    for t in ["orders", "old"] {
        let mut rt = OffsetDeleteRequestTopic::default();
        rt.name = TopicName(s(t));
        let mut p = OffsetDeleteRequestPartition::default();
        p.partition_index = 0;
        rt.partitions.push(p);
        r.topics.push(rt);
    }
    let id = h.send(Input::OffsetDelete {
        api_version: 0,
        request: r,
        unknown_partitions: vec![],
    });
    match &h.answers[&id] {
        Response::OffsetDelete(r) => {
            assert_eq!(r.error_code, 0);
            assert_eq!(
                r.topics[0].partitions[0].error_code,
                E::GroupSubscribedToTopic.code()
            );
            assert_eq!(r.topics[1].partitions[0].error_code, 0);
        }
        other => panic!("{other:?}"),
    }
    let left: Vec<String> =
        h.c.committed_offsets("g")
            .into_iter()
            .map(|x| x.0)
            .collect();
    assert_eq!(left, vec!["orders".to_string()]);
    let mut r = OffsetDeleteRequest::default();
    r.group_id = gid("none");
    let id = h.send(Input::OffsetDelete {
        api_version: 0,
        request: r,
        unknown_partitions: vec![],
    });
    assert_eq!(h.code(id), E::GroupIdNotFound.code());
}

#[test]
fn batch_leave_and_old_versions() {
    let mut h = Harness::new();
    let (ids, _) = h.stable_group("g", 3);
    let l = h.leave("g", &[(&ids[0], None), ("ghost", None), (&ids[1], None)]);
    match &h.answers[&l] {
        Response::Leave(r) => {
            let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
            assert_eq!(codes, vec![0, E::UnknownMemberId.code(), 0]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.c.group_members("g"), vec![ids[2].clone()]);
    // v1: single member, error at top level.
    let mut r = LeaveGroupRequest::default();
    r.group_id = gid("g");
    r.member_id = s("ghost");
    let id = h.send(Input::Leave {
        api_version: 1,
        request: r,
    });
    assert_eq!(h.code(id), E::UnknownMemberId.code());
    // JoinGroup v0-v3 assign the id directly (no KIP-394 round trip); v0 has no rebalance
    // timeout and protocol_name is never null before v7.
    let sub = encode_subscription_v0(&["t"]);
    let j = h.join_full(0, "old", "", None, &[("range", sub)], 10_000, -1);
    h.advance(3_000);
    let r = h.join_resp(j).unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.protocol_name.as_ref().unwrap().as_str(), "range");
}

#[test]
fn retried_join_answers_the_superseded_request() {
    let mut h = Harness::new();
    let (id, j1) = h.join_new("g");
    let j2 = h.join("g", &id, None);
    assert_eq!(h.code(j1), E::RebalanceInProgress.code());
    h.advance(3_000);
    assert_eq!(h.join_resp(j2).unwrap().error_code, 0);
}

#[test]
fn shutdown_answers_parked_requests() {
    let mut h = Harness::new();
    let (_, j) = h.join_new("g");
    h.auto_persist = false;
    let c = h.commit_v(8, "solo", "", -1, &[], &[]);
    assert!(c.is_empty());
    let mut r = OffsetCommitRequest::default();
    r.group_id = gid("solo");
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s("t"));
    t.partitions.push(OffsetCommitRequestPartition::default());
    r.topics.push(t);
    let cid = h.send(Input::OffsetCommit {
        api_version: 8,
        request: r,
        unknown_partitions: vec![],
    });
    let actions = h.c.shutdown();
    h.inflight.clear();
    h.absorb(actions);
    assert_eq!(h.code(j), E::NotCoordinator.code());
    assert_eq!(h.commit_result(cid)[0].2, E::NotCoordinator.code());
}

#[test]
fn oversized_assignment_fails_like_kafka() {
    let mut h = Harness::with_config(GroupConfig {
        group_record_bytes_max: 1_000,
        ..GroupConfig::default()
    });
    let (a, ja) = h.join_new("g");
    h.advance(3_000);
    assert!(h.join_resp(ja).is_some());
    let big = vec![7u8; 2_000];
    let sa = h.sync("g", &a, 1, &[(&a, &big)]);
    assert_eq!(h.code(sa), E::UnknownServerError.code());
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
}

#[test]
fn protocol_selection_by_votes() {
    let mut h = Harness::new();
    let sub = encode_subscription_v0(&["t"]);
    let a = [("roundrobin", sub.clone()), ("range", sub.clone())];
    let b = [("range", sub.clone()), ("roundrobin", sub.clone())];
    let j1 = h.join_full(3, "g", "", None, &a, 10_000, 60_000);
    let j2 = h.join_full(3, "g", "", None, &a, 10_000, 60_000);
    let j3 = h.join_full(3, "g", "", None, &b, 10_000, 60_000);
    h.advance(6_000);
    for j in [j1, j2, j3] {
        assert_eq!(
            h.join_resp(j)
                .unwrap()
                .protocol_name
                .as_ref()
                .unwrap()
                .as_str(),
            "roundrobin"
        );
    }
    let _ = protocols(&["t"]);
}

#[test]
fn every_api_version_encodes() {
    let mut h = Harness::new();
    let sub = encode_subscription_v0(&["t"]);
    for v in 0..=9i16 {
        let group = format!("g{v}");
        let instance = format!("i{v}");
        let first = h.join_full(
            v,
            &group,
            "",
            (v >= 5).then_some(instance.as_str()),
            &[("range", sub.clone())],
            10_000,
            20_000,
        );
        let j = if v == 4 {
            let id = h.join_resp(first).unwrap().member_id.as_str().to_owned();
            h.join_full(
                v,
                &group,
                &id,
                None,
                &[("range", sub.clone())],
                10_000,
                20_000,
            )
        } else {
            first
        };
        h.advance(3_000);
        let r = h.join_resp(j).unwrap().clone();
        assert_eq!(r.error_code, 0, "join v{v}");
        let member = r.member_id.as_str().to_owned();
        let mut sr = SyncGroupRequest::default();
        sr.group_id = gid(&group);
        sr.member_id = s(&member);
        sr.generation_id = r.generation_id;
        let mut a = SyncGroupRequestAssignment::default();
        a.member_id = s(&member);
        a.assignment = Bytes::from_static(b"x");
        sr.assignments = vec![a];
        let id = h.send(Input::Sync {
            api_version: v.min(5),
            request: sr,
        });
        assert_eq!(h.code(id), 0);
        let mut hb = HeartbeatRequest::default();
        hb.group_id = gid(&group);
        hb.member_id = s(&member);
        hb.generation_id = r.generation_id;
        let id = h.send(Input::Heartbeat {
            api_version: v.min(4),
            request: hb,
        });
        assert_eq!(h.code(id), 0);
        if (2..=9).contains(&v) {
            let res = h.commit_v(
                v,
                &group,
                &member,
                r.generation_id,
                &[("t", 0, 1)],
                &[("u", 0)],
            );
            assert_eq!(res[0].2, 0);
        }
        if v >= 1 {
            let mut f = OffsetFetchRequest::default();
            if v >= 8 {
                let mut g = OffsetFetchRequestGroup::default();
                g.group_id = gid(&group);
                f.groups = vec![g];
            } else {
                f.group_id = gid(&group);
                if v < 2 {
                    let mut t = OffsetFetchRequestTopic::default();
                    t.name = TopicName(s("t"));
                    t.partition_indexes = vec![0, 1];
                    f.topics = Some(vec![t]);
                }
            }
            h.send(Input::OffsetFetch {
                api_version: v,
                request: f,
            });
        }
        if v <= 6 {
            let mut d = DescribeGroupsRequest::default();
            d.groups = vec![gid(&group), gid("missing")];
            h.send(Input::DescribeGroups {
                api_version: v,
                request: d,
            });
        }
        if v <= 5 {
            h.send(Input::ListGroups {
                api_version: v,
                request: ListGroupsRequest::default(),
            });
            let mut l = LeaveGroupRequest::default();
            l.group_id = gid(&group);
            if v >= 3 {
                let mut m = MemberIdentity::default();
                m.member_id = s(&member);
                l.members = vec![m, MemberIdentity::default()];
            } else {
                l.member_id = s(&member);
            }
            let id = h.send(Input::Leave {
                api_version: v,
                request: l,
            });
            assert_eq!(h.code(id), 0, "leave v{v}");
        }
        if v <= 2 {
            let mut d = DeleteGroupsRequest::default();
            d.groups_names = vec![gid(&group), gid("missing")];
            h.send(Input::DeleteGroups {
                api_version: v,
                request: d,
            });
        }
    }
}

#[test]
fn append_errors_map_like_kafka() {
    use PersistError as P;
    assert_eq!(
        P::from_append_error(E::KafkaStorageError.code()),
        P::NotCoordinator
    );
    assert_eq!(
        P::from_append_error(E::NotEnoughReplicas.code()),
        P::CoordinatorNotAvailable
    );
    assert_eq!(
        P::from_append_error(E::RecordListTooLarge.code()),
        P::RecordTooLarge
    );
    assert_eq!(P::from_append_error(E::CorruptMessage.code()), P::Other);
}

#[test]
fn large_group_rebalances_and_assigns_everyone() {
    let mut h = Harness::new();
    let n = 300;
    let (ids, generation) = h.stable_group("big", n);
    assert_eq!(ids.len(), n);
    assert_eq!(generation, 1);
    // Every member got its own assignment (stable_group's leader assigns member id bytes).
    let d = h.describe("big");
    assert_eq!(d.members.len(), n);
    for m in &d.members {
        assert_eq!(
            m.member_assignment.as_ref(),
            m.member_id.as_str().as_bytes()
        );
    }
    // Half leave at once (batch); the rest rejoin into generation 2.
    let leaving: Vec<(&str, Option<&str>)> =
        ids[..n / 2].iter().map(|m| (m.as_str(), None)).collect();
    let l = h.leave("big", &leaving);
    assert_eq!(h.code(l), 0);
    let joins: Vec<u64> = ids[n / 2..]
        .iter()
        .map(|m| h.join("big", m, None))
        .collect();
    for j in joins {
        assert_eq!(h.join_resp(j).unwrap().generation_id, 2);
    }
    assert_eq!(h.c.group_members("big").len(), n - n / 2);
}
