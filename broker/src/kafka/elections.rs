//! ElectLeaders (KIP-183 preferred, KIP-460 unclean): asks the controller to move
//! leadership to each partition's preferred replica, or to elect any live replica of a
//! partition without a leader. AlterPartitionReassignments / ListPartitionReassignments
//! (KIP-455): moves a partition's replicas, the new ones catching up before the old leave. Runs on the shard serving the connection; the decision is the
//! controller's (`cluster::controller`), reached through shard 0's controller shell.

use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError as E;

use super::{str_bytes, topic_name};
use crate::cluster::controller::{ControllerReq, ControllerResp};
use crate::shard::{expect_controller, Shard, ShardReq};

pub async fn elect_leaders(
    shard: &Rc<Shard>,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let mut resp = ElectLeadersResponse::default();
    // v0 has no election type: preferred.
    let unclean = match (version, req.election_type) {
        (0, _) | (_, 0) => false,
        (_, 1) => true,
        _ => {
            resp.error_code = E::InvalidRequest.code();
            return resp;
        }
    };
    let partitions = req.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.iter().map(move |p| (name.clone(), *p))
            })
            .collect::<Vec<_>>()
    });
    let reply = expect_controller(
        shard
            .call(
                0,
                ShardReq::Controller(ControllerReq::ElectLeaders {
                    unclean,
                    partitions,
                }),
            )
            .await,
    );
    let results = match reply {
        ControllerResp::Elected(results) => results,
        ControllerResp::Failed(e) => {
            resp.error_code = e.code;
            return resp;
        }
        _ => {
            resp.error_code = E::UnknownServerError.code();
            return resp;
        }
    };
    for (topic, partition, result) in results {
        let mut pr = PartitionResult::default();
        pr.partition_id = partition;
        if let Err(e) = result {
            pr.error_code = e.code;
            pr.error_message = e.message.as_deref().map(str_bytes);
        }
        let name = topic_name(&topic);
        match resp
            .replica_election_results
            .iter_mut()
            .find(|r| r.topic == name)
        {
            Some(r) => r.partition_result.push(pr),
            None => {
                let mut r = ReplicaElectionResult::default();
                r.topic = name;
                r.partition_result.push(pr);
                resp.replica_election_results.push(r);
            }
        }
    }
    resp
}

/// AlterPartitionReassignments (KIP-455): per partition, the target replicas (the new ones
/// catch up as followers before the old ones leave) or null to cancel.
pub async fn alter_partition_reassignments(
    shard: &Rc<Shard>,
    req: AlterPartitionReassignmentsRequest,
    _version: i16,
) -> AlterPartitionReassignmentsResponse {
    let mut resp = AlterPartitionReassignmentsResponse::default();
    let changes: Vec<(String, i32, Option<Vec<i32>>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            let name = t.name.0.to_string();
            t.partitions.iter().map(move |p| {
                (
                    name.clone(),
                    p.partition_index,
                    p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                )
            })
        })
        .collect();
    let n = changes.len();
    let reply = expect_controller(
        shard
            .call(
                0,
                ShardReq::Controller(ControllerReq::AlterReassignments { changes }),
            )
            .await,
    );
    let results: Vec<Result<(), crate::errors::PartitionError>> = match reply {
        ControllerResp::Reassigned(r) if r.len() == n => r,
        ControllerResp::Failed(e) => {
            resp.error_code = e.code;
            resp.error_message = e.message.as_deref().map(str_bytes);
            return resp;
        }
        _ => {
            resp.error_code = E::UnknownServerError.code();
            return resp;
        }
    };
    let mut results = results.into_iter();
    for t in req.topics {
        let mut tr = ReassignableTopicResponse::default();
        tr.name = t.name;
        for p in t.partitions {
            let mut pr = ReassignablePartitionResponse::default();
            pr.partition_index = p.partition_index;
            if let Some(Err(e)) = results.next() {
                pr.error_code = e.code;
                pr.error_message = e.message.as_deref().map(str_bytes);
            }
            tr.partitions.push(pr);
        }
        resp.responses.push(tr);
    }
    resp
}

/// ListPartitionReassignments: the ongoing reassignments in this node's metadata (all, or
/// of the partitions asked for).
pub fn list_partition_reassignments(
    shard: &Rc<Shard>,
    req: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    let meta = shard.meta();
    let mut resp = ListPartitionReassignmentsResponse::default();
    let wanted: Option<Vec<(String, i32)>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                let name = t.name.0.to_string();
                t.partition_indexes.iter().map(move |p| (name.clone(), *p))
            })
            .collect()
    });
    for t in meta.topics.values() {
        let mut ot = OngoingTopicReassignment::default();
        ot.name = topic_name(&t.name);
        for (i, a) in t.assignments.iter().enumerate() {
            let p = i32::try_from(i).unwrap_or(i32::MAX);
            if a.adding.is_empty() && a.removing.is_empty() {
                continue;
            }
            if let Some(w) = &wanted {
                if !w.iter().any(|(n, q)| *n == t.name && *q == p) {
                    continue;
                }
            }
            let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
            let mut op = OngoingPartitionReassignment::default();
            op.partition_index = p;
            op.replicas = ids(&a.replicas);
            op.adding_replicas = ids(&a.adding);
            op.removing_replicas = ids(&a.removing);
            ot.partitions.push(op);
        }
        if !ot.partitions.is_empty() {
            resp.topics.push(ot);
        }
    }
    resp
}
