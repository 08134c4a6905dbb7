//! A classic consumer-group member for `ringtail consume TOPIC --group G`: JoinGroup and
//! SyncGroup (protocol type `consumer`, the `range` assignor, computed here when this member
//! is the leader), Heartbeat between fetches, OffsetCommit with the member's generation, and
//! LeaveGroup at exit. One topic per member (the one being consumed); other members of the
//! group may subscribe to anything, the leader assigns every subscribed topic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    RequestKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;

use super::group::commit_offsets_as;
use super::offsets::Tp;
use super::wire::{str_bytes, topic_name, Client, Connection, KafkaError};

/// The group drops a member that has not heartbeated for this long.
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// How long a rebalance waits for members to rejoin (and so how long JoinGroup may block).
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
/// Heartbeat period: a tenth of the session, as the Java client's default (3 s of 45 s).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Joins retried on retriable errors before giving up.
const JOIN_ATTEMPTS_MAX: u32 = 20;
const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";

pub struct Member {
    conn: Connection,
    group: String,
    topic: String,
    member_id: String,
    generation: i32,
    last_heartbeat: Instant,
}

/// The range assignor: per topic, members (sorted by id) that subscribe to it get consecutive
/// partition ranges, the first `partitions % members` one partition more.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<Tp>> {
    let mut out: BTreeMap<String, Vec<Tp>> = subscriptions
        .keys()
        .map(|m| (m.clone(), Vec::new()))
        .collect();
    let topics: BTreeSet<&String> = subscriptions.values().flatten().collect();
    for topic in topics {
        let count = partitions.get(topic).copied().unwrap_or(0).max(0);
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let n = i32::try_from(members.len()).unwrap_or(i32::MAX);
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            let take = per + i32::from(i < extra);
            if let Some(list) = out.get_mut(*m) {
                list.extend((next..next + take).map(|p| (topic.clone(), p)));
            }
            next += take;
        }
    }
    out
}

fn encode_versioned<T: Encodable>(value: &T, version: i16) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    value.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

fn decode_subscription(bytes: &Bytes) -> Vec<String> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut buf, version)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

fn encode_assignment(tps: &[Tp]) -> anyhow::Result<Bytes> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut tp = TopicPartition::default();
            tp.topic = topic_name(t);
            tp.partitions = ps;
            tp
        })
        .collect();
    encode_versioned(&a, 0)
}

impl Member {
    /// Joins `group` for `topic`; returns the member and its assigned partitions of `topic`.
    pub fn join(
        client: &mut Client,
        group: &str,
        topic: &str,
    ) -> anyhow::Result<(Member, Vec<i32>)> {
        let conn = client.coordinator(group)?;
        let mut member = Member {
            conn,
            group: group.to_string(),
            topic: topic.to_string(),
            member_id: String::new(),
            generation: -1,
            last_heartbeat: Instant::now(),
        };
        let assigned = member.rejoin(client)?;
        Ok((member, assigned))
    }

    /// JoinGroup + SyncGroup until both succeed in one generation.
    pub fn rejoin(&mut self, client: &mut Client) -> anyhow::Result<Vec<i32>> {
        let mut subscription = ConsumerProtocolSubscription::default();
        subscription.topics = vec![str_bytes(&self.topic)];
        let metadata = encode_versioned(&subscription, 0)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut protocol = JoinGroupRequestProtocol::default();
            protocol.name = str_bytes(ASSIGNOR);
            protocol.metadata = metadata.clone();
            let mut req = JoinGroupRequest::default();
            req.group_id = GroupId(str_bytes(&self.group));
            req.session_timeout_ms = SESSION_TIMEOUT_MS;
            req.rebalance_timeout_ms = REBALANCE_TIMEOUT_MS;
            req.member_id = str_bytes(&self.member_id);
            req.protocol_type = str_bytes(PROTOCOL_TYPE);
            req.protocols = vec![protocol];
            let joined: JoinGroupResponse =
                self.conn
                    .call(ApiKey::JoinGroup, 2..=7, RequestKind::JoinGroup(req))?;
            let code = joined.error_code;
            if code == ResponseError::MemberIdRequired.code() {
                self.member_id = joined.member_id.to_string();
                continue;
            }
            if code == ResponseError::UnknownMemberId.code() {
                self.member_id.clear();
            }
            if code != 0 {
                let retriable = ResponseError::try_from_code(code)
                    .is_some_and(|e| e.is_retriable())
                    || code == ResponseError::UnknownMemberId.code()
                    || code == ResponseError::RebalanceInProgress.code();
                if retriable && attempts < JOIN_ATTEMPTS_MAX {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                KafkaError::check(code, None, &format!("joining group '{}'", self.group))?;
            }
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;

            let mut assignments = Vec::new();
            if joined.leader == joined.member_id {
                let subscriptions: BTreeMap<String, Vec<String>> = joined
                    .members
                    .iter()
                    .map(|m| (m.member_id.to_string(), decode_subscription(&m.metadata)))
                    .collect();
                let topics: Vec<String> = subscriptions
                    .values()
                    .flatten()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let counts: BTreeMap<String, i32> = client
                    .metadata(Some(&topics))?
                    .into_iter()
                    .filter(|t| t.error_code == 0)
                    .map(|t| {
                        let n = i32::try_from(t.partitions.len()).unwrap_or(0);
                        (t.name, n)
                    })
                    .collect();
                for (m, tps) in range_assign(&subscriptions, &counts) {
                    let mut a = SyncGroupRequestAssignment::default();
                    a.member_id = str_bytes(&m);
                    a.assignment = encode_assignment(&tps)?;
                    assignments.push(a);
                }
            }
            let version = self.conn.version(ApiKey::SyncGroup, 1..=5)?;
            let mut req = SyncGroupRequest::default();
            req.group_id = GroupId(str_bytes(&self.group));
            req.generation_id = self.generation;
            req.member_id = str_bytes(&self.member_id);
            if version >= 5 {
                req.protocol_type = Some(str_bytes(PROTOCOL_TYPE));
                req.protocol_name = Some(str_bytes(ASSIGNOR));
            }
            req.assignments = assignments;
            let synced: SyncGroupResponse =
                self.conn
                    .call_at(ApiKey::SyncGroup, version, RequestKind::SyncGroup(req))?;
            if synced.error_code == ResponseError::RebalanceInProgress.code()
                && attempts < JOIN_ATTEMPTS_MAX
            {
                continue;
            }
            KafkaError::check(
                synced.error_code,
                None,
                &format!("syncing group '{}'", self.group),
            )?;
            self.last_heartbeat = Instant::now();
            let mut assigned: Vec<i32> = super::group::decode_assignment(&synced.assignment)
                .into_iter()
                .filter(|(t, _)| *t == self.topic)
                .map(|(_, p)| p)
                .collect();
            assigned.sort_unstable();
            return Ok(assigned);
        }
    }

