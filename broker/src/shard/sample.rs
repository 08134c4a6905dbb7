//! What a shard publishes for `/metrics` about once a second: each partition it owns (its
//! traffic counters, log size, segments, start and end offsets) and the committed offsets of
//! its group coordinators. Built by the shard's reporter task (off the data path), handed to
//! the shard's slot in [`crate::ops::metrics::Metrics`]; the admin thread aggregates.
//!
//! Bounded: at most `metrics_label_sets_max` committed offsets are sampled per shard (the
//! rest are counted as dropped); partitions are bounded by `max_partitions_per_shard`.

use std::sync::Arc;

use crate::ops::series::{GroupOffsetSample, PartitionSample, ShardSample};

use super::Shard;

impl Shard {
    /// Samples this shard's partitions and committed offsets as of now.
    pub fn metrics_sample(&self) -> ShardSample {
        let max_offsets = self.metrics.label_sets_max();
        let partitions: Vec<PartitionSample> = {
            let map = self.partitions.borrow();
            map.values()
                .map(|p| {
                    let (log_bytes, segments) = p.log.size_and_segments();
                    let mut s = PartitionSample::new(p.topic_name(), p.index, &p.traffic);
                    s.log_bytes = log_bytes;
                    s.segments = segments;
                    s.start_offset = p.log.log_start_offset();
                    s.end_offset = p.log.written_end_offset();
                    s
                })
                .collect()
        };
        let mut group_offsets = Vec::new();
        let mut group_offsets_dropped = 0u64;
        self.coordinators
            .for_each_committed(|group, topic, partition, committed| {
                if group_offsets.len() < max_offsets {
                    group_offsets.push(GroupOffsetSample {
                        group: group.to_string(),
                        topic: topic.to_string(),
                        partition,
                        committed,
                    });
                } else {
                    group_offsets_dropped += 1;
                }
            });
        let leaders = self
            .partitions
            .borrow()
            .values()
            .filter(|p| p.leader_epoch().is_some())
            .count() as u64;
        ShardSample {
            leaders,
            partitions,
            group_offsets,
            group_offsets_dropped,
        }
    }
}

impl super::Partition {
    /// The topic name as the metrics sample keeps it (shared, not copied per sample).
    fn topic_name(&self) -> Arc<str> {
        self.traffic.topic_name(&self.topic.name)
    }
}
