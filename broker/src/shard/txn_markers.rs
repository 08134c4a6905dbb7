//! The partition side of transactions, on the shard owning the partition: writing COMMIT /
//! ABORT markers ([`ShardReq::WriteMarkers`](super::ShardReq::WriteMarkers)), asking the
//! transaction coordinator whether a partition was added before the first transactional
//! batch of a transaction is written (the old protocol's INVALID_TXN_STATE rule), and
//! rebuilding a partition's [`PartitionTxns`] from its log when it opens.
//!
//! Invariants: a marker's offsets are assigned and [`PartitionTxns::on_marker`] applied in one
//! synchronous step (as data batches are), so the last stable offset moves exactly when the
//! marker is in the log; the marker is answered once as durable as an acks=all produce.

use kafka_protocol::ResponseError as E;
use storage::batch::{BatchHeader, ValidatedBatches};
use storage::PartitionLog;

use super::{now_ms, ProduceResult, Shard, ShardReq, ShardResp};
use crate::coordinator::txn::{Input, Response};
use crate::coordinator::{txn_coordinator_of, TxnReq, TxnResp};
use crate::errors::{KafkaCode, PartitionError};
use crate::log::records::{self, BatchSpec, NewRecord};
use crate::log::txn_index::{self, PartitionTxns, TxnAppendError};

/// Largest control batch read back while rebuilding (a marker is well under 100 bytes).
const MARKER_READ_BYTES_MAX: usize = 4096;

/// One marker for one partition.
#[derive(Debug, Clone)]
pub struct MarkerPart {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
}

/// One producer of a partition, as DescribeProducers shows it.
#[derive(Debug, Clone)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    /// First offset of its open transaction here, or -1.
    pub current_txn_start_offset: i64,
}

/// A transactional batch header seen while opening a partition.
#[derive(Debug, Clone, Copy)]
pub struct TxnEvent {
    base_offset: i64,
    last_offset: i64,
    producer_id: i64,
    producer_epoch: i16,
    control: bool,
}

impl TxnEvent {
    pub fn from_header(h: &BatchHeader) -> TxnEvent {
        TxnEvent {
            base_offset: h.base_offset,
            last_offset: h.base_offset + i64::from(h.last_offset_delta.max(0)),
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            control: h.is_control(),
        }
    }
}

/// Replays the transactional batches of a partition (in log order) into its transactions;
/// markers are read back to learn COMMIT or ABORT.
pub async fn rebuild_txns(
    log: &PartitionLog,
    events: Vec<TxnEvent>,
) -> Result<PartitionTxns, storage::StorageError> {
    let mut txns = PartitionTxns::new();
    for e in events {
        if !e.control {
            txns.on_data(
                e.producer_id,
                e.producer_epoch,
                e.base_offset,
                e.last_offset,
            );
            continue;
        }
        let read = log
            .read(
                e.base_offset,
                MARKER_READ_BYTES_MAX,
                true,
                log.written_end_offset(),
            )
            .await?;
        let bytes = read.into_bytes().await?;
        let commit = control_batch_commit(&bytes);
        match commit {
            Some(commit) => txns.on_marker(e.producer_id, e.producer_epoch, commit, e.base_offset),
            None => tracing::warn!(
                offset = e.base_offset,
                "unreadable control batch skipped while rebuilding transactions"
            ),
        }
    }
    Ok(txns)
}

/// Whether the first batch of `bytes` (a control batch) is a COMMIT (true) or ABORT marker;
/// `None` when it cannot be read.
pub fn control_batch_commit(bytes: &bytes::Bytes) -> Option<bool> {
    records::split_batches(bytes)
        .ok()
        .and_then(|batches| batches.into_iter().next())
        .and_then(|b| records::decode_batch(&b, MARKER_READ_BYTES_MAX).ok())
        .and_then(|d| d.records.into_iter().next())
        .and_then(|r| r.key)
        .and_then(|k| txn_index::parse_marker_key(&k))
}

