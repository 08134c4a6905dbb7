//! DescribeLogDirs: the bytes each partition replica of this node takes on disk.
//!
//! Ringtail has one log dir per node (the data dir). Every replica this node holds is in it;
//! its size comes from the shard that owns it (one message per shard). v4 adds the
//! filesystem's total and usable bytes. Partitions this node does not hold are left out, as
//! Kafka leaves out partitions a broker has no replica of.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_request::DescribeLogDirsRequest;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};

use super::{str_bytes, topic_name};
use crate::shard::{Shard, ShardReq, ShardResp};

pub async fn describe_log_dirs(
    shard: &Rc<Shard>,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    let meta = shard.meta();
    // The replicas asked about that this node holds: all of them for a null topic list.
    let mut wanted: Vec<(String, i32)> = Vec::new();
    match &req.topics {
        None => {
            for t in meta.topics.values() {
                wanted.extend(
                    (0..t.partitions)
                        .filter(|p| meta.hosts(t, *p))
                        .map(|p| (t.name.clone(), p)),
                );
            }
        }
        Some(topics) => {
            for asked in topics {
                let name = asked.topic.0.to_string();
                if let Some(t) = meta.topic(&name) {
                    wanted.extend(
                        asked
                            .partitions
                            .iter()
                            .copied()
                            .filter(|p| *p >= 0 && *p < t.partitions && meta.hosts(t, *p))
                            .map(|p| (name.clone(), p)),
                    );
                }
            }
        }
    }
    let mut by_owner: BTreeMap<usize, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, p) in wanted {
        by_owner
            .entry(meta.owner(&topic, p))
            .or_default()
            .push((topic, p));
    }
    let calls = by_owner.into_iter().map(|(owner, parts)| async move {
        let reply = shard.call(owner, ShardReq::LogSizes(parts.clone())).await;
        (parts, reply)
    });
    let mut sizes: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for (parts, reply) in futures::future::join_all(calls).await {
        let ShardResp::LogSizes(answers) = reply else {
            continue;
        };
        for ((topic, p), size) in parts.into_iter().zip(answers) {
            if let Some(bytes) = size {
                let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
                sizes.entry(topic).or_default().push((p, bytes));
            }
        }
    }
    let mut dir = DescribeLogDirsResult::default();
    dir.log_dir = str_bytes(&shard.config.data_dir.display().to_string());
    if version >= 4 {
        if let Ok(fs) = nix::sys::statvfs::statvfs(&shard.config.data_dir) {
            let block = fs.fragment_size() as i64;
            dir.total_bytes = (fs.blocks() as i64).saturating_mul(block);
            dir.usable_bytes = (fs.blocks_available() as i64).saturating_mul(block);
        } else {
            dir.total_bytes = -1;
            dir.usable_bytes = -1;
        }
    }
    for (name, mut partitions) in sizes {
        partitions.sort_unstable();
        let mut t = DescribeLogDirsTopic::default();
        t.name = topic_name(&name);
        t.partitions = partitions
            .into_iter()
            .map(|(p, size)| {
                let mut d = DescribeLogDirsPartition::default();
                d.partition_index = p;
                d.partition_size = size;
                d.offset_lag = 0;
                d.is_future_key = false;
                d
            })
            .collect();
        dir.topics.push(t);
    }
    let mut resp = DescribeLogDirsResponse::default();
    resp.results.push(dir);
    resp
}
