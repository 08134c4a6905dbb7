//! Cluster metadata: the image every shard reads, the log that builds it, and the quorum that
//! replicates that log.
//!
//! Owns: topics (names, ids, partition counts, configs, each partition's replicas, leader,
//! leader epoch and ISR), registered brokers and their fencing, partition placement on nodes
//! ([`image::place_replicas`]) and on a node's shards ([`meta::owner_of`]), the reserved
//! producer-id range, the metadata records and the image they build ([`image`]), the
//! controller's decisions for CreateTopics / DeleteTopics / CreatePartitions / AlterConfigs /
//! producer-id allocation ([`controller::Controller`], an I/O-free state machine), and the
//! controller quorum ([`quorum`]: openraft, the metadata log on disk, broker lifecycle,
//! forwarding to the active controller).
//!
//! Not here: publishing images to the shards. The controller shell
//! (`crate::shard::controller_shell`, shard 0) does that and hands the quorum the shards'
//! requests. This module does no shard messaging and must not import `crate::shard` (no cycle:
//! shard depends on cluster, never the reverse).
//!
//! Invariants: metadata changes only through the metadata log, decided by the active
//! controller; every node applies the log in order into complete images whose version is the
//! log index; an image reaches the shards only once committed; every shard holds an immutable
//! [`meta::MetaSnapshot`] behind an `Arc` and swaps it only for a newer version, so readers
//! never block.
//!
//! Runs on: the quorum on its own thread ("controller", tokio); snapshots are read on every
//! shard.

pub mod controller;
pub mod image;
pub mod limits;
pub mod meta;
pub mod peer_client;
pub mod quorum;