impl Shard {
    /// The producers of a partition owned here, with their open transactions.
    pub fn describe_producers_local(
        &self,
        topic: &str,
        index: i32,
    ) -> Result<Vec<ProducerInfo>, PartitionError> {
        let partition = self
            .partition(topic, index)
            .ok_or_else(|| PartitionError::new(E::UnknownTopicOrPartition))?;
        let producers = partition.producers.borrow();
        let txns = partition.txns.borrow();
        let mut out: Vec<ProducerInfo> = producers
            .producers()
            .map(|(pid, e)| ProducerInfo {
                producer_id: pid,
                producer_epoch: e.epoch(),
                last_sequence: e.last_seq(),
                last_timestamp_ms: e.last_timestamp_ms(),
                current_txn_start_offset: txns.open(pid).map_or(-1, |t| t.first_offset),
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        Ok(out)
    }

    /// Appends one marker to a partition owned here. A partition that is gone needs none.
    pub async fn write_marker_local(&self, part: MarkerPart) -> ProduceResult {
        let Some(partition) = self.partition(&part.topic, part.partition) else {
            return ProduceResult {
                error: None,
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
            };
        };
        let spec = BatchSpec {
            transactional: true,
            control: true,
            producer_id: part.producer_id,
            producer_epoch: part.producer_epoch,
            base_sequence: -1,
            ..BatchSpec::default()
        };
        let record = NewRecord {
            timestamp: now_ms(),
            key: Some(bytes::Bytes::copy_from_slice(&txn_index::marker_key(
                part.commit,
            ))),
            value: Some(bytes::Bytes::copy_from_slice(&txn_index::marker_value(0))),
            headers: Vec::new(),
        };
        let result = async {
            // Only the leader writes markers (a follower copies them).
            if partition.leader_epoch().is_none() {
                return Err(PartitionError::new(E::NotLeaderOrFollower));
            }
            let batch = records::build_batch(&spec, &[record])?;
            let batches = ValidatedBatches::parse(batch)?;
            // Offsets are assigned here and the index follows in the same step.
            let pending = partition.log.append(&batches, None)?;
            assert_eq!(
                pending.base_offset, pending.last_offset,
                "a marker is one record"
            );
            partition.txns.borrow_mut().on_marker(
                part.producer_id,
                part.producer_epoch,
                part.commit,
                pending.base_offset,
            );
            let base_offset = pending.base_offset;
            pending.wait(self.coordinator_durability()).await?;
            Ok::<i64, PartitionError>(base_offset)
        }
        .await;
        match result {
            Ok(base_offset) => ProduceResult {
                error: None,
                base_offset,
                log_append_time_ms: -1,
                log_start_offset: partition.log.log_start_offset(),
            },
            Err(e) => ProduceResult::failed(e),
        }
    }

    /// The old protocol's rule: the first transactional batch of a transaction on a
    /// partition is written only if the coordinator has the partition in the transaction.
    pub(super) async fn verify_in_transaction(
        self: &Shard,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), PartitionError> {
        let Some((txn_partition, owner)) = txn_coordinator_of(&self.meta(), transactional_id)
        else {
            return Err(PartitionError::new(E::CoordinatorNotAvailable));
        };
        let req = TxnReq::Step {
            partition: txn_partition,
            input: Box::new(Input::Verify {
                transactional_id: transactional_id.to_owned(),
                producer_id,
                producer_epoch,
                partition: (topic.to_owned(), partition),
            }),
        };
        let resp = if owner == self.id {
            ShardResp::Txn(self.txn_coordinators.serve(req).await)
        } else {
            match self.router.call(owner, ShardReq::Txn(req)).await {
                Ok(resp) => resp,
                Err(e) => {
                    return Err(PartitionError::with_message(
                        E::CoordinatorNotAvailable,
                        format!("transaction coordinator unreachable: {e}"),
                    ))
                }
            }
        };
        match resp {
            ShardResp::Txn(TxnResp::Step(Ok(Response::Done(Ok(()))))) => Ok(()),
            ShardResp::Txn(TxnResp::Step(Ok(Response::Done(Err(e))))) => {
                Err(match e.kafka_error() {
                    // A fenced producer's batch: produce answers INVALID_PRODUCER_EPOCH.
                    E::ProducerFenced => PartitionError::new(E::InvalidProducerEpoch),
                    E::InvalidTxnState => TxnAppendError::NotInTransaction { producer_id }.into(),
                    code => PartitionError::new(code),
                })
            }
            // Loading, moved, or an unexpected reply: the client retries.
            _ => Err(PartitionError::new(E::NotCoordinator)),
        }
    }
}
