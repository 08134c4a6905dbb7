//! DeleteRecords: move partitions' log start offsets forward (Kafka's `AdminClient
//! .deleteRecords`). Each partition is handled by its owning shard ([`ShardReq::DeleteRecords`]);
//! the new start offset is persisted by storage, so it survives a restart.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use kafka_protocol::ResponseError as E;

use crate::errors::PartitionError;
use crate::shard::{expect_delete_records, Shard, ShardReq};

pub async fn delete_records(
    shard: &Rc<Shard>,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let meta = shard.meta();
    let mut calls = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let known = meta.topic(&name).cloned();
        for p in &t.partitions {
            let (index, offset) = (p.partition_index, p.offset);
            let target = match &known {
                // Kafka refuses to truncate the internal topics (group offsets, transactions).
                Some(tm) if tm.internal => Err(PartitionError::with_message(
                    E::InvalidTopicException,
                    format!("Cannot delete records of internal topic {name}"),
                )),
                Some(tm) if index >= 0 && index < tm.partitions && !meta.leads(tm, index) => {
                    Err(PartitionError::new(E::NotLeaderOrFollower))
                }
                Some(tm) if index >= 0 && index < tm.partitions => Ok(meta.owner(&name, index)),
                _ => Err(PartitionError::new(E::UnknownTopicOrPartition)),
            };
            let name = name.clone();
            calls.push(async move {
                let owner = target?;
                expect_delete_records(
                    shard
                        .call(
                            owner,
                            ShardReq::DeleteRecords {
                                topic: name,
                                partition: index,
                                offset,
                            },
                        )
                        .await,
                )
            });
        }
    }
    let mut results = futures::future::join_all(calls).await.into_iter();
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut topic = DeleteRecordsTopicResult::default();
        topic.name = t.name;
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            match results.next() {
                Some(Ok(low_watermark)) => pr.low_watermark = low_watermark,
                Some(Err(e)) => {
                    pr.error_code = e.code;
                    pr.low_watermark = -1;
                }
                None => {
                    pr.error_code = E::UnknownServerError.code();
                    pr.low_watermark = -1;
                }
            }
            topic.partitions.push(pr);
        }
        resp.topics.push(topic);
    }
    resp
}
