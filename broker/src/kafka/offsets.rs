//! ListOffsets: earliest, latest, max-timestamp and by-timestamp lookups.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::ResponseError as E;

use crate::shard::{expect_list_offset, Shard, ShardReq};

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
            let target = match &known {
                Some(tm) if p.partition_index >= 0 && p.partition_index < tm.partitions => {
                    if meta.leads(tm, p.partition_index) {
                        Ok(meta.owner(&name, p.partition_index))
                    } else {
                        Err(E::NotLeaderOrFollower)
                    }
                }
                _ => Err(E::UnknownTopicOrPartition),
            };
            let name = name.clone();
            let (index, timestamp) = (p.partition_index, p.timestamp);
            let committed = req.isolation_level == 1;
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
                Some(Ok((offset, timestamp))) => {
                    pr.offset = offset;
                    pr.timestamp = timestamp;
                    // leader_epoch exists from v4 on (kafka-protocol refuses it earlier).
                    if version >= 4 && offset >= 0 {
                        pr.leader_epoch = 0;
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
