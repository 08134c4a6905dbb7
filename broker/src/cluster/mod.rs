//! Cluster metadata: the image every shard reads and the decisions that change it.
//!
//! Owns: topics (names, ids, partition counts, configs), partition placement on shards
//! ([`meta::owner_of`]), the reserved producer-id range, the persisted metadata store
//! ([`meta::MetaStore`]), and the controller's decisions for CreateTopics / DeleteTopics /
//! CreatePartitions / AlterConfigs / producer-id allocation ([`controller::Controller`], an
//! I/O-free state machine).
//!
//! Not here: driving the controller. Its shell (`crate::shard::controller_shell`) serialises
//! requests, persists images, publishes them to the shards and checks their acknowledgements.
//! This module does no shard messaging and must not import `crate::shard` (no cycle: shard
//! depends on cluster, never the reverse).
//!
//! Invariants: there is one writer of metadata (the controller shell on shard 0); every image
//! is complete and carries a version one above the previous; an image is durable before any
//! shard sees it; every shard holds an immutable [`meta::MetaSnapshot`] behind an `Arc` and
//! swaps it only for a newer version, so readers never block.
//!
//! Runs on: decisions and persistence on shard 0; snapshots are read on every shard.

pub mod controller;
pub mod image;
pub mod limits;
pub mod meta;
pub mod quorum;
