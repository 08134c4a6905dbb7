//! Cluster metadata: the image every shard reads and the controller that writes it.
//!
//! Owns: topics (names, ids, partition counts, configs), partition placement on shards
//! ([`meta::owner_of`]), the persisted metadata store, and the controller's decisions for
//! CreateTopics / DeleteTopics / CreatePartitions / AlterConfigs / producer-id allocation.
//!
//! Invariants: there is one writer of metadata (the controller, whose shell runs on shard 0);
//! every shard holds an immutable [`meta::MetaSnapshot`] behind an `Arc` and swaps it only when
//! the controller publishes a newer version, so readers never block; a snapshot is persisted
//! before it is published.
//!
//! Runs on: the controller on shard 0; snapshots are read on every shard.

pub mod controller;
pub mod limits;
pub mod meta;