    /// Heartbeats when one is due; `true` when the group is rebalancing and this member must
    /// rejoin.
    pub fn heartbeat(&mut self) -> anyhow::Result<bool> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(false);
        }
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(str_bytes(&self.group));
        req.generation_id = self.generation;
        req.member_id = str_bytes(&self.member_id);
        let resp: HeartbeatResponse =
            self.conn
                .call(ApiKey::Heartbeat, 0..=4, RequestKind::Heartbeat(req))?;
        self.last_heartbeat = Instant::now();
        let code = resp.error_code;
        if code == ResponseError::RebalanceInProgress.code()
            || code == ResponseError::IllegalGeneration.code()
        {
            return Ok(true);
        }
        if code == ResponseError::UnknownMemberId.code() {
            self.member_id.clear();
            return Ok(true);
        }
        KafkaError::check(code, None, &format!("heartbeat in group '{}'", self.group))?;
        Ok(false)
    }

    /// Commits `offsets` in this member's generation.
    pub fn commit(&mut self, offsets: &BTreeMap<Tp, i64>) -> anyhow::Result<()> {
        commit_offsets_as(
            &mut self.conn,
            &self.group,
            self.generation,
            &self.member_id,
            offsets,
        )
    }

    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Leaves the group so the others rebalance at once (best effort: the session times out
    /// otherwise).
    pub fn leave(&mut self) {
        if self.member_id.is_empty() {
            return;
        }
        let Ok(version) = self.conn.version(ApiKey::LeaveGroup, 0..=4) else {
            return;
        };
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(str_bytes(&self.group));
        if version >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = str_bytes(&self.member_id);
            req.members = vec![m];
        } else {
            req.member_id = str_bytes(&self.member_id);
        }
        let _: anyhow::Result<LeaveGroupResponse> =
            self.conn
                .call_at(ApiKey::LeaveGroup, version, RequestKind::LeaveGroup(req));
        self.member_id.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    #[test]
    fn range_assignment_splits_like_kafkas() {
        let counts: BTreeMap<String, i32> = [("a".to_string(), 5), ("b".to_string(), 1)].into();
        let got = range_assign(&subs(&[("m1", &["a", "b"]), ("m2", &["a"])]), &counts);
        let tp = |t: &str, p: i32| (t.to_string(), p);
        assert_eq!(
            got["m1"],
            vec![tp("a", 0), tp("a", 1), tp("a", 2), tp("b", 0)]
        );
        assert_eq!(got["m2"], vec![tp("a", 3), tp("a", 4)]);
        // More members than partitions: the last ones get nothing.
        let got = range_assign(&subs(&[("x", &["b"]), ("y", &["b"])]), &counts);
        assert_eq!((got["x"].len(), got["y"].len()), (1, 0));
    }

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        let mut s = ConsumerProtocolSubscription::default();
        s.topics = vec![str_bytes("t")];
        for v in 0..=3 {
            assert_eq!(
                decode_subscription(&encode_versioned(&s, v).unwrap()),
                ["t"]
            );
        }
        let tps = vec![
            ("t".to_string(), 0),
            ("t".to_string(), 2),
            ("u".to_string(), 1),
        ];
        assert_eq!(
            super::super::group::decode_assignment(&encode_assignment(&tps).unwrap()),
            tps
        );
    }
}
