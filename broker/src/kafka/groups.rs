//! Consumer-group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, OffsetDelete, DescribeGroups, ListGroups, DeleteGroups.
//!
//! Each group belongs to the coordinator of its `__consumer_offsets` partition
//! ([`coordinator_of`]), on the shard owning that partition; the request travels there as
//! [`ShardReq::Group`] (or runs here when this shard owns it). Requests naming several groups
//! (OffsetFetch v8+, DescribeGroups, DeleteGroups) are split by coordinator, sent at once,
//! and merged back in request order. ListGroups asks every shard. When a coordinator cannot
//! answer (loading, not there, unreachable) the whole part it owns gets that one error code,
//! shaped the way Kafka shapes error responses of each API.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as E;
use tracing::warn;

use crate::cluster::meta::{MetaSnapshot, OFFSETS_TOPIC};
use crate::coordinator::group::{self, ClientInfo, Input, Response};
use crate::coordinator::{coordinator_of, GroupReq, GroupResp};
use crate::errors::KafkaCode;
use crate::shard::{Shard, ShardReq, ShardResp};

/// Sends `input` to the coordinator of `partition` on shard `owner`.
async fn call(
    shard: &Rc<Shard>,
    owner: usize,
    partition: i32,
    input: Input,
) -> Result<Response, i16> {
    let req = ShardReq::Group(GroupReq::Step {
        partition,
        input: Box::new(input),
    });
    match shard.call(owner, req).await {
        ShardResp::Group(GroupResp::Step(result)) => result,
        ShardResp::Failed(e) => {
            warn!(code = e.code, msg = ?e.message, "group coordinator unreachable");
            Err(E::CoordinatorNotAvailable.code())
        }
        other => {
            warn!(?other, "unexpected reply from a group coordinator");
            Err(E::UnknownServerError.code())
        }
    }
}

/// The group's coordinator partition and its owning shard, if this node leads that
/// `__consumer_offsets` partition: NOT_COORDINATOR when another node does (the client asks
/// FindCoordinator again), COORDINATOR_NOT_AVAILABLE when there is no offsets topic.
fn local_coordinator(meta: &MetaSnapshot, group_id: &str) -> Result<(i32, usize), i16> {
    let (partition, owner) =
        coordinator_of(meta, group_id).ok_or(E::CoordinatorNotAvailable.code())?;
    match meta.topic(OFFSETS_TOPIC) {
        Some(t) if meta.leads(t, partition) => Ok((partition, owner)),
        _ => Err(E::NotCoordinator.code()),
    }
}

/// Sends a single-group request to its coordinator.
async fn step(shard: &Rc<Shard>, group_id: &str, input: Input) -> Result<Response, i16> {
    let (partition, owner) = local_coordinator(&shard.meta(), group_id)?;
    call(shard, owner, partition, input).await
}

/// A response of another API than asked: a bug, answered as UNKNOWN_SERVER_ERROR.
fn mismatched(got: &Response) -> i16 {
    warn!(
        ?got,
        "group coordinator answered with another API's response"
    );
    E::UnknownServerError.code()
}

