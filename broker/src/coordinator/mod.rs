//! Coordinators: I/O-free state machines that keep their state in a partition's log, and the
//! one shard shell that runs them.
//!
//! # What this module owns
//! - [`StateMachine`]: what a coordinator is to the shell. It never reads a clock and never
//!   does I/O; it is fed replayed records, requests, timer ticks and append completions, and
//!   answers with [`Action`]s (respond to a request, persist records, wake me at a time).
//! - [`Coordinators`] (in `shell`): the coordinators of one kind on one shard, one per
//!   partition of their log topic. For each it replays the partition at open, appends what
//!   the machine persists and reports completions, keeps its timer, and hands each answer to
//!   the request waiting for it (often later: a JoinGroup is answered when the rebalance
//!   completes, from a tick or another member's call).
//! - [`CoordinatorLog`]: the narrow handle through which the shell reaches its partition
//!   (read, append, wait for durability) and the clock. The shard implements it over the
//!   partition it owns (`shard::coordinator_log`) and lends it when it opens a coordinator;
//!   tests implement it in memory. This module does not import `crate::shard`.
//! - The users: [`group`] (the classic consumer-group coordinator on `__consumer_offsets`)
//!   and its glue [`groups`] (routing a group to its partition, the [`GroupReq`] messages,
//!   ListGroups over every coordinator of a shard); [`txn`] (the transaction coordinator on
//!   `__transaction_state`) and its glue [`txns`].
//!
//! # Which shard runs it
//! Every shard: a coordinator lives on the shard that owns its partition, so coordinators
//! spread over cores the way partitions do. The shard opens a coordinator right after it
//! opens the partition (becoming its leader) and closes it before it closes the partition
//! (resigning). Other shards reach a coordinator only through cross-shard messages
//! (`ShardReq::Group` for groups), which the owning shard hands to its [`Coordinators`].
//!
//! # Invariants
//! - Ordered persistence: records reach the log in the order the machine emitted their
//!   `Persist` actions (offsets are assigned synchronously while the actions are applied),
//!   and completions are reported to the machine in that same order (one queue per
//!   coordinator, awaited in order; persist ids must increase, asserted in release builds).
//! - One answer per request: every request stepped gets exactly one answer, from a
//!   `Respond`, or from [`ShellError::Closed`] when the coordinator closes under it (after
//!   the machine's own `shutdown` answers).
//! - A machine is stepped only once loaded: requests during the replay get
//!   [`ShellError::Loading`], after a failed load or a close [`ShellError::Unavailable`].
//! - No `RefCell` borrow is held across an `.await`; the machine is never borrowed while
//!   the shell awaits I/O.
//! - What is appended is one batch holding every record of a `Persist`, checked right after
//!   it is built (pair assertion with the replay, which decodes the same batches).
//!
//! # Plugging in a new coordinator (transactions next)
//! 1. Write the I/O-free machine (its own module under `coordinator/`, tested without
//!    sockets) and `impl StateMachine` for it: how a record replays, how one encodes, what
//!    a failed append means to it.
//! 2. Give it a user module like [`groups`]: its cross-shard request type, the map from a
//!    key (transactional id) to a partition of its topic, and a [`Coordinators<M>`] the
//!    shard owns.
//! 3. In the shard: open/close it with its topic's partitions (lending a `CoordinatorLog`),
//!    and dispatch its `ShardReq` variant to it.

pub mod group;
pub mod groups;
mod shell;
#[cfg(test)]
mod tests;
pub mod txn;
pub mod txns;

use bytes::Bytes;
use futures::future::LocalBoxFuture;

pub use self::groups::{coordinator_of, GroupCoordinators, GroupReq, GroupResp};
pub use self::shell::{Coordinators, ShellError, Status};
pub use self::txns::{txn_coordinator_of, TxnCoordinators, TxnReq, TxnResp};
use crate::errors::PartitionError;

