//! The shard's side of the coordinator shell: lends a coordinator the partition it keeps its
//! state in ([`CoordinatorLog`]) and opens the group coordinators with the partitions of
//! `__consumer_offsets` and the transaction coordinators with those of `__transaction_state`.
//! A coordinator runs where its partition's leader is: it is opened when the replica becomes
//! leader and closed when it stops leading (`shard::replica::Shard::sync_roles`), and its
//! writes wait for the ISR like an acks=all produce. Runs on the shard owning the partition.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use storage::batch::ValidatedBatches;
use storage::{Durability, PartitionLog};

use kafka_protocol::ResponseError as E;

use super::replica::Replica;
use super::{now_ms, Partition, Shard};
use crate::coordinator::groups::group_config;
use crate::coordinator::txns::txn_config;
use crate::coordinator::{CoordinatorLog, PendingDurable};
use crate::errors::PartitionError;

/// A partition this shard owns, as a coordinator's log.
struct ShardLog {
    log: PartitionLog,
    /// The partition's role: a coordinator writes only while its replica leads, and (when
    /// replicated) waits for the ISR, as Kafka's coordinators write with acks=all.
    replica: Rc<Replica>,
    /// What "persisted" means: as durable as an acks=all produce.
    durability: Durability,
}

/// How long a coordinator's write waits for the ISR (Kafka's `offsets.commit.timeout.ms`
/// default); then it fails with REQUEST_TIMED_OUT and the coordinator reports the failure.
pub const COORDINATOR_REPLICATION_TIMEOUT: Duration = Duration::from_millis(5000);

impl CoordinatorLog for ShardLog {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    fn high_watermark(&self) -> i64 {
        // What a coordinator loads: everything written (Kafka's coordinators load to the log
        // end; what is not replicated yet was never acknowledged).
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
        let leader_epoch = self
            .replica
            .leader_epoch()
            .ok_or_else(|| PartitionError::new(E::NotLeaderOrFollower))?;
        let batches = ValidatedBatches::parse(batch)?;
        let pending = self.log.append(&batches, None)?;
        let last_offset = pending.last_offset;
        let durability = self.durability;
        let replica = self.replica.clone();
        let log = self.log.clone();
        Ok(async move {
            pending.wait(durability).await?;
            let deadline = Instant::now() + COORDINATOR_REPLICATION_TIMEOUT;
            replica
                .wait_replicated(&log, leader_epoch, last_offset, deadline)
                .await
        }
        .boxed_local())
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
            replica: partition.replica.clone(),
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
            replica: partition.replica.clone(),
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