/// Runs a multi-group request: groups split by coordinator, one sub-request per coordinator
/// (`input_for` gets the indexes of its groups), answers put back in request order.
async fn per_group<R>(
    shard: &Rc<Shard>,
    group_ids: &[&str],
    input_for: impl Fn(&[usize]) -> Input,
    results_of: impl Fn(Response) -> Result<Vec<R>, i16>,
    error_for: impl Fn(usize, i16) -> R,
) -> Vec<R> {
    let mut out: Vec<Option<R>> = group_ids.iter().map(|_| None).collect();
    let mut buckets: BTreeMap<(usize, i32), Vec<usize>> = BTreeMap::new();
    for (i, id) in group_ids.iter().enumerate() {
        match local_coordinator(&shard.meta(), id) {
            Ok((partition, owner)) => buckets.entry((owner, partition)).or_default().push(i),
            Err(code) => out[i] = Some(error_for(i, code)),
        }
    }
    let calls = buckets.into_iter().map(|((owner, partition), indexes)| {
        let input = input_for(&indexes);
        async move { (indexes, call(shard, owner, partition, input).await) }
    });
    for (indexes, result) in futures::future::join_all(calls).await {
        match result.and_then(&results_of) {
            Ok(results) if results.len() == indexes.len() => {
                for (i, r) in indexes.into_iter().zip(results) {
                    out[i] = Some(r);
                }
            }
            Ok(results) => {
                warn!(
                    asked = indexes.len(),
                    got = results.len(),
                    "group coordinator answered for a different number of groups"
                );
                for i in indexes {
                    out[i] = Some(error_for(i, E::UnknownServerError.code()));
                }
            }
            Err(code) => {
                for i in indexes {
                    out[i] = Some(error_for(i, code));
                }
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| error_for(i, E::UnknownServerError.code())))
        .collect()
}

pub async fn join_group(
    shard: &Rc<Shard>,
    req: JoinGroupRequest,
    version: i16,
    client: ClientInfo,
) -> JoinGroupResponse {
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.clone();
    let input = Input::Join {
        api_version: version,
        client,
        request: req,
    };
    let error = match step(shard, &group_id, input).await {
        Ok(Response::Join(r)) => return r,
        Ok(other) => mismatched(&other),
        Err(code) => code,
    };
    let mut r = JoinGroupResponse::default();
    r.error_code = error;
    r.generation_id = -1;
    r.member_id = member_id;
    // Non-nullable before v7: Kafka sends "".
    r.protocol_name = (version < 7).then(StrBytes::new);
    r
}

pub async fn sync_group(
    shard: &Rc<Shard>,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group_id = req.group_id.0.to_string();
    let input = Input::Sync {
        api_version: version,
        request: req,
    };
    let error = match step(shard, &group_id, input).await {
        Ok(Response::Sync(r)) => return r,
        Ok(other) => mismatched(&other),
        Err(code) => code,
    };
    let mut r = SyncGroupResponse::default();
    r.error_code = error;
    r
}

pub async fn heartbeat(
    shard: &Rc<Shard>,
    req: HeartbeatRequest,
    version: i16,
) -> HeartbeatResponse {
    let group_id = req.group_id.0.to_string();
    let input = Input::Heartbeat {
        api_version: version,
        request: req,
    };
    let error = match step(shard, &group_id, input).await {
        Ok(Response::Heartbeat(r)) => return r,
        Ok(other) => mismatched(&other),
        Err(code) => code,
    };
    let mut r = HeartbeatResponse::default();
    r.error_code = error;
    r
}

pub async fn leave_group(
    shard: &Rc<Shard>,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = req.group_id.0.to_string();
    let input = Input::Leave {
        api_version: version,
        request: req,
    };
    let error = match step(shard, &group_id, input).await {
        Ok(Response::Leave(r)) => return r,
        Ok(other) => mismatched(&other),
        Err(code) => code,
    };
    let mut r = LeaveGroupResponse::default();
    r.error_code = error;
    r
}

/// Whether `topic` has partition `index` in this shard's metadata snapshot.
fn partition_exists(shard: &Shard, topic: &str, index: i32) -> bool {
    shard
        .meta()
        .topic(topic)
        .is_some_and(|t| index >= 0 && index < t.partitions)
}

/// TxnOffsetCommit's member check at the group's coordinator (see
/// [`Input::CheckTxnOffsetCommit`]): 0, or the code every partition of the request gets.
pub async fn check_txn_offset_commit(
    shard: &Rc<Shard>,
    group_id: &str,
    member_id: &str,
    group_instance_id: Option<&str>,
    generation: i32,
) -> i16 {
    let input = Input::CheckTxnOffsetCommit {
        group_id: group_id.to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: group_instance_id.map(str::to_owned),
        generation,
    };
    match step(shard, group_id, input).await {
        Ok(Response::TxnOffsetCommitChecked(Ok(()))) => 0,
        Ok(Response::TxnOffsetCommitChecked(Err(e))) => e.kafka_code(),
        Ok(other) => mismatched(&other),
        Err(code) => code,
    }
}

pub async fn offset_commit(
    shard: &Rc<Shard>,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    let unknown_partitions =
        group::unknown_commit_partitions(&req, |t, p| partition_exists(shard, t, p));
    let shape: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let input = Input::OffsetCommit {
        api_version: version,
        request: req,
        unknown_partitions,
    };
    let error = match step(shard, &group_id, input).await {
        Ok(Response::OffsetCommit(r)) => return r,
        Ok(other) => mismatched(&other),
        Err(code) => code,
    };
    let mut r = OffsetCommitResponse::default();
    r.topics = shape
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = OffsetCommitResponseTopic::default();
            t.name = name;
            t.partitions = partitions
                .into_iter()
                .map(|index| {
                    let mut p = OffsetCommitResponsePartition::default();
                    p.partition_index = index;
                    p.error_code = error;
                    p
                })
                .collect();
            t
        })
        .collect();
    r
}

