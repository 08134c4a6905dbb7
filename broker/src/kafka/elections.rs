//! ElectLeaders (KIP-183 preferred, KIP-460 unclean): asks the controller to move
//! leadership to each partition's preferred replica, or to elect any live replica of a
//! partition without a leader. Runs on the shard serving the connection; the decision is the
//! controller's (`cluster::controller`), reached through shard 0's controller shell.

use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
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
