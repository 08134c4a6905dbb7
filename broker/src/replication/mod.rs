//! Partition replication, the Kafka way: followers fetch from the leader; the leader tracks
//! their progress, keeps the high watermark at the smallest log end in the ISR, and asks the
//! controller to shrink or expand the ISR (AlterPartition, with partition epochs).
//!
//! Owns the I/O-free part: [`state::LeaderState`], one per partition this node leads. The
//! shell that drives it (roles from the metadata, the follower's fetchers, acks=all waits,
//! the high-watermark checkpoint) is `shard::replica`, on the partition's owning shard; the
//! controller's side (AlterPartition, elections on fencing) is in `cluster`.

pub mod state;