pub async fn offset_fetch(
    shard: &Rc<Shard>,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let require_stable = version >= 7 && req.require_stable;
    // v7 names one group in the request only; v8+ name each group in the response.
    let group_v7 = req.group_id.0.to_string();
    let mut r = offset_fetch_committed(shard, req, version).await;
    if require_stable {
        mark_unstable_txn_offsets(shard, &mut r, &group_v7).await;
    }
    r
}

/// `require_stable` (KIP-447, v7+): a partition whose offset a transaction still may commit
/// answers UNSTABLE_OFFSET_COMMIT (retriable) rather than the committed offset, as Kafka's
/// group coordinator does for its pending transactional offsets. Here those offsets live
/// with the transaction coordinators, so they are asked; when one cannot answer (loading),
/// every partition is unstable. Only partitions the answer lists are marked (Kafka's "all
/// partitions" answer lists committed offsets only).
async fn mark_unstable_txn_offsets(shard: &Rc<Shard>, r: &mut OffsetFetchResponse, group_v7: &str) {
    let v7 = r.groups.is_empty();
    let groups: Vec<String> = if v7 {
        if r.error_code != 0 {
            return;
        }
        vec![group_v7.to_owned()]
    } else {
        r.groups
            .iter()
            .filter(|g| g.error_code == 0)
            .map(|g| g.group_id.0.to_string())
            .collect()
    };
    if groups.is_empty() {
        return;
    }
    let pending = super::txn::pending_txn_offsets(shard, &groups).await;
    let is_pending = |g: &str, t: &str, p: i32| {
        pending
            .as_ref()
            .is_none_or(|s| s.contains(&(g.to_owned(), t.to_owned(), p)))
    };
    let unstable = E::UnstableOffsetCommit.code();
    for t in &mut r.topics {
        for p in &mut t.partitions {
            if p.error_code == 0 && is_pending(group_v7, t.name.as_str(), p.partition_index) {
                p.error_code = unstable;
                p.committed_offset = -1;
                p.committed_leader_epoch = -1;
                p.metadata = Some(StrBytes::new());
            }
        }
    }
    for g in &mut r.groups {
        if g.error_code != 0 {
            continue;
        }
        for t in &mut g.topics {
            for p in &mut t.partitions {
                if p.error_code == 0
                    && is_pending(g.group_id.as_str(), t.name.as_str(), p.partition_index)
                {
                    p.error_code = unstable;
                    p.committed_offset = -1;
                    p.committed_leader_epoch = -1;
                    p.metadata = Some(StrBytes::new());
                }
            }
        }
    }
}

async fn offset_fetch_committed(
    shard: &Rc<Shard>,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let ids: Vec<String> = req
            .groups
            .iter()
            .map(|g| g.group_id.0.to_string())
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut r = OffsetFetchResponse::default();
        r.groups = per_group(
            shard,
            &refs,
            |indexes| {
                let mut sub = req.clone();
                sub.groups = indexes.iter().map(|&i| req.groups[i].clone()).collect();
                Input::OffsetFetch {
                    api_version: version,
                    request: sub,
                }
            },
            |resp| match resp {
                Response::OffsetFetch(r) => Ok(r.groups),
                other => Err(mismatched(&other)),
            },
            |i, code| {
                let mut g = OffsetFetchResponseGroup::default();
                g.group_id = req.groups[i].group_id.clone();
                g.error_code = code;
                g
            },
        )
        .await;
        return r;
    }
    let group_id = req.group_id.0.to_string();
    let requested = req.topics.clone();
    let input = Input::OffsetFetch {
        api_version: version,
        request: req,
    };
    let error = match step(shard, &group_id, input).await {
        Ok(Response::OffsetFetch(r)) => return r,
        Ok(other) => mismatched(&other),
        Err(code) => code,
    };
    let mut r = OffsetFetchResponse::default();
    if version >= 2 {
        r.error_code = error;
        return r;
    }
    // v0-1 have no top-level error: Kafka puts it on every requested partition.
    r.topics = requested
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let mut rt = OffsetFetchResponseTopic::default();
            rt.name = t.name;
            rt.partitions = t
                .partition_indexes
                .into_iter()
                .map(|index| {
                    let mut p = OffsetFetchResponsePartition::default();
                    p.partition_index = index;
                    p.committed_offset = -1;
                    p.metadata = Some(StrBytes::new());
                    p.error_code = error;
                    p
                })
                .collect();
            rt
        })
        .collect();
    r
}

