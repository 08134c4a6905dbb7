//! Kafka record semantics over the storage crate's partition log. I/O-free.
//!
//! Owns: record batch validation and record decoding ([`records`]), the four codecs and
//! recompression to a topic's codec ([`compression`]), idempotent producer state
//! ([`producer_state`]), transactions per partition (open ones, last stable offset, aborted
//! ones: [`txn_index`]), compaction's record and segment decisions ([`compaction`]), and topic
//! configs with Kafka's names and defaults ([`topic_config`]).
//! The storage crate (`storage::PartitionLog`) owns the bytes on disk; this module decides what
//! may be appended and how it must look.
//!
//! Invariants: nothing here does I/O or touches a shard; every function is deterministic given
//! its inputs (and the clock passed in), so it is tested without sockets or executors.
//!
//! Runs on: whichever shard owns the partition being validated or decoded.

pub mod compaction;
pub mod compression;
pub mod producer_state;
pub mod records;
pub mod topic_config;
pub mod txn_index;
