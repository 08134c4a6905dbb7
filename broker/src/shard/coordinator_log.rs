//! The shard's side of the coordinator shell: lends a coordinator the partition it keeps its
//! state in ([`CoordinatorLog`]) and opens the group coordinators with the partitions of
//! `__consumer_offsets` and the transaction coordinators with those of `__transaction_state`.
//! Runs on the shard owning the partition.

use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use storage::batch::ValidatedBatches;
use storage::{Durability, PartitionLog};

use super::{now_ms, Partition, Shard};
use crate::coordinator::groups::group_config;
use crate::coordinator::txns::txn_config;
use crate::coordinator::{CoordinatorLog, PendingDurable};
use crate::errors::PartitionError;

/// A partition this shard owns, as a coordinator's log.
struct ShardLog {
    log: PartitionLog,
    /// What "persisted" means: as durable as an acks=all produce.
    durability: Durability,
}

impl CoordinatorLog for ShardLog {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    fn high_watermark(&self) -> i64 {
        self.log.written_end_offset()
    }

    fn read(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> LocalBoxFuture<'_, Result<Bytes, PartitionError>> {
        async move {
            let read = self
                .log
                .read(offset, max_bytes, true, self.log.written_end_offset())
                .await?;
            Ok(read.into_bytes().await?)
        }
        .boxed_local()
    }

    fn append(&self, batch: Bytes) -> Result<PendingDurable, PartitionError> {
        let batches = ValidatedBatches::parse(batch)?;
        let pending = self.log.append(&batches, None)?;
        let durability = self.durability;
        Ok(async move { Ok(pending.wait(durability).await?) }.boxed_local())
    }

    fn append_unsynced(&self, batch: Bytes) -> Result<PendingDurable, PartitionError> {
        let batches = ValidatedBatches::parse(batch)?;
        let pending = self.log.append(&batches, None)?;
        Ok(async move { Ok(pending.wait(Durability::Written).await?) }.boxed_local())
    }
}

impl Shard {
    /// Becomes the group coordinator of offsets partition `partition`, just opened here.
    pub(super) fn open_group_coordinator(&self, partition: &Partition) {
        let durability = if self.config.kafka.acks_all_fsync() {
            Durability::Fsynced
        } else {
            Durability::Written
        };
        let log = Rc::new(ShardLog {
            log: partition.log.clone(),
            durability,
        });
        let config = group_config(&self.config, &partition.topic);
        self.coordinators.open(partition.index, log, config);
    }

    /// Becomes the transaction coordinator of `__transaction_state` partition `partition`,
    /// just opened here.
    pub(super) fn open_txn_coordinator(&self, partition: &Partition) {
        let log = Rc::new(ShardLog {
            log: partition.log.clone(),
            durability: self.coordinator_durability(),
        });
        self.txn_coordinators
            .open(partition.index, log, txn_config(&self.config));
    }

    /// What "persisted" means for a coordinator: as durable as an acks=all produce.
    pub(super) fn coordinator_durability(&self) -> Durability {
        if self.config.kafka.acks_all_fsync() {
            Durability::Fsynced
        } else {
            Durability::Written
        }
    }
}
