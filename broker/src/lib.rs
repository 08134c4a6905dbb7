//! The Ringtail broker: Kafka semantics on a shard-per-core runtime.
//!
//! # Subsystems (one directory each; each module doc says what it owns and where it runs)
//! | module | owns | runs on |
//! |---|---|---|
//! | [`kafka`] | Kafka API handlers: supported versions, decode → route → encode | the shard holding the connection |
//! | [`shard`] | one core's partition table, cross-shard messages, the produce/fetch paths to a partition; the controller shell | every shard; the controller shell on shard 0 |
//! | [`log`] | Kafka record semantics over `storage`: validation, codecs, idempotent producers, topic configs (I/O-free) | the partition's owning shard |
//! | [`cluster`] | the metadata image and the records that build it, placement, the I/O-free controller, the Raft controller quorum | quorum on its own "controller" thread; its images published by shard 0; image on every shard |
//! | [`coordinator`] | the coordinator shell and the I/O-free group ([`coordinator::group`]) and transaction ([`coordinator::txn`]) coordinators | the shard owning the `__consumer_offsets` / `__transaction_state` partition |
//! | [`ops`] | metrics and the admin HTTP endpoint | admin thread reads; shards write their own counters |
//! | [`replication`] | the leader's I/O-free replication state (followers' progress, high watermark, ISR changes); its shell is `shard::replica` | the partition's owning shard |
//! | [`cli`] | operator commands speaking the Kafka protocol to a running broker | the operator's shell |
//! | [`server`] | start-up and shutdown: checks, metadata load, one executor per core | the main thread |
//! | [`config`], [`errors`] | broker configuration; the one place internal errors become Kafka codes | everywhere |
//!
//! # The produce path, from socket to disk
//! 1. `net::conn` reads a frame on the shard whose listener accepted the connection and calls
//!    [`kafka::KafkaHandler::handle_frame`].
//! 2. `kafka::produce` splits the request by owning shard (`cluster::meta::MetaSnapshot::owner`):
//!    local partitions are appended directly, others travel as `shard::ShardReq::Produce`.
//! 3. On the owning shard, `shard::Shard::produce_local` validates the batch (`log::records`),
//!    checks idempotence (`log::producer_state`), recompresses if the topic says so
//!    (`log::compression`), and calls `storage::PartitionLog::append`.
//! 4. The reply waits for the durability `acks` asks for and returns to the connection, which
//!    sends responses in request order.
//!
//! # Layering (no cycles between subsystems; `errors`, the mapping table, is the one exception)
//! - `log` depends only on the `storage` crate; `ops` on nothing.
//! - `cluster` on `log` and `errors`; it never reaches a shard (the controller is I/O-free;
//!   the quorum decides with it on its own thread; `shard::controller_shell` hands it
//!   requests and publishes its images to the shards).
//! - `coordinator` on `cluster`, `log`, `config`, `errors`; never on `shard` (the shard lends
//!   each coordinator a narrow `coordinator::CoordinatorLog`).
//! - `shard` on all of the above; `kafka` on `shard` and below; `server` wires everything.
//! - `errors` is the boundary itself: it names the typed errors of `storage`, `log` and
//!   `coordinator::group` and maps them to Kafka codes; `config` reads `log::topic_config`
//!   and `cluster::limits` for defaults.
//!
//! Invariants: a partition is owned by exactly one shard; offsets of a partition are assigned
//! only on its owner, synchronously after the idempotence check; responses of a connection go
//! out in request order (see `net`).

pub mod cli;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod errors;
pub mod kafka;
pub mod log;
pub mod ops;
pub mod replication;
pub mod server;
pub mod shard;