/// What a coordinator asks its shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action<Response, Record> {
    /// Answer request `request_id` (handed to [`StateMachine::step`]) with `response`.
    Respond { request_id: u64, response: Response },
    /// Append `records`, in order, as one batch to the coordinator's partition; then report
    /// the outcome with [`StateMachine::persisted`]. Ids increase in emission order.
    Persist {
        persist_id: u64,
        records: Vec<Record>,
    },
    /// Call [`StateMachine::tick`] at (or after) this time. Extra ticks are harmless.
    ScheduleTick { at_ms: i64 },
}

/// The actions of machine `M`.
pub type Actions<M> = Vec<Action<<M as StateMachine>::Response, <M as StateMachine>::Record>>;

/// Why a `Persist` did not become durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistFailure {
    /// The records could not be encoded into a batch (a bug or an oversized record).
    #[error("cannot encode the batch: {0}")]
    Encode(String),
    /// The log refused the append or could not make it durable.
    #[error("append failed: code {}", .0.code)]
    Log(PartitionError),
}

/// An I/O-free coordinator the shell can run (see the module docs for the contract).
pub trait StateMachine: 'static {
    type Input;
    type Response: 'static;
    type Record;
    /// A record that does not replay, a record that does not encode, or a completion the
    /// machine refuses (a driver bug): logged by the shell.
    type Error: std::fmt::Display;

    /// Replays one record of the partition (key, value or tombstone), in log order, before
    /// serving. An error skips that record only.
    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), Self::Error>;
    /// The replay is complete: start timers, fix up state; the machine serves from now on.
    fn finish_load(&mut self, now_ms: i64) -> Actions<Self>;
    /// One request; `request_id` is the shell's handle for its answer.
    fn step(&mut self, now_ms: i64, request_id: u64, input: Self::Input) -> Actions<Self>;
    /// The timer asked for by `ScheduleTick` fired.
    fn tick(&mut self, now_ms: i64) -> Actions<Self>;
    /// The append of `Persist { persist_id }` is durable (`Ok`) or failed; reported in
    /// emission order.
    fn persisted(
        &mut self,
        now_ms: i64,
        persist_id: u64,
        result: Result<(), PersistFailure>,
    ) -> Result<Actions<Self>, Self::Error>;
    /// Resigning: answer what is parked and forget all state. Only `Respond` actions are
    /// carried out; pending appends are abandoned.
    fn shutdown(&mut self) -> Actions<Self>;
    /// The record as a Kafka record: key, and value (`None` is a tombstone).
    fn encode(record: &Self::Record) -> Result<(Bytes, Option<Bytes>), Self::Error>;
    /// Whether "persisted" must mean synced to disk for this record (the default), or only
    /// written: a record whose loss in a crash the machine recovers from by itself (and which
    /// any later synced append of the same log makes durable, the log being one file).
    fn must_sync(_record: &Self::Record) -> bool {
        true
    }
}

/// An append whose offsets are assigned; resolves once durable as the shard's config asks.
pub type PendingDurable = LocalBoxFuture<'static, Result<(), PartitionError>>;

/// The partition a coordinator keeps its state in, as the owning shard lends it, and the
/// clock. Called only on that shard.
pub trait CoordinatorLog {
    fn now_ms(&self) -> i64;
    fn log_start_offset(&self) -> i64;
    fn high_watermark(&self) -> i64;
    /// Whole batches from `offset` (at least one when there is data), up to `max_bytes`.
    fn read(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> LocalBoxFuture<'_, Result<Bytes, PartitionError>>;
    /// Appends one batch the shell built. Offsets are assigned before this returns, so
    /// appends land in call order; the returned future waits for durability.
    fn append(&self, batch: Bytes) -> Result<PendingDurable, PartitionError>;
    /// [`CoordinatorLog::append`] whose future resolves once written, without waiting for a
    /// sync (see [`StateMachine::must_sync`]).
    fn append_unsynced(&self, batch: Bytes) -> Result<PendingDurable, PartitionError> {
        self.append(batch)
    }
}
