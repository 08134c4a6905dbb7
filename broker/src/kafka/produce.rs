//! Produce and InitProducerId for idempotent (non-transactional) producers (transactional ids:
//! `kafka::txn`).
//!
//! A Produce request is split by owning shard: local partitions append here, the others travel
//! as [`ShardReq::Produce`] carrying the request's `Bytes` (no copy). All parts run at once and
//! the response is assembled in request order.

use std::rc::Rc;

use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, NodeEndpoint, PartitionProduceResponse, ProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProducerId};
use kafka_protocol::ResponseError as E;

use super::str_bytes;
use crate::cluster::controller::{ControllerReq, ControllerResp};
use crate::errors::PartitionError;
use crate::shard::{
    expect_controller, expect_produce, ProducePart, ProduceResult, Shard, ShardReq,
};

fn failed(e: E) -> ProduceResult {
    ProduceResult {
        error: Some(PartitionError::new(e)),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
    }
}

/// `affinity`: where to note which shards own the request's partitions (connection moves).
pub async fn produce(
    shard: &Rc<Shard>,
    req: ProduceRequest,
    version: i16,
    affinity: Option<&net::Affinity>,
) -> ProduceResponse {
    let meta = shard.meta();
    let acks_valid = matches!(req.acks, -1..=1);
    let mut shapes: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = Vec::new();
    // One slot per partition in request order; parts grouped by owning shard so each shard
    // gets one message per request.
    let mut slots: Vec<Option<ProduceResult>> = Vec::new();
    let mut by_shard: Vec<(Vec<usize>, Vec<ProducePart>)> = (0..shard.shards())
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let topic_meta = meta.topic(&name).cloned();
        let mut indexes = Vec::with_capacity(topic.partition_data.len());
        for part in topic.partition_data {
            indexes.push(part.index);
            let slot = slots.len();
            slots.push(None);
            if !acks_valid {
                slots[slot] = Some(failed(E::InvalidRequiredAcks));
                continue;
            }
            match &topic_meta {
                // Kafka: the offsets topic is written only by the group coordinators.
                Some(t) if crate::cluster::meta::is_internal_topic(&t.name) => {
                    slots[slot] = Some(failed(E::InvalidTopicException))
                }
                Some(t)
                    if part.index >= 0
                        && part.index < t.partitions
                        && !meta.leads(t, part.index) =>
                {
                    slots[slot] = Some(failed(E::NotLeaderOrFollower))
                }
                Some(t) if part.index >= 0 && part.index < t.partitions => {
                    let (slot_ids, parts) = &mut by_shard[meta.owner(&name, part.index)];
                    slot_ids.push(slot);
                    parts.push(ProducePart {
                        topic: name.clone(),
                        partition: part.index,
                        records: part.records,
                        acks: req.acks,
                        timeout_ms: req.timeout_ms,
                        transactional_id: req.transactional_id.as_ref().map(|id| id.0.to_string()),
                    });
                }
                _ => slots[slot] = Some(failed(E::UnknownTopicOrPartition)),
            }
        }
        shapes.push((topic.name, indexes));
    }
    if let Some(affinity) = affinity {
        affinity.note_owners(
            by_shard
                .iter()
                .enumerate()
                .filter(|(_, (ids, _))| !ids.is_empty())
                .map(|(target, _)| target),
        );
    }
    let calls = by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, (ids, _))| !ids.is_empty())
        .map(|(target, (ids, parts))| async move {
            let n = parts.len();
            let results = expect_produce(shard.call(target, ShardReq::Produce(parts)).await, n);
            (ids, results)
        });
    for (ids, results) in futures::future::join_all(calls).await {
        for (slot, result) in ids.into_iter().zip(results) {
            slots[slot] = Some(result);
        }
    }
    let mut results = slots.into_iter();
    let mut response = ProduceResponse::default();
    // KIP-951 (v10+): who leads a partition this node does not, so the client need not
    // refresh its metadata first.
    let mut hinted: Vec<i32> = Vec::new();
    for (name, indexes) in shapes {
        let mut topic = TopicProduceResponse::default();
        topic.name = name;
        for index in indexes {
            let r = results
                .next()
                .flatten()
                .unwrap_or_else(|| failed(E::UnknownServerError));
            let mut p = PartitionProduceResponse::default();
            p.index = index;
            p.base_offset = r.base_offset;
            p.log_append_time_ms = r.log_append_time_ms;
            p.log_start_offset = r.log_start_offset;
            if let Some(e) = r.error {
                shard.metrics().produce_error(e.code);
                p.error_code = e.code;
                p.error_message = e.message.as_deref().map(str_bytes);
                // KIP-467 (v8+): which records failed; clients fail the others of the batch
                // as "a different record in the batch was invalid".
                if version >= 8 {
                    p.record_errors = e
                        .record_errors
                        .iter()
                        .map(|r| {
                            let mut b = BatchIndexAndErrorMessage::default();
                            b.batch_index = r.batch_index;
                            b.batch_index_error_message = Some(str_bytes(&r.message));
                            b
                        })
                        .collect();
                }
            }
            if version >= 10 && p.error_code == E::NotLeaderOrFollower.code() {
                if let Some((leader, epoch)) = super::leader_of(&meta, topic.name.0.as_str(), index)
                {
                    p.current_leader.leader_id = BrokerId(leader);
                    p.current_leader.leader_epoch = epoch;
                    if !hinted.contains(&leader) {
                        hinted.push(leader);
                    }
                }
            }
            topic.partition_responses.push(p);
        }
        response.responses.push(topic);
    }
    for id in hinted {
        if let Some(b) = meta.live_broker(id) {
            let mut e = NodeEndpoint::default();
            e.node_id = BrokerId(b.id);
            e.host = str_bytes(&b.host);
            e.port = b.port;
            e.rack = b.rack.as_deref().map(str_bytes);
            response.node_endpoints.push(e);
        }
    }
    response
}

pub async fn init_producer_id(
    shard: &Rc<Shard>,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req.transactional_id.is_some() {
        // Dispatch sends transactional ids to `kafka::txn`; this one was misrouted.
        resp.error_code = E::CoordinatorNotAvailable.code();
        return resp;
    }
    // An idempotent producer re-initialising with its id and epoch (KIP-360) gets a fresh id:
    // epochs belong to transactional producers; a new id is always safe.
    match expect_controller(
        shard
            .call(0, ShardReq::Controller(ControllerReq::AllocateProducerId))
            .await,
    ) {
        ControllerResp::ProducerId(Ok(id)) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        ControllerResp::ProducerId(Err(e)) | ControllerResp::Failed(e) => {
            resp.error_code = e.code;
        }
        _ => resp.error_code = E::UnknownServerError.code(),
    }
    resp
}
