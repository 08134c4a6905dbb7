//! The Ringtail broker: Kafka semantics on a shard-per-core runtime.
//!
//! Module map:
//! - [`server`]: start-up (system checks, metadata load, one glommio executor per core),
//!   shutdown.
//! - [`shard`]: one core's partitions and the cross-shard messages it answers. Shard state is
//!   `Rc`/`RefCell`: it cannot leave its thread; other shards reach it only by message.
//! - [`controller`]: the single writer of cluster metadata (on shard 0).
//! - [`coordinator`]: the shard shell of the group coordinators (one per `__consumer_offsets`
//!   partition the shard owns): loading, appends, timers, cross-shard group requests.
//! - [`cli`]: operator commands speaking the Kafka protocol to a running broker (`group`).
//! - [`meta`]: topics, partition ownership, persisted metadata snapshots.
//! - [`limits`]: partitions per shard and connections per shard, from the configuration and
//!   the file descriptor budget.
//! - [`api`]: Kafka request handlers (Produce, Fetch, Metadata, admin APIs, ...).
//! - [`errors`]: the one place internal errors become Kafka error codes.
//! - [`producer_state`], [`compression`], [`records`], [`topic_config`], [`group`]: I/O-free
//!   Kafka semantics (idempotent producers, codecs, configs, group coordinator).
//!
//! Invariants: a partition is owned by exactly one shard; offsets of a partition are assigned
//! only on its owner, synchronously after the idempotence check; responses of a connection go
//! out in request order (see `net`).

pub mod admin_http;
pub mod api;
pub mod cli;
pub mod compression;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod errors;
pub mod group;
pub mod limits;
pub mod meta;
pub mod metrics;
pub mod producer_state;
pub mod records;
pub mod server;
pub mod shard;
pub mod topic_config;