pub async fn offset_delete(
    shard: &Rc<Shard>,
    req: OffsetDeleteRequest,
    version: i16,
) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.to_string();
    let unknown_partitions =
        group::unknown_delete_partitions(&req, |t, p| partition_exists(shard, t, p));
    let input = Input::OffsetDelete {
        api_version: version,
        request: req,
        unknown_partitions,
    };
    let error = match step(shard, &group_id, input).await {
        Ok(Response::OffsetDelete(r)) => return r,
        Ok(other) => mismatched(&other),
        Err(code) => code,
    };
    let mut r = OffsetDeleteResponse::default();
    r.error_code = error;
    r
}

pub async fn describe_groups(
    shard: &Rc<Shard>,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let ids: Vec<String> = req.groups.iter().map(|g| g.0.to_string()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut r = DescribeGroupsResponse::default();
    r.groups = per_group(
        shard,
        &refs,
        |indexes| {
            let mut sub = req.clone();
            sub.groups = indexes.iter().map(|&i| req.groups[i].clone()).collect();
            Input::DescribeGroups {
                api_version: version,
                request: sub,
            }
        },
        |resp| match resp {
            Response::DescribeGroups(r) => Ok(r.groups),
            other => Err(mismatched(&other)),
        },
        |i, code| {
            let mut g = DescribedGroup::default();
            g.group_id = req.groups[i].clone();
            g.error_code = code;
            g
        },
    )
    .await;
    // Kafka (no authorizer) lists every operation a group supports, for groups it found.
    if version >= 3 && req.include_authorized_operations {
        for g in r.groups.iter_mut().filter(|g| g.error_code == 0) {
            g.authorized_operations = super::metadata::GROUP_AUTHORIZED_OPERATIONS;
        }
    }
    r
}

pub async fn delete_groups(
    shard: &Rc<Shard>,
    req: DeleteGroupsRequest,
    version: i16,
) -> DeleteGroupsResponse {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut r = DeleteGroupsResponse::default();
    r.results = per_group(
        shard,
        &refs,
        |indexes| {
            let mut sub = req.clone();
            sub.groups_names = indexes
                .iter()
                .map(|&i| req.groups_names[i].clone())
                .collect();
            Input::DeleteGroups {
                api_version: version,
                request: sub,
            }
        },
        |resp| match resp {
            Response::DeleteGroups(r) => Ok(r.results),
            other => Err(mismatched(&other)),
        },
        |i, code| {
            let mut g = DeletableGroupResult::default();
            g.group_id = req.groups_names[i].clone();
            g.error_code = code;
            g
        },
    )
    .await;
    r
}

/// ListGroups: every shard lists the groups of its coordinators.
pub async fn list_groups(
    shard: &Rc<Shard>,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let calls = (0..shard.shards()).map(|target| {
        let req = ShardReq::Group(GroupReq::ListAll {
            api_version: version,
            request: req.clone(),
        });
        shard.call(target, req)
    });
    let mut r = ListGroupsResponse::default();
    for reply in futures::future::join_all(calls).await {
        match reply {
            ShardResp::Group(GroupResp::Listed { groups, error }) => {
                r.groups.extend(groups);
                if error != 0 {
                    r.error_code = error;
                }
            }
            other => {
                warn!(?other, "ListGroups: a shard did not answer");
                r.error_code = E::CoordinatorNotAvailable.code();
            }
        }
    }
    r
}

/// Client identity recorded in a member (Kafka shows the host as `/<ip>`).
pub fn client_info(client_id: Option<&str>, peer: std::net::SocketAddr) -> ClientInfo {
    ClientInfo {
        client_id: client_id.unwrap_or("").to_string(),
        client_host: format!("/{}", peer.ip()),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    const GROUP_APIS: &[ApiKey] = &[
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::OffsetDelete,
        ApiKey::DescribeGroups,
        ApiKey::ListGroups,
        ApiKey::DeleteGroups,
    ];

    #[test]
    fn advertised_group_versions_round_trip_through_the_structs() {
        let ours: Vec<_> = super::super::SUPPORTED_APIS
            .iter()
            .filter(|(key, _, _)| GROUP_APIS.contains(key))
            .copied()
            .collect();
        assert_eq!(
            ours.len(),
            GROUP_APIS.len(),
            "every group API is advertised"
        );
        if let Err(problems) = net::versions::ApiVersionTable::new(ours).verify() {
            panic!("{problems:?}");
        }
    }
}
