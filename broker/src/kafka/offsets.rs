//! ListOffsets: earliest, latest, max-timestamp and by-timestamp lookups.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::ResponseError as E;

use crate::shard::{expect_epoch_end, expect_list_offset, Shard, ShardReq};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

pub async fn list_offsets(
    shard: &Rc<Shard>,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let meta = shard.meta();
    let mut resp = ListOffsetsResponse::default();
    let mut lookups = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let known = meta.topic(&name).cloned();
        for p in &t.partitions {
            let target = super::leader_shard(&meta, known.as_deref(), p.partition_index);
            let name = name.clone();
            let (index, timestamp) = (p.partition_index, p.timestamp);
            let committed = req.isolation_level == 1;
            let current_leader_epoch = if version >= 4 {
                p.current_leader_epoch
            } else {
                -1
            };
            lookups.push(async move {
                match target {
                    Err(code) => Err(crate::errors::PartitionError::new(code)),
                    Ok(owner) => expect_list_offset(
                        shard
                            .call(
                                owner,
                                ShardReq::ListOffset {
                                    topic: name,
                                    partition: index,
                                    timestamp,
                                    committed,
                                    current_leader_epoch,
                                },
                            )
                            .await,
                    ),
                }
            });
        }
    }
    let mut results = futures::future::join_all(lookups).await.into_iter();
    for t in req.topics {
        let mut topic = ListOffsetsTopicResponse::default();
        topic.name = t.name;
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            match results.next() {
                Some(Ok((offset, timestamp, epoch))) => {
                    pr.offset = offset;
                    pr.timestamp = timestamp;
                    // leader_epoch exists from v4 on (kafka-protocol refuses it earlier).
                    if version >= 4 {
                        pr.leader_epoch = epoch;
                    }
                }
                Some(Err(e)) => {
                    pr.error_code = e.code;
                    pr.offset = -1;
                    pr.timestamp = -1;
                }
                None => pr.error_code = E::UnknownServerError.code(),
            }
            topic.partitions.push(pr);
        }
        resp.topics.push(topic);
    }
    resp
}

/// OffsetForLeaderEpoch (KIP-101/320): for each partition, the end offset of the requested
/// leader epoch on its leader, so a consumer that saw the leader change can tell whether its
/// position was truncated away. Answered by the leader only, after checking
/// `current_leader_epoch`.
pub async fn offset_for_leader_epoch(
    shard: &Rc<Shard>,
    req: OffsetForLeaderEpochRequest,
    version: i16,
) -> OffsetForLeaderEpochResponse {
    let meta = shard.meta();
    let mut lookups = Vec::new();
    for t in &req.topics {
        let name = t.topic.0.to_string();
        let known = meta.topic(&name).cloned();
        for p in &t.partitions {
            let target = super::leader_shard(&meta, known.as_deref(), p.partition);
            let name = name.clone();
            let current_leader_epoch = if version >= 2 {
                p.current_leader_epoch
            } else {
                -1
            };
            let (partition, leader_epoch) = (p.partition, p.leader_epoch);
            lookups.push(async move {
                match target {
                    Err(code) => Err(crate::errors::PartitionError::new(code)),
                    Ok(owner) => expect_epoch_end(
                        shard
                            .call(
                                owner,
                                ShardReq::EpochEnd {
                                    topic: name,
                                    partition,
                                    current_leader_epoch,
                                    leader_epoch,
                                },
                            )
                            .await,
                    ),
                }
            });
        }
    }
    let mut results = futures::future::join_all(lookups).await.into_iter();
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut topic = OffsetForLeaderTopicResult::default();
        topic.topic = t.topic;
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            match results.next() {
                Some(Ok((epoch, end))) => {
                    e.leader_epoch = epoch;
                    e.end_offset = end;
                }
                Some(Err(err)) => {
                    e.error_code = err.code;
                    e.leader_epoch = -1;
                    e.end_offset = -1;
                }
                None => e.error_code = E::UnknownServerError.code(),
            }
            topic.partitions.push(e);
        }
        resp.topics.push(topic);
    }
    resp
}
