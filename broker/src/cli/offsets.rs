//! Offsets of partitions, asked of each partition's leader with ListOffsets: earliest
//! (log start), latest (log end) or the first offset at or after a timestamp.

use std::collections::BTreeMap;

use anyhow::anyhow;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, RequestKind,
};

use super::wire::{topic_name, Client, KafkaError, TopicMeta};

/// ListOffsets' special timestamps.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// A topic-partition.
pub type Tp = (String, i32);

/// The leader of every partition of `topics` (partitions without a leader are left out).
pub fn leaders(topics: &[TopicMeta]) -> BTreeMap<Tp, i32> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.leader >= 0)
                .map(move |p| ((t.name.clone(), p.partition), p.leader))
        })
        .collect()
}

/// Offsets for `timestamp` (LATEST, EARLIEST or milliseconds) of each partition, one request
/// per leader. A partition whose leader answers an error fails the whole call; a partition
/// with no offset at or after `timestamp` maps to -1 (Kafka's answer).
pub fn list_offsets(
    client: &mut Client,
    leaders: &BTreeMap<Tp, i32>,
    partitions: &[Tp],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<Tp, i64>> {
    let mut by_leader: BTreeMap<i32, BTreeMap<&str, Vec<i32>>> = BTreeMap::new();
    for tp in partitions {
        let leader = leaders.get(tp).ok_or_else(|| {
            anyhow!(
                "LEADER_NOT_AVAILABLE: partition {}-{} has no leader",
                tp.0,
                tp.1
            )
        })?;
        by_leader
            .entry(*leader)
            .or_default()
            .entry(tp.0.as_str())
            .or_default()
            .push(tp.1);
    }
    let mut out = BTreeMap::new();
    for (leader, topics) in by_leader {
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = topics
            .into_iter()
            .map(|(t, ps)| {
                let mut lt = ListOffsetsTopic::default();
                lt.name = topic_name(t);
                lt.partitions = ps
                    .into_iter()
                    .map(|p| {
                        let mut lp = ListOffsetsPartition::default();
                        lp.partition_index = p;
                        lp.timestamp = timestamp;
                        lp.current_leader_epoch = -1;
                        lp
                    })
                    .collect();
                lt
            })
            .collect();
        let resp: ListOffsetsResponse = client.broker(leader)?.call(
            ApiKey::ListOffsets,
            1..=7,
            RequestKind::ListOffsets(req),
        )?;
        for t in resp.topics {
            for p in t.partitions {
                KafkaError::check(
                    p.error_code,
                    None,
                    &format!("ListOffsets of {}-{}", t.name.0, p.partition_index),
                )?;
                out.insert((t.name.0.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}
