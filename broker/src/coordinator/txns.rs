//! The transaction coordinator as a user of the shell: [`TxnCoordinator`] as a
//! [`StateMachine`], the cross-shard [`TxnReq`] messages, and where a transactional id lives.
//!
//! Runs on every shard: one [`TxnCoordinator`] per partition of `__transaction_state` the
//! shard owns, in the [`TxnCoordinators`] the shard holds. Other shards reach it only through
//! `ShardReq::Txn`; `kafka::txn` routes each transactional id to [`txn_coordinator_of`] (the
//! same hash as groups) and the shard owning that partition, so a coordinator moves with the
//! leadership of its partition.

use std::rc::Rc;

use bytes::Bytes;

use super::txn::{self, Input, RecordError, Response, TxnConfig, TxnCoordinator, TxnRecord};
use super::{
    Actions, CoordinatorLog, Coordinators, PersistFailure, ShellError, StateMachine, Status,
};
use crate::cluster::meta::MetaSnapshot;
use crate::config::BrokerConfig;

/// A request for the transaction coordinators of the target shard.
#[derive(Debug)]
pub enum TxnReq {
    /// One request for the coordinator of `__transaction_state` partition `partition`.
    Step { partition: i32, input: Box<Input> },
    /// Whether the coordinators of these partitions serve requests.
    Status { partitions: Vec<i32> },
    /// `Input::PendingWork` (or `Input::List`, `Input::PendingOffsets`) on every coordinator
    /// of the target shard.
    All { input: Box<Input> },
}

#[derive(Debug)]
pub enum TxnResp {
    Step(Result<Response, ShellError>),
    Status(Vec<Option<Status>>),
    All(Vec<Result<Response, ShellError>>),
}

/// Where a transactional id is coordinated: (partition of `__transaction_state`, owning
/// shard), or `None` before the topic exists.
pub fn txn_coordinator_of(meta: &MetaSnapshot, transactional_id: &str) -> Option<(i32, usize)> {
    let topic = meta.topic(txn::TXN_STATE_TOPIC)?;
    let partitions = u32::try_from(topic.partitions).ok().filter(|n| *n > 0)?;
    let partition = i32::try_from(txn::txn_partition(transactional_id, partitions)).ok()?;
    Some((partition, meta.owner(txn::TXN_STATE_TOPIC, partition)))
}

/// The coordinator's settings from the broker's Kafka configs.
pub fn txn_config(config: &BrokerConfig) -> TxnConfig {
    let k = &config.kafka;
    TxnConfig {
        transaction_timeout_ms_max: k.transaction_max_timeout_ms(),
        transactional_id_expiration_ms: i64::from(k.transactional_id_expiration_ms()),
    }
}

/// The machine already speaks the shell's action type.
fn actions(txn_actions: Vec<txn::Action>) -> Actions<TxnCoordinator> {
    txn_actions
}

impl StateMachine for TxnCoordinator {
    type Input = Input;
    type Response = Response;
    type Record = TxnRecord;
    type Error = RecordError;

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        TxnCoordinator::replay(self, key, value)
    }

    fn finish_load(&mut self, now_ms: i64) -> Actions<Self> {
        actions(TxnCoordinator::finish_load(self, now_ms))
    }

    fn step(&mut self, now_ms: i64, request_id: u64, input: Input) -> Actions<Self> {
        actions(TxnCoordinator::step(self, now_ms, request_id, input))
    }

    fn tick(&mut self, now_ms: i64) -> Actions<Self> {
        actions(TxnCoordinator::tick(self, now_ms))
    }

    fn persisted(
        &mut self,
        _now_ms: i64,
        persist_id: u64,
        result: Result<(), PersistFailure>,
    ) -> Result<Actions<Self>, RecordError> {
        Ok(actions(TxnCoordinator::persisted(
            self,
            persist_id,
            result.map_err(|_| ()),
        )?))
    }

    fn shutdown(&mut self) -> Actions<Self> {
        actions(TxnCoordinator::shutdown(self))
    }

    fn encode(record: &TxnRecord) -> Result<(Bytes, Option<Bytes>), RecordError> {
        record.encode()
    }

    /// A CompleteCommit / CompleteAbort record is only written, not synced: it follows
    /// markers that are durable already, and if a crash loses it the transaction reloads in
    /// its Prepare state and its (idempotent) markers are written again. Any later record of
    /// the id is synced, which makes it durable first. This saves one of the three syncs of
    /// every EndTxn (Prepare, markers, Complete).
    fn must_sync(record: &TxnRecord) -> bool {
        !record.meta.as_ref().is_some_and(|m| {
            matches!(
                m.state,
                txn::TxnState::CompleteCommit | txn::TxnState::CompleteAbort
            )
        })
    }
}

/// The transaction coordinators of one shard, by `__transaction_state` partition.
#[derive(Default)]
pub struct TxnCoordinators {
    shells: Coordinators<TxnCoordinator>,
}

impl TxnCoordinators {
    /// Starts the coordinator of `partition`, which this shard has just opened.
    pub fn open(&self, partition: i32, log: Rc<dyn CoordinatorLog>, config: TxnConfig) {
        self.shells
            .open("txn", partition, log, TxnCoordinator::new(config));
    }

    pub fn close(&self, partition: i32) {
        self.shells.close(partition);
    }

    pub fn close_all(&self) {
        self.shells.close_all();
    }

    /// The partitions with a coordinator here.
    pub fn partitions(&self) -> Vec<i32> {
        self.shells.partitions()
    }

    pub async fn serve(&self, req: TxnReq) -> TxnResp {
        match req {
            TxnReq::Step { partition, input } => {
                TxnResp::Step(self.shells.step(partition, *input).await)
            }
            TxnReq::Status { partitions } => {
                TxnResp::Status(partitions.iter().map(|p| self.shells.status(*p)).collect())
            }
            TxnReq::All { input } => {
                let mut out = Vec::new();
                for partition in self.shells.partitions() {
                    out.push(self.shells.step(partition, (*input).clone()).await);
                }
                TxnResp::All(out)
            }
        }
    }
}
